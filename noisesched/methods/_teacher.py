"""Teacher trajectories on a fine grid of noise levels: what the schedule methods that pick their
N levels out of a fine grid by dynamic programming (``gits``, ``oss``) distil from.

* **Fine grid** (``teacher_levels``): M levels s_0 = σ_max > s_1 > … > s_{M−1} = σ_min, equal
  steps in σ^(1/ρ) with ρ = 7 (EDM's law, ``edm_levels``; GITS's teacher grid is this law). From
  σ_max = ∞ the law runs from ``finite_top`` and s_0 = ∞ (the first step from pure noise).
* **Prior states** (``prior_states``): x at s_0, x = α(s_0) z with z ~ N(0, I_d) drawn as
  ``noisesched.sample_prior`` draws them (α(∞) = α0: pure noise; for a finite s_0 the state a
  sampler starts from), shape (n, d).
* **Teacher** (``teacher_trajectory``): those states carried through the fine grid by a
  noise-level step of ``NOISE_LEVEL_STEPS`` (DPM-Solver++(2M) by default, memory carried across
  the grid), each interval [s_{m+1}, s_m] cut into ``refine`` steps equal in log σ, so that the
  teacher is more accurate than any path on the fine grid (a teacher on the grid itself would
  make a student's step between neighbours exact by construction). An interval from s_0 = ∞ is
  one step (its σ-space Euler limit x_1 = α_1 z + β_1 E[x1]). States at the fine points only:
  T_m, shape (M, n, d).
* **Distance** (``step_errors``): between two states at level s, the mean over the batch and the
  coordinates of ((x − x')/β(s))², i.e. the squared distance per coordinate in y = x/β (EDM's
  variable), the same for every interpolant.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._solve.noise_level import NOISE_LEVEL_STEPS, AbstractNoiseLevelStep
from .._validation import check_choice, check_int
from ..interpolants import Coefficients
from ..models.base import AbstractDenoiser, sample_rows
from ..schedules import InterpolantLike
from ._levels import level_coefficients
from .handmade import edm_levels

#: ρ of the fine grid's law (EDM's; GITS's teacher grid).
TEACHER_RHO = 7.0


def teacher_levels(sigma_min: float, sigma_max: float, points: int) -> np.ndarray:
    """The fine grid s_0 = σ_max > … > s_{M−1} = σ_min (M = ``points``, s_0 may be ∞): EDM's
    ρ = 7 law, float64, shape (M,)."""
    check_int("points", points, lo=3)
    return edm_levels(points, sigma_min, sigma_max, TEACHER_RHO)


def check_options(method: str, model: AbstractDenoiser | None, interp: InterpolantLike,
                  steps: int, *, points: int, n: int, seed: int, solver: str,
                  refine: int) -> None:
    """The options shared by the fine-grid methods, each error naming its parameter (call after
    ``check_range``)."""
    if not isinstance(model, AbstractDenoiser):
        raise ValueError(f"method {method!r} needs a model (a denoiser, AbstractDenoiser) to "
                         f"compute its teacher trajectories; got {type(model).__name__}")
    if model.d != interp.d:
        raise ValueError(f"model has dimension d = {model.d} but the interpolant has "
                         f"d = {interp.d}")
    check_int("points", points, lo=3)
    if points <= steps:
        raise ValueError(f"points (the fine grid's size) must be an integer > steps = {steps}; "
                         f"got {points!r}")
    check_int("n", n, lo=1)
    check_int("seed", seed, lo=0)
    check_choice("solver", solver, tuple(NOISE_LEVEL_STEPS))
    check_int("refine", refine, lo=1)


def prior_states(interp: InterpolantLike, levels: np.ndarray, n: int, seed: int
                 ) -> Float[Array, "n d"]:
    """x at s_0 = ``levels[0]``: α(s_0) z with z the rows that ``noisesched.sample_prior``
    draws from key ``seed`` (row i from ``fold_in(key, i)``), shape (n, d)."""
    dtype = jnp.result_type(float)
    scale = level_coefficients(interp, jnp.asarray(float(levels[0]), dtype)).alpha

    def one(key):
        return scale * jax.random.normal(key, (interp.d,), dtype=dtype)

    return sample_rows(one, jax.random.key(seed), 0, n)


def coefficient_table(interp: InterpolantLike, levels: np.ndarray, dtype) -> Coefficients:
    """``level_coefficients`` at every level: each field of shape (M,)."""
    sigma = jnp.asarray(np.asarray(levels, np.float64), dtype)
    return level_coefficients(interp, sigma)


def at(table: Coefficients, i) -> Coefficients:
    """The coefficients of level ``i`` of a table (scalars)."""
    return jax.tree.map(lambda a: a[i], table)


def spread(tree: PyTree, m: int) -> PyTree:
    """Every leaf repeated along a new leading axis of size m."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (m, *jnp.shape(a))), tree)


