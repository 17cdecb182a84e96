"""Stochastic interpolants x_t = α(t) z + β(t) x1 built on a schedule τ(t).

β = τ always. The shape fixes α: ``linear`` α = α0 (1 − τ), ``trig`` α = α0 √(1 − τ²). The kind
fixes the base scale α0: ``vp`` (variance preserving) α0 = 1, ``ve`` (variance exploding) α0 = √d.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._validation import check_choice, check_int
from .schedules import AbstractSchedule, check_schedule, tau_of_noise_ratio

__all__ = ["Interpolant", "Coefficients", "KINDS", "SHAPES"]

KINDS = ("vp", "ve")
SHAPES = ("linear", "trig")

Scalar = Float[Array, ""]
TimeArray = Float[Array, "*t"]


class Coefficients(NamedTuple):
    """Interpolant coefficients at a time t: scalars, or arrays of the shape of ``t`` for an
    array of times.

    ``alpha_sq`` and ``alpha_dalpha`` = α α̇ = ½ d(α²)/dt are kept beside α and α̇ because they stay
    finite where α̇ does not (the trig shape has α̇ = −∞ at t = 1); drifts are written with them.
    """

    alpha: TimeArray
    beta: TimeArray
    dbeta: TimeArray
    alpha_sq: TimeArray
    alpha_dalpha: TimeArray

    @property
    def dalpha(self) -> TimeArray:
        """α̇ = (α α̇)/α; infinite at t = 1 for the trig shape."""
        return self.alpha_dalpha / self.alpha


class Interpolant(eqx.Module):
    """x_t = α(t) z + β(t) x1 with z ~ N(0, I_d); t = 0 is noise, t = 1 is data.

    Attributes:
        kind: ``"vp"`` (α0 = 1) or ``"ve"`` (α0 = √d).
        shape: ``"linear"`` (α = α0(1 − τ)) or ``"trig"`` (α = α0 √(1 − τ²)).
        d: the data dimension (sets α0 for VE).
    """

    kind: str = eqx.field(static=True)
    shape: str = eqx.field(static=True)
    d: int = eqx.field(static=True)

    def __check_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_choice("shape", self.shape, SHAPES)
        check_int("d", self.d, lo=1)

    @property
    def alpha0(self) -> float:
        """α(0): 1 for VP, √d for VE."""
        return 1.0 if self.kind == "vp" else math.sqrt(self.d)

    def alpha_sq(self, tau: ArrayLike, complement: ArrayLike) -> Array:
        """α² from τ and 1 − τ (given separately, see ``AbstractSchedule.complement``)."""
        u = jnp.asarray(complement)
        if self.shape == "linear":
            return self.alpha0**2 * u**2
        return self.alpha0**2 * u * (1.0 + jnp.asarray(tau))  # 1 − τ² = (1 − τ)(1 + τ)

    def alpha(self, tau: ArrayLike, complement: ArrayLike) -> Array:
        """α from τ and 1 − τ."""
        u = jnp.asarray(complement)
        if self.shape == "linear":
            return self.alpha0 * u
        return self.alpha0 * jnp.sqrt(jnp.maximum(u * (1.0 + jnp.asarray(tau)), 0.0))

    def alpha_of_tau(self, tau: ArrayLike) -> Array:
        """α as a function of τ alone (loses relative precision as τ → 1; see ``alpha``)."""
        tau = jnp.asarray(tau)
        return self.alpha(tau, 1.0 - tau)

    def tau_of_noise_ratio(self, sigma: ArrayLike) -> Array:
        """The τ at which α/β = σ (σ ≥ 0, decreasing in σ)."""
        return tau_of_noise_ratio(sigma, self.alpha0, self.shape)[0]

    def coefficients(self, schedule: AbstractSchedule, t: ArrayLike) -> Coefficients:
        """α, β, β̇, α², α α̇ (and α̇ as a property) at scalar ``t``; derivatives by ``jax.jvp``."""
        check_schedule(schedule)  # every drift, denoiser and solve asks for coefficients here
        t = jnp.asarray(t)

        def curves(s):
            tau, comp = schedule(s), schedule.complement(s)
            return tau, comp, self.alpha_sq(tau, comp)

        (tau, comp, a2), (dtau, _, da2) = jax.jvp(curves, (t,), (jnp.ones_like(t),))
        return Coefficients(
            alpha=self.alpha(tau, comp), beta=tau, dbeta=dtau, alpha_sq=a2, alpha_dalpha=0.5 * da2
        )

    def prior_scale(self, schedule: AbstractSchedule) -> Array:
        """α(0), the scale of the prior X_0 = α(0) z: α0 for a schedule from pure noise
        (τ(0) = 0), less for one that starts at a finite noise level (τ(0) > 0)."""
        check_schedule(schedule)
        t0 = jnp.zeros((), jnp.result_type(float))
        return self.alpha(schedule(t0), schedule.complement(t0))

    def noise_ratio(self, schedule: AbstractSchedule, t: ArrayLike) -> Array:
        """σ(t) = α/β, the noise level of score-based samplers (∞ at t = 0)."""
        check_schedule(schedule)
        t = jnp.asarray(t)
        tau = schedule(t)
        return self.alpha(tau, schedule.complement(t)) / tau
