"""The features a sampler must get right, each beside its exact target.

Every data law (``noisesched.AbstractDataLaw``) names its own features and computes them:
``summary(model, x)`` gives all of them with their targets for any law, streamed over chunks of
rows by ``row_statistics`` / ``concatenate_rows`` / ``summary_from_rows``. The functions of the
built-in laws are re-exported here: for a Gaussian mixture the mode weights (high level) and the
spread within a mode (low level); for Curie–Weiss spins the phase (high level) and the spins'
magnitude and magnetisation (low level). All take samples of shape (n, d) and are invariant to
the order of the rows.

A feature that is a mean over samples (a fraction, a mean square) comes with its Monte Carlo
standard error (``Feature.se``, e.g. ``mode_weight_se``): ``binomial_standard_error`` for a
fraction, ``mean_standard_error`` (the per-sample values' standard deviation over √n) for a
mean. It is computed from the per-row statistics, so a summary streamed in chunks has the
standard error of the whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import check_int
from .models.base import (
    AbstractDataLaw,
    Samples,
    binomial_standard_error,
    check_data_law,
    check_samples,
    mean_standard_error,
)
from .models.gaussian_mixture import (
    assign_modes,
    coordinate_ks,
    mode_weight,
    mode_weight_target,
    mode_weights,
    within_mode_sum_of_squares,
    within_mode_variance,
    within_mode_variance_target,
)
from .models.spins import (
    magnetization,
    magnetization_ks,
    magnetization_law,
    mean_abs_magnetization,
    mean_square,
    positive_phase_fraction,
    positive_phase_target,
)

__all__ = [
    "assign_modes",
    "mode_weights",
    "mode_weight",
    "mode_weight_target",
    "within_mode_sum_of_squares",
    "within_mode_variance",
    "within_mode_variance_target",
    "coordinate_ks",
    "positive_phase_fraction",
    "positive_phase_target",
    "mean_square",
    "magnetization",
    "mean_abs_magnetization",
    "magnetization_law",
    "magnetization_ks",
    "summary",
    "row_statistics",
    "concatenate_rows",
    "summary_from_rows",
    "mean_standard_error",
    "binomial_standard_error",
]


def _strided_positions(start: int, rows: int, d: int, stride: int) -> np.ndarray:
    """Flat positions p (within a block of ``rows`` rows that starts at row ``start`` of the
    batch) whose position in the whole batch, start·d + p, is a multiple of ``stride``."""
    first = (-start * d) % stride
    return np.arange(first, rows * d, stride, dtype=np.int64)


def _stride(total: int, d: int, max_values: int) -> int:
    """Every ``stride``-th of ``total·d`` entries: at most ``max_values`` of them."""
    return max(1, -(-(total * d) // max_values))


def row_statistics(model: AbstractDataLaw, x: Samples, *, start: int = 0,
                   total: int | None = None, max_values: int = 200_000) -> dict[str, np.ndarray]:
    """Per-sample summaries of rows ``start, start + 1, …`` of a batch of ``total`` samples
    (default: ``x`` is the whole batch), as NumPy arrays on the host: O(n) numbers, never the
    (n, d) samples. Rows of ``x`` beyond ``total`` (the padding of a last block) are computed
    with the others and dropped, so every block of a batch is summarised with one shape.
    Concatenated over the blocks of a batch (``concatenate_rows``), they give
    ``summary_from_rows`` the numbers ``summary`` gives on the whole batch.

    The keys are the law's (``AbstractDataLaw.row_statistics``; e.g. a mixture's ``mode``,
    ``within_sq``, ``overlap_z``; Curie–Weiss ``magnetization``, ``sum_sq``), and ``values``:
    the law's pooled entries (a mixture's residuals x − μ_k(x), the spins themselves) at every
    ``stride``-th position of the whole batch, stride = ⌈total·d / max_values⌉ (at most
    ``max_values`` entries).
    """
    check_data_law(model, "metrics.row_statistics")
    check_int("max_values", max_values, lo=1)
    x = check_samples(model, x)
    total = x.shape[0] if total is None else total
    if not 0 <= start < total:
        raise ValueError(f"start must be in [0, total) = [0, {total}); got {start}")
    valid = min(x.shape[0], total - start)
    positions = _strided_positions(start, valid, model.d, _stride(total, model.d, max_values))
    rows, cols = jnp.asarray(positions // model.d), jnp.asarray(positions % model.d)
    stats = model.row_statistics(x, jnp.arange(x.shape[0]) < valid, rows, cols)
    whole = ("values", *model.chunk_sums)
    return {key: _to_host(value) if key in whole else _to_host(value)[:valid]
            for key, value in stats.items()}


def _to_host(value) -> np.ndarray:
    if isinstance(value, jax.Array) and not value.is_fully_addressable:  # several hosts
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def concatenate_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join ``row_statistics`` of consecutive blocks, in row order."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def summary_from_rows(model: AbstractDataLaw, rows: dict[str, np.ndarray]) -> dict[str, float]:
    """``summary`` from ``row_statistics`` (float64 sums on the host)."""
    return check_data_law(model, "metrics.summary_from_rows").summary_from_rows(rows)


def summary(model: AbstractDataLaw, x: Samples) -> dict[str, float]:
    """Every feature of the data law with its exact target, as Python floats."""
    return summary_from_rows(model, row_statistics(model, x))
