"""Probability-flow ODE dX/dt = b(t, X) from noise (t = 0) to data (t = 1).

Two interchangeable paths over the same uniform grid t_i = i/N:

* ``method="diffrax"``: any diffrax Runge–Kutta solver on that grid (``diffrax.StepTo``), or an
  adaptive solve with a PID controller (``adaptive=True``);
* ``method="scan"``: a fused ``lax.scan`` loop for Euler and Heun with no solver machinery.

Both return the same numbers up to floating-point rounding. The grid in t is always uniform: the
schedule carries all non-uniformity.

Kinks. The dilated schedules have a kink at t = ½. Where a kink falls on the grid (N even), every
stage of a step evaluates the drift on the step's own side of it (one ulp inside), as diffrax does
for ``jump_ts``; a higher-order method then keeps its order. Adaptive solves pass the kinks to
``diffrax.ClipStepSizeController``.

Terminal step. At t = 1, α = 0 and the drift of a model with discrete data (Curie–Weiss) is
unbounded off the data's support. For such models (``model.singular_at_data``), or with
``final_step="euler"``, the last interval [t_{N−1}, 1] is one Euler step, which evaluates the drift
at t_{N−1} only (as EDM's Heun sampler does at σ = 0); with a linear interpolant this step lands
exactly on the denoiser's output. Adaptive solves then stop at ``1 − terminal_dt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from ._validation import (
    check_bool,
    check_choice,
    check_floating,
    check_int,
    check_key,
    check_positive,
    check_real,
)
from .interpolants import Coefficients, Interpolant
from .models.base import AbstractDenoiser, sample_rows
from .schedules import AbstractSchedule

__all__ = ["Solution", "sample", "solve", "sample_prior", "first_nonfinite", "MaxStepsReached",
           "SOLVERS", "ADAPTIVE_SOLVERS", "FusedEuler"]

SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}
#: Solvers with an embedded error estimate, usable with ``adaptive=True``.
ADAPTIVE_SOLVERS = ("bosh3", "tsit5", "dopri5")
#: Solvers of the fused ``method="scan"`` path.
SCAN_SOLVERS = ("euler", "heun")
METHODS = ("diffrax", "scan")
FINAL_STEPS = ("auto", "euler", "solver")

Observe = Callable[[Float[Array, "n d"]], PyTree]


class Solution(eqx.Module):
    """Result of ``solve``.

    Attributes:
        x: final states X_1, shape (n, d).
        ts: times at which ``observables`` were saved, shape (S,), or None.
        observables: ``observe(X_t)`` stacked along a leading axis of size S, or None.
        num_steps: number of solver steps taken (the last Euler step included).
        reached_end: False only for an adaptive solve that ran out of ``max_steps`` before
            t = 1 (then ``x`` is not a sample). ``solve`` raises ``MaxStepsReached``
            for it outside ``jit``; inside, check this flag.
    """

    x: Float[Array, "n d"]
    ts: Float[Array, " S"] | None
    observables: PyTree | None
    num_steps: Array
    reached_end: Bool[Array, ""]


class MaxStepsReached(RuntimeError):
    """An adaptive solve took ``max_steps`` steps without reaching t = 1."""


def max_steps_error(max_steps: int, rtol: float, atol: float) -> MaxStepsReached:
    return MaxStepsReached(
        f"the adaptive solve took max_steps = {max_steps} steps without reaching t = 1; raise "
        f"max_steps, loosen rtol = {rtol:g} / atol = {atol:g}, or use the fixed grid "
        "(adaptive = false, steps = N)")


def sample_prior(
    interp: Interpolant, key: PRNGKeyArray, n: int, dtype: Any = None, *,
    start: int | Int[Array, ""] = 0,
) -> Float[Array, "n d"]:
    """X_0 = α0 z, z ~ N(0, I_d), shape (n, d): rows ``start, …, start + n − 1`` of the batch
    drawn from ``key``. Row i depends only on ``fold_in(key, i)``, so a large batch can be drawn
    in slices that together equal the batch drawn at once."""
    check_int("n", n, lo=1)
    check_key("key", key)
    if not isinstance(start, jax.Array):
        check_int("start", start, lo=0)
    dtype = jnp.result_type(float) if dtype is None else dtype

    def one(k):
        return interp.alpha0 * jax.random.normal(k, (interp.d,), dtype=dtype)

    return sample_rows(one, key, start, n)


def _resolve_observe(model: AbstractDenoiser, observe) -> Observe | None:
    if observe is None or callable(observe):
        return observe
    check_choice("observe", observe, ("overlap",))
    overlap = getattr(model, "overlap", None)
    if overlap is None:
        raise ValueError(f"observe='overlap' needs a data law's overlap; {type(model).__name__} "
                         "has none: pass a function of the (n, d) state instead")
    return overlap


def _validate(model, interp, x0, steps, solver, method, adaptive, rtol, atol, final_step,
              terminal_dt):
    check_int("steps", steps, lo=1)
    check_choice("solver", solver, SOLVERS)
    check_choice("method", method, METHODS)
    check_choice("final_step", final_step, FINAL_STEPS)
    check_bool("adaptive", adaptive)
    if method == "scan":
        check_choice("solver (method='scan')", solver, SCAN_SOLVERS)
    if adaptive:
        if method != "diffrax":
            raise ValueError("adaptive=True needs method='diffrax'; got method='scan'")
        check_choice("solver (adaptive)", solver, ADAPTIVE_SOLVERS)
        check_positive("rtol", rtol)
        check_positive("atol", atol)
    check_real("terminal_dt", terminal_dt, 0.0, 1.0)
    if interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    if x0.ndim != 2 or x0.shape[1] != model.d:
        raise ValueError(f"x0 must have shape (n, d) = (n, {model.d}); got {tuple(x0.shape)}")
    check_floating("x0", x0)


def solve(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    x0: Float[Array | np.ndarray, "n d"],
    *,
    steps: int = 100,
    solver: str = "euler",
    method: str = "diffrax",
    adaptive: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_steps: int = 16_384,
    observe: Observe | str | None = None,
    final_step: str = "auto",
    terminal_dt: float = 1e-3,
    adjoint: diffrax.AbstractAdjoint | None = None,
    checkpoints: int | None = None,
    check_finite: bool = True,
) -> Solution:
    """Integrate the probability-flow ODE from X_0 = ``x0`` at t = 0 to t = 1.

    Args:
        model: the data law.
        interp: the interpolant.
        schedule: the schedule τ(t).
        x0: initial states, shape (n, d) (see ``sample_prior``).
        steps: N, the number of intervals of the uniform grid t_i = i/N (fixed-step solves), or
            of the grid on which ``observe`` is saved (adaptive solves).
        solver: one of ``SOLVERS``; ``method="scan"`` accepts ``"euler"`` and ``"heun"``.
        method: ``"diffrax"`` or ``"scan"`` (fused loop, same numbers).
        adaptive: adaptive step sizes with a PID controller (``rtol``, ``atol``, ``max_steps``);
            needs an embedded solver (``ADAPTIVE_SOLVERS``).
        observe: ``None`` (keep only X_1), ``"overlap"`` (``model.overlap``) or a function of the
            (n, d) state returning a pytree; saved on the grid without storing full states.
        final_step: ``"auto"`` (Euler on the last interval iff ``model.singular_at_data``),
            ``"euler"`` or ``"solver"``.
        terminal_dt: adaptive solves with a final Euler step stop at ``1 − terminal_dt``.
        adjoint: diffrax adjoint (default ``RecursiveCheckpointAdjoint(checkpoints)``).
        checkpoints: how many states reverse-mode differentiation stores. ``method="diffrax"``:
            passed to ``diffrax.RecursiveCheckpointAdjoint`` (``None``: diffrax's O(log N)
            default). ``method="scan"``: the N steps run as ``checkpoints`` blocks, each under
            ``jax.checkpoint`` (``None``: ⌈√N⌉ blocks, memory O(√N) states; ``N``: every state
            kept). Changes memory and time of gradients only, never the numbers.
        check_finite: raise ``FloatingPointError`` if X_1 holds nan or inf, naming the first
            sample, step and time where it appeared (``first_nonfinite``).

    Returns:
        A ``Solution`` with the final states of shape (n, d).

    Raises:
        FloatingPointError: (``check_finite``) the solve left the finite numbers.
        MaxStepsReached: an adaptive solve ran out of ``max_steps``.

    Both checks need concrete values: inside ``jit`` or ``grad`` they are skipped, and
    ``Solution.reached_end`` and ``jnp.isfinite(Solution.x)`` tell the same.
    """
    x0 = jnp.asarray(x0)
    _validate(model, interp, x0, steps, solver, method, adaptive, rtol, atol, final_step,
              terminal_dt)
    check_int("max_steps", max_steps, lo=1)
    check_bool("check_finite", check_finite)
    if checkpoints is not None:
        check_int("checkpoints", checkpoints, lo=1)
        if adjoint is not None and method == "diffrax":
            raise ValueError("give checkpoints or adjoint, not both (checkpoints sets "
                             "adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints))")
    final_euler = final_step == "euler" or (final_step == "auto" and model.singular_at_data)
    sol = _solve(
        model, interp, schedule, x0, steps, solver, method, adaptive, rtol, atol, max_steps,
        _resolve_observe(model, observe), final_euler, terminal_dt,
        diffrax.RecursiveCheckpointAdjoint(checkpoints) if adjoint is None else adjoint,
        checkpoints,
    )
    if isinstance(sol.x, jax.core.Tracer):
        return sol
    if not bool(sol.reached_end):
        raise max_steps_error(max_steps, rtol, atol)
    if check_finite and not bool(all_finite(sol.x)):
        raise nonfinite_error(model, interp, schedule, x0, 0, dict(
            steps=steps, solver=solver, method=method, adaptive=adaptive, rtol=rtol, atol=atol,
            max_steps=max_steps, final_step=final_step, terminal_dt=terminal_dt))
    return sol


def sample(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    n: int,
    steps: int = 100,
    solver: str = "euler",
    **options: Any,
) -> Float[Array, "n d"]:
    """Draw ``n`` samples X_1 of shape (n, d): prior noise from ``key``, then ``solve``.

    ``options`` are passed to ``solve``. The same key and arguments give the same samples.
    """
    check_int("n", n, lo=1)
    check_key("key", key)
    if interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    x0 = sample_prior(interp, key, n)
    return solve(model, interp, schedule, x0, steps=steps, solver=solver, **options).x


def first_nonfinite(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    x0: Float[Array | np.ndarray, "n d"],
    **options: Any,
) -> tuple[int, float, int] | None:
    """Where a solve from ``x0`` first leaves the finite numbers: ``(i, t_i, row)`` for the first
    saved state X_{t_i} (i = 0 … N; the save grid of an adaptive solve) in which sample ``row``
    holds nan or inf, or None if every state is finite. It solves again with ``options`` (those
    of ``solve``), observing each row's finiteness on the grid rather than the states, so it
    costs one more solve and no memory. Euler and Heun on the fixed grid are re-solved with the
    fused loop, which observes the states themselves; diffrax observes an interpolation within
    each step, in which a state that overflows also spoils the save point just before it, so
    with other solvers ``i`` may be one early."""
    if not options.get("adaptive") and options.get("solver", "euler") in SCAN_SOLVERS:
        options = dict(options, method="scan")
    sol = solve(model, interp, schedule, x0, check_finite=False,
                observe=lambda x: jnp.all(jnp.isfinite(x), axis=-1), **options)
    finite = np.asarray(sol.observables)  # (S, n)
    bad = np.argwhere(~finite)
    if bad.size == 0:
        return None
    step, row = (int(v) for v in bad[0])
    assert sol.ts is not None  # saved, since observe was given
    return step, float(sol.ts[step]), row


def nonfinite_error(model: AbstractDenoiser, interp: Interpolant, schedule: AbstractSchedule,
                    x0: Float[Array, "n d"], first_row: int, options: dict
                    ) -> FloatingPointError:
    """The error for a solve from ``x0`` (rows ``first_row …`` of a batch) whose final states
    hold nan or inf, naming where it first left the finite numbers (``first_nonfinite``)."""
    where = first_nonfinite(model, interp, schedule, x0, **options)
    at = ""
    if where is not None:
        step, t, row = where
        grid = "save point" if options.get("adaptive") else "step"
        at = (f": first in sample {first_row + row}, at {grid} {step} of "
              f"{options.get('steps', 100)} (t = {t:.6g})")
    return FloatingPointError(
        f"the solve produced nan or inf{at}; try more steps, another solver, a final Euler step "
        "(final_step='euler'), or dtype float64")


@jax.jit
def all_finite(x: Array) -> Bool[Array, ""]:
    """Whether every entry of ``x`` is finite (one fused reduction on the device)."""
    return jnp.all(jnp.isfinite(x))


def _vector_field(t, y, args):
    model, interp, schedule, lo, hi = args
    # Clamping to [lo, hi] evaluates one-sidedly at a kink of the schedule (lo, hi one ulp inside).
    return model.drift(interp, schedule, jnp.clip(t, lo, hi), y)


def split_points(schedule: AbstractSchedule, steps: int) -> tuple[int, ...]:
    """Indices 0 < i < N of grid points t_i = i/N that fall on a kink of the schedule."""
    out = set()
    for tj in schedule.jump_times:
        i = round(tj * steps)
        if 0 < i < steps and abs(i / steps - tj) < 1e-12:
            out.add(i)
    return tuple(sorted(out))


def _inside(t, towards, is_split: bool):
    return jnp.nextafter(t, towards) if is_split else t


@eqx.filter_jit
def _solve(model, interp, schedule, x0, steps, solver, method, adaptive, rtol, atol, max_steps,
           observe, final_euler, terminal_dt, adjoint, checkpoints) -> Solution:
    dtype = x0.dtype
    fields = (model, interp, schedule)
    if adaptive:
        t_end = 1.0 - terminal_dt if final_euler else 1.0
        save_ts = jnp.linspace(0.0, t_end, steps + 1, dtype=dtype)
        x, obs, taken, reached_end = _adaptive(fields, x0, save_ts, t_end, solver, rtol, atol,
                                               max_steps, observe, adjoint)
        last_is_split = False
    else:
        grid = jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype)
        last = steps - 1 if final_euler else steps
        splits = split_points(schedule, steps)
        save_ts = grid[: last + 1]
        if last == 0:  # the only step is the final Euler step
            x, obs = x0, (None if observe is None else jax.tree.map(lambda a: a[None], observe(x0)))
        elif method == "scan":
            x, obs = _scan(fields, x0, grid, last, splits, solver, observe, checkpoints)
        else:
            x, obs = _diffrax_fixed(fields, x0, grid, last, splits, solver, observe, adjoint)
        taken = jnp.asarray(last)
        reached_end = jnp.asarray(True)  # a fixed grid cannot run out of steps
        last_is_split = last in splits
    ts: Array | None = save_ts
    if final_euler:
        t_last = save_ts[-1]
        t_eval = _inside(t_last, 1.0, last_is_split)
        x = x + (1.0 - t_last) * _vector_field(t_eval, x, (*fields, t_eval, t_eval))
        taken = taken + 1
        ts = jnp.concatenate([save_ts, jnp.ones((1,), dtype)])
        if observe is not None:
            obs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), obs, observe(x))
    if observe is None:
        ts = None
    return Solution(x=x, ts=ts, observables=obs, num_steps=taken, reached_end=reached_end)


class FusedEuler(diffrax.AbstractSolver):
    """Euler's method for a model with a statistics form (``AbstractDenoiser.statistics``).

    The solver state carries the drift's sums over coordinates at the current state, and each
    step computes those of the state it writes, so the compiler can fuse that reduction with the
    update: one read and one write of the state per step. Same numbers as ``diffrax.Euler``.
    Euler evaluates the drift at the start of each step only, so a kink of the schedule on the
    grid (``kinks``) is handled by evaluating there on the right (the step's own side), and one
    solve spans the whole grid. Expects ``args = (model, interp, schedule, lo, hi)`` as
    ``solve`` passes them.
    """

    kinks: Float[Array, " J"]
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def _coefficients(self, t, args):
        _, interp, schedule, lo, hi = args
        on_kink = jnp.any(t == self.kinks)
        t = jnp.where(on_kink, jnp.nextafter(t, jnp.asarray(jnp.inf, t.dtype)), t)
        return interp.coefficients(schedule, jnp.clip(t, lo, hi))

    def init(self, terms, t0, t1, y0, args):
        return args[0].statistics(self._coefficients(t0, args), y0)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        model = args[0]
        velocity = model.velocity_from_statistics(self._coefficients(t0, args), y0, solver_state)
        y1 = y0 + velocity * (t1 - t0)
        stats = model.statistics(self._coefficients(t1, args), y1)
        return y1, None, dict(y0=y0, y1=y1), stats, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def has_statistics(model: AbstractDenoiser, x: Float[Array, "n d"]) -> bool:
    """Whether ``model`` has a statistics form (decided at trace time, nothing computed)."""
    one = jnp.ones((), x.dtype)
    c = Coefficients(one, one, one, one, one)
    return jax.eval_shape(lambda: model.statistics(c, x)) is not None


def _solver_instance(name: str, model: AbstractDenoiser, x0, kinks=()):
    """diffrax's solver, or ``FusedEuler`` where Euler meets a statistics form."""
    if name == "euler" and has_statistics(model, x0):
        return FusedEuler(kinks=jnp.asarray(kinks, x0.dtype).reshape(-1))
    return SOLVERS[name]()


def _diffeqsolve(fields, x0, lo, hi, t0, t1, solver, controller, max_steps, subs, adjoint):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=x0,
        args=(*fields, lo, hi),
        saveat=diffrax.SaveAt(subs=subs),
        stepsize_controller=controller,
        max_steps=max_steps,
        adjoint=adjoint,
        # no runtime checks (host callbacks: they would keep the compiled solve out of the
        # persistent cache and the final state off its devices); a fixed grid cannot run out
        # of steps, and an adaptive solve's result is checked on the host by `solve`
        throw=False,
    )


