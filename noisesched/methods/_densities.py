"""What the methods that equalise a cost per step along the noise level share (``entropic``,
``score_optimal``, ``lipschitz``).

Each writes its cost between two levels as ∫ w(σ) d log σ with a density w ≥ 0 computed from
the model's denoiser, and returns the N levels σ_0 = σ_max > … > σ_{N−1} = σ_min that cut
∫_{σ_min}^{σ_max} w d log σ into N − 1 equal parts (``_levels.equidistributed``; the last step,
to σ_N = 0, is the sampler's). The density is evaluated on ``grid`` points uniform in log σ.
Where σ_max = ∞ it is integrated from ``_levels.finite_top`` and σ_0 is then set to ∞.

Its Monte Carlo averages are over n exact data samples x1 (the model's data law) and n noises z,
the same draws at every level (common random numbers: the density is smooth in σ, and the
differences between levels carry less noise than the levels themselves). The noisy point at
level σ is y = x1 + σ z (x = β y in the interpolant), and the denoiser is read in y:
D(y; σ) = η(c(σ), β y) with c(σ) = ``_levels.level_coefficients(interp, σ)``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int
from ..models.base import AbstractDataLaw, AbstractDenoiser
from ..schedules import InterpolantLike
from ._levels import equidistributed, finite_top, level_coefficients


def check_draws(n: int, seed: int) -> None:
    """n ≥ 2 samples and a seed ≥ 0, or a ``ValueError`` naming the option."""
    check_int("n", n, lo=2)
    check_int("seed", seed, lo=0)


def check_sampling(n: int, grid: int, seed: int) -> None:
    """``check_draws`` and a grid of ≥ 8 levels, or a ``ValueError`` naming the option."""
    check_draws(n, seed)
    check_int("grid", grid, lo=8)


def log_sigma_grid(sigma_min: float, sigma_max: float, grid: int) -> Float[np.ndarray, " grid"]:
    """``grid`` values of log σ, uniform and decreasing from log σ_max (log ``finite_top``
    where σ_max = ∞) to log σ_min, float64."""
    top = finite_top(sigma_max, sigma_min)
    return np.linspace(math.log(top), math.log(sigma_min), grid)


def exact_draws(model: AbstractDenoiser, n: int, seed: int, needed_by: str
                ) -> tuple[Float[Array, "n d"], Float[Array, "n d"], PRNGKeyArray]:
    """(x1, z, key): n exact samples of the model's data law, n standard normal noises of the
    same shape, and a key for any further draw, all from ``seed``. A ``ValueError`` saying that
    ``needed_by`` needs them where the model names no data law or the law has no sampler."""
    law = model.data_law() if isinstance(model, AbstractDataLaw) else None
    if law is None:
        raise ValueError(f"{needed_by} needs exact samples of the data: model must name its data "
                         f"law (a noisesched.AbstractDataLaw with a sampler, e.g. GaussianMixture, "
                         f"Gaussian, or a LearnedModel); got {type(model).__name__}")
    key = jax.random.key(seed)
    try:
        x1 = jnp.asarray(_sample(law, jax.random.fold_in(key, 0), n))
    except NotImplementedError:
        raise ValueError(f"{needed_by} needs exact samples of the data, and the data law "
                         f"{type(law).__name__} has no exact sampler (sample_one)") from None
    z = jax.random.normal(jax.random.fold_in(key, 1), x1.shape, dtype=x1.dtype)
    return x1, z, jax.random.fold_in(key, 2)


@eqx.filter_jit
def _sample(law: AbstractDataLaw, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
    return law.sample(key, n)  # traced once, not dispatched op by op


def denoise_y(model: AbstractDenoiser, interp: InterpolantLike, sigma: Float[Array, ""],
              y: Float[Array, "n d"]) -> Float[Array, "n d"]:
    """D(y; σ) = E[x1 | x1 + σ z = y] = η(c(σ), β(σ) y) for a batch y of shape (n, d) at one
    level σ > 0 (differentiable in σ and y)."""
    c = level_coefficients(interp, sigma)
    return model.denoise(c, c.beta * y)


def equal_cost_levels(log_sigma: Float[np.ndarray, " grid"], density: Float[np.ndarray, " grid"],
                      steps: int, sigma_min: float, sigma_max: float) -> Float[np.ndarray, " N"]:
    """The N levels that cut ∫ density d log σ into N − 1 equal parts, with the exact ends
    σ_0 = ``sigma_max`` (∞ for pure noise) and σ_{N−1} = ``sigma_min``."""
    levels = equidistributed(log_sigma, density, steps)
    levels[0], levels[-1] = sigma_max, sigma_min
    return levels


def mean_and_error(rows: Float[Array, "grid n"]) -> tuple[Float[np.ndarray, " grid"],
                                                          Float[np.ndarray, " grid"]]:
    """The mean over the n samples of each row and its standard error, float64."""
    values = np.asarray(rows, np.float64)
    n = values.shape[1]
    return values.mean(axis=1), values.std(axis=1, ddof=1) / math.sqrt(n)
