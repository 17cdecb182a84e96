"""Probability-flow ODE dX/dt = b(t, X) from noise (t = 0) to data (t = 1).

Two interchangeable paths over the same uniform grid t_i = i/N:

* ``method="diffrax"``: any diffrax Runge–Kutta solver on that grid (``diffrax.StepTo``), or an
  adaptive solve with a PID controller (``adaptive=True``);
* ``method="scan"``: a fused ``lax.scan`` loop for Euler and Heun with no solver machinery.

Both return the same numbers up to floating-point rounding. The grid in t is always uniform: the
schedule carries all non-uniformity. A solver is a name of ``SOLVERS`` or a diffrax solver
instance (``diffrax.Tsit5()``). Besides diffrax's Runge–Kutta methods in t, ``SOLVERS`` holds
the samplers in noise level that most practitioners use, ``"sigma_euler"`` (DDIM,
k-diffusion's Euler) and ``"dpmpp_2m"`` (DPM-Solver++(2M)), on both paths (fixed grid only).

This module is the public entry point and checks every argument; each job behind it lives in
a small module of ``noisesched._solve``: the grid and its kinks (``grid``: one-sided evaluation
at a kink of the schedule), the Euler/Heun step (``stepping``), the fused loop and ``FusedEuler``
(``fused``), the diffrax paths (``diffrax_path``), the terminal step (``integrate``), the solver
registry (``solvers``) and the errors of a failed solve (``diagnostics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._solve.diagnostics import (
    MaxStepsReached,
    all_finite,
    first_nonfinite,
    max_steps_error,
    nonfinite_error,
)
from ._solve.fused import FusedEuler
from ._solve.integrate import integrate
from ._solve.options import Observe, Options
from ._solve.pallas_kernel import PALLAS_SOLVERS
from ._solve.problem import Problem, check_problem, has_statistics
from ._solve.row_blocks import auto_row_block, keeps_elementwise
from ._solve.solution import Solution
from ._solve.solvers import (
    ADAPTIVE_SOLVERS,
    NOISE_LEVEL_SOLVERS,
    SCAN_SOLVERS,
    SOLVERS,
    SolverLike,
    canonical,
    registry_name,
)
from ._solve.span import span_applies
from ._typing import IntLike
from ._validation import (
    as_dtype,
    as_int,
    check_bool,
    check_choice,
    check_floating,
    check_key,
    check_positive,
    check_real,
)
from .interpolants import Interpolant
from .models.base import AbstractDenoiser, sample_rows
from .schedules import AbstractSchedule, check_schedule

__all__ = ["Solution", "sample", "solve", "sample_prior", "first_nonfinite", "MaxStepsReached",
           "SOLVERS", "ADAPTIVE_SOLVERS", "NOISE_LEVEL_SOLVERS", "FusedEuler"]

METHODS = ("diffrax", "scan", "pallas")
FINAL_STEPS = ("auto", "euler", "solver")


def sample_prior(
    interp: Interpolant, key: PRNGKeyArray, n: IntLike, dtype: Any = None, *,
    start: IntLike | Int[Array, ""] = 0, schedule: AbstractSchedule | None = None,
) -> Float[Array, "n d"]:
    """X_0 = α(0) z, z ~ N(0, I_d), shape (n, d): rows ``start, …, start + n − 1`` of the batch
    drawn from ``key``, in ``dtype`` (``"float32"``, ``"float64"`` or None: JAX's default
    float). Row i depends only on ``fold_in(key, i)``, so a large batch can be drawn in slices
    that together equal the batch drawn at once.

    α(0) = α0 (``interp.alpha0``) for every schedule from pure noise; pass the ``schedule``
    where it may start at a finite noise level (τ(0) > 0, ``Interpolant.prior_scale``)."""
    n = as_int("n", n, lo=1)
    check_key("key", key)
    if not isinstance(start, jax.Array):
        start = as_int("start", start, lo=0)
    dtype = as_dtype("dtype", dtype)
    if schedule is not None:
        check_schedule(schedule)
    scale = (interp.alpha0 if schedule is None
             else interp.prior_scale(schedule).astype(dtype))

    def one(k):
        return scale * jax.random.normal(k, (interp.d,), dtype=dtype)

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


def _check_solver(solver) -> None:
    """A name of ``SOLVERS`` or a diffrax solver instance."""
    if isinstance(solver, type) and issubclass(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))} or a diffrax "
                         f"solver instance; got the class {solver.__name__} (did you mean "
                         f"diffrax.{solver.__name__}()?)")
    if not isinstance(solver, diffrax.AbstractSolver):
        check_choice("solver", solver, SOLVERS)  # a name, or the error listing the names


def _given(solver: SolverLike) -> str:
    diffrax_class = type(solver).__module__.split(".")[0] == "diffrax"
    return f"diffrax.{solver!r}" if diffrax_class else repr(solver)


def _check_scan_solver(solver: SolverLike) -> None:
    """Euler or Heun, by name or as a default instance (``method="scan"``)."""
    if isinstance(solver, str):
        check_choice("solver (method='scan')", solver, SCAN_SOLVERS)
    elif registry_name(solver) not in SCAN_SOLVERS:
        raise ValueError(f"solver (method='scan') must be one of "
                         f"{', '.join(map(repr, SCAN_SOLVERS))} or a default instance of their "
                         f"classes (diffrax.Euler(), diffrax.Heun(), ...); got {_given(solver)}")


def _check_adaptive_solver(solver: SolverLike) -> None:
    """A solver with an embedded error estimate (``adaptive=True``): a name of
    ``ADAPTIVE_SOLVERS``, an instance of one of their classes, or another instance of
    ``diffrax.AbstractAdaptiveSolver``. An instance of a class of ``SOLVERS`` is checked as its
    name."""
    if isinstance(solver, str):
        check_choice("solver (adaptive)", solver, ADAPTIVE_SOLVERS)
        return
    name = registry_name(solver)
    ok = (name in ADAPTIVE_SOLVERS if name is not None
          else isinstance(solver, diffrax.AbstractAdaptiveSolver))
    if not ok:
        raise ValueError(
            "solver (adaptive) needs an embedded error estimate: one of "
            f"{', '.join(map(repr, ADAPTIVE_SOLVERS))}, or an instance of "
            f"diffrax.AbstractAdaptiveSolver such as diffrax.Tsit5(); got {_given(solver)}")


def _check_options(*, solver, method, adaptive, rtol, atol, final_step, terminal_dt) -> None:
    _check_solver(solver)
    check_choice("method", method, METHODS)
    check_choice("final_step", final_step, FINAL_STEPS)
    check_bool("adaptive", adaptive)
    if method == "scan":
        _check_scan_solver(solver)
    if method == "pallas" and registry_name(solver) not in PALLAS_SOLVERS:
        raise ValueError(f"solver (method='pallas') must be one of "
                         f"{', '.join(map(repr, PALLAS_SOLVERS))}; got {_given(solver)}")
    if adaptive:
        if method != "diffrax":
            raise ValueError(f"adaptive=True needs method='diffrax'; got method={method!r}")
        _check_adaptive_solver(solver)
        check_positive("rtol", rtol)
        check_positive("atol", atol)
    check_real("terminal_dt", terminal_dt, 0.0, 1.0)
    if registry_name(solver) in NOISE_LEVEL_SOLVERS and final_step == "euler":
        raise ValueError(f"final_step='euler' does not apply to solver {solver!r}: it steps in "
                         "noise level and never evaluates the denoiser at t = 1; use 'auto'")


def _resolve_row_block(row_block, model: AbstractDenoiser, x0: Array, *, adaptive: bool,
                       observe, method: str) -> int | None:
    """Rows per block of the solve (``solve``'s ``row_block``), checked."""
    if row_block is None:
        return None
    if isinstance(row_block, str) and row_block == "auto":
        if adaptive or observe is not None or method == "pallas":  # the kernel picks its own
            return None
        if not keeps_elementwise(model, x0):  # measured: blocks pay only for what they keep
            return None
        platform = (jax.default_backend() if isinstance(x0, jax.core.Tracer)
                    else next(iter(x0.devices())).platform)
        return auto_row_block(x0.shape[0], x0.shape[1], x0.dtype, platform)
    if isinstance(row_block, bool) or not isinstance(row_block, int | np.integer) or row_block < 1:
        raise ValueError(f"row_block must be an int >= 1, 'auto' or None; got {row_block!r}")
    if adaptive or observe is not None:
        raise ValueError("row_block applies to fixed-grid solves without observe (an adaptive "
                         "solve's steps depend on the whole batch, and observations are of "
                         "the whole state): pass row_block=None or 'auto'")
    return int(row_block)


def _resolve_span(span, model: AbstractDenoiser, x0: Array, *, solver, method: str,
                  adaptive: bool, observe, row_block) -> bool:
    """Whether the solve runs in span form (``solve``'s ``span``), checked. ``"auto"``: on the
    default path only (``method="diffrax"``, ``row_block="auto"``); a loop asked for by name
    (``method="scan"``, an explicit ``row_block``) steps the state."""
    if isinstance(span, str) and span == "auto":
        default_path = method == "diffrax" and isinstance(row_block, str) and row_block == "auto"
        return default_path and span_applies(model, x0, solver=solver, method=method,
                                             adaptive=adaptive, observe=observe)
    if not isinstance(span, bool):
        raise ValueError(f"span must be 'auto', True or False; got {span!r}")
    if span and not span_applies(model, x0, solver=solver, method=method, adaptive=adaptive,
                                 observe=observe):
        raise ValueError(
            "span=True needs a fixed-grid Euler or Heun solve (method 'diffrax' or 'scan', not "
            "adaptive) without observe, of a model with a span form (velocity_in_span: the "
            f"exact mixture); {type(model).__name__} with solver={solver!r}, method={method!r}"
            f"{', adaptive' if adaptive else ''}{', observe' if observe is not None else ''} "
            "has none: pass span='auto' or False")
    return span


def _check_states(model: AbstractDenoiser, interp: Interpolant, x0: Array) -> None:
    if x0.ndim != 2 or x0.shape[1] != model.d:
        raise ValueError(f"x0 must have shape (n, d) = (n, {model.d}); got {tuple(x0.shape)}")
    check_floating("x0", x0)
    model.check_resolution(interp, x0.dtype)


def solve(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    x0: Float[Array | np.ndarray, "n d"],
    *,
    steps: IntLike = 100,
    solver: str | diffrax.AbstractSolver = "euler",
    method: str = "diffrax",
    adaptive: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_steps: IntLike = 16_384,
    observe: Observe | str | None = None,
    final_step: str = "auto",
    terminal_dt: float = 1e-3,
    adjoint: diffrax.AbstractAdjoint | None = None,
    checkpoints: IntLike | None = None,
    row_block: IntLike | str | None = "auto",
    span: bool | str = "auto",
    check_finite: bool = True,
) -> Solution:
    """Integrate the probability-flow ODE from X_0 = ``x0`` at t = 0 to t = 1.

    Args:
        model: the data law.
        interp: the interpolant.
        schedule: the schedule τ(t). Outside ``jit``, τ is checked on a grid of times
            (``noisesched.schedules.check_convention``): a warning if it leaves [0, 1],
            decreases or misses τ(1) = 1.
        x0: initial states, shape (n, d) (see ``sample_prior``).
        steps: N, the number of intervals of the uniform grid t_i = i/N (fixed-step solves), or
            of the grid on which ``observe`` is saved (adaptive solves): an integer (Python or
            NumPy).
        solver: one of ``SOLVERS``, or a diffrax solver instance (``diffrax.Tsit5()``; a default
            instance of a class of ``SOLVERS`` gives the numbers of its name, any other is
            passed to diffrax as it is); ``method="scan"`` accepts ``"euler"`` and ``"heun"``
            (or ``diffrax.Euler()``, ``diffrax.Heun()``).
        method: ``"diffrax"``, ``"scan"`` (fused loop, same numbers) or ``"pallas"`` (Euler or
            Heun as one Pallas kernel that keeps each block of ``row_block`` rows on chip for
            all steps, for models with a statistics form, without ``observe``; interpreted off
            a GPU; gradients by recomputing with ``"scan"``).
        adaptive: adaptive step sizes with a PID controller (``rtol``, ``atol``, ``max_steps``);
            needs an embedded solver (``ADAPTIVE_SOLVERS``, or an instance of
            ``diffrax.AbstractAdaptiveSolver`` outside ``SOLVERS``).
        observe: ``None`` (keep only X_1), ``"overlap"`` (``model.overlap``) or a function of the
            (n, d) state returning a pytree; saved on the grid without storing full states.
        final_step: ``"auto"`` (Euler on the last interval iff ``model.singular_at_data``),
            ``"euler"`` or ``"solver"``. The noise-level samplers never evaluate the
            denoiser at t = 1: they take their own last step (``"auto"`` or ``"solver"``).
        terminal_dt: adaptive solves with a final Euler step stop at ``1 − terminal_dt``.
        adjoint: diffrax adjoint (default ``RecursiveCheckpointAdjoint(checkpoints)``).
        checkpoints: how many states reverse-mode differentiation stores. ``method="diffrax"``:
            passed to ``diffrax.RecursiveCheckpointAdjoint`` (``None``: diffrax's O(log N)
            default). ``method="scan"``: the N steps run as ``checkpoints`` blocks, each under
            ``jax.checkpoint`` (``None``: ⌈√N⌉ blocks, memory O(√N) states; ``N``: every state
            kept). Changes memory and time of gradients only, never the numbers.
        row_block: a fixed-grid solve without ``observe`` runs its rows in blocks of at most
            this many, each block through all N steps before the next, so that a block stays
            in cache (``noisesched._solve.row_blocks``); ``None``: every step over the whole
            batch; ``"auto"`` (default): blocks of a quarter of one core's L2 cache per core on
            a CPU for a model that keeps elementwise values across a step in them
            (``statistics_for_blocks``: Curie–Weiss), else none. Changes speed only: each row's
            numbers are those of the unblocked solve up to float rounding of its sums over
            coordinates.
        span: ``"auto"`` (default): a fixed-grid Euler or Heun solve on the default path
            (``method="diffrax"``, ``row_block="auto"``) without ``observe``, of a model whose
            drift keeps the state in span{x_0, u_1 … u_K} (the exact mixture with isotropic
            components, ``AbstractDenoiser.velocity_in_span``), carries the coefficients of the
            state, O(K) numbers per row, and writes the (n, d) state once at the end: two
            passes over the state per solve, not per step (``noisesched._solve.span``); any
            other solve steps the state. ``True``: the same with ``method="scan"`` too (then
            ``row_block`` does not apply), refused where it does not apply; ``False``: step the
            (n, d) state. The numbers are the stepped solve's up to float rounding. On one
            device a row's bits do not depend on the chunk it is solved in (chunks of 16 rows
            or more); split over several devices they may differ from one device's by a few
            ulps (the stepped solve's do not).
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
    # inside jit (traced states) the schedule's values are not checked: that is the caller's
    check_problem(model, interp, schedule, convention=not isinstance(x0, jax.core.Tracer),
                  stacklevel=2)
    x0 = jnp.asarray(x0)
    steps = as_int("steps", steps, lo=1)
    _check_options(solver=solver, method=method, adaptive=adaptive, rtol=rtol,
                   atol=atol, final_step=final_step, terminal_dt=terminal_dt)
    _check_states(model, interp, x0)
    if method == "pallas":
        if observe is not None:
            raise ValueError("method='pallas' keeps only X_1 (observe=None); use method='scan' "
                             "to observe the trajectory")
        if not has_statistics(model, x0):
            raise ValueError(f"method='pallas' needs a model with a statistics form (the exact "
                             f"mixture, Curie–Weiss); {type(model).__name__} has "
                             "none: use method='scan' or 'diffrax'")
    max_steps = as_int("max_steps", max_steps, lo=1)
    check_bool("check_finite", check_finite)
    if checkpoints is not None:
        checkpoints = as_int("checkpoints", checkpoints, lo=1)
        if adjoint is not None and method == "diffrax":
            raise ValueError("give checkpoints or adjoint, not both (checkpoints sets "
                             "adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints))")
    options = Options(
        steps=steps,
        span=_resolve_span(span, model, x0, solver=solver, method=method, adaptive=adaptive,
                           observe=observe, row_block=row_block),
        row_block=_resolve_row_block(row_block, model, x0, adaptive=adaptive, observe=observe,
                                     method=method),
        solver=canonical(solver),
        method=method,
        adaptive=adaptive,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        final_euler=registry_name(solver) not in NOISE_LEVEL_SOLVERS and (
            final_step == "euler" or (final_step == "auto" and model.singular_at_data)),
        terminal_dt=terminal_dt,
        checkpoints=checkpoints,
        observe=_resolve_observe(model, observe),
        adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints) if adjoint is None else adjoint,
    )
    sol = integrate(Problem(model, interp, schedule), x0, options)
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
    n: IntLike,
    steps: IntLike = 100,
    solver: str | diffrax.AbstractSolver = "euler",
    *,
    dtype: Any = None,
    devices: int | Sequence[jax.Device] | None = None,
    shard: str | None = None,
    **options: Any,
) -> Float[Array, "n d"]:
    """Draw ``n`` samples X_1 of shape (n, d): prior noise from ``key``, then ``solve``.

    ``dtype``: of the prior noise and so of the whole solve, ``"float32"`` or ``"float64"``
    (float64 needs ``jax.enable_x64``); None: JAX's default float. ``options`` are passed to
    ``solve``. The same key and arguments give the same samples.

    Several devices: with ``devices`` or ``shard`` given, the batch is drawn and solved as one
    chunk of ``noisesched.streaming.sample_chunks`` over ``devices`` (``None``: all visible),
    sharded by ``shard``: ``"rows"`` (the default once ``devices`` is given) or
    ``"coordinates"`` (every device holds d/k coordinates of each row, for a d too large for one
    device; d must be divisible by the device count k). The result is a sharded array; its rows
    are the unsharded rows (``"coordinates"``: up to the float rounding of sums over
    coordinates). ``observe`` is then not available.
    """
    n = as_int("n", n, lo=1)
    check_key("key", key)
    check_problem(model, interp, schedule, convention=False)  # solve checks the values
    steps = as_int("steps", steps, lo=1)
    dtype = as_dtype("dtype", dtype)
    if devices is not None or shard is not None:
        from .streaming import sample_chunks  # streaming builds on this module

        chunk = next(sample_chunks(model, interp, schedule, key, n, steps=steps, solver=solver,
                                   chunk_size=n, devices=devices, shard=shard or "rows",
                                   dtype=dtype, **options))
        return chunk.x
    x0 = sample_prior(interp, key, n, dtype, schedule=schedule)
    return solve(model, interp, schedule, x0, steps=steps, solver=solver, **options).x
