"""Euler and Heun fused with the model: a ``lax.scan`` loop with no solver machinery
(``method="scan"``, which also runs the noise-level samplers of ``noise_level``), and
``FusedEuler``, the same Euler step as a diffrax solver.

For a model with a statistics form (``AbstractDenoiser.statistics``), both carry the drift's sums
over coordinates at the current state beside it, and each step computes those of the state it
writes: the compiler fuses that reduction with the update, so an Euler step makes two passes over
the state (read, write) instead of three. Where the statistics are linear in the state
(``velocity_statistics``: the mixture's projections), each stage updates them from the drift's
own, with no reduction over the state at all. Same numbers as diffrax's Euler and Heun on the
grid, up to float rounding.
"""

from __future__ import annotations

import math
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .grid import Grid, Step, on_kink, one_sided
from .noise_level import NOISE_LEVEL_STEPS, noise_level_loop
from .options import Options
from .problem import Batch, Piece, Problem, has_statistics, has_velocity_statistics
from .solvers import registry_name
from .stepping import STEP_METHODS, EulerStep


def blocked_scan(body, carry: PyTree, steps: int, checkpoints: int | None
                 ) -> tuple[PyTree, PyTree]:
    """``lax.scan(body, carry, arange(steps))`` run as blocks of steps, each under
    ``jax.checkpoint``: reverse mode stores one carry per block (``checkpoints`` blocks, or
    ⌈√steps⌉). Same numbers as the plain scan."""
    blocks = (math.ceil(math.sqrt(steps)) if checkpoints is None else min(checkpoints, steps))
    size = math.ceil(steps / blocks)
    full, rest = divmod(steps, size)

    @jax.checkpoint
    def block(carry, indices):
        return jax.lax.scan(body, carry, indices)

    carry, out = jax.lax.scan(block, carry, jnp.arange(full * size).reshape(full, size))
    out = jax.tree.map(lambda a: a.reshape(full * size, *a.shape[2:]), out)
    if rest:
        carry, out_rest = block(carry, jnp.arange(full * size, steps))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, out_rest)
    return carry, out


def _with_start(observe, x0: Batch, obs: PyTree) -> PyTree | None:
    """The observations at every grid point: ``observe(x0)`` before those after each step."""
    if observe is None:
        return None
    return jax.tree.map(lambda a0, a: jnp.concatenate([a0[None], a]), observe(x0), obs)


def fused_solve(problem: Problem, x0: Batch, grid: Grid, options: Options
                ) -> tuple[Batch, PyTree | None]:
    """Euler or Heun (``options.solver``) over every step of ``grid``, in blocks of steps under
    ``jax.checkpoint`` (``blocked_scan``), or a noise-level sampler (``noise_level``). Returns X
    at the end of the grid and ``options.observe`` at each of its points."""
    model, observe, last = problem.model, options.observe, grid.steps
    name = registry_name(options.solver)
    assert name is not None  # checked by noisesched.solve

    def scan(body, carry, indices):
        return blocked_scan(body, carry, indices.shape[0], options.checkpoints)

    if name in NOISE_LEVEL_STEPS:
        x, obs = noise_level_loop(NOISE_LEVEL_STEPS[name], model.denoise, problem.coefficients,
                                  grid.ts, x0, observe, scan)
        return x, _with_start(observe, x0, obs)
    method = STEP_METHODS[name]
    fused = has_statistics(model, x0)
    # a block of rows in cache keeps what the model would otherwise recompute
    of_state = model.statistics_for_blocks if options.row_block is not None else model.statistics

    def statistics(t, x):
        return of_state(problem.coefficients(t), x) if fused else None

    def velocity(t, x, stats):
        c = problem.coefficients(t)
        if stats is None:
            return model.velocity(c, x)
        return model.velocity_from_statistics(c, x, stats)

    table = grid.table()

    if fused and has_velocity_statistics(model, x0):
        # linear statistics: every stage's update carries its own projections, one pass a step
        def velocity_and_statistics(t, state):
            y, stats = state
            c = problem.coefficients(t)
            return model.velocity_from_statistics(c, y, stats), model.velocity_statistics(c, stats)

        def linear_step(state, i):
            state = method(velocity_and_statistics, table.at(i), state)
            return state, (None if observe is None else observe(state[0]))

        (x, _), obs = scan(linear_step, (x0, statistics(table.start[0], x0)), jnp.arange(last))
        return x, _with_start(observe, x0, obs)

    def step(carry, i):
        x, stats = carry
        st = table.at(i)
        x = method(lambda t, y: velocity(t, y, statistics(t, y)), st, x,
                   velocity(st.start, x, stats))
        # the statistics where the next step starts, computed in the pass that writes x
        stats = statistics(table.start[jnp.minimum(i + 1, last - 1)], x)
        return (x, stats), (None if observe is None else observe(x))

    (x, _), obs = scan(step, (x0, statistics(table.start[0], x0)), jnp.arange(last))
    return x, _with_start(observe, x0, obs)


class FusedEuler(diffrax.AbstractSolver):
    """Euler's method for a model with a statistics form (``AbstractDenoiser.statistics``).

    The solver state carries the drift's sums over coordinates at the current state, and each
    step computes those of the state it writes, so the compiler can fuse that reduction with the
    update: one read and one write of the state per step. Same numbers as ``diffrax.Euler``.
    Euler evaluates the drift at the start of each step only, so a kink of the schedule on the
    grid (``kinks``) is handled by evaluating there on the right (the step's own side), and one
    solve spans the whole grid. Expects ``args`` to be a ``noisesched._solve.problem.Piece``
    (the problem and the ends [lo, hi] to which times are clamped) as ``solve`` passes it.
    """

    kinks: Float[Array, " J"]
    #: carry ``statistics_for_blocks`` (a row-blocked solve, whose block stays in cache)
    in_blocks: bool = eqx.field(static=True, default=False)
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def _statistics(self, t, towards, y, args: Piece):
        """The statistics of ``y`` at the start of a step from ``t`` towards ``towards``."""
        c = args.coefficients(one_sided(t, towards, on_kink(t, self.kinks)))
        model = args.problem.model
        return (model.statistics_for_blocks if self.in_blocks else model.statistics)(c, y)

    def init(self, terms, t0, t1, y0, args):
        return self._statistics(t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        model = args.problem.model
        st = Step.between(t0, t1, on_kink(t0, self.kinks))
        c = args.coefficients(st.start)
        velocity = model.velocity_from_statistics(c, y0, solver_state)
        y1 = EulerStep()(args.drift, st, y0, velocity)
        stats_velocity = model.velocity_statistics(c, solver_state)
        if stats_velocity is not None:  # linear statistics: updated as the state is
            stats = jax.tree.map(lambda s, v: s + v * st.dt, solver_state, stats_velocity)
        else:  # the statistics where the next step starts (on the right of a kink)
            stats = self._statistics(t1, jnp.asarray(jnp.inf, t1.dtype), y1, args)
        return y1, None, dict(y0=y0, y1=y1), stats, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
