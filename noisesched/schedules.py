"""Noise schedules τ: [0, 1] → [0, 1].

A schedule is a frozen ``eqx.Module`` called on a scalar time ``t`` (t = 0 noise, t = 1 data) that
returns τ(t), monotone, with τ(0) = 0 and τ(1) = 1. The interpolant turns τ into the coefficients
β = τ and α = α0 (1 − τ) (linear) or α0 √(1 − τ²) (trig); see ``noisesched.Interpolant``.
Derivatives are never written by hand: ``value_and_derivative`` uses ``jax.jvp``.

Built-in families (spec §4, with κ = k / √d):

| name            | τ(t), t < ½     | τ(t), t ≥ ½            |
|-----------------|-----------------|------------------------|
| constant        | t               | t                      |
| vp_dilated      | 2κ t            | κ + (1 − κ)(2t − 1)    |
| ve_dilated      | 2t (1 − κ)      | 1 − κ + κ (2t − 1)     |
| ve_dilated_trig | 2t √(1 − κ²)    | √(1 − 4κ²(1 − t)²)     |

and families of the diffusion literature, defined through the noise-to-signal ratio σ = α/β of a
given interpolant: ``cosine`` (Nichol & Dhariwal 2021), and the laws of noise levels
(``AbstractNoiseLevels``) ``karras`` (EDM ρ-schedule, Karras et al. 2022), ``log_snr_uniform``
(DPM-Solver's default, Lu et al. 2022) and ``arctan_levels`` (the "KL-optimal" arctangent law).
"""

from __future__ import annotations

import abc
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._typing import ArrayOrSequence, RealLike
from ._validation import (
    check_at_run_time,
    check_choice,
    check_int,
    check_positive,
    check_real,
    describe,
    is_traced,
)


