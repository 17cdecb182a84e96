"""The contract every data model fulfils: exact samples, denoiser, drift and score."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validation import check_int
from ..interpolants import Coefficients, Interpolant
from ..schedules import AbstractSchedule

Batch = Float[Array, "*batch d"]


class AbstractModel(eqx.Module):
    """A data law ρ1 on R^d with an exact denoiser η(t, x) = E[x1 | x_t = x].

    Subclasses implement ``sample_one``, ``denoise`` and ``overlap``; they may
    override ``velocity`` with a closed form that is stabler than the generic one.
    ``x`` is a batch of shape ``(..., d)``: every method acts row-wise.
    """

    #: True when the drift is unbounded as t → 1 (α → 0) away from the data's support, as for
    #: discrete data. Fixed-grid solvers then take their last step with Euler, which never
    #: evaluates the drift at t = 1.
    singular_at_data: ClassVar[bool] = False

    d: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        """One exact sample of ρ1."""

    @abc.abstractmethod
    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        """η = E[x1 | x_t = x] given the coefficients at t."""

    @abc.abstractmethod
    def overlap(self, x: Batch) -> Float[Array, "*batch q"]:
        """Low-dimensional summary tracked along trajectories (GM: μ_k·x/|μ_k|²; CW: mean x_i)."""

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        """b = E[α̇ z + β̇ x1 | x_t = x] = α α̇ (x − β η)/α² + β̇ η."""
        stats = self.statistics(c, x)
        if stats is not None:
            return self.velocity_from_statistics(c, x, stats)
        return velocity_from_denoiser(c, x, self.denoise(c, x))

    def statistics(self, c: Coefficients, x: Batch) -> Float[Array, "*batch q"] | None:
        """The sums over coordinates that the drift needs, shape (..., q), or None.

        A model whose drift at x is an elementwise function of x and of a few sums over its
        coordinates (GM: μ_k·x; CW: the phase logit) returns them here and implements
        ``velocity_from_statistics``. The fused sampler then computes the sums of step i + 1
        in the same pass over the state as the update of step i, so an Euler step reads and
        writes the state once. None (the default): no such form.
        """
        return None

    def velocity_from_statistics(self, c: Coefficients, x: Batch,
                                 stats: Float[Array, "*batch q"]) -> Batch:
        """The drift given ``stats = self.statistics(c, x)`` (elementwise in x)."""
        raise NotImplementedError(f"{type(self).__name__} has no statistics form")

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """``n`` exact samples. Row i depends only on ``fold_in(key, i)``, so any slice of rows
        can be regenerated alone (chunking gives the same rows)."""
        check_int("n", n, lo=1)
        return sample_rows(self.sample_one, key, 0, n)

    def denoiser(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
                 ) -> Batch:
        """E[x1 | x_t = x] at time ``t`` (scalar) for a batch ``x`` of shape (..., d)."""
        return self.denoise(interp.coefficients(schedule, t), x)

    def drift(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
              ) -> Batch:
        """The probability-flow drift b(t, x) of shape (..., d)."""
        return self.velocity(interp.coefficients(schedule, t), x)

    def score(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
              ) -> Batch:
        """∇ log ρ_t(x) = (β η − x)/α² (undefined at t = 1)."""
        c = interp.coefficients(schedule, t)
        return (c.beta * self.denoise(c, x) - x) / c.alpha_sq


def velocity_from_denoiser(c: Coefficients, x: Batch, eta: Batch) -> Batch:
    """b = α α̇ (x − β η)/α² + β̇ η from the denoiser's output η."""
    return c.alpha_dalpha * (x - c.beta * eta) / c.alpha_sq + c.dbeta * eta


def sample_rows(sample_one, key: PRNGKeyArray, start: int | Array, count: int) -> Array:
    """Rows ``start, …, start + count − 1`` of a batch whose row i is
    ``sample_one(fold_in(key, i))``; ``start`` may be traced (one compilation for every slice)."""
    rows = start + jnp.arange(count)
    return jax.vmap(lambda i: sample_one(jax.random.fold_in(key, i)))(rows)
