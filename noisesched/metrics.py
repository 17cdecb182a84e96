"""The two features a sampler must get right, each beside its exact target.

High-level feature: how the samples split between modes (GM) or phases (CW).
Low-level feature: the spread within a mode (GM) or the spins' magnitude (CW).
All functions take samples of shape (n, d) and are invariant to the order of the rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._validation import check_int
from .models import CurieWeiss, GaussianMixture
from .models.gaussian_mixture import combine, project

__all__ = [
    "assign_modes",
    "mode_weights",
    "mode_weight",
    "mode_weight_target",
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
]

Samples = Float[Array | np.ndarray, "n d"]  # JAX or NumPy


def _check_samples(model, x) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != model.d:
        raise ValueError(f"x must have shape (n, d) = (n, {model.d}); got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one sample (n >= 1)")
    return x


# ----------------------------------------------------------------------------- Gaussian mixture
def assign_modes(model: GaussianMixture, x: Samples) -> Array:
    """Index of the nearest mean for each sample, shape (n,). For ±μ this is sign(μ·x)."""
    x = _check_samples(model, x)
    means = model.means.astype(x.dtype)
    score = project(x, means) - 0.5 * jnp.sum(means * means, axis=-1)
    return jnp.argmax(score, axis=-1)


def mode_weights(model: GaussianMixture, x: Samples) -> Float[Array, " K"]:
    """Fraction of samples assigned to each component (target: ``model.weights``)."""
    k = assign_modes(model, x)
    return jnp.mean(jax.nn.one_hot(k, model.K, dtype=x.dtype), axis=0)


def mode_weight(model: GaussianMixture, x: Samples) -> Float[Array, ""]:
    """p̂: the fraction of samples in component 0 (for ``two_modes``, the mode +μ of weight p)."""
    return mode_weights(model, x)[0]


def mode_weight_target(model: GaussianMixture) -> Float[Array, ""]:
    """The exact weight of component 0."""
    return model.weights[0]


def _orthonormal_basis_of_means(model: GaussianMixture, dtype) -> tuple[Array, int | Array]:
    """An orthonormal basis (d, K) of the span of the means (columns beyond the rank r are
    zero) and r; r is a Python int when the means are concrete."""
    if isinstance(model.means, jax.core.Tracer):
        q, r = jnp.linalg.qr(model.means.astype(dtype).T)
        # the rank tolerance of numpy.linalg.matrix_rank: rounding leaves |r_kk| ~ eps·d·max
        tol = max(1e-6, jnp.finfo(dtype).eps * max(model.means.shape))
        keep = jnp.abs(jnp.diagonal(r)) > tol * jnp.max(jnp.abs(r))
        return q * keep, jnp.sum(keep)
    means = np.asarray(model.means, dtype=np.float64)
    q64, r64 = np.linalg.qr(means.T)  # float64 on the host: the rank decides nothing traced
    kept = np.abs(np.diagonal(r64)) > 1e-6 * np.max(np.abs(r64))
    return jnp.asarray(q64 * kept, dtype=dtype), int(kept.sum())


def within_mode_sum_of_squares(model: GaussianMixture, x: Samples
                               ) -> tuple[Float[Array, ""], int | Array]:
    """(Σ over samples of |P⊥ x|², d − r): the additive part of ``within_mode_variance``,
    for metrics accumulated over chunks of samples."""
    x = _check_samples(model, x)
    basis, rank = _orthonormal_basis_of_means(model, x.dtype)
    if isinstance(rank, int) and model.d <= rank:
        raise ValueError(f"within_mode_variance needs d > rank of the means = {rank}")
    resid = x - (x @ basis) @ basis.T  # explicit residual: no cancellation when it is small
    return jnp.sum(resid * resid), model.d - rank


def within_mode_variance(model: GaussianMixture, x: Samples) -> Float[Array, ""]:
    """mean over samples of |P⊥ x|² / (d − r), P⊥ the projection off the span of the r ≤ K means.

    Under the data law P⊥ x = σ P⊥ ξ for every component, so the exact target is σ² whatever the
    mode assignment.
    """
    total, dof = within_mode_sum_of_squares(model, x)
    return total / (x.shape[0] * dof)


def within_mode_variance_target(model: GaussianMixture) -> float:
    return model.sigma**2


def coordinate_ks(model: GaussianMixture, x: Samples, max_values: int = 200_000
                  ) -> Float[Array, ""]:
    """Kolmogorov–Smirnov distance between the residual coordinates x − μ_k(x) and N(0, σ²).

    The residuals of the nearest mean are pooled over samples and coordinates; at most
    ``max_values`` of them (every ⌈n·d / max_values⌉-th) are sorted.
    """
    x = _check_samples(model, x)
    k = assign_modes(model, x)
    resid = (x - model.means.astype(x.dtype)[k]).reshape(-1)
    stride = _stride(x.shape[0], model.d, max_values)
    vals = jnp.sort(resid[::stride]) / model.sigma
    n = vals.shape[0]
    cdf = jax.scipy.stats.norm.cdf(vals)
    upper = jnp.arange(1, n + 1, dtype=vals.dtype) / n
    lower = jnp.arange(0, n, dtype=vals.dtype) / n
    return jnp.maximum(jnp.max(upper - cdf), jnp.max(cdf - lower))


# ----------------------------------------------------------------------------- Curie–Weiss
def magnetization(x: Samples) -> Float[Array, " n"]:
    """Per-sample magnetisation mean_i sign(x_i)."""
    return jnp.mean(jnp.sign(x), axis=-1)


def positive_phase_fraction(model: CurieWeiss, x: Samples) -> Float[Array, ""]:
    """Fraction of samples with positive magnetisation (target W+)."""
    x = _check_samples(model, x)
    return jnp.mean((magnetization(x) > 0).astype(x.dtype))


def positive_phase_target(model: CurieWeiss) -> Float[Array, ""]:
    return model.positive_phase_weight


def mean_square(model: CurieWeiss, x: Samples) -> Float[Array, ""]:
    """mean over samples and spins of x_i² (target 1: spins sit at ±1)."""
    x = _check_samples(model, x)
    return jnp.mean(x * x)


def mean_abs_magnetization(model: CurieWeiss, x: Samples) -> Float[Array, ""]:
    """mean over samples of |mean_i sign(x_i)| (target m in the large-d law)."""
    x = _check_samples(model, x)
    return jnp.mean(jnp.abs(magnetization(x)))


def magnetization_law(model: CurieWeiss
                      ) -> tuple[Float[Array, " d_plus_1"], Float[Array, " d_plus_1"]]:
    """Exact law of the magnetisation mean_i s_i: (levels, probabilities), each (d + 1,)."""
    return model.magnetization_law()


def magnetization_ks(model: CurieWeiss, x: Samples) -> Float[Array, ""]:
    """Kolmogorov–Smirnov distance between the samples' mean_i sign(x_i) and its exact law."""
    x = _check_samples(model, x)
    levels, probs = magnetization_law(model)
    mags = magnetization(x)
    # empirical CDF at each level; half a level of slack absorbs rounding of (2u − d)/d
    half = 1.0 / model.d
    empirical = jnp.mean(mags[None, :] <= levels[:, None] + half, axis=1)
    return jnp.max(jnp.abs(empirical - jnp.cumsum(probs)))


