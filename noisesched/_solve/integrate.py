"""One solve from X_0 at t = 0 to t = 1: the grid, the path that steps over it, and the
terminal step.

Terminal step. At t = 1, α = 0 and the drift of a model with discrete data (Curie–Weiss) is
unbounded off the data's support. For such models (``model.singular_at_data``), or with
``final_step="euler"``, the last interval [t_{N−1}, 1] is one Euler step, which evaluates the drift
at t_{N−1} only (as EDM's Heun sampler does at σ = 0); with a linear interpolant this step lands
exactly on the denoiser's output. Adaptive solves then stop at ``1 − terminal_dt``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from .diffrax_path import adaptive_solve, fixed_solve
from .fused import fused_solve
from .grid import Grid, Step
from .options import Options
from .pallas_kernel import pallas_solve
from .problem import Batch, Problem
from .row_blocks import by_row_blocks
from .solution import Solution
from .span import span_solve
from .stepping import EulerStep


def _final_euler_step(problem: Problem, x: Batch, t_from: Array, on_kink: bool) -> Batch:
    """One Euler step from ``t_from`` to t = 1 (evaluating the drift at ``t_from`` only)."""
    step = Step.between(t_from, jnp.ones((), x.dtype), on_kink)
    return EulerStep()(problem.drift, step, x)


def _fixed_grid(problem: Problem, x0: Batch, grid: Grid, options: Options
                ) -> tuple[Batch, PyTree | None]:
    """Every step of ``grid`` (``method="scan"`` or diffrax), then the final Euler step where
    asked; returns X_1 and the observations on the grid (before the final step)."""
    observe = options.observe
    if grid.steps == 0:  # the only step is the final Euler step
        x, obs = x0, (None if observe is None else jax.tree.map(lambda a: a[None], observe(x0)))
    elif options.method == "scan":
        x, obs = fused_solve(problem, x0, grid, options)
    elif options.method == "pallas":
        x, obs = pallas_solve(problem, x0, grid, options,
                              lambda p, g, rows: fused_solve(p, rows, g, options)[0]), None
    else:
        x, obs = fixed_solve(problem, x0, grid, options)
    if options.final_euler:
        x = _final_euler_step(problem, x, grid.ts[-1], grid.steps in grid.kinks)
    return x, obs


@eqx.filter_jit
def integrate(problem: Problem, x0: Batch, options: Options) -> Solution:
    """Solve ``problem`` from ``x0`` with ``options`` (checked by ``noisesched.solve``)."""
    dtype = x0.dtype
    observe = options.observe
    if options.adaptive:
        t_end = 1.0 - options.terminal_dt if options.final_euler else 1.0
        save_ts = jnp.linspace(0.0, t_end, options.steps + 1, dtype=dtype)
        x, obs, taken, reached_end = adaptive_solve(problem, x0, save_ts, t_end, options)
        if options.final_euler:
            x = _final_euler_step(problem, x, save_ts[-1], False)
            taken = taken + 1
    else:
        last = options.steps - 1 if options.final_euler else options.steps
        grid = Grid.uniform(problem.schedule, options.steps, dtype).head(last)
        save_ts = grid.ts
        if options.span and grid.steps > 0:  # two passes over the state in all
            x, obs = span_solve(problem, x0, grid, options), None
            if options.final_euler:
                x = _final_euler_step(problem, x, grid.ts[-1], grid.steps in grid.kinks)
        elif options.row_block is not None and observe is None and options.method != "pallas":
            x = by_row_blocks(lambda rows: _fixed_grid(problem, rows, grid, options)[0], x0,
                              options.row_block)
            obs = None
        else:
            x, obs = _fixed_grid(problem, x0, grid, options)
        taken = jnp.asarray(options.steps)
        reached_end = jnp.asarray(True)  # a fixed grid cannot run out of steps
    ts: Array | None = save_ts
    if options.final_euler:
        ts = jnp.concatenate([save_ts, jnp.ones((1,), dtype)])
        if observe is not None:
            obs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), obs, observe(x))
    if observe is None:
        ts = None
    return Solution(x=x, ts=ts, observables=obs, num_steps=taken, reached_end=reached_end)