def _chunked(a: Float[Array, "M n d"], size: int) -> Float[Array, "C M size"]:
    """(M, n, d) → (C, M, size): the n d coordinates in C blocks of ``size``, zero-padded."""
    flat = a.reshape(a.shape[0], -1)
    blocks = -(-flat.shape[1] // size)
    flat = jnp.pad(flat, ((0, 0), (0, blocks * size - flat.shape[1])))
    return flat.reshape(a.shape[0], blocks, size).swapaxes(0, 1)


def step_errors(step: AbstractNoiseLevelStep, table: Coefficients,
                denoised: Float[Array, "M n d"], states: Float[Array, "M n d"], memory: PyTree,
                teacher: Float[Array, "M n d"], block: int = 1024) -> Float[Array, "M M"]:
    """E[i, j] = dist_j(Step(states_i, memory_i; i → j), T_j) for every pair of levels of
    ``table`` (fields of shape (M,)), where the step from level i uses the denoiser output
    ``denoised[i]`` at ``states[i]`` and the solver memory ``memory`` (leaves with a leading
    axis M; those of the states' shape travel with the states) and dist_j is the mean over (n, d)
    of ((x − T_j)/β_j)². Pairs with j ≤ i are computed too (the caller masks them); β_j = 0 (at
    σ = ∞) is read as 1. The (n d) coordinates are taken in blocks of ``block`` so that all
    M² steps of a block are formed in cache, never in memory."""
    m = states.shape[0]
    size = states.shape[-2] * states.shape[-1]
    block = min(block, size)
    leaves, tree = jax.tree.flatten(memory)
    stated = [jnp.ndim(a) == states.ndim for a in leaves]

    def one(c_i, e_i, x_i, m_i, c_j):
        return step(lambda c, x: e_i, c_i, c_j, x_i, tree.unflatten(m_i))[0]

    pairs = jax.vmap(jax.vmap(one, in_axes=(None, None, None, None, 0)),
                     in_axes=(0, 0, 0, 0, None))

    def body(total, parts):
        e, x, t, moving = parts
        moving = iter(moving)
        m_blocks = [next(moving) if s else a for a, s in zip(leaves, stated, strict=True)]
        diff = pairs(table, e, x, m_blocks, table) - t[None]  # (M, M, block)
        return total + jnp.sum(diff**2, axis=-1), None

    blocks = (_chunked(denoised, block), _chunked(states, block), _chunked(teacher, block),
              [_chunked(a, block) for a, s in zip(leaves, stated, strict=True) if s])
    total, _ = jax.lax.scan(body, jnp.zeros((m, m), states.dtype), blocks)
    beta = jnp.where(table.beta > 0, table.beta, 1.0)
    return total / (size * beta[None] ** 2)


def _refined(levels: np.ndarray, refine: int) -> tuple[list[float], np.ndarray]:
    """(single steps, blocks): the leading step from s_0 = ∞ (if any) as a list of its end
    level, and the remaining intervals cut into ``refine`` steps equal in log σ, shape
    (intervals, refine + 1)."""
    s = np.asarray(levels, np.float64)
    first = [] if math.isfinite(s[0]) else [float(s[1])]
    start = 0 if math.isfinite(s[0]) else 1
    u = np.arange(refine + 1) / refine
    blocks = np.exp((1.0 - u)[None] * np.log(s[start:-1, None]) + u[None] * np.log(s[start + 1:,
                                                                                    None]))
    blocks[:, 0], blocks[:, -1] = s[start:-1], s[start + 1:]  # exact fine points
    return first, blocks


@eqx.filter_jit
def _teach(model: AbstractDenoiser, interp: InterpolantLike, top: Float[Array, ""],
           first: Float[Array, " k"], blocks: Float[Array, "m r"], x0: Float[Array, "n d"],
           solver: str) -> Float[Array, "M n d"]:
    step = NOISE_LEVEL_STEPS[solver]
    memory = step.init(x0)
    x, states = x0, [x0]
    previous = top
    for i in range(first.shape[0]):  # the one step from σ = ∞
        x, memory = step(model.denoise, level_coefficients(interp, previous),
                         level_coefficients(interp, first[i]), x, memory)
        previous = first[i]
        states.append(x)

    def substep(carry, pair):
        y, mem = carry
        y, mem = step(model.denoise, level_coefficients(interp, pair[0]),
                      level_coefficients(interp, pair[1]), y, mem)
        return (y, mem), None

    def interval(carry, block):
        pairs = jnp.stack([block[:-1], block[1:]], axis=-1)
        carry, _ = jax.lax.scan(substep, carry, pairs)
        return carry, carry[0]

    _, rest = jax.lax.scan(interval, (x, memory), blocks)
    return jnp.concatenate([jnp.stack(states), rest])


def teacher_trajectory(model: AbstractDenoiser, interp: InterpolantLike, levels: np.ndarray,
                       x0: Float[Array, "n d"], *, refine: int = 4, solver: str = "dpmpp_2m"
                       ) -> Float[Array, "M n d"]:
    """The teacher's states T_m at the fine levels s_m = ``levels[m]`` from x0 at s_0, shape
    (M, n, d) (T_0 = x0): ``refine`` steps of ``solver`` per interval of the fine grid, equal in
    log σ; one step from s_0 = ∞."""
    check_int("refine", refine, lo=1)
    check_choice("solver", solver, tuple(NOISE_LEVEL_STEPS))
    first, blocks = _refined(levels, refine)
    dtype = x0.dtype
    return _teach(model, interp, jnp.asarray(float(levels[0]), dtype),
                  jnp.asarray(np.array(first, np.float64), dtype), jnp.asarray(blocks, dtype),
                  x0, solver)