# ----------------------------------------------------------------------------- streamed summaries
def _strided_positions(start: int, rows: int, d: int, stride: int) -> np.ndarray:
    """Flat positions p (within a block of ``rows`` rows that starts at row ``start`` of the
    batch) whose position in the whole batch, start·d + p, is a multiple of ``stride``."""
    first = (-start * d) % stride
    return np.arange(first, rows * d, stride, dtype=np.int64)


def _stride(total: int, d: int, max_values: int) -> int:
    """Every ``stride``-th of ``total·d`` entries: at most ``max_values`` of them."""
    return max(1, -(-(total * d) // max_values))


@jax.jit
def _gm_rows(model: GaussianMixture, basis, x, rows, cols):
    k = assign_modes(model, x)
    # sums of products, not matrix products: each row's sums then do not depend on the block
    resid = x - combine(project(x, basis.T), basis.T)
    total = jnp.sum(resid * resid, axis=-1)
    means = model.means.astype(x.dtype)
    norm = jnp.sqrt(jnp.sum(means**2, axis=-1))[k]
    z = (jnp.sum(x * means[k], axis=-1) / norm - norm) / model.sigma
    resid = x[rows, cols] - means[k[rows], cols]
    return k, total, z, resid


@jax.jit
def _cw_rows(x, rows, cols):
    return magnetization(x), jnp.sum(x * x, axis=-1), x[rows, cols]


def row_statistics(model, x: Samples, *, start: int = 0, total: int | None = None,
                   max_values: int = 200_000) -> dict[str, np.ndarray]:
    """Per-sample summaries of rows ``start, start + 1, …`` of a batch of ``total`` samples
    (default: ``x`` is the whole batch), as NumPy arrays on the host: O(n) numbers, never the
    (n, d) samples. Rows of ``x`` beyond ``total`` (the padding of a last block) are computed
    with the others and dropped, so every block of a batch is summarised with one shape.
    Concatenated over the blocks of a batch (``concatenate_rows``), they give
    ``summary_from_rows`` the numbers ``summary`` gives on the whole batch.

    Keys: GM ``mode`` (assigned component), ``within_sq`` (|P⊥ x|²), ``overlap_z``
    ((μ_k·x/|μ_k| − |μ_k|)/σ along the assigned mean); CW ``magnetization``, ``sum_sq`` (Σ_i x_i²);
    and ``values``: the pooled entries (GM: residuals x − μ_k(x)) at every ``stride``-th position
    of the whole batch, stride = ⌈total·d / max_values⌉ (at most ``max_values`` entries).
    """
    if not isinstance(model, GaussianMixture | CurieWeiss):
        name = type(model).__name__
        raise ValueError(f"model must be a GaussianMixture or CurieWeiss; got {name}")
    check_int("max_values", max_values, lo=1)
    x = _check_samples(model, x)
    total = x.shape[0] if total is None else total
    if not 0 <= start < total:
        raise ValueError(f"start must be in [0, total) = [0, {total}); got {start}")
    valid = min(x.shape[0], total - start)
    positions = _strided_positions(start, valid, model.d, _stride(total, model.d, max_values))
    rows, cols = jnp.asarray(positions // model.d), jnp.asarray(positions % model.d)
    if isinstance(model, GaussianMixture):
        basis, _ = _orthonormal_basis_of_means(model, x.dtype)  # on the host, float64
        k, within, z, resid = _gm_rows(model, basis, x, rows, cols)
        out = {"mode": k, "within_sq": within, "overlap_z": z}
    else:
        mags, sum_sq, resid = _cw_rows(x, rows, cols)
        out = {"magnetization": mags, "sum_sq": sum_sq}
    out = {key: _to_host(value)[:valid] for key, value in out.items()}
    out["values"] = _to_host(resid)
    return out


def _to_host(value) -> np.ndarray:
    if isinstance(value, jax.Array) and not value.is_fully_addressable:  # several hosts
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def concatenate_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join ``row_statistics`` of consecutive blocks, in row order."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def summary_from_rows(model, rows: dict[str, np.ndarray]) -> dict[str, float]:
    """``summary`` from ``row_statistics`` (float64 sums on the host)."""
    if isinstance(model, GaussianMixture):
        n = rows["mode"].shape[0]
        weights = np.bincount(rows["mode"], minlength=model.K) / n
        target = np.asarray(model.weights, dtype=np.float64)
        _, rank = _orthonormal_basis_of_means(model, jnp.float32)
        out = {
            "mode_weight": weights[0],
            "mode_weight_target": target[0],
            "mode_weights_tv": 0.5 * np.sum(np.abs(weights - target)),
            "within_mode_var": np.sum(rows["within_sq"], dtype=np.float64) / (n * (model.d - rank)),
            "within_mode_var_target": within_mode_variance_target(model),
            "coordinate_ks": _ks_normal(rows["values"] / model.sigma),
        }
    elif isinstance(model, CurieWeiss):
        mags = rows["magnetization"].astype(np.float64)
        levels, probs = map(np.asarray, model.magnetization_law())
        empirical = np.searchsorted(np.sort(mags), levels + 1.0 / model.d, side="right")
        out = {
            "mode_weight": np.mean(mags > 0),
            "mode_weight_target": float(model.positive_phase_weight),
            "mean_sq": np.sum(rows["sum_sq"], dtype=np.float64) / (mags.size * model.d),
            "mean_sq_target": 1.0,
            "mean_abs_magnetization": np.mean(np.abs(mags)),
            "m": float(model.m),
            "magnetization_ks": np.max(np.abs(empirical / mags.size - np.cumsum(probs))),
        }
    else:
        name = type(model).__name__
        raise ValueError(f"model must be a GaussianMixture or CurieWeiss; got {name}")
    return {key: float(value) for key, value in out.items()}


def _ks_normal(values: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance between ``values`` and N(0, 1)."""
    from scipy.special import ndtr

    vals = np.sort(values.astype(np.float64))
    n = vals.size
    cdf = ndtr(vals)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def summary(model, x: Samples) -> dict[str, float]:
    """Every metric of the model's family with its exact target, as Python floats."""
    return summary_from_rows(model, row_statistics(model, x))
