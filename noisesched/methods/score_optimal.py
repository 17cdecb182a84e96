"""Score-optimal schedules (Williams, Campbell, Doucet & Syed 2024, "Score-optimal diffusion
schedules", NeurIPS 2024): levels at which every step costs the same work in the metric that the
change of the score defines along the path of marginals.

The paper measures the work a corrector must do to carry samples of one marginal p to the next
one q by their Fisher divergence, E_p |∇ log q − ∇ log p|², which needs scores only (its
corrector cost). For neighbouring marginals of a path p_u it is δ(u) du² to leading order, with
the local cost δ(u) = E_{p_u} |∂_u ∇ log p_u|². The total cost of a schedule u_0, …, u_M,
Σ_i δ(u_i) (u_{i+1} − u_i)², is at least Λ²/M with Λ = ∫ √δ du (Cauchy–Schwarz), with equality
when every step has the same increment of Λ(u) = ∫^u √δ: the optimal schedule runs at constant
speed in this metric (a geodesic), whatever the parameter u.

Restated in σ. The path is that of y = x/β = x1 + σ z, the marginals p_σ of EDM's process, on
which the noise-level samplers act (spec §7); its score is ∇_y log p_σ(y) = (D(y; σ) − y)/σ², so

    δ(σ) = E_{y ~ p_σ} |∂_σ [(D(y; σ) − y)/σ²]|²
         = E |∂_σ D/σ² − 2 (D − y)/σ³|²       (∂_σ at fixed y, by jax.jvp of the denoiser),

and the levels σ_0 = σ_max > … > σ_{N−1} = σ_min cut Λ = ∫ √δ dσ = ∫ σ √δ d log σ into N − 1
equal parts (``_densities``). δ is a Monte Carlo mean over ``n`` exact data samples and noises,
the same draws at every level. For N(0, diag s²): ∇_y log p_σ = −y/(s² + σ²) per coordinate and
δ(σ) = Σ_i 4 σ²/(s_i² + σ²)³.

Details of the paper that could not be determined (only its abstract and summaries were at
hand), and the reading chosen:
* the exact form of the cost: the summaries name a Stein/Fisher divergence between
  neighbouring marginals; the Fisher divergence above is used, and with it the geodesic
  (constant-speed) schedule.
* the coordinates in which the score is taken. The paper writes its cost for the process it
  simulates; here it is taken in y (EDM's parametrisation, in which σ is the time), so that the
  levels do not depend on the interpolant. In x = β y the Fisher divergence would also count the
  change of scale β(σ) of the interpolant, a cost that the σ-space samplers never pay.
* a summary mentions a "velocity scaling v(t) = σ(t)" in the paper's algorithm, whose role
  could not be determined; no reweighting of δ is applied.
* the paper's predictor-optimal cost (it needs Hessians of log p) is not implemented; this is
  the corrector (score-only) cost.
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
def _squared_score_rates(model: AbstractDenoiser, interp: InterpolantLike,
                         sigmas: Float[Array, " grid"], x1: Float[Array, "n d"],
                         z: Float[Array, "n d"]) -> Float[Array, "grid n"]:
    def at(sigma):
        y = x1 + sigma * z

        def score(s):
            return (denoise_y(model, interp, s, y) - y) / s**2

        _, rate = jax.jvp(score, (sigma,), (jnp.ones_like(sigma),))
        return jnp.sum(rate**2, axis=-1)

    return jax.lax.map(at, sigmas)


def score_rate_profile(model: AbstractDenoiser, interp: InterpolantLike,
                       sigmas: Float[np.ndarray, " grid"], n: int = 256, seed: int = 0
                       ) -> tuple[Float[np.ndarray, " grid"], Float[np.ndarray, " grid"]]:
    """(δ, standard error) at the levels ``sigmas`` (finite, > 0): the Monte Carlo mean of
    |∂_σ ∇_y log p_σ(y)|² at y = x1 + σ z over n exact data samples x1 and noises z from
    ``seed``, the same draws at every level. float64 arrays of the shape of ``sigmas``."""
    check_draws(n, seed)
    x1, z, _ = exact_draws(model, n, seed, "the score-optimal schedule")
    rows = _squared_score_rates(model, interp, jnp.asarray(sigmas, x1.dtype), x1, z)
    return mean_and_error(rows)


def score_optimal(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
                  sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, n: int = 256,
                  grid: int = 256, seed: int = 0) -> KnotSchedule:
    """Score-optimal levels: equal increments of ∫ √δ dσ per step, δ(σ) = E|∂_σ ∇ log p_σ|²
    from ``n`` exact data samples on ``grid`` levels (see the module)."""
    check_range(steps, sigma_min, sigma_max)
    check_sampling(n, grid, seed)
    log_sigma = log_sigma_grid(sigma_min, sigma_max, grid)
    sigmas = np.exp(log_sigma)
    delta, _ = score_rate_profile(model, interp, sigmas, n, seed)
    levels = equal_cost_levels(log_sigma, sigmas * np.sqrt(np.maximum(delta, 0.0)), steps,
                               sigma_min, sigma_max)
    return through_levels(interp, levels)