class _Grid(diffrax.StepTo):
    """``diffrax.StepTo`` on a grid that is increasing, and starts and ends at t0 and t1, by
    construction: without StepTo's runtime checks, which are host callbacks and would keep the
    compiled solve out of JAX's persistent compilation cache."""

    def wrap(self, direction):
        return type(self)(ts=self.ts * direction)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        if dt0 is not None:
            raise ValueError("dt0 must be None with a grid of steps")
        return self.ts[1], 2


def _diffrax_fixed(fields, x0, grid, last, splits, solver, observe, adjoint):
    """Fixed grid t_0 … t_last, one diffrax solve per piece between kinks of the schedule."""
    inner = [i for i in splits if i < last]
    method = _solver_instance(solver, fields[0], x0, grid[jnp.asarray(inner, int)])
    # FusedEuler evaluates each step at its start, on the step's side of a kink: one solve
    bounds = (0, last) if isinstance(method, FusedEuler) else (0, *inner, last)
    x, pieces = x0, []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ts = grid[a : b + 1]
        subs = [diffrax.SubSaveAt(t1=True)]
        if observe is not None:  # each piece saves its points after its start; the first, all
            subs.append(diffrax.SubSaveAt(ts=ts if a == 0 else ts[1:],
                                          fn=lambda t, y, args: observe(y)))
        sol = _diffeqsolve(
            fields, x, _inside(ts[0], ts[1], a in splits), _inside(ts[-1], ts[-2], b in splits),
            ts[0], ts[-1], method, _Grid(ts=ts), b - a, subs, adjoint,
        )
        x = sol.ys[0][-1]
        if observe is not None:
            pieces.append(sol.ys[1])
    obs = None
    if observe is not None:
        obs = jax.tree.map(lambda *parts: jnp.concatenate(parts), *pieces)
    return x, obs


