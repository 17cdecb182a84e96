"""Align Your Steps (Sabour, Fidler & Kreis 2024, "Align Your Steps: Optimizing Sampling
Schedules in Diffusion Models", ICML 2024): the N levels that minimise an upper bound on the KL
divergence between the true generative SDE and the SDE linearised on each step.

**The objective, in these conventions** (y = x/β = x1 + σ z, D(y; σ) = η). The reverse SDE of
EDM's noise levels in σ (Karras et al. 2022, eq. 6 with β(t) = σ̇/σ),
dy = −2 (σ̇/σ)(D(y; σ) − y) dt + √(2 σ̇ σ) dω̄, solved on one step [σ_{i+1}, σ_i] with D frozen
at its start, D(y_{σ_i}; σ_i), is a linear SDE that stochastic DDIM solves exactly. The two
drifts differ by 2 (σ̇/σ)(D(y_σ; σ) − D(y_{σ_i}; σ_i)), and Girsanov's theorem bounds the KL
divergence of the two path laws by ½ ∫ E|drift difference|²/(2 σ̇ σ) dt:

    KLUB(σ_0, …, σ_{N−1})
        = Σ_{i=0}^{N−2} ∫_{σ_{i+1}}^{σ_i} σ^{−3} E|D(y_σ; σ) − D(y_{σ_i}; σ_i)|² dσ,

where the expectation is over the path of the true process: x1 from the data, and y_σ, y_{σ_i}
two points of the same forward path y_s = x1 + W(s²) (W a Brownian motion), so that
y_{σ_i} = y_σ + √(σ_i² − σ²) ε with ε independent of y_σ. The two noises are therefore not the
same z (that would be y_{σ_i} = x1 + σ_i z): their correlation is σ/σ_i. In the paper's
t-parametrisation (σ = t) the weight is the 1/t³ of its bound. The last step, σ_{N−1} → 0, is
outside the sum: the integrand does not vanish as σ → 0, so the bound is infinite there and the
sampler must stop at σ_min > 0 and output D (the paper's "early stopping"); the KLUB is the
same for every solver (it is that of stochastic DDIM), so the method has no solver option.

**The estimate.** n exact data samples x1 (``model.data_law().sample``) and, as common random
numbers, one Brownian path each, sampled on a fixed grid of levels log-uniform in σ from σ_min to
σ_max (``grid`` points per unit of log σ): W(s_k²) = Σ_{j≤k} √(s_j² − s_{j−1}²) ξ_j with
independent standard normals ξ_j, ζ_k = W(s_k²)/s_k, and the denoiser is evaluated at
x = β_k x1 + α_k ζ_k (that is, y = x1 + s_k ζ_k).
Every pair of grid levels then has the joint law of the bound, so one table
T_{ab} = mean_j |D(y^j_{s_a}; s_a) − D(y^j_{s_b}; s_b)|² (the Gram matrix of the path's
increments between neighbouring grid levels, summed over blocks by prefix sums in float64) gives
the cost of every step whose ends are grid levels: the integral in u = log σ of
e^{−2u} T(u, b) (σ^{−3} dσ = σ^{−2} du), with T linear in u between grid levels and the weight
integrated exactly. The KLUB of a schedule on the grid is the sum of its N − 1 step costs.

**The optimisation** (the paper's iterative refinement): starting from EDM's ρ = 7 levels
(rounded to the grid), each interior level σ_i in turn is moved to the grid level between its
neighbours σ_{i+1} and σ_{i−1} that minimises the two step costs it enters, and the sweeps
repeat until one changes nothing (a coordinate-wise minimum of the estimated KLUB on the grid) or
``sweeps`` is reached. Each 1-D minimisation is exact over the grid, by enumeration.

Choices where the paper leaves room: the levels live on the grid (resolution ``grid``; 16 per
e-fold puts neighbouring candidates 6 % apart in σ); the paper's coarse-to-fine schedule
(optimise fewer steps, subdivide, refine) is not used: the N levels are refined directly from
EDM's, which the cheap table makes affordable; with σ_max = ∞ the grid stops at
``finite_top`` (10⁶ max(σ_min, 1)): the omitted tail of the first step's integral is at most
sup|ΔD|²/(2 top²) ≤ 5·10⁻¹³ sup|ΔD|², and σ_0 is then set to ∞.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int
from ..models.base import AbstractDataLaw, AbstractDenoiser
from ..schedules import InterpolantLike, KnotSchedule
from ._levels import (
    SIGMA_MAX,
    SIGMA_MIN,
    check_range,
    finite_top,
    level_coefficients,
    through_levels,
)
from .handmade import edm_levels

__all__ = ["ays", "KLUBCosts", "klub_costs", "refine_levels", "exact_data_law"]

#: floats of one block of the denoised path (grid × rows × d), to bound memory
_BLOCK = 1 << 23


class KLUBCosts(NamedTuple):
    """The estimated KLUB of every step whose ends are levels of a grid.

    Attributes:
        sigmas: the grid s_0 < … < s_{M−1}, log-uniform from σ_min to σ_max (or the finite
            top for σ_max = ∞), shape (M,).
        cost: cost[a, b] = ∫_{s_a}^{s_b} σ^{−3} E|D(y_σ; σ) − D(y_{s_b}; s_b)|² dσ for a < b
            (the step from s_b down to s_a), +∞ for a ≥ b, shape (M, M).
    """

    sigmas: np.ndarray
    cost: np.ndarray

    def klub(self, indices: np.ndarray) -> float:
        """The KLUB of the schedule through the grid levels ``indices`` (decreasing, shape
        (N,))."""
        idx = np.asarray(indices)
        return float(np.sum(self.cost[idx[1:], idx[:-1]]))


def exact_data_law(model: AbstractDenoiser | None, method: str) -> AbstractDataLaw:
    """The data law of ``model`` with an exact sampler, or a ``ValueError`` naming the need."""
    law_of = getattr(model, "data_law", None)
    law = law_of() if callable(law_of) else None
    if not isinstance(law, AbstractDataLaw):
        raise ValueError(f"method {method!r} needs exact data samples: the model must name a "
                         f"data law with a sampler (model.data_law().sample); got "
                         f"{type(model).__name__}")
    cls = type(law)
    if (cls.sample is AbstractDataLaw.sample
            and cls.sample_one is AbstractDataLaw.sample_one):
        raise ValueError(f"method {method!r} needs exact data samples: the data law "
                         f"{cls.__name__} of the model has no sampler (sample_one)")
    return law


def _grid(sigma_min: float, top: float, grid: int) -> np.ndarray:
    """Levels log-uniform from σ_min to ``top`` with at least ``grid`` per unit of log σ."""
    span = math.log(top / sigma_min)
    m = max(3, math.ceil(span * grid) + 1)
    return np.exp(np.linspace(math.log(sigma_min), math.log(top), m))


def _denoised_path(model: AbstractDenoiser, interp: InterpolantLike,
                   sigmas: Float[Array, " M"], x1: Float[Array, "c d"],
                   noise: Float[Array, "M c d"]) -> Float[Array, "M c d"]:
    """D(y_k; s_k) along one Brownian path per row: y_k = x1 + s_k ζ_k, ζ_k = W(s_k²)/s_k."""
    # W(s_k²) = Σ_{j ≤ k} √(s_j² − s_{j−1}²) ξ_j (s_{−1} = 0), ζ_k = W(s_k²)/s_k
    below = jnp.concatenate([jnp.zeros((1,), sigmas.dtype), sigmas[:-1]])
    scale = jnp.sqrt((sigmas - below) * (sigmas + below))
    zeta = jnp.cumsum(scale[:, None, None] * noise, axis=0) / sigmas[:, None, None]
    coefficients = level_coefficients(interp, sigmas)

    def denoise(c, z):
        return model.denoise(c, c.beta * x1 + c.alpha * z)

    return jax.vmap(denoise)(coefficients, zeta)


def _step_costs(sigmas: np.ndarray, table: np.ndarray) -> np.ndarray:
    """cost[a, b] = ∫_{u_a}^{u_b} e^{−2u} T(u, b) du, T linear in u = log σ between grid
    levels (weight integrated exactly), for a < b; +∞ elsewhere."""
    u = np.log(sigmas)
    h = np.diff(u)  # uniform, but kept per cell
    # ∫_0^1 e^{−2hs}(1 − s) ds and ∫_0^1 e^{−2hs} s ds
    g = 2.0 * h
    e = np.exp(-g)
    left = (g - 1.0 + e) / g**2
    right = (1.0 - e - g * e) / g**2
    weight = np.exp(-2.0 * u[:-1]) * h  # (M − 1,)
    # cell[p, b]: the cell [u_p, u_{p+1}] of the step whose top is b
    cell = weight[:, None] * (left[:, None] * table[:-1, :] + right[:, None] * table[1:, :])
    m = sigmas.shape[0]
    p = np.arange(m - 1)[:, None]
    b = np.arange(m)[None, :]
    cell = np.where(p < b, cell, 0.0)
    # cost[a, b] = Σ_{p=a}^{b−1} cell[p, b]: a reversed cumulative sum down each column
    tail = np.cumsum(cell[::-1], axis=0)[::-1]
    cost = np.full((m, m), np.inf)
    a = np.arange(m - 1)[:, None]
    cost[:-1] = np.where(a < b, tail, np.inf)
    return cost


@eqx.filter_jit
def _sample(law: AbstractDataLaw, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
    return law.sample(key, n)


@eqx.filter_jit
def _increment_gram(model: AbstractDenoiser, interp: InterpolantLike,
                    sigmas: Float[Array, " M"], x1: Float[Array, "c d"], mask: Float[Array, " c"],
                    key: PRNGKeyArray) -> Float[Array, "M-1 M-1"]:
    """H_kl = Σ_rows ⟨D_{k+1} − D_k, D_{l+1} − D_l⟩ of the denoised paths of a block of rows
    (increments between neighbouring grid levels); rows with ``mask`` 0 are left out."""
    noise = jax.random.normal(key, (sigmas.shape[0],) + x1.shape, x1.dtype)
    denoised = _denoised_path(model, interp, sigmas, x1, noise)
    steps = (denoised[1:] - denoised[:-1]) * mask[None, :, None]
    steps = steps.reshape(sigmas.shape[0] - 1, -1)
    return steps @ steps.T


def _pair_table(gram: np.ndarray) -> np.ndarray:
    """T_ab = Σ_{k,l ∈ [min(a,b), max(a,b))} H_kl = |D_b − D_a|² summed over rows, from the
    increments' Gram matrix H (M − 1 square) by two-dimensional prefix sums in float64: no
    cancellation between large norms, as T = |D_a|² + |D_b|² − 2⟨D_a, D_b⟩ would have."""
    m = gram.shape[0] + 1
    prefix = np.zeros((m, m))
    prefix[1:, 1:] = np.cumsum(np.cumsum(gram, axis=0), axis=1)
    lo = np.minimum(np.arange(m)[:, None], np.arange(m)[None, :])
    hi = np.maximum(np.arange(m)[:, None], np.arange(m)[None, :])
    table = prefix[hi, hi] - prefix[lo, hi] - prefix[hi, lo] + prefix[lo, lo]
    return np.maximum(table, 0.0)


def klub_costs(model: AbstractDenoiser, interp: InterpolantLike, *,
               sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
               samples: int = 128, grid: int = 16, seed: int = 0) -> KLUBCosts:
    """The Monte-Carlo estimate of every step's KLUB on the grid (see the module docstring):
    ``samples`` data samples from ``model.data_law().sample``, one Brownian path each, from
    ``jax.random.key(seed)``."""
    check_range(2, sigma_min, sigma_max)
    check_int("samples", samples, lo=2)
    check_int("grid", grid, lo=2)
    check_int("seed", seed, lo=0)
    law = exact_data_law(model, "ays")
    assert model is not None
    sigmas = _grid(sigma_min, finite_top(sigma_max, sigma_min), grid)
    m, d = sigmas.shape[0], model.d
    key_data, key_path = jax.random.split(jax.random.key(seed))
    x1 = np.asarray(_sample(law, key_data, samples))
    rows = max(1, min(samples, _BLOCK // (m * d)))
    blocks = -(-samples // rows)
    padded = np.zeros((blocks * rows, d), x1.dtype)  # zero rows pad the last block,
    padded[:samples] = x1                             # masked out of the sums
    mask = (np.arange(blocks * rows) < samples).astype(x1.dtype)
    grid_sigmas = jnp.asarray(sigmas, x1.dtype)
    gram = np.zeros((m - 1, m - 1))
    for block in range(blocks):
        part = slice(block * rows, (block + 1) * rows)
        block_gram = _increment_gram(model, interp, grid_sigmas, jnp.asarray(padded[part]),
                                     jnp.asarray(mask[part]), jax.random.fold_in(key_path, block))
        gram += np.asarray(block_gram, np.float64)
    return KLUBCosts(sigmas, _step_costs(sigmas, _pair_table(gram) / samples))


def refine_levels(costs: KLUBCosts, indices: np.ndarray, sweeps: int = 100
                  ) -> tuple[np.ndarray, int]:
    """The paper's iterative refinement on the grid: each interior level in turn (top to
    bottom) moves to the grid level between its neighbours that minimises the two step costs it
    enters, until a sweep changes nothing or ``sweeps`` have run. ``indices``: decreasing grid
    indices of σ_0 … σ_{N−1}, shape (N,). Returns the refined indices and the sweeps run."""
    idx = np.array(indices, dtype=np.int64)
    cost = costs.cost
    for sweep in range(1, sweeps + 1):
        changed = False
        for i in range(1, idx.shape[0] - 1):
            lo, hi = idx[i + 1], idx[i - 1]
            candidates = np.arange(lo + 1, hi)
            values = cost[candidates, hi] + cost[lo, candidates]
            best = int(np.argmin(values))
            current = cost[idx[i], hi] + cost[lo, idx[i]]
            if values[best] < current:
                idx[i] = candidates[best]
                changed = True
        if not changed:
            return idx, sweep
    return idx, sweeps


def _start_indices(sigmas: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The decreasing grid indices nearest to ``levels`` (σ_0 and σ_{N−1} at the grid's ends),
    pushed apart where two fall on one grid level."""
    u = np.log(sigmas)
    top = math.log(sigmas[-1])
    logs = np.log(np.where(np.isfinite(levels), levels, sigmas[-1]))
    idx = np.rint((np.minimum(logs, top) - u[0]) / (u[1] - u[0])).astype(np.int64)
    idx[0], idx[-1] = sigmas.shape[0] - 1, 0
    for i in range(idx.shape[0] - 2, 0, -1):  # from the bottom up: strictly decreasing
        idx[i] = max(idx[i], idx[i + 1] + 1)
    if idx[1] >= idx[0]:
        raise ValueError("grid is too coarse for this many steps: raise grid (points per unit "
                         "of log σ)")
    return idx


