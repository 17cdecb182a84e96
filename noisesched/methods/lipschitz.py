"""Lipschitz-guided schedules (Chen, Vanden-Eijnden & Xu 2025, "Lipschitz-guided design of
interpolation schedules in generative models"): the schedule that minimises the time-averaged
squared Lipschitz constant of the probability-flow drift, A₂ = ∫_0^1 Lip(b_t)² dt.

Restated for the schedules of this package. For a given interpolant (VP/VE, linear/trig) a
schedule τ(t) only reparametrises time along one curve of noise levels: x_t = X(σ(t)), where
X solves the σ-space flow dX/dσ = v(σ, X) of the interpolant,

    v(σ, x) = (α'/α) x − (β/σ) D(x/β; σ)      (' = d/dσ, α = α(σ), β = β(σ) of the shape),

(from x = β y, dy/dσ = (y − D)/σ and σ β = α). So the drift in t is b_t = σ'(t) v(σ(t), ·) and
Lip(b_t) = |σ'(t)| L(σ), with

    ∇_x v(σ, x) = (α'/α) I − J_D(y; σ)/σ,   J_D = ∂D/∂y at y = x/β,
    L(σ)² = E_{x ~ ρ_σ} ‖∇_x v(σ, x)‖₂²    (squared spectral norm, averaged over the marginal).

Then A₂ = ∫ σ'² L² dt ≥ (∫_{σ_min}^{σ_max} L dσ)² / T over a stretch of t of length T
(Cauchy–Schwarz), with equality iff |σ'| L is constant, i.e. equal ∫ L dσ per unit of t. On the
grid t_i = i/N this is equal ∫ L dσ per step: the levels σ_0 = σ_max > … > σ_{N−1} = σ_min cut
∫ L dσ = ∫ σ L d log σ into N − 1 equal parts (``_densities``). For the N-point schedule (τ
piecewise linear in t) each step has ∫ σ'² L² dt ≥ N (∫_step L dσ)², and Σ_i (∫_step_i L dσ)² is
least, Λ²/(N − 1), when the parts are equal.

In log σ the density is σ L(σ) = (E ‖g I − J_D‖₂²)^{1/2}, g = d log α/d log σ (1 at σ → 0, → 0
as σ → ∞; computed in float64 by jax.jvp). J_D acts through jax.linearize of ``model.denoise``
(its transpose for J_Dᵀ), and the squared spectral norm of each sample's G = g I − J_D is the
top Ritz value of ``iters`` Lanczos steps on GᵀG (fully reorthogonalised; a lower bound, exact
once the Krylov space holds the top singular vector), started from the previous level's Ritz
vector (the levels are taken from the top down) with a tenth of a random start mixed back in.
The average is over ``n`` exact data samples x1 and noises z, y = x1 + σ z, the same draws at
every level. For N(0, diag s²) the field is linear, J_D = diag s²/(s² + σ²), and
L(σ) = max_i |α'/α − s_i²/(σ (s_i² + σ²))| = max_i |β'/β + σ/(s_i² + σ²)|.

Details of the paper and the readings chosen:
* Lip(b_t) is that of the drift b_t in t of the interpolant's x (not of the σ-space field of
  y); for a Gaussian law it is the largest |eigenvalue| of ∇b_t. For a nonlinear drift the
  material at hand did not settle whether the paper takes a supremum over x or an average; the
  local constant ‖∇_x b_t(x)‖₂ is averaged in square over x ~ ρ_t (a supremum over the whole
  space is out of reach of samples, and is set by regions the sampler never visits).
* the paper optimises the interpolant's α and β jointly; here only time is reparametrised
  within the given interpolant's shape, the family the schedules of this package span, for
  which the Cauchy–Schwarz optimum above is exact.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_int
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
from ._levels import SIGMA_MAX, SIGMA_MIN, check_range, level_coefficients, through_levels


def log_alpha_slope(interp: InterpolantLike, sigmas: Float[np.ndarray, " grid"]
                    ) -> Float[np.ndarray, " grid"]:
    """g(σ) = d log α/d log σ of the interpolant at the levels ``sigmas`` (finite, > 0), in
    float64 (linear shape: α0/(α0 + σ); trig: α0²/(α0² + σ²))."""
    with jax.enable_x64(True):
        log_s = jnp.asarray(np.log(np.asarray(sigmas, np.float64)), jnp.float64)
        return np.asarray(_log_alpha_slope(interp, log_s), np.float64)


@eqx.filter_jit
def _log_alpha_slope(interp: InterpolantLike, log_s: Float[Array, " grid"]
                     ) -> Float[Array, " grid"]:
    def log_alpha(u):
        return 0.5 * jnp.log(level_coefficients(interp, jnp.exp(u)).alpha_sq)

    return jax.jvp(log_alpha, (log_s,), (jnp.ones_like(log_s),))[1]


#: The weight of the random start mixed into each level's warm start.
RESEED = 0.1

#: The most Lanczos steps a level may take (they are unrolled when traced).
MAX_ITERS = 32


@eqx.filter_jit
def _squared_norms(model: AbstractDenoiser, interp: InterpolantLike,
                   sigmas: Float[Array, " grid"], slopes: Float[Array, " grid"],
                   x1: Float[Array, "n d"], z: Float[Array, "n d"], start: Float[Array, "n d"],
                   iters: int) -> Float[Array, "grid n"]:
    start = start / jnp.linalg.norm(start, axis=-1, keepdims=True)

    def at(u, level):
        sigma, g = level
        y = x1 + sigma * z
        _, jvp = jax.linearize(lambda v: denoise_y(model, interp, sigma, v), y)
        vjp = jax.linear_transpose(jvp, y)

        def gram(u):  # Gᵀ G u, G = g I − J_D, row by row (the rows are independent)
            v = g * u - jvp(u)
            return g * v - vjp(v)[0]

        # start from the previous level's Ritz vector (the top singular vector moves smoothly
        # with σ) with a tenth of the random start mixed back in, so that no direction is lost
        u = u + RESEED * start
        basis = [u / jnp.linalg.norm(u, axis=-1, keepdims=True)]
        diagonal, off = [], []
        for j in range(iters):  # Lanczos on Gᵀ G, fully reorthogonalised
            w = gram(basis[j])
            scale = jnp.linalg.norm(w, axis=-1)
            diagonal.append(jnp.sum(w * basis[j], axis=-1))
            if j == iters - 1:
                break
            for _ in range(2):
                w = w - sum(jnp.sum(b * w, axis=-1, keepdims=True) * b for b in basis)
            size = jnp.linalg.norm(w, axis=-1)
            kept = size > 1e-5 * scale  # else the Krylov space is exhausted: add nothing
            basis.append(jnp.where(kept[:, None], w / jnp.where(kept, size, 1.0)[:, None], 0.0))
            off.append(jnp.where(kept, size, 0.0))
        # the tridiagonal Lanczos matrix of each sample, shape (n, iters, iters)
        tri = jax.vmap(jnp.diag)(jnp.stack(diagonal, -1))
        if off:
            band = jax.vmap(lambda b: jnp.diag(b, 1))(jnp.stack(off, -1))
            tri = tri + band + jnp.swapaxes(band, -1, -2)
        values, vectors = jnp.linalg.eigh(tri)
        ritz = sum(vectors[:, j, -1:] * b for j, b in enumerate(basis))
        return ritz / jnp.linalg.norm(ritz, axis=-1, keepdims=True), jnp.maximum(values[:, -1], 0)

    return jax.lax.scan(at, start, (sigmas, slopes))[1]


def lipschitz_profile(model: AbstractDenoiser, interp: InterpolantLike,
                      sigmas: Float[np.ndarray, " grid"], n: int = 128, seed: int = 0,
                      iters: int = 4
                      ) -> tuple[Float[np.ndarray, " grid"], Float[np.ndarray, " grid"]]:
    """(L, standard error) at the levels ``sigmas`` (finite, > 0): L(σ) = (E‖∇_x v(σ, x)‖₂²)^{1/2}
    over n exact data samples and noises from ``seed`` (the same at every level), each norm by
    ``iters`` (2 … 32) Lanczos steps at each level, warm-started from the level before (the
    levels are taken in the order given: list them decreasing); the error by the delta
    method. float64 arrays of the shape of ``sigmas``."""
    check_draws(n, seed)
    check_int("iters", iters, lo=2, hi=MAX_ITERS)
    x1, z, key = exact_draws(model, n, seed, "the Lipschitz-guided schedule")
    sigmas = np.asarray(sigmas, np.float64)
    slopes = log_alpha_slope(interp, sigmas)
    start = jax.random.normal(key, x1.shape, dtype=x1.dtype)
    rows = _squared_norms(model, interp, jnp.asarray(sigmas, x1.dtype),
                          jnp.asarray(slopes, x1.dtype), x1, z, start, iters)
    mean_sq, error_sq = mean_and_error(rows)
    rms = np.sqrt(np.maximum(mean_sq, 0.0))
    error = error_sq / (2.0 * np.where(rms > 0, rms, 1.0))
    return rms / sigmas, error / sigmas


def lipschitz(model: AbstractDenoiser, interp: InterpolantLike, steps: int, *,
              sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, n: int = 128,
              grid: int = 256, seed: int = 0, iters: int = 4) -> KnotSchedule:
    """Lipschitz-guided levels: equal ∫ L dσ per step, L(σ)² the mean squared spectral norm of
    the Jacobian of the σ-space drift of x, from ``n`` exact data samples on ``grid`` levels
    (see the module)."""
    check_range(steps, sigma_min, sigma_max)
    check_sampling(n, grid, seed)
    check_int("iters", iters, lo=2, hi=MAX_ITERS)
    log_sigma = log_sigma_grid(sigma_min, sigma_max, grid)
    sigmas = np.exp(log_sigma)
    speed, _ = lipschitz_profile(model, interp, sigmas, n, seed, iters)
    levels = equal_cost_levels(log_sigma, sigmas * speed, steps, sigma_min, sigma_max)
    return through_levels(interp, levels)
