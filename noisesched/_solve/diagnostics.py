"""What ``solve`` says when a solve fails: an adaptive solve that ran out of steps, and final
states that hold nan or inf, with where they first appeared."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ..interpolants import Interpolant
from ..models.base import AbstractDenoiser
from ..schedules import AbstractSchedule
from .solvers import SCAN_SOLVERS, registry_name


class MaxStepsReached(RuntimeError):
    """An adaptive solve took ``max_steps`` steps without reaching t = 1."""


def max_steps_error(max_steps: int, rtol: float, atol: float) -> MaxStepsReached:
    return MaxStepsReached(
        f"the adaptive solve took max_steps = {max_steps} steps without reaching t = 1; raise "
        f"max_steps, loosen rtol = {rtol:g} / atol = {atol:g}, or use the fixed grid "
        "(adaptive = false, steps = N)")


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
    from ..sampling import solve  # the public entry point, which imports this module

    if (not options.get("adaptive")
            and registry_name(options.get("solver", "euler")) in SCAN_SOLVERS):
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
        "(final_step='euler'; in a config, solver.final_step), or dtype float64")


@jax.jit
def all_finite(x: Array) -> Bool[Array, ""]:
    """Whether every entry of ``x`` is finite (one fused reduction on the device)."""
    return jnp.all(jnp.isfinite(x))
