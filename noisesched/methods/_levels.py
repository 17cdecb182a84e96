"""What every schedule method shares: its σ range, the N-point lists of noise levels it returns,
and the schedule through them.

A method returns the noise levels σ_0 > σ_1 > … > σ_{N−1} > σ_N = 0 of an N-step sampler on
t_i = i/N, as a ``noisesched.schedules.KnotSchedule`` (τ piecewise linear in t through them).
Its range is ``sigma_max`` (σ_0; ∞ for a start from pure noise) and ``sigma_min`` (σ_{N−1}, the
last level before the data), as in EDM: the published defaults are 80 and 0.002; a dimension-aware
choice puts ``sigma_max`` above the level at which the data's high-level features are decided
(``dimension_aware_sigma_max``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from .._validation import check_int, check_positive
from ..interpolants import Coefficients
from ..models.base import AbstractDataLaw
from ..schedules import InterpolantLike, KnotSchedule, tau_of_noise_ratio

#: EDM's range of noise levels (Karras et al. 2022), the published default of most methods.
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def check_range(steps: int, sigma_min: float, sigma_max: float) -> None:
    """N ≥ 2 steps, 0 < σ_min < σ_max ≤ ∞, or a ``ValueError`` naming the parameter."""
    check_int("steps", steps, lo=2)
    check_positive("sigma_min", sigma_min)
    try:
        top = float(sigma_max)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_max must be a number > sigma_min or inf; got {sigma_max!r}"
                         ) from None
    if math.isnan(top) or not top > sigma_min:
        raise ValueError(f"sigma_max must be greater than sigma_min = {sigma_min!r} (inf for a "
                         f"start from pure noise); got {sigma_max!r}")


def with_zero(levels: np.ndarray) -> np.ndarray:
    """The N levels σ_0 … σ_{N−1} followed by the trailing σ_N = 0."""
    return np.r_[np.asarray(levels, np.float64), 0.0]


def through_levels(interp: InterpolantLike, levels: np.ndarray) -> KnotSchedule:
    """The schedule through σ_0 … σ_{N−1} and the trailing 0 (``KnotSchedule``)."""
    return KnotSchedule.from_noise_levels(interp, with_zero(levels))


def finite_top(sigma_max: float, sigma_min: float) -> float:
    """σ_max where it is finite; else the level that a law of levels uses in place of ∞ before
    the first step replaces it by ∞ (10⁶ σ_min, far above any feature of the data)."""
    return float(sigma_max) if math.isfinite(sigma_max) else 1e6 * max(sigma_min, 1.0)


def dimension_aware_sigma_max(law: AbstractDataLaw, factor: float = 100.0) -> float:
    """``factor`` × the largest noise level at which ``law`` decides a feature
    (``AbstractDataLaw.noise_levels``; |μ| = m√d for the two-mode mixture), or ``SIGMA_MAX``
    where it is larger or the law names none.

    Why 100: a sampler that starts at y_0 = σ_max z instead of the marginal x1 + σ_max z of a
    two-mode mixture misplaces the mode weight by about (2p − 1) φ(0) |μ|/σ_max (measured
    with the exact oracle: 0.014 at σ_max = 10 |μ|, 0.0016 at 100 |μ|, p = 0.8), so 100 keeps
    that truncation error below a 1 % tolerance at every d."""
    levels = list(law.noise_levels().values())
    return max(SIGMA_MAX, factor * max(levels)) if levels else SIGMA_MAX


def equidistributed(log_sigma: np.ndarray, density: np.ndarray, steps: int) -> np.ndarray:
    """N levels σ_0 = e^{log_sigma[0]} > … > σ_{N−1} = e^{log_sigma[-1]} that cut the integral
    of ``density`` (≥ 0, on the decreasing grid ``log_sigma``) into N − 1 equal parts: the
    schedule of a method that equalises a cost per step. Trapezoidal cumulative integral,
    inverted by linear interpolation; a floor of 10⁻¹² of the mean keeps it strictly
    increasing."""
    check_int("steps", steps, lo=2)
    x = np.asarray(log_sigma, np.float64)
    w = np.asarray(density, np.float64)
    if x.ndim != 1 or w.shape != x.shape or x.shape[0] < 2 or not np.all(np.diff(x) < 0):
        raise ValueError("log_sigma must be a decreasing 1-D grid with a density of its shape")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("density must be finite and nonnegative")
    w = np.maximum(w, 1e-12 * max(w.mean(), 1e-300))
    cumulative = np.r_[0.0, np.cumsum(0.5 * (w[1:] + w[:-1]) * -np.diff(x))]
    targets = np.linspace(0.0, cumulative[-1], steps)
    return np.exp(np.interp(targets, cumulative, x))


def level_coefficients(interp: InterpolantLike, sigma: ArrayLike) -> Coefficients:
    """The interpolant's α, β, α² where α/β = ``sigma`` (σ ≥ 0, scalar or array; ∞ for pure
    noise), for the denoiser η(c, x) = D(x/β; σ) only: the derivatives β̇ and α α̇ depend on the
    schedule, not on σ, and are set to 0."""
    sigma = jnp.asarray(sigma)
    tau, rest = tau_of_noise_ratio(jnp.where(jnp.isinf(sigma), 1.0, sigma), interp.alpha0,
                                   interp.shape)
    tau = jnp.where(jnp.isinf(sigma), 0.0, tau)
    rest = jnp.where(jnp.isinf(sigma), 1.0, rest)
    alpha_sq = interp.alpha0**2 * rest * (rest if interp.shape == "linear" else 1.0 + tau)
    zero = jnp.zeros_like(tau)
    return Coefficients(alpha=jnp.sqrt(alpha_sq), beta=tau, dbeta=zero, alpha_sq=alpha_sq,
                        alpha_dalpha=zero)