def ays(model: AbstractDenoiser | None, interp: InterpolantLike, steps: int, *,
        sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, samples: int = 128,
        grid: int = 16, sweeps: int = 100, seed: int = 0) -> KnotSchedule:
    """Align Your Steps: the N levels from σ_max to σ_min that minimise the estimated KL upper
    bound of the linearised sampler (module docstring), by iterative refinement from EDM's.

    Options: ``samples`` data samples and Brownian paths; ``grid`` candidate levels per unit of
    log σ; at most ``sweeps`` refinement sweeps; ``seed`` for the samples and paths. Needs exact
    data samples (``model.data_law().sample``)."""
    check_range(steps, sigma_min, sigma_max)
    check_int("sweeps", sweeps, lo=1)
    check_int("samples", samples, lo=2)
    check_int("grid", grid, lo=2)
    check_int("seed", seed, lo=0)
    exact_data_law(model, "ays")
    assert model is not None
    top = finite_top(sigma_max, sigma_min)
    sigmas = _grid(sigma_min, top, grid)
    if sigmas.shape[0] < steps:
        raise ValueError(f"grid is too coarse for steps = {steps}: {sigmas.shape[0]} grid "
                         "levels; raise grid (points per unit of log σ)")
    costs = klub_costs(model, interp, sigma_min=sigma_min, sigma_max=sigma_max,
                       samples=samples, grid=grid, seed=seed)
    start = _start_indices(costs.sigmas, edm_levels(steps, sigma_min, sigma_max))
    idx, _ = refine_levels(costs, start, sweeps)
    levels = costs.sigmas[idx]
    levels[0], levels[-1] = sigma_max, sigma_min  # exact ends (∞ for pure noise)
    return through_levels(interp, levels)
