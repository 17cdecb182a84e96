"""Fixed-grid solves that carry the coefficients of the state, not the state.

When the drift is a(t)·x plus a combination Σ_k g_k u_k of K fixed vectors whose weights g
depend on x only through statistics that are linear in x (the exact mixture with isotropic
components: u_k = μ_k, and a, g from the projections μ_k·x; see
``AbstractDenoiser.velocity_in_span``), every explicit Runge–Kutta step keeps x in
span{x_0, u_1, …, u_K}: x = p·x_0 + Σ_k q_k u_k. A solve then carries (p, q) and the statistics,
O(K) numbers per row, through all N steps, and writes the (n, d) state once at the end:
two passes over the state per solve instead of two per step. Same arithmetic per step as
the fused loop's linear path (``fused``), so the same numbers up to float rounding.

The default of ``solve`` on its default path (``span="auto"``). Reproducibility: XLA:CPU
compiles the per-row arithmetic on (n, K) arrays as scalar or vector code (with or without
fused multiply-adds) by the shape each device holds. On one device a row's bits do not depend
on the chunk it is solved in (chunks of 16 rows or more, as for the stepped solve); split over
several devices they may differ from one device's by a few ulps, where the stepped solve's,
whose per-row work is fused into loops over the coordinates, do not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..interpolants import Coefficients
from ..models.base import AbstractDenoiser
from .fused import blocked_scan
from .grid import Grid
from .options import Options
from .problem import Batch, Problem, has_velocity_statistics
from .solvers import registry_name
from .stepping import STEP_METHODS

__all__ = ["has_span_form", "span_applies", "span_solve"]


def has_span_form(model: AbstractDenoiser, x: Batch | jax.ShapeDtypeStruct) -> bool:
    """Whether ``model``'s drift has the span form (``velocity_in_span``) over linear
    statistics (decided at trace time, nothing computed)."""
    if not has_velocity_statistics(model, x):
        return False
    one = jnp.ones((), x.dtype)
    c = Coefficients(one, one, one, one, one)
    return jax.eval_shape(
        lambda x: model.velocity_in_span(c, model.statistics(c, x)), x) is not None


def span_applies(model: AbstractDenoiser, x0: Batch | jax.ShapeDtypeStruct, *, solver,
                 method: str, adaptive: bool, observe) -> bool:
    """Whether a solve with these options runs in span form: a fixed grid of Euler or Heun
    steps (``method`` "diffrax" or "scan"), nothing observed on the way, a model with the form."""
    return (not adaptive and observe is None and method in ("diffrax", "scan")
            and registry_name(solver) in STEP_METHODS and has_span_form(model, x0))


def span_solve(problem: Problem, x0: Batch, grid: Grid, options: Options) -> Batch:
    """Euler or Heun (``options.solver``) over every step of ``grid`` in span form, in blocks
    of steps under ``jax.checkpoint`` (``blocked_scan``); X at the end of the grid."""
    model = problem.model
    name = registry_name(options.solver)
    assert name is not None  # span_applies
    method = STEP_METHODS[name]
    table = grid.table()

    def velocity(t, state):
        scale, coefficients, stats = state
        c = problem.coefficients(t)
        a, g = model.velocity_in_span(c, stats)
        return (a * scale, a * coefficients + g, model.velocity_statistics(c, stats))

    def step(state, i):
        return method(velocity, table.at(i), state), None

    c0 = problem.coefficients(table.start[0])
    stats0 = model.statistics(c0, x0)
    form = model.velocity_in_span(c0, stats0)
    assert form is not None and stats0 is not None  # span_applies
    # x = p·x0 + Σ_k q_k u_k, from p = 1, q = 0 (the weights' shape and dtype from the drift's)
    state0: tuple[Float[Array, "n 1"], Array, Array] = (
        jnp.ones((x0.shape[0], 1), x0.dtype), jnp.zeros_like(form[1]), stats0)
    (scale, coefficients, _), _ = blocked_scan(step, state0, grid.steps, options.checkpoints)
    # the final state from x0 as an array of its own, not fused with what made it (a prior
    # drawn in the same program): the same code, so the same bits, whatever the caller
    # compiles around the solve (a chunk of a stream gives the rows of the whole batch)
    x0, scale, coefficients = jax.lax.optimization_barrier((x0, scale, coefficients))
    return scale * x0 + model.combine_in_span(coefficients).astype(x0.dtype)
