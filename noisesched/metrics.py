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

from .models import CurieWeiss, GaussianMixture

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
]

Samples = Float[Array, "n d"]


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
    score = x @ means.T - 0.5 * jnp.sum(means * means, axis=-1)
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
        keep = jnp.abs(jnp.diagonal(r)) > 1e-6 * jnp.max(jnp.abs(r))
        return q * keep, jnp.sum(keep)
    means = np.asarray(model.means, dtype=np.float64)
    q, r = np.linalg.qr(means.T)  # float64 on the host: the rank decides nothing traced
    keep = np.abs(np.diagonal(r)) > 1e-6 * np.max(np.abs(r))
    return jnp.asarray(q * keep, dtype=dtype), int(keep.sum())


def within_mode_sum_of_squares(model: GaussianMixture, x: Samples
                               ) -> tuple[Float[Array, ""], int | Array]:
    """(Σ over samples of |P⊥ x|², d − r): the additive part of :func:`within_mode_variance`,
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
    ``max_values`` of them (a deterministic, evenly strided subset) are sorted.
    """
    x = _check_samples(model, x)
    k = assign_modes(model, x)
    resid = (x - model.means.astype(x.dtype)[k]).reshape(-1)
    stride = max(1, resid.shape[0] // max_values)
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


def magnetization_law(model: CurieWeiss) -> tuple[Float[Array, " d+1"], Float[Array, " d+1"]]:
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


def summary(model, x: Samples) -> dict[str, float]:
    """Every metric of the model's family with its exact target, as Python floats."""
    if isinstance(model, GaussianMixture):
        out = {
            "mode_weight": mode_weight(model, x),
            "mode_weight_target": mode_weight_target(model),
            "mode_weights_tv": 0.5 * jnp.sum(jnp.abs(mode_weights(model, x) - model.weights)),
            "within_mode_var": within_mode_variance(model, x),
            "within_mode_var_target": within_mode_variance_target(model),
            "coordinate_ks": coordinate_ks(model, x),
        }
    elif isinstance(model, CurieWeiss):
        out = {
            "mode_weight": positive_phase_fraction(model, x),
            "mode_weight_target": positive_phase_target(model),
            "mean_sq": mean_square(model, x),
            "mean_sq_target": 1.0,
            "mean_abs_magnetization": mean_abs_magnetization(model, x),
            "m": model.m,
            "magnetization_ks": magnetization_ks(model, x),
        }
    else:
        name = type(model).__name__
        raise ValueError(f"model must be a GaussianMixture or CurieWeiss; got {name}")
    return {key: float(value) for key, value in out.items()}
