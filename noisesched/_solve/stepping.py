"""One step of Euler's method or Heun's, the kernel of every fixed-grid Euler/Heun solve here.

Euler (order 1) evaluates the velocity once, at the start of the step; Heun (order 2, the
trapezoidal rule with an Euler predictor) also at its end, on the predicted state. The times of
those evaluations are ``Step.start`` and ``Step.end``: the ends of the step moved one ulp inside
it where they are kinks of the schedule (see ``grid``). The arithmetic is that of diffrax's
tableaus (k = v·dt, y1 = y0 + k0 or y0 + (½k0 + ½k1)), so a fixed-grid solve gives diffrax's
numbers. The state is any pytree, and the velocity any function of (t, state) returning a pytree
of its structure: the (n, d) states of the fused loop, ``FusedEuler``, the final Euler step of
``solve``, and the 2-D reduction (M, y) of ``noisesched.theory.reduced_solve``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree

from .grid import Step

#: v(t, y): the velocity at time t of the state y, a pytree of the structure of y.
Velocity = Callable[[Float[Array, ""], PyTree], PyTree]


def _scaled(v: PyTree, dt: Float[Array, ""]) -> PyTree:
    return jax.tree.map(lambda a: a * dt, v)


class AbstractStep(eqx.Module):
    """A one-step method: ``step_method(velocity, step, y0, v0) -> y1``."""

    order: ClassVar[int]

    @abc.abstractmethod
    def __call__(self, velocity: Velocity, step: Step, y0: PyTree, v0: PyTree | None = None
                 ) -> PyTree:
        """The state at ``step.t1`` from ``y0`` at ``step.t0``. ``v0``: the velocity at
        (``step.start``, ``y0``) if the caller has it already (then it is not evaluated)."""


class EulerStep(AbstractStep):
    """Euler's method, y1 = y0 + v(start, y0)·dt."""

    order: ClassVar[int] = 1

    def __call__(self, velocity: Velocity, step: Step, y0: PyTree, v0: PyTree | None = None
                 ) -> PyTree:
        if v0 is None:
            v0 = velocity(step.start, y0)
        return jax.tree.map(lambda y, k: y + k, y0, _scaled(v0, step.dt))


class HeunStep(AbstractStep):
    """Heun's method: k0 = v(start, y0)·dt, k1 = v(end, y0 + k0)·dt, y1 = y0 + (½k0 + ½k1)."""

    order: ClassVar[int] = 2

    def __call__(self, velocity: Velocity, step: Step, y0: PyTree, v0: PyTree | None = None
                 ) -> PyTree:
        dt = step.dt
        if v0 is None:
            v0 = velocity(step.start, y0)
        k0 = _scaled(v0, dt)
        k1 = _scaled(velocity(step.end, jax.tree.map(lambda y, k: y + k, y0, k0)), dt)
        return jax.tree.map(lambda y, a, b: y + (0.5 * a + 0.5 * b), y0, k0, k1)


#: The step methods by solver name.
STEP_METHODS: dict[str, AbstractStep] = {"euler": EulerStep(), "heun": HeunStep()}
