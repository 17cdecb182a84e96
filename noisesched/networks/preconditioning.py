"""EDM preconditioning (Karras et al. 2022) in noisesched's conventions (spec §7).

With y = x/β = x1 + σ z and σ = α/β, EDM writes the denoiser as

    D(y; σ) = c_skip y + c_out F(c_in y, c_noise),
    c_skip = σ_d²/(σ² + σ_d²),  c_out = σ σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²),

σ_d the data's scale. In x = β y and q = α² + σ_d² β², every factor is finite at both ends
(t = 0 where β = 0, t = 1 where α = 0):

    c_skip y = (σ_d² β/q) x,   c_out = α σ_d/√q,   c_in y = x/√q.

The noise input is c_noise = ¼ log(σ̄/σ_d) with σ̄ = σ clipped to the range the network was
trained on (``sigma_range``, by default σ_d·[10⁻⁶, 10⁶]). EDM feeds ¼ log σ, which is infinite at
both ends; the shift by log σ_d only moves the network's embedding. The clip matters at t = 0
(σ = ∞), where Euler in t evaluates the first drift: a network asked for a level it never saw
extrapolates, while above its largest trained level the ideal F hardly changes (D → E[x1]; its
input c_in y ≈ z alike), and below its smallest c_out F vanishes. The network therefore sees only
σ and a scaled input, so one trained network serves every interpolant (VP, VE, linear, trig) and
every schedule.

The training target is F* = (x1 − c_skip y)/c_out = (σ x1 − σ_d² z)/(σ_d √(σ² + σ_d²)), of unit
variance per coordinate when the data's second moment is σ_d²: the regression
|F − F*|² is EDM's loss λ(σ)|D − x1|² with λ = (σ² + σ_d²)/(σ σ_d)² = 1/c_out².
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["Scalings", "scalings", "sigma_scalings", "regression_target", "default_range",
           "NOISE_CLIP"]

#: |log(σ/σ_d)| beyond which the noise input of a network without a stated range is clipped.
NOISE_CLIP = math.log(1e6)


class Scalings(NamedTuple):
    """The factors of D = skip·x + out·F(inp·x, noise) (x-space: x = β y)."""

    skip: Array
    out: Array
    inp: Array
    noise: Array


def default_range(sigma_data: float) -> tuple[float, float]:
    """σ_d·[10⁻⁶, 10⁶]: the noise range of a network that states none."""
    return sigma_data * math.exp(-NOISE_CLIP), sigma_data * math.exp(NOISE_CLIP)


def _noise_input(alpha: Array, beta: Array, sigma_data: float,
                 sigma_range: tuple[float, float]) -> Array:
    """¼ log(σ̄/σ_d), σ̄ = α/β clipped to ``sigma_range``, with finite gradients where α or β
    vanish (double where)."""
    lo, hi = math.log(sigma_range[0] / sigma_data), math.log(sigma_range[1] / sigma_data)
    ratio_ok = (alpha > 0) & (beta > 0)
    a = jnp.where(ratio_ok, alpha, 1.0)
    b = jnp.where(ratio_ok, beta, 1.0)
    log_ratio = jnp.log(a) - jnp.log(b * sigma_data)
    log_ratio = jnp.where(ratio_ok, log_ratio, jnp.where(beta > 0, lo, hi))
    return 0.25 * jnp.clip(log_ratio, lo, hi)


def scalings(alpha: ArrayLike, beta: ArrayLike, sigma_data: float,
             sigma_range: tuple[float, float] | None = None) -> Scalings:
    """The EDM factors at coefficients (α, β), in x-space, finite wherever α² + β² > 0; the
    noise input clipped to ``sigma_range`` (default ``default_range(sigma_data)``)."""
    alpha, beta = jnp.asarray(alpha), jnp.asarray(beta)
    sigma_range = default_range(sigma_data) if sigma_range is None else sigma_range
    q = alpha**2 + sigma_data**2 * beta**2
    root = jnp.sqrt(q)
    return Scalings(skip=sigma_data**2 * beta / q, out=alpha * sigma_data / root, inp=1.0 / root,
                    noise=_noise_input(alpha, beta, sigma_data, sigma_range))


def sigma_scalings(sigma: ArrayLike, sigma_data: float,
                   sigma_range: tuple[float, float] | None = None) -> Scalings:
    """The EDM factors at noise level σ (y-space: β = 1, α = σ)."""
    sigma = jnp.asarray(sigma)
    return scalings(sigma, jnp.ones_like(sigma), sigma_data, sigma_range)


def regression_target(x1: Float[Array, "*batch d"], z: Float[Array, "*batch d"],
                      sigma: Float[Array, "*batch 1"], sigma_data: float
                      ) -> Float[Array, "*batch d"]:
    """F* = (σ x1 − σ_d² z)/(σ_d √(σ² + σ_d²)) for y = x1 + σ z: what F must output for D to
    be x1 (computed without the cancellation of (x1 − c_skip y)/c_out at small σ)."""
    return (sigma * x1 - sigma_data**2 * z) / (sigma_data * jnp.sqrt(sigma**2 + sigma_data**2))
