"""Entropic time (Stančević, Handke & Ambrogioni 2025, "Entropic time schedulers for generative
diffusion models"): levels that give every step the same increment of the conditional entropy
of the data given the noisy point, so that each step contributes the same information.

In these conventions the noisy point x_t = α z + β x1 carries the same information as
y = x/β = x1 + σ z, so H(x1 | x_t) = H(x1 | y_σ) depends on σ alone (not on the interpolant).
With the signal-to-noise ratio γ = 1/σ², the I-MMSE relation (Guo, Shamai & Verdú 2005) reads
dI(x1; y)/dγ = ½ mmse(σ), with

    mmse(σ) = E |x1 − D(y; σ)|²   (summed over the d coordinates),

and H(x1 | y) = H(x1) − I(x1; y). Since dγ = −2 γ d log σ,

    dH(x1 | y_σ)/d log σ = mmse(σ)/σ²   (≥ 0: the entropy grows with the noise).

The levels σ_0 = σ_max > … > σ_{N−1} = σ_min cut ∫ mmse/σ² d log σ into N − 1 equal parts
(entropic time uniform on the grid; ``_densities``). For N(0, diag s²):
mmse = Σ_i s_i²σ²/(s_i² + σ²), the density is Σ_i s_i²/(s_i² + σ²) (d per unit of log σ at
small σ, like log-SNR spacing) and
H(x1 | y_a) − H(x1 | y_b) = ½ Σ_i log[σ_a² (s_i² + σ_b²) / (σ_b² (s_i² + σ_a²))].

mmse(σ) is a Monte Carlo mean over ``n`` exact data samples and noises (the same draws at every
level) of the model's own denoising error: the exact MMSE for an exact model, a trained
network's error (what the paper estimates from its training loss) for a network.

Details of the paper not followed: its "rescaled entropic time", a further reweighting of the
entropy rate, is not implemented (its form could not be determined from the material at hand);
this is the plain entropic time.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..models.base import AbstractDenoiser
from ..schedules import InterpolantLike, KnotSchedule
from ._densities import (
    check_draws,
    check_sampling,
    denoise_y,
    equal_cost_levels,
    exact_draws,
    log_sigma_grid,
    mean_and_error,
)
from ._levels import SIGMA_MAX, SIGMA_MIN, check_range, through_levels


@eqx.filter_jit
def _squared_errors(model: AbstractDenoiser, interp: InterpolantLike,
                    sigmas: Float[Array, " grid"], x1: Float[Array, "n d"],
                    z: Float[Array, "n d"]) -> Float[Array, "grid n"]:
    def at(sigma):
        return jnp.sum((x1 - denoise_y(model, interp, sigma, x1 + sigma * z)) ** 2, axis=-1)

    return jax.lax.map(at, sigmas)


def mmse_profile(model: AbstractDenoiser, interp: InterpolantLike,
                 sigmas: Float[np.ndarray, " grid"], n: int = 256, seed: int = 0
                 ) -> tuple[Float[np.ndarray, " grid"], Float[np.ndarray, " grid"]]:
    """(mmse, standard error) at the levels ``sigmas`` (finite, > 0): the Monte Carlo mean of
    |x1 − D(x1 + σ z; σ)|² over n exact data samples x1 and noises z from ``seed``, the same
    draws at every level. float64 arrays of the shape of ``sigmas``."""
    check_draws(n, seed)
    x1, z, _ = exact_draws(model, n, seed, "the entropic schedule")
    rows = _squared_errors(model, interp, jnp.asarray(sigmas, x1.dtype), x1, z)
    return mean_and_error(rows)


def entropic(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
             sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, n: int = 256,
             grid: int = 256, seed: int = 0) -> KnotSchedule:
    """Entropic time: equal increments of H(x1 | y_σ) per step, with the density
    mmse(σ)/σ² in log σ from ``n`` exact data samples on ``grid`` levels (see the module)."""
    check_range(steps, sigma_min, sigma_max)
    check_sampling(n, grid, seed)
    log_sigma = log_sigma_grid(sigma_min, sigma_max, grid)
    sigmas = np.exp(log_sigma)
    mmse, _ = mmse_profile(model, interp, sigmas, n, seed)
    levels = equal_cost_levels(log_sigma, np.maximum(mmse, 0.0) / sigmas**2, steps,
                               sigma_min, sigma_max)
    return through_levels(interp, levels)