def _adaptive(fields, x0, save_ts, t_end, solver, rtol, atol, max_steps, observe, adjoint):
    t0, t1 = save_ts[0], save_ts[-1]
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    jumps = [tj for tj in fields[2].jump_times if 0.0 < tj < t_end]
    if jumps:  # diffrax steps to just before each kink and restarts just after it
        controller = diffrax.ClipStepSizeController(controller, jump_ts=jumps)
    subs = [diffrax.SubSaveAt(t1=True)]
    if observe is not None:
        subs.append(diffrax.SubSaveAt(ts=save_ts, fn=lambda t, y, args: observe(y)))
    sol = _diffeqsolve(fields, x0, t0, t1, t0, t1, SOLVERS[solver](), controller, max_steps, subs,
                       adjoint)
    obs = sol.ys[1] if observe is not None else None
    return sol.ys[0][-1], obs, sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful


def _scan(fields, x0, grid, last, splits, solver, observe, checkpoints):
    """Fused Euler/Heun over t_0 … t_last: the same arithmetic as diffrax's tableaus, in blocks
    of steps under ``jax.checkpoint`` (reverse mode stores one state per block).

    For a model with a statistics form (``AbstractDenoiser.statistics``), the loop carries the
    statistics of the current state beside it, and step i computes those of step i + 1 from the
    state it has just written: the compiler fuses that reduction with the update, so an Euler
    step makes two passes over the state (read, write) instead of three.
    """
    model, interp, schedule = fields
    ts = grid[: last + 1]
    is_split = jnp.asarray([i in splits for i in range(last + 1)])
    lo = jnp.where(is_split[:-1], jnp.nextafter(ts[:-1], ts[1:]), ts[:-1])
    hi = jnp.where(is_split[1:], jnp.nextafter(ts[1:], ts[:-1]), ts[1:])

    def coefficients(t):
        return interp.coefficients(schedule, t)

    fused = has_statistics(model, x0)

    def velocity(t, x, stats):
        c = coefficients(t)
        if stats is None:
            return model.velocity(c, x)
        return model.velocity_from_statistics(c, x, stats)

    def statistics(t, x):
        return model.statistics(coefficients(t), x) if fused else None

    def step(carry, i):
        x, stats = carry
        dt = ts[i + 1] - ts[i]
        k0 = velocity(lo[i], x, stats) * dt
        if solver == "euler":
            x = x + k0
        else:
            y = x + k0
            k1 = velocity(hi[i], y, statistics(hi[i], y)) * dt
            x = x + (0.5 * k0 + 0.5 * k1)
        # the statistics where the next step starts, computed in the pass that writes x
        stats = statistics(lo[jnp.minimum(i + 1, last - 1)], x)
        return (x, stats), (None if observe is None else observe(x))

    @jax.checkpoint
    def block(carry, indices):
        return jax.lax.scan(step, carry, indices)

    blocks = math.ceil(math.sqrt(last)) if checkpoints is None else min(checkpoints, last)
    size = math.ceil(last / blocks)
    full, rest = divmod(last, size)
    carry = (x0, statistics(lo[0], x0))
    carry, obs = jax.lax.scan(block, carry, jnp.arange(full * size).reshape(full, size))
    if observe is not None:
        obs = jax.tree.map(lambda a: a.reshape(full * size, *a.shape[2:]), obs)
    if rest:
        carry, obs_rest = block(carry, jnp.arange(full * size, last))
        if observe is not None:
            obs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), obs, obs_rest)
    if observe is not None:
        obs = jax.tree.map(lambda a0, a: jnp.concatenate([a0[None], a]), observe(x0), obs)
    return carry[0], obs
