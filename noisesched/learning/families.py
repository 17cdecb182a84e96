"""Learnable schedule families: eqx.Modules whose only array leaves are their parameters.

* ``PiecewiseLinear``: τ on K equal pieces, increments through a softmax.
* ``SigmoidSum``: a smooth monotone τ, a normalised mixture of a line and K sigmoids.
* ``NoiseRatioKnots``: piecewise-linear τ whose knot values are written in
  dimension-free coordinates of the noise-to-signal ratio α/β, so a schedule learned at one d
  can be used at another (``NoiseRatioKnots.at``).

Every family keeps τ(0) = 0, τ(1) = 1 and τ nondecreasing for all parameter values, and gives
1 − τ without cancellation (``complement``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from .._typing import ArrayOrSequence
from .._validation import check_int, check_real
from ..interpolants import Interpolant
from ..schedules import AbstractSchedule, tau_of_noise_ratio

__all__ = ["PiecewiseLinear", "SigmoidSum", "NoiseRatioKnots", "FAMILIES"]


def _parameter(name: str, value: ArrayOrSequence, size: int | None = None) -> Array:
    value = jnp.asarray(value, dtype=jnp.result_type(float))
    if value.ndim != 1 or value.shape[0] < 1 or (size is not None and value.shape[0] != size):
        expected = f"{size} entries" if size is not None else "K >= 1 entries"
        raise ValueError(f"{name} must be a 1-D array of {expected}; got shape {value.shape}")
    if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
        raise ValueError(f"{name} must be finite; got nan or inf entries")
    return value


def _knot_times(pieces: int, dtype) -> Array:
    return jnp.linspace(0.0, 1.0, pieces + 1, dtype=dtype)


def _schedule_on_knots(schedule: AbstractSchedule, pieces: int) -> tuple[np.ndarray, np.ndarray]:
    """τ and 1 − τ of ``schedule`` at j/pieces, in float64."""
    check_int("pieces", pieces, lo=1)
    with jax.enable_x64(True):
        knots = _knot_times(pieces, jnp.float64)
        return (np.asarray(jax.vmap(schedule)(knots), np.float64),
                np.asarray(jax.vmap(schedule.complement)(knots), np.float64))


class PiecewiseLinear(AbstractSchedule):
    """Monotone piecewise-linear τ on K equal pieces of [0, 1], ends pinned.

    The increments of τ over the pieces are ``softmax(logits)``: positive and summing to 1, so
    τ(0) = 0, τ(1) = 1 and τ is increasing for every value of the parameters. ``logits`` (K,) is
    the only array leaf, so ``jax.grad`` and optax see exactly the trainable parameters.
    """

    logits: Float[Array, " K"]

    def __init__(self, logits: ArrayOrSequence):
        self.logits = _parameter("logits", logits)

    @classmethod
    def from_schedule(cls, schedule: AbstractSchedule, pieces: int) -> PiecewiseLinear:
        """The piecewise-linear interpolant of ``schedule`` on ``pieces`` equal pieces."""
        tau, _ = _schedule_on_knots(schedule, pieces)
        increments = np.maximum(np.diff(tau), 1e-12)
        return cls(np.log(increments / increments.sum()))

    @property
    def pieces(self) -> int:
        return self.logits.shape[0]

    @property
    def jump_times(self) -> tuple[float, ...]:
        return tuple(j / self.pieces for j in range(1, self.pieces))

    def __call__(self, t):
        t = jnp.asarray(t)
        inc = jax.nn.softmax(self.logits).astype(t.dtype)
        values = jnp.concatenate([jnp.zeros((1,), t.dtype), jnp.cumsum(inc)])
        return jnp.interp(t, _knot_times(self.pieces, t.dtype), values)

    def complement(self, t):
        t = jnp.asarray(t)
        inc = jax.nn.softmax(self.logits).astype(t.dtype)
        # 1 − τ summed from the data end: no cancellation where τ is close to 1
        values = jnp.concatenate([jnp.cumsum(inc[::-1])[::-1], jnp.zeros((1,), t.dtype)])
        return jnp.interp(t, _knot_times(self.pieces, t.dtype), values)


class SigmoidSum(AbstractSchedule):
    """A smooth monotone τ: F normalised to [0, 1], F(t) = w_0 t + Σ_k w_k sigmoid((t − c_k)/s_k).

    ``w = softmax(logits)`` (K + 1,), centres ``c = centers`` (K,) and widths
    ``s = exp(log_widths)`` (K,) are the trainable leaves; τ = (F(t) − F(0))/(F(1) − F(0)) is
    C^∞, increasing and pinned at both ends for all values. Initialise with
    ``from_schedule`` (a least-squares fit) or ``linear``.
    """

    logits: Float[Array, " K1"]
    centers: Float[Array, " K"]
    log_widths: Float[Array, " K"]

    def __init__(self, logits: ArrayOrSequence, centers: ArrayOrSequence,
                 log_widths: ArrayOrSequence):
        self.logits = _parameter("logits", logits)
        k = self.logits.shape[0] - 1
        if k < 1:
            raise ValueError("logits must have K + 1 >= 2 entries (a line and K sigmoids); got 1")
        self.centers = _parameter("centers", centers, k)
        self.log_widths = _parameter("log_widths", log_widths, k)

    @classmethod
    def linear(cls, components: int) -> SigmoidSum:
        """τ ≈ t (the constant schedule, within 0.03): equal weights on the line and on
        K sigmoids of width 1/(2K) centred at (j + ½)/K, so every parameter has a gradient."""
        check_int("components", components, lo=1)
        centers = (np.arange(components) + 0.5) / components
        return cls(np.zeros(components + 1), centers,
                   np.full(components, math.log(0.5 / components)))

    @classmethod
    def from_schedule(cls, schedule: AbstractSchedule, components: int, *, points: int = 513,
                      iterations: int = 2000) -> SigmoidSum:
        """A least-squares fit of τ and of log(1 − τ) to ``schedule`` on ``points`` times
        (Adam in float64). The log term keeps the approach to τ = 1 (where VE schedules act)."""
        check_int("components", components, lo=1)
        check_int("points", points, lo=3)
        check_int("iterations", iterations, lo=1)
        with jax.enable_x64(True):
            t = jnp.linspace(0.0, 1.0, points, dtype=jnp.float64)
            target = jax.vmap(schedule)(t)
            log_comp = jnp.log(jnp.maximum(jax.vmap(schedule.complement)(t[:-1]), 1e-300))
            # start: sigmoids at the quantiles of the target, equal weights
            centers = jnp.interp((jnp.arange(components) + 0.5) / components, target, t)
            start = cls(jnp.zeros(components + 1), centers,
                        jnp.full(components, math.log(0.5 / components)))
            params, static = eqx.partition(start, eqx.is_inexact_array)

            def misfit(p):
                s = eqx.combine(p, static)
                tau = jax.vmap(s)(t)
                lc = jnp.log(jnp.maximum(jax.vmap(s.complement)(t[:-1]), 1e-300))
                return jnp.mean((tau - target) ** 2) + 1e-3 * jnp.mean((lc - log_comp) ** 2)

            opt = optax.adam(optax.cosine_decay_schedule(5e-2, iterations))

            def step(carry, _):
                p, state = carry
                grads = jax.grad(misfit)(p)
                updates, state = opt.update(grads, state, p)
                return (optax.apply_updates(p, updates), state), None

            (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, iterations)
            fitted = eqx.combine(params, static)
        return cls(np.asarray(fitted.logits), np.asarray(fitted.centers),
                   np.asarray(fitted.log_widths))

    @property
    def components(self) -> int:
        return self.centers.shape[0]

    def _terms(self, t):
        dtype = t.dtype
        w = jax.nn.softmax(self.logits).astype(dtype)
        c, s = self.centers.astype(dtype), jnp.exp(self.log_widths).astype(dtype)
        return w, c, s

    def _rise(self, a, b, w, c, s):
        """F(b) − F(a) for a ≤ b, as a sum of positive terms (no cancellation)."""
        u, v = (a - c) / s, (b - c) / s
        # σ(v) − σ(u) = σ(v) σ(−u) (1 − e^{u − v})
        sig = jax.nn.sigmoid(v) * jax.nn.sigmoid(-u) * -jnp.expm1(u - v)
        return w[0] * (b - a) + jnp.sum(w[1:] * sig)

    def __call__(self, t):
        t = jnp.asarray(t)
        w, c, s = self._terms(t)
        zero, one = jnp.zeros((), t.dtype), jnp.ones((), t.dtype)
        return self._rise(zero, t, w, c, s) / self._rise(zero, one, w, c, s)

    def complement(self, t):
        t = jnp.asarray(t)
        w, c, s = self._terms(t)
        zero, one = jnp.zeros((), t.dtype), jnp.ones((), t.dtype)
        return self._rise(t, one, w, c, s) / self._rise(zero, one, w, c, s)


class NoiseRatioKnots(AbstractSchedule):
    """Piecewise-linear τ on K equal pieces whose interior knot values are set by
    dimension-free coordinates ξ_j of the noise-to-signal ratio ν = α/β.

    A two-mode mixture (means ±μ, |μ|² = m² d) chooses its mode where ν ~ m√d and resolves the
    within-mode spread where ν ~ σ, in VP and VE alike. The map

        log ν(ξ) = ξ + G_d · clip(ξ, 0, 1),     G_d = max(½ log d − gap, 0),

    puts both windows at fixed ξ for every d (ν = e^ξ for ξ ≤ 0; ν/√d = e^{ξ − gap} for ξ ≥ 1)
    and crosses the featureless stretch in between on ξ ∈ [0, 1] whatever its length: the
    dilation of the paper, learned. The knot values decrease,

        ξ_1 = ``start``,   ξ_{j+1} = ξ_j − softplus(``decrements``_j),

    τ_j = τ(ν(ξ_j)) for the ``interpolant``, τ_0 = 0 and τ_K = 1, and τ is linear in t between
    knots (so an Euler step on the knots moves τ exactly by τ_{j+1} − τ_j). The same parameters
    at another dimension: ``schedule.at(Interpolant(kind, shape, d_new))``.
    """

    start: Float[Array, ""]
    decrements: Float[Array, " K2"]
    interpolant: Interpolant
    gap: float = eqx.field(static=True)

    def __init__(self, start: ArrayLike, decrements: ArrayOrSequence, interpolant: Interpolant,
                 gap: float = 3.0):
        start = jnp.asarray(start, dtype=jnp.result_type(float))
        if start.ndim != 0:
            raise ValueError(f"start must be a scalar; got shape {start.shape}")
        if not isinstance(start, jax.core.Tracer) and not bool(jnp.isfinite(start)):
            raise ValueError(f"start must be finite; got {float(start)}")
        self.start = start
        decrements = jnp.asarray(decrements, dtype=jnp.result_type(float))
        self.decrements = (decrements if decrements.shape == (0,)
                           else _parameter("decrements", decrements))
        if not isinstance(interpolant, Interpolant):
            raise ValueError(f"interpolant must be an ns.Interpolant; got "
                             f"{type(interpolant).__name__}")
        self.interpolant = interpolant
        check_real("gap", gap, lo=0.0, lo_open=False)
        self.gap = float(gap)

    # ------------------------------------------------------------------ coordinates
    def gap_length(self) -> float:
        """G_d: the length in log ν of the stretch crossed on ξ ∈ [0, 1]."""
        return max(0.5 * math.log(self.interpolant.d) - self.gap, 0.0)

    def log_noise_ratio(self, xi: ArrayLike) -> Array:
        """log ν(ξ)."""
        xi = jnp.asarray(xi)
        return xi + self.gap_length() * jnp.clip(xi, 0.0, 1.0)

    def coordinate(self, log_ratio: ArrayLike) -> Array:
        """ξ(log ν), the inverse of ``log_noise_ratio``."""
        r = jnp.asarray(log_ratio)
        g = self.gap_length()
        return jnp.where(r <= 0, r, jnp.where(r >= 1 + g, r - g, r / (1 + g)))

    @classmethod
    def from_schedule(cls, schedule: AbstractSchedule, interpolant: Interpolant, pieces: int,
                      gap: float = 3.0) -> NoiseRatioKnots:
        """The knots of ``schedule`` on ``pieces`` equal pieces (exact at the knots). Flat stretches
        of ``schedule`` become decrements of 10⁻⁶ in ξ."""
        check_int("pieces", pieces, lo=2)
        tau, comp = _schedule_on_knots(schedule, pieces)
        tau, comp = tau[1:-1], comp[1:-1]
        with np.errstate(divide="ignore"):
            ratio = np.sqrt(interpolant.alpha0**2 * comp * (comp if interpolant.shape == "linear"
                                                            else 1.0 + tau)) / tau
        if not np.all(np.isfinite(ratio) & (ratio > 0)):
            raise ValueError("schedule must have 0 < τ < 1 at the interior knots j/pieces to be "
                             "written in noise-ratio coordinates")
        probe = cls(0.0, np.zeros(pieces - 2), interpolant, gap)
        with jax.enable_x64(True):
            xi = np.asarray(probe.coordinate(jnp.log(jnp.asarray(ratio, jnp.float64))))
        steps = np.maximum(-np.diff(xi), 1e-6)
        return cls(xi[0], steps + np.log(-np.expm1(-steps)), interpolant, gap)  # softplus⁻¹

    @classmethod
    def uniform(cls, interpolant: Interpolant, pieces: int, high: float = 5.0,
                low: float = -3.0, gap: float = 3.0) -> NoiseRatioKnots:
        """Interior knots equally spaced in ξ from ``high`` down to ``low``: geometric noise
        levels on each side of the gap, the same number of steps for every d."""
        check_int("pieces", pieces, lo=2)
        check_real("high", high)
        check_real("low", low, hi=high)
        step = (high - low) / max(pieces - 2, 1)
        decrement = math.log(math.expm1(step))  # softplus⁻¹
        return cls(high, np.full(pieces - 2, decrement), interpolant, gap)

    def at(self, interpolant: Interpolant) -> NoiseRatioKnots:
        """The same ξ-knots for another interpolant (another d, or kind, or shape)."""
        return NoiseRatioKnots(self.start, self.decrements, interpolant, self.gap)

    # ------------------------------------------------------------------ schedule
    @property
    def pieces(self) -> int:
        return self.decrements.shape[0] + 2

    @property
    def jump_times(self) -> tuple[float, ...]:
        return tuple(j / self.pieces for j in range(1, self.pieces))

    def knot_coordinates(self) -> Float[Array, " K1"]:
        """ξ_1 > … > ξ_{K−1} at the interior knots."""
        return self.start - jnp.concatenate(
            [jnp.zeros((1,), self.start.dtype), jnp.cumsum(jax.nn.softplus(self.decrements))])

    def _knot_values(self, dtype):
        ratio = jnp.exp(self.log_noise_ratio(self.knot_coordinates())).astype(dtype)
        a0 = jnp.asarray(self.interpolant.alpha0, dtype)
        tau, comp = tau_of_noise_ratio(ratio, a0, self.interpolant.shape)
        zero, one = jnp.zeros((1,), dtype), jnp.ones((1,), dtype)
        return jnp.concatenate([zero, tau, one]), jnp.concatenate([one, comp, zero])

    def __call__(self, t):
        t = jnp.asarray(t)
        tau, _ = self._knot_values(t.dtype)
        return jnp.interp(t, _knot_times(self.pieces, t.dtype), tau)

    def complement(self, t):
        t = jnp.asarray(t)
        _, comp = self._knot_values(t.dtype)
        return jnp.interp(t, _knot_times(self.pieces, t.dtype), comp)


#: Learnable families by name (configs and saved schedules use these names).
FAMILIES = {"piecewise_linear": PiecewiseLinear, "sigmoid_sum": SigmoidSum,
            "noise_ratio_knots": NoiseRatioKnots}
