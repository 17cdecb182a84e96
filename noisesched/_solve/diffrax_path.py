"""``method="diffrax"``: any diffrax solver on the uniform grid (``diffrax.StepTo``), or an
adaptive solve with a PID controller (``adaptive=True``).

On the grid, a solver whose stages evaluate the drift inside a step (every Runge–Kutta method but
Euler) solves piece by piece between the kinks of the schedule, clamping its evaluation times to
each piece's one-sided ends (``Piece``); ``FusedEuler`` evaluates only at the start of each step,
so it solves the whole grid at once. An adaptive solve passes the kinks to
``diffrax.ClipStepSizeController``: diffrax steps to just before each kink and restarts just after.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ..models.base import AbstractDenoiser
from .fused import FusedEuler
from .grid import Grid
from .noise_level import AbstractNoiseLevelSolver
from .options import Options
from .problem import Batch, Piece, Problem, has_statistics
from .solvers import SolverLike, as_diffrax


def _vector_field(t, y, args: Piece):
    return args.drift(t, y)


def _diffeqsolve(piece: Piece, x0: Batch, *, t0: Float[Array, ""], t1: Float[Array, ""],
                 solver: diffrax.AbstractSolver,
                 controller: diffrax.AbstractStepSizeController, max_steps: int,
                 subs: list[diffrax.SubSaveAt], adjoint: diffrax.AbstractAdjoint
                 ) -> diffrax.Solution:
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=x0,
        args=piece,
        saveat=diffrax.SaveAt(subs=subs),
        stepsize_controller=controller,
        max_steps=max_steps,
        adjoint=adjoint,
        # no runtime checks (host callbacks: they would keep the compiled solve out of the
        # persistent cache and the final state off its devices); a fixed grid cannot run out
        # of steps, and an adaptive solve's result is checked on the host by `solve`
        throw=False,
    )


def fixed_grid_solver(solver: SolverLike, model: AbstractDenoiser, x0: Batch,
                      kinks: Float[ArrayLike, " J"] | tuple[float, ...] = (),
                      in_blocks: bool = False) -> diffrax.AbstractSolver:
    """The diffrax solver of a fixed-grid solve: ``FusedEuler`` where Euler meets a model with a
    statistics form (``kinks``: the kinks of the schedule on the grid before its end, where it
    evaluates on the right; ``in_blocks``: a row-blocked solve), else what ``solver`` stands
    for (``solvers.as_diffrax``)."""
    if isinstance(solver, str) and solver == "euler" and has_statistics(model, x0):
        return FusedEuler(kinks=jnp.asarray(kinks, x0.dtype).reshape(-1), in_blocks=in_blocks)
    return as_diffrax(solver)


class _StepTo(diffrax.StepTo):
    """``diffrax.StepTo`` on a grid that is increasing, and starts and ends at t0 and t1, by
    construction: without StepTo's runtime checks, which are host callbacks and would keep the
    compiled solve out of JAX's persistent compilation cache."""

    def wrap(self, direction):
        return type(self)(ts=self.ts * direction)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        if dt0 is not None:
            raise ValueError("dt0 must be None with a grid of steps")
        return self.ts[1], 2


def fixed_solve(problem: Problem, x0: Batch, grid: Grid, options: Options
                ) -> tuple[Batch, PyTree | None]:
    """Every step of ``grid``, one diffrax solve per piece between kinks of the schedule.
    Returns X at the end of the grid and ``options.observe`` at each of its points."""
    observe, last = options.observe, grid.steps
    inner = grid.inner_kinks()
    solver = fixed_grid_solver(options.solver, problem.model, x0,
                               grid.ts[jnp.asarray(inner, int)], options.row_block is not None)
    # FusedEuler evaluates each step at its start, on the step's side of a kink, and the
    # noise-level samplers need no derivative of the schedule: one solve
    one_piece = isinstance(solver, FusedEuler | AbstractNoiseLevelSolver)
    bounds = (0, last) if one_piece else (0, *inner, last)
    x, pieces = x0, []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ts = grid.ts[a : b + 1]
        subs = [diffrax.SubSaveAt(t1=True)]
        if observe is not None:  # each piece saves its points after its start; the first, all
            subs.append(diffrax.SubSaveAt(ts=ts if a == 0 else ts[1:],
                                          fn=lambda t, y, args: observe(y)))
        piece = Piece(problem, lo=grid.step(a).start, hi=grid.step(b - 1).end)
        sol = _diffeqsolve(piece, x, t0=ts[0], t1=ts[-1], solver=solver,
                           controller=_StepTo(ts=ts), max_steps=b - a, subs=subs,
                           adjoint=options.adjoint)
        assert sol.ys is not None
        x = sol.ys[0][-1]
        if observe is not None:
            pieces.append(sol.ys[1])
    obs = None
    if observe is not None:
        obs = jax.tree.map(lambda *parts: jnp.concatenate(parts), *pieces)
    return x, obs


def adaptive_solve(problem: Problem, x0: Batch, save_ts: Float[Array, " S"], t_end: float,
                   options: Options
                   ) -> tuple[Batch, PyTree | None, Int[Array, ""], Bool[Array, ""]]:
    """PID step sizes from ``save_ts[0]`` to ``save_ts[-1]`` (= ``t_end``), saving
    ``options.observe`` at ``save_ts``. Returns X there, the observations, the number of steps
    taken and whether the solve reached ``t_end`` within ``options.max_steps``."""
    t0, t1 = save_ts[0], save_ts[-1]
    controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
        rtol=options.rtol, atol=options.atol)
    jumps = [tj for tj in problem.schedule.jump_times if 0.0 < tj < t_end]
    if jumps:  # diffrax steps to just before each kink and restarts just after it
        controller = diffrax.ClipStepSizeController(controller, jump_ts=jumps)
    subs = [diffrax.SubSaveAt(t1=True)]
    observe = options.observe
    if observe is not None:
        subs.append(diffrax.SubSaveAt(ts=save_ts, fn=lambda t, y, args: observe(y)))
    sol = _diffeqsolve(Piece(problem, lo=t0, hi=t1), x0, t0=t0, t1=t1,
                       solver=as_diffrax(options.solver), controller=controller,
                       max_steps=options.max_steps, subs=subs, adjoint=options.adjoint)
    assert sol.ys is not None and sol.stats is not None
    obs = sol.ys[1] if observe is not None else None
    return (sol.ys[0][-1], obs, sol.stats["num_steps"],
            jnp.asarray(sol.result == diffrax.RESULTS.successful))
