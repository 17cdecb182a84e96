"""The uniform grid t_i = i/N, and one-sided evaluation at the kinks of the schedule.

The grid in t is always uniform: the schedule carries all non-uniformity.

Kinks. The dilated schedules have a kink at t = ½ (``AbstractSchedule.jump_times``). Where a kink
falls on the grid (N even), every stage of a step evaluates the drift on the step's own side of it
(one ulp inside), as diffrax does for ``jump_ts``; a higher-order method then keeps its order.
``one_sided`` is that rule, and every path applies it through it: the fused loop and
``FusedEuler`` (through ``Step``), the diffrax pieces between kinks (by clamping to the ends of
``Step``), the final Euler step and ``noisesched.theory.reduced_solve``. Adaptive solves pass the
kinks to ``diffrax.ClipStepSizeController`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..schedules import AbstractSchedule

Time = Float[Array, ""]
#: Whether a time (or each of an array of times) is a kink.
OnKink = bool | Bool[Array, "*times"]


def kink_points(schedule: AbstractSchedule, steps: int) -> tuple[int, ...]:
    """Indices 0 < i < N of grid points t_i = i/N that fall on a kink of the schedule."""
    out = set()
    for tj in schedule.jump_times:
        i = round(tj * steps)
        if 0 < i < steps and abs(i / steps - tj) < 1e-12:
            out.add(i)
    return tuple(sorted(out))


def on_kink(t: Time, kinks: Sequence[float] | Float[Array, " J"]) -> Bool[Array, ""]:
    """Whether the (possibly traced) time ``t`` is one of ``kinks`` (numbers, such as
    ``schedule.jump_times``, or an array of times)."""
    if isinstance(kinks, jax.Array):
        return jnp.any(t == kinks)
    out = jnp.zeros((), bool)
    for tj in kinks:
        out = out | (t == tj)
    return out


def one_sided(t: Float[Array, "*times"], towards: ArrayLike, kink: OnKink
              ) -> Float[Array, "*times"]:
    """``t``, moved one ulp towards ``towards`` where ``kink`` (t lies on a kink): the time at
    which a stage evaluates the drift at an end of its step, on the step's own side."""
    if isinstance(kink, bool):
        return jnp.nextafter(t, towards) if kink else t
    return jnp.where(kink, jnp.nextafter(t, towards), t)


class Step(eqx.Module):
    """One step [t0, t1] of a solve and where its stages evaluate the drift.

    Attributes:
        t0, t1: the ends of the step (t0 < t1).
        start: t0, or one ulp above it if t0 is a kink of the schedule.
        end: t1, or one ulp below it if t1 is a kink of the schedule.
    """

    t0: Time
    t1: Time
    start: Time
    end: Time

    @classmethod
    def between(cls, t0: Time, t1: Time, kink0: OnKink = False, kink1: OnKink = False) -> Step:
        """The step from ``t0`` to ``t1``; ``kink0``, ``kink1``: whether each end is a kink."""
        return cls(t0=t0, t1=t1, start=one_sided(t0, t1, kink0), end=one_sided(t1, t0, kink1))

    @property
    def dt(self) -> Time:
        return self.t1 - self.t0


class StepTable(eqx.Module):
    """Every step of a grid at once, for a loop over traced step indices: the points and the
    one-sided ``start`` and ``end`` of each step (see ``Step``), computed before the loop."""

    ts: Float[Array, " points"]
    start: Float[Array, " steps"]
    end: Float[Array, " steps"]

    def at(self, i: Int[Array, ""]) -> Step:
        """Step ``i`` (traced), from t_i to t_{i+1}."""
        return Step(t0=self.ts[i], t1=self.ts[i + 1], start=self.start[i], end=self.end[i])


class Grid(eqx.Module):
    """The points t_0 < … < t_M of a fixed-step solve, and which of them are kinks.

    Attributes:
        ts: the points, shape (M + 1,).
        kinks: indices i of the points t_i that are kinks of the schedule.
    """

    ts: Float[Array, " points"]
    kinks: tuple[int, ...] = eqx.field(static=True)

    @classmethod
    def uniform(cls, schedule: AbstractSchedule, steps: int, dtype: Any) -> Grid:
        """t_i = i/N, i = 0 … N (N = ``steps``), with the kinks of ``schedule`` on it."""
        return cls(ts=jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype),
                   kinks=kink_points(schedule, steps))

    @property
    def steps(self) -> int:
        """M, the number of steps."""
        return self.ts.shape[0] - 1

    def head(self, last: int) -> Grid:
        """The grid t_0 … t_last (its end a kink if t_last is one)."""
        return Grid(ts=self.ts[: last + 1], kinks=tuple(i for i in self.kinks if i <= last))

    def inner_kinks(self) -> tuple[int, ...]:
        """The kinks strictly before the end of the grid."""
        return tuple(i for i in self.kinks if i < self.steps)

    def step(self, i: int) -> Step:
        """Step i, from t_i to t_{i+1}."""
        return Step.between(self.ts[i], self.ts[i + 1], i in self.kinks, i + 1 in self.kinks)

    def table(self) -> StepTable:
        """Every step of the grid at once; step i is ``table().at(i)``."""
        ts = self.ts
        kink = jnp.asarray([i in self.kinks for i in range(self.steps + 1)])
        return StepTable(ts=ts, start=one_sided(ts[:-1], ts[1:], kink[:-1]),
                         end=one_sided(ts[1:], ts[:-1], kink[1:]))