@runtime_checkable
class InterpolantLike(Protocol):
    """What a schedule maker needs of an interpolant (``noisesched.Interpolant`` has it): the
    dimension, the kind, the shape and the base scale α0. Schedules defined through the
    noise-to-signal ratio σ = α/β need α0 and the shape; the dilated ones need d."""

    @property
    def d(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def shape(self) -> str: ...

    @property
    def alpha0(self) -> float: ...

Scalar = Float[Array, ""]

__all__ = [
    "AbstractSchedule",
    "Constant",
    "VPDilated",
    "VEDilated",
    "VEDilatedTrig",
    "Cosine",
    "Karras",
    "AbstractNoiseLevels",
    "LogSNRUniform",
    "ArctanLevels",
    "KnotSchedule",
    "constant",
    "vp_dilated",
    "ve_dilated",
    "ve_dilated_trig",
    "cosine",
    "karras",
    "log_snr_uniform",
    "arctan_levels",
    "make",
    "value_and_derivative",
    "tau_of_noise_ratio",
    "ScheduleKindWarning",
    "ScheduleConventionWarning",
    "check_schedule",
    "check_convention",
    "NAMES",
    "REGISTRY",
]


class AbstractSchedule(eqx.Module):
    """A monotone map τ: [0, 1] → [0, 1] with τ(1) = 1, and τ(0) = 0 for a sampler that starts
    from pure noise.

    A schedule may start at τ(0) > 0: a finite largest noise level σ_max = α(0)/β(0), as the
    samplers in use do. The sampler then starts from X_0 = α(0) z (``Interpolant.prior_scale``)
    and ignores the data's share β(0) x1 of x_0: the truncation error of such samplers, which
    vanishes only when σ_max is large compared with the data.

    Subclasses implement ``__call__(t) -> τ`` for a scalar ``t`` with pure ``jax.numpy`` code, so
    that the schedule can be jitted, vmapped and differentiated (in ``t`` and in its parameters).
    """

    @abc.abstractmethod
    def __call__(self, t: ArrayLike) -> Scalar:
        """τ(t) for a scalar time ``t`` in [0, 1]."""

    def complement(self, t: ArrayLike) -> Scalar:
        """1 − τ(t). Near the data end α is proportional to it, so families override this with a
        form free of the cancellation in 1 − τ (which loses all digits once τ ≈ 1 in float32)."""
        return 1.0 - self(t)

    @property
    def jump_times(self) -> tuple[float, ...]:
        """Times in (0, 1) where dτ/dt jumps. Solvers evaluate the drift one-sidedly there, so
        that a step never mixes the two pieces (see ``noisesched.sampling``)."""
        return ()


def tau_of_noise_ratio(sigma: ArrayLike, alpha0: ArrayLike, shape: str
                       ) -> tuple[Array, Array]:
    """(τ, 1 − τ) at which α/β = σ (σ ≥ 0) for an interpolant of base scale α0 and ``shape``,
    the complement free of cancellation: linear α/β = α0 (1 − τ)/τ, trig α/β = α0 √(1 − τ²)/τ."""
    sigma, a0 = jnp.asarray(sigma), jnp.asarray(alpha0)
    if shape == "linear":
        return a0 / (a0 + sigma), sigma / (a0 + sigma)
    root = jnp.sqrt(a0**2 + sigma**2)
    return a0 / root, sigma**2 / (root * (root + a0))


def noise_levels_to_tau(sigmas: ArrayOrSequence, alpha0: float, shape: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(τ, 1 − τ) in float64 at the noise levels ``sigmas`` (σ = ∞ gives τ = 0, σ = 0 gives
    τ = 1), for an interpolant of base scale ``alpha0`` and ``shape``."""
    sigma = np.asarray(sigmas, np.float64)
    finite = np.where(np.isfinite(sigma), sigma, 1.0)
    with jax.enable_x64(True):
        tau, comp = (np.asarray(a, np.float64) for a in tau_of_noise_ratio(
            jnp.asarray(finite, jnp.float64), float(alpha0), shape))
    infinite = np.isinf(sigma)
    return np.where(infinite, 0.0, tau), np.where(infinite, 1.0, comp)


def value_and_derivative(schedule: AbstractSchedule, t: ArrayLike) -> tuple[Scalar, Scalar]:
    """(τ(t), dτ/dt) by forward-mode differentiation."""
    t = jnp.asarray(t)
    return jax.jvp(schedule, (t,), (jnp.ones_like(t),))


def _sqrt_nonneg(x):
    # Clamped so that reverse-mode through an untaken `where` branch stays finite.
    return jnp.sqrt(jnp.maximum(x, 0.0))


def _check_dilation(d, k):
    """κ = k/√d in (0, 1): returns ``k`` (behind a run-time check if it is traced)."""
    check_int("d", d, lo=1)
    return check_real("k", k, 0.0, math.sqrt(d))


class Constant(AbstractSchedule):
    """Constant denoising: τ(t) = t."""

    def __call__(self, t):
        return jnp.asarray(t) * 1.0

    def complement(self, t):
        return 1.0 - jnp.asarray(t)


class VPDilated(AbstractSchedule):
    """Time dilation for variance-preserving interpolants (α0 = 1).

    The first half of the time interval covers τ ∈ [0, κ], κ = k/√d: the speciation window, where
    the mode is chosen. The second half covers τ ∈ [κ, 1], the within-mode window.
    """

    d: int = eqx.field(static=True)
    k: RealLike

    def __post_init__(self):
        self.k = _check_dilation(self.d, self.k)

    @property
    def jump_times(self) -> tuple[float, ...]:
        return (0.5,)

    def __call__(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        return jnp.where(t < 0.5, 2.0 * kappa * t, kappa + (1.0 - kappa) * (2.0 * t - 1.0))

    def complement(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        return jnp.where(t < 0.5, 1.0 - 2.0 * kappa * t, (1.0 - kappa) * (2.0 - 2.0 * t))


class VEDilated(AbstractSchedule):
    """Time dilation for variance-exploding interpolants (α0 = √d), linear shape.

    In α terms the first half runs α from √d down to k (speciation), the second from k to 0
    (within-mode window).
    """

    d: int = eqx.field(static=True)
    k: RealLike

    def __post_init__(self):
        self.k = _check_dilation(self.d, self.k)

    @property
    def jump_times(self) -> tuple[float, ...]:
        return (0.5,)

    def __call__(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        return jnp.where(t < 0.5, 2.0 * t * (1.0 - kappa), 1.0 - kappa + kappa * (2.0 * t - 1.0))

    def complement(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        return jnp.where(t < 0.5, 1.0 - 2.0 * t * (1.0 - kappa), kappa * (2.0 - 2.0 * t))


class VEDilatedTrig(AbstractSchedule):
    """VE dilation for the trig shape: α = 2k(1 − t) on the second half.

    Its α has slope of order d just before t = ½; Euler is unstable on it (the within-mode
    variance grows with d). Kept to show that instability, not as a default.
    """

    d: int = eqx.field(static=True)
    k: RealLike

    def __post_init__(self):
        self.k = _check_dilation(self.d, self.k)

    @property
    def jump_times(self) -> tuple[float, ...]:
        return (0.5,)

    def __call__(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        first = 2.0 * t * math.sqrt(1.0 - kappa**2)
        second = _sqrt_nonneg(1.0 - 4.0 * kappa**2 * (1.0 - t) ** 2)
        return jnp.where(t < 0.5, first, second)

    def complement(self, t):
        t = jnp.asarray(t)
        kappa = self.k / math.sqrt(self.d)
        first = 1.0 - 2.0 * t * math.sqrt(1.0 - kappa**2)
        gap = 4.0 * kappa**2 * (1.0 - t) ** 2  # 1 − √(1 − g) = g / (1 + √(1 − g))
        return jnp.where(t < 0.5, first, gap / (1.0 + _sqrt_nonneg(1.0 - gap)))


class Cosine(AbstractSchedule):
    """Cosine schedule of Nichol & Dhariwal, mapped to τ through the interpolant's σ = α/β.

    In diffusion time s = 1 − t the signal fraction is ᾱ(s) = cos²(θ(s)) / cos²(θ(0)) with
    θ(s) = (s + offset)/(1 + offset) · π/2, and σ² = (1 − ᾱ)/ᾱ. With ``offset = 0`` (default)
    τ is smooth at both ends; ``offset > 0`` (0.008 in the original) makes dτ/dt infinite at
    t = 1 for the linear shape.
    """

    alpha0: RealLike
    shape: str = eqx.field(static=True)
    offset: float = eqx.field(static=True, default=0.0)

    def __post_init__(self):
        self.alpha0 = check_positive("alpha0", self.alpha0)
        check_choice("shape", self.shape, ("linear", "trig"))
        check_real("offset", self.offset, 0.0, 1.0, lo_open=False)

    def _signal_and_noise(self, t):
        t = jnp.asarray(t)
        scale = 0.5 * math.pi / (1.0 + self.offset)
        cos_theta0 = math.cos(self.offset * scale)
        # Angles written so that the ends are exact: signal = 0 at t = 0, noise = 0 at t = 1.
        signal = jnp.sin(scale * t) / cos_theta0  # √ᾱ
        if self.offset == 0.0:
            noise = jnp.sin(scale * (1.0 - t))  # √(1 − ᾱ), smooth at t = 1
        else:  # cos²θ0 − cos²θ = sin(θ + θ0) sin(θ − θ0)
            noise = _sqrt_nonneg(
                jnp.sin(scale * (1.0 - t + 2.0 * self.offset)) * jnp.sin(scale * (1.0 - t))
            ) / cos_theta0
        return self.alpha0 * signal, noise

    def __call__(self, t):
        a0s, noise = self._signal_and_noise(t)
        if self.shape == "linear":
            return a0s / (a0s + noise)
        return a0s / jnp.sqrt(a0s**2 + noise**2)

    def complement(self, t):
        a0s, noise = self._signal_and_noise(t)
        if self.shape == "linear":
            return noise / (a0s + noise)
        r = jnp.sqrt(a0s**2 + noise**2)
        return noise**2 / (r * (r + a0s))


class AbstractNoiseLevels(AbstractSchedule):
    """A schedule given as a law of noise levels σ(t) from ``sigma_max`` (t = 0) down to
    ``sigma_min`` (t = 1), mapped to τ through the interpolant's σ = α/β.

    τ_K(t) solves α/β = σ(t), and the ends are pinned by the affine map
    τ = (τ_K(t) − τ_K(0)) / (τ_K(1) − τ_K(0)): the first step starts from pure noise (σ = ∞)
    and the last one reaches the data (σ = 0), as samplers whose final level is 0 do.
    Subclasses implement ``levels(t)``, the method's σ(t), with the same floating-point
    operations at every t (so that τ(0) = 0 and τ(1) = 1 exactly).
    """

    alpha0: RealLike
    shape: str = eqx.field(static=True)
    sigma_min: RealLike = 0.002
    sigma_max: RealLike = 80.0

    def __post_init__(self):
        self.alpha0 = check_positive("alpha0", self.alpha0)
        check_choice("shape", self.shape, ("linear", "trig"))
        self.sigma_min = check_positive("sigma_min", self.sigma_min)
        if is_traced(self.sigma_min):
            self.sigma_max = check_at_run_time(
                jnp.asarray(self.sigma_max), ~(self.sigma_max > self.sigma_min),
                "sigma_max must be greater than sigma_min; got traced values that are not")
        else:
            self.sigma_max = check_real("sigma_max", self.sigma_max, float(self.sigma_min),
                                        math.inf)

    @abc.abstractmethod
    def levels(self, t: ArrayLike) -> Array:
        """The method's noise level σ(t), σ(0) = σ_max, σ(1) = σ_min, decreasing."""

    def level_gap(self, t: ArrayLike) -> Array:
        """σ(t) − σ_min; families whose difference cancels near t = 1 override it."""
        t = jnp.asarray(t)
        return self.levels(t) - self.levels(jnp.ones_like(t))

    def _tau_gap(self, sigma, sigma1, gap=None):
        """τ(σ1) − τ(σ) for σ ≥ σ1 (``gap`` = σ − σ1 when known without cancellation)."""
        a0 = self.alpha0
        gap = sigma - sigma1 if gap is None else gap
        if self.shape == "linear":
            return a0 * gap / ((a0 + sigma1) * (a0 + sigma))
        r, r1 = jnp.sqrt(a0**2 + sigma**2), jnp.sqrt(a0**2 + sigma1**2)
        return a0 * gap * (sigma + sigma1) / (r * r1 * (r + r1))

    def _levels(self, t):
        t = jnp.asarray(t)
        return self.levels(t), self.levels(jnp.zeros_like(t)), self.levels(jnp.ones_like(t))

    def __call__(self, t):
        sigma, sigma0, sigma1 = self._levels(t)
        return self._tau_gap(sigma0, sigma) / self._tau_gap(sigma0, sigma1)

    def complement(self, t):
        sigma, sigma0, sigma1 = self._levels(t)
        return (self._tau_gap(sigma, sigma1, self.level_gap(t))
                / self._tau_gap(sigma0, sigma1))


class Karras(AbstractNoiseLevels):
    """EDM ρ-schedule of noise levels (Karras et al. 2022), mapped to τ through the
    interpolant's σ = α/β (see ``AbstractNoiseLevels``):
    σ(t) = ((1 − t) σ_max^(1/ρ) + t σ_min^(1/ρ))^ρ, equal steps in σ^(1/ρ).
    """

    rho: RealLike = 7.0

    def __post_init__(self):
        super().__post_init__()
        self.rho = check_positive("rho", self.rho)

    def levels(self, t):
        t = jnp.asarray(t)
        lo = jnp.asarray(self.sigma_max, t.dtype) ** (1.0 / self.rho)
        hi = jnp.asarray(self.sigma_min, t.dtype) ** (1.0 / self.rho)
        return ((1.0 - t) * lo + t * hi) ** self.rho


class LogSNRUniform(AbstractNoiseLevels):
    """Noise levels uniform in log-SNR λ = log(β²/α²) = −2 log σ, DPM-Solver's default
    (Lu et al. 2022): σ(t) = σ_max^(1 − t) σ_min^t, equal steps in log σ (see
    ``AbstractNoiseLevels`` for the map to τ)."""

    def levels(self, t):
        t = jnp.asarray(t)
        log_hi = jnp.log(jnp.asarray(self.sigma_max, t.dtype))
        log_lo = jnp.log(jnp.asarray(self.sigma_min, t.dtype))
        return jnp.exp((1.0 - t) * log_hi + t * log_lo)

    def level_gap(self, t):
        """σ(t) − σ_min = σ_min (exp((1 − t) log(σ_max/σ_min)) − 1), by expm1."""
        t = jnp.asarray(t)
        ratio = jnp.log(jnp.asarray(self.sigma_max, t.dtype) / self.sigma_min)
        return jnp.asarray(self.sigma_min, t.dtype) * jnp.expm1((1.0 - t) * ratio)


class ArctanLevels(AbstractNoiseLevels):
    """The arctangent law of noise levels, known in samplers as the "KL-optimal" schedule:
    σ(t) = tan((1 − t) atan σ_max + t atan σ_min), equal steps in atan σ (see
    ``AbstractNoiseLevels`` for the map to τ). atan σ is the angle of the VP-trig path
    (α, β) = (cos θ, sin θ) seen from the data: equal steps in the angle between the noise and
    the data directions."""

    def levels(self, t):
        t = jnp.asarray(t)
        hi = jnp.arctan(jnp.asarray(self.sigma_max, t.dtype))
        lo = jnp.arctan(jnp.asarray(self.sigma_min, t.dtype))
        return jnp.tan((1.0 - t) * hi + t * lo)


class KnotSchedule(AbstractSchedule):
    """τ piecewise linear in t through knots (i/N, τ_i), i = 0 … N, with τ_N = 1: the
    schedule of an N-step sampler on the uniform grid t_i = i/N, exact at its points.

    Every N-point schedule method (``noisesched.methods``) returns one, built from its noise
    levels σ_0 > σ_1 > … > σ_N = 0 (``from_noise_levels``): σ_0 = ∞ starts from pure noise
    (τ_0 = 0), a finite σ_0 is a truncated start (see ``AbstractSchedule``). τ_i and 1 − τ_i
    are both stored, so that 1 − τ is free of cancellation near the data. The knots are array
    leaves: a method that learns its points (LD3) differentiates through them.

    Attributes:
        tau: τ_0 ≤ … ≤ τ_N = 1, shape (N + 1,).
        rest: 1 − τ_i, shape (N + 1,).
    """

    tau: Float[Array | np.ndarray, " points"]
    rest: Float[Array | np.ndarray, " points"]

    def __init__(self, tau: ArrayLike, rest: ArrayLike | None = None):
        traced = isinstance(tau, jax.core.Tracer) or isinstance(rest, jax.core.Tracer)
        if traced:  # knots that are being differentiated (LD3)
            tau = jnp.asarray(tau)
            rest = 1.0 - tau if rest is None else jnp.asarray(rest, dtype=tau.dtype)
        else:  # float64 on the host: exact in a float64 solve, cast to float32 in others
            tau = np.asarray(tau, np.float64)
            rest = 1.0 - tau if rest is None else np.asarray(rest, np.float64)
        if tau.ndim != 1 or tau.shape[0] < 3 or rest.shape != tau.shape:
            raise ValueError("tau (and rest) must be 1-D arrays of N + 1 >= 3 knot values "
                             f"(N >= 2 steps); got shapes {tau.shape} and {rest.shape}")
        if not traced and not (np.all(np.isfinite(tau)) and tau[0] >= 0.0 and tau[-1] == 1.0
                               and np.all(np.diff(tau) >= 0.0)):
            raise ValueError("tau must be nondecreasing from tau[0] >= 0 to tau[-1] = 1; "
                             f"got {tau.tolist()}")
        self.tau, self.rest = tau, rest

    @classmethod
    def from_noise_levels(cls, interpolant: InterpolantLike, sigmas: ArrayOrSequence
                          ) -> KnotSchedule:
        """The schedule through the noise levels σ_0 > … > σ_N = 0 of ``interpolant`` (its α0
        and shape) at t_i = i/N; σ_0 may be ∞ (pure noise)."""
        sigma = np.asarray(sigmas, np.float64)
        if sigma.ndim != 1 or sigma.shape[0] < 3:
            raise ValueError("sigmas must be a 1-D list of N + 1 >= 3 noise levels "
                             f"(N >= 2 steps); got shape {sigma.shape}")
        if sigma[-1] != 0.0:
            raise ValueError("sigmas must end with 0 (the data: σ_N = 0; append it to a list "
                             f"without the trailing zero); got last level {sigma[-1]!r}")
        if np.any(np.isnan(sigma)) or np.any(np.isinf(sigma[1:])) or not np.all(
                np.diff(sigma) < 0):
            raise ValueError("sigmas must decrease strictly, be finite after the first (which "
                             f"may be inf, pure noise) and end at 0; got {sigma.tolist()}")
        tau, rest = noise_levels_to_tau(sigma, interpolant.alpha0, interpolant.shape)
        tau[-1], rest[-1] = 1.0, 0.0
        return cls(tau, rest)

    @property
    def steps(self) -> int:
        """N, the number of steps the knots were made for."""
        return self.tau.shape[0] - 1

    @property
    def jump_times(self) -> tuple[float, ...]:
        return tuple(i / self.steps for i in range(1, self.steps))

    def _interp(self, t, values):
        t = jnp.asarray(t)
        knots = jnp.linspace(0.0, 1.0, self.steps + 1, dtype=t.dtype)
        return jnp.interp(t, knots, jnp.asarray(values).astype(t.dtype))

    def __call__(self, t):
        return self._interp(t, self.tau)

    def complement(self, t):
        return self._interp(t, self.rest)


def constant() -> Constant:
    """Constant denoising τ(t) = t."""
    return Constant()


def vp_dilated(d: int, k: RealLike = 3.0) -> VPDilated:
    """VP time dilation with κ = k/√d (spec §4). Requires 0 < k < √d."""
    return VPDilated(d=d, k=k)


def ve_dilated(d: int, k: RealLike = 3.0) -> VEDilated:
    """VE time dilation (linear shape) with κ = k/√d (spec §4). Requires 0 < k < √d."""
    return VEDilated(d=d, k=k)


def ve_dilated_trig(d: int, k: RealLike = 3.0) -> VEDilatedTrig:
    """VE time dilation for the trig shape (unstable under Euler; spec §4)."""
    return VEDilatedTrig(d=d, k=k)


def cosine(interpolant: InterpolantLike, offset: float = 0.0) -> Cosine:
    """Cosine schedule expressed for ``interpolant`` (its α0 and shape)."""
    return Cosine(alpha0=interpolant.alpha0, shape=interpolant.shape, offset=offset)


def log_snr_uniform(interpolant: InterpolantLike, sigma_min: RealLike = 0.002,
                    sigma_max: RealLike = 80.0) -> LogSNRUniform:
    """Noise levels uniform in log-SNR (DPM-Solver's default), for ``interpolant``."""
    return LogSNRUniform(alpha0=interpolant.alpha0, shape=interpolant.shape,
                         sigma_min=sigma_min, sigma_max=sigma_max)


def arctan_levels(interpolant: InterpolantLike, sigma_min: RealLike = 0.002,
                  sigma_max: RealLike = 80.0) -> ArctanLevels:
    """The arctangent ("KL-optimal") law of noise levels, for ``interpolant``."""
    return ArctanLevels(alpha0=interpolant.alpha0, shape=interpolant.shape,
                        sigma_min=sigma_min, sigma_max=sigma_max)


def karras(
    interpolant: InterpolantLike,
    sigma_min: RealLike = 0.002,
    sigma_max: RealLike = 80.0,
    rho: RealLike = 7.0,
) -> Karras:
    """EDM ρ-schedule of noise levels expressed for ``interpolant`` (its α0 and shape)."""
    return Karras(
        alpha0=interpolant.alpha0,
        shape=interpolant.shape,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        rho=rho,
    )


class ScheduleKindWarning(UserWarning):
    """A dilated schedule used with the kind of interpolant it was not made for."""


class ScheduleConventionWarning(UserWarning):
    """A schedule whose values break the convention: τ nondecreasing from [0, 1] to [0, 1],
    τ(1) = 1 (``check_convention``)."""


#: The points t = i/(CHECK_POINTS − 1) at which ``check_convention`` evaluates τ.
CHECK_POINTS = 257


def _given(value: Any) -> str:
    """What was passed where a schedule was expected, in a few words."""
    if isinstance(value, str):
        hint = (f"; for a schedule by name use noisesched.schedules.make({value!r}, interp)"
                if value in REGISTRY else "")
        return f"the string {value!r}{hint}"
    if callable(value) and not isinstance(value, eqx.Module):
        name = getattr(value, "__qualname__", type(value).__name__)
        return (f"the function {name} (a schedule is a subclass of AbstractSchedule with "
                "__call__(t) -> τ)")
    return describe(value)


def check_schedule(schedule: Any, name: str = "schedule") -> AbstractSchedule:
    """Check that ``schedule`` is an ``AbstractSchedule`` (``TypeError`` naming ``name``, what
    was given and what is expected) and return it. Cheap: it inspects the type only."""
    if not isinstance(schedule, AbstractSchedule):
        raise TypeError(f"{name} must be a noisesched.schedules.AbstractSchedule, such as "
                        "noisesched.schedules.vp_dilated(d) or noisesched.schedules.make(name, "
                        f"interp); got {_given(schedule)}")
    return schedule


def check_convention(schedule: AbstractSchedule, stacklevel: int = 2) -> None:
    """Warn (``ScheduleConventionWarning``, naming the class and the failing value) if τ, on
    ``CHECK_POINTS`` equally spaced times, leaves [0, 1], decreases, or misses τ(1) = 1, within
    a tolerance of the float rounding; raise ``ValueError`` if it is nan or inf somewhere.

    τ(0) > 0 is allowed: a truncated start at a finite noise level (see ``AbstractSchedule``).
    A schedule with traced leaves (inside ``jit`` or ``grad``) is not checked, so a compiled
    program never evaluates τ on the grid; a concrete one is evaluated once, at trace time.
    """
    if is_traced(schedule):
        return
    dtype = jnp.result_type(float)
    with jax.ensure_compile_time_eval():
        times = jnp.linspace(0.0, 1.0, CHECK_POINTS, dtype=dtype)
        tau = np.asarray(jax.vmap(schedule)(times), np.float64)
    ts = np.asarray(times, np.float64)
    cls = type(schedule).__name__
    bad = ~np.isfinite(tau)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"schedule {cls} gives τ({ts[i]:.4g}) = {tau[i]}; a schedule must be "
                         "finite on [0, 1]")
    tol = 1e-5 if dtype == jnp.float32 else 1e-9
    problems = []
    if abs(tau[-1] - 1.0) > tol:
        problems.append(f"τ(1) = {tau[-1]:.6g}, not 1 (the solve ends at α(1) > 0, not at the "
                        "data)")
    outside = (tau < -tol) | (tau > 1.0 + tol)
    if outside.any():
        i = int(np.argmax(outside))
        problems.append(f"τ({ts[i]:.4g}) = {tau[i]:.6g} is outside [0, 1]")
    steps = np.diff(tau)
    j = int(np.argmin(steps))
    if steps[j] < -tol:
        problems.append(f"τ decreases from τ({ts[j]:.4g}) = {tau[j]:.6g} to "
                        f"τ({ts[j + 1]:.4g}) = {tau[j + 1]:.6g}")
    if problems:
        warnings.warn(f"schedule {cls} breaks the convention τ: [0, 1] → [0, 1] nondecreasing "
                      f"with τ(1) = 1: {'; '.join(problems)}", ScheduleConventionWarning,
                      stacklevel=stacklevel + 1)


#: the kind of interpolant each dilated schedule is made for
MADE_FOR = {"vp_dilated": "vp", "ve_dilated": "ve", "ve_dilated_trig": "ve"}


def warn_if_mismatched(name: str, kind: str, stacklevel: int = 2) -> None:
    """Warn (``ScheduleKindWarning``) if schedule ``name`` is made for the other kind of
    interpolant than ``kind``: it runs, but its dilation is in the wrong window."""
    if MADE_FOR.get(name, kind) != kind:
        warnings.warn(f"schedule {name!r} is made for kind = {MADE_FOR[name]!r} interpolants, "
                      f"not kind = {kind!r}; it runs, but its dilation is not where it should be",
                      ScheduleKindWarning, stacklevel=stacklevel + 1)


def _constant(interpolant: InterpolantLike) -> Constant:
    return constant()


def _vp_dilated(interpolant: InterpolantLike, k: RealLike = 3.0) -> VPDilated:
    return vp_dilated(interpolant.d, k)


def _ve_dilated(interpolant: InterpolantLike, k: RealLike = 3.0) -> VEDilated:
    return ve_dilated(interpolant.d, k)


def _ve_dilated_trig(interpolant: InterpolantLike, k: RealLike = 3.0) -> VEDilatedTrig:
    return ve_dilated_trig(interpolant.d, k)


#: The built-in schedules by name: each maker takes the interpolant (for d, α0 and shape) and
#: the family's options as keywords. Configs and ``make`` find schedules here.
REGISTRY: dict[str, Callable[..., AbstractSchedule]] = {
    "constant": _constant,
    "vp_dilated": _vp_dilated,
    "ve_dilated": _ve_dilated,
    "ve_dilated_trig": _ve_dilated_trig,
    "cosine": cosine,
    "karras": karras,
    "log_snr_uniform": log_snr_uniform,
    "arctan_levels": arctan_levels,
}
NAMES = tuple(REGISTRY)


def make(name: str, interpolant: InterpolantLike, *, k: RealLike = 3.0,
         **options: float) -> AbstractSchedule:
    """Build a built-in schedule by name for ``interpolant`` (which supplies d, α0 and shape).

    ``k`` is used by the dilated families; ``options`` go to ``cosine`` (``offset``) or the
    laws of noise levels (``sigma_min``, ``sigma_max``; ``rho`` for ``karras``).
    """
    check_choice("schedule", name, NAMES)
    check_int("d", interpolant.d, lo=1)
    warn_if_mismatched(name, interpolant.kind)
    maker = REGISTRY[name]
    takes = [key for key in inspect.signature(maker).parameters if key != "interpolant"]
    allowed = sorted(set(takes) - {"k"})
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"schedule option {key!r} is not used by schedule {name!r}"
                + (f"; allowed: {', '.join(allowed)}" if allowed else "")
            )
    kwargs: dict[str, Any] = dict(options)
    if "k" in takes:
        kwargs["k"] = k
    return maker(interpolant, **kwargs)
