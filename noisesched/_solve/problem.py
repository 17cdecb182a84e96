"""What a solve integrates: the probability-flow ODE of a data law under an interpolant and a
schedule, dX/dt = b(t, X), from noise (t = 0) to data (t = 1)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._validation import describe
from ..interpolants import Coefficients, Interpolant
from ..models.base import AbstractDenoiser
from ..schedules import AbstractSchedule, check_convention, check_schedule

Batch = Float[Array, "n d"]


def check_problem(model, interp, schedule, *, convention: bool = True,
                  stacklevel: int = 2) -> None:
    """The three parts of a problem, before any array work: a ``TypeError`` naming the
    parameter, what was given and what is expected for a part of the wrong type; a
    ``ValueError`` if the interpolant's d is not the model's. ``convention``: also check the
    schedule's values (``noisesched.schedules.check_convention``: a warning for a schedule off
    the convention; nothing for a traced one)."""
    if not isinstance(model, AbstractDenoiser):
        raise TypeError("model must be a noisesched.AbstractDenoiser (a data law with its "
                        "denoiser), such as noisesched.GaussianMixture.two_modes(d); got "
                        f"{describe(model)}")
    if not isinstance(interp, Interpolant):
        raise TypeError("interp must be a noisesched.Interpolant, such as "
                        f"noisesched.Interpolant('vp', 'linear', d); got {describe(interp)}")
    check_schedule(schedule)
    if interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    if convention:
        check_convention(schedule, stacklevel=stacklevel + 1)


class Problem(eqx.Module):
    """The probability-flow ODE of ``model`` under ``interp`` and ``schedule``."""

    model: AbstractDenoiser
    interp: Interpolant
    schedule: AbstractSchedule

    def coefficients(self, t: ArrayLike) -> Coefficients:
        """α, β and their derivatives at time ``t``."""
        return self.interp.coefficients(self.schedule, t)

    def drift(self, t: ArrayLike, x: Batch) -> Batch:
        """b(t, x) for states ``x`` of shape (n, d)."""
        return self.model.drift(self.interp, self.schedule, t, x)


class Piece(eqx.Module):
    """A problem on a piece [lo, hi] of the time axis, as diffrax solves it (``args``): every
    evaluation time is clamped to [lo, hi], the piece's ends moved one ulp inside where they are
    kinks of the schedule (``Step.start``, ``Step.end``), so a stage of a step that ends on a kink
    evaluates the drift on the step's own side of it."""

    problem: Problem
    lo: Float[Array, ""]
    hi: Float[Array, ""]

    def clamp(self, t: ArrayLike) -> Array:
        return jnp.clip(t, self.lo, self.hi)

    def coefficients(self, t: ArrayLike) -> Coefficients:
        return self.problem.coefficients(self.clamp(t))

    def drift(self, t: ArrayLike, x: Batch) -> Batch:
        return self.problem.drift(self.clamp(t), x)


def has_statistics(model: AbstractDenoiser, x: Batch | jax.ShapeDtypeStruct) -> bool:
    """Whether ``model`` has a statistics form (decided at trace time, nothing computed)."""
    one = jnp.ones((), x.dtype)
    c = Coefficients(one, one, one, one, one)
    return jax.eval_shape(lambda x: model.statistics(c, x), x) is not None


def has_velocity_statistics(model: AbstractDenoiser, x: Batch | jax.ShapeDtypeStruct) -> bool:
    """Whether ``model``'s statistics are linear, with ``velocity_statistics`` (decided at trace
    time, nothing computed)."""
    one = jnp.ones((), x.dtype)
    c = Coefficients(one, one, one, one, one)
    if not has_statistics(model, x):
        return False
    return jax.eval_shape(
        lambda x: model.velocity_statistics(c, model.statistics(c, x)), x) is not None
