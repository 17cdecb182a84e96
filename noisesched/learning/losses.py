"""Losses for schedule learning (spec §6).

* Losses on final samples: functions ``(model, x) -> scalar``, differentiable in ``x``, so the
  gradient reaches the schedule through the sampler. Any user function of that form works.
* ``ExactLoss``: a Monte-Carlo-free loss of a two-mode mixture computed by the exact
  reduction (``noisesched.theory``): a function ``schedule -> scalar``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jaxtyping import Array, Float

from .._validation import check_choice, check_int, check_real
from ..interpolants import Interpolant
from ..metrics import within_mode_variance
from ..models import CurieWeiss, GaussianMixture
from ..sampling import solve
from ..schedules import AbstractSchedule
from ..theory import ORACLE_SOLVERS, TwoModeReduction, gm_oracle

Samples = Float[Array, "n d"]


def _unsupported(model) -> ValueError:
    return ValueError(f"model must be a GaussianMixture or CurieWeiss; got {type(model).__name__}")


def soft_mode_fraction(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """A smooth p̂: mean sigmoid(μ_0·x / (|μ_0| T)) for a mixture, sigmoid(mean_i x_i · √d / T)
    for Curie–Weiss (the positive phase)."""
    if isinstance(model, GaussianMixture):
        mu = model.means[0].astype(x.dtype)
        score = x @ mu / jnp.linalg.norm(mu)
    elif isinstance(model, CurieWeiss):
        score = jnp.mean(x, axis=-1) * jnp.sqrt(model.d)
    else:
        raise _unsupported(model)
    return jnp.mean(jax.nn.sigmoid(score / temperature))


def mode_asymmetry_loss(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """(p̂_soft − target)², target p (GM, weight of component 0) or W+ (CW)."""
    target = (model.weights[0] if isinstance(model, GaussianMixture)
              else model.positive_phase_weight)
    return (soft_mode_fraction(model, x, temperature) - target) ** 2


def low_level_loss(model, x: Samples) -> Float[Array, ""]:
    """(within-mode variance/σ² − 1)² for a mixture (the variance off the span of the means, see
    ``noisesched.metrics.within_mode_variance``); (mean x_i² − 1)² for Curie–Weiss."""
    if isinstance(model, GaussianMixture):
        return (within_mode_variance(model, x) / model.sigma**2 - 1.0) ** 2
    if isinstance(model, CurieWeiss):
        return (jnp.mean(x * x) - 1.0) ** 2
    raise _unsupported(model)


def combined_loss(model, x: Samples, weight_high: float = 1.0, weight_low: float = 0.1,
                  temperature: float = 0.05) -> Float[Array, ""]:
    """weight_high · mode-asymmetry loss + weight_low · low-level loss."""
    return (weight_high * mode_asymmetry_loss(model, x, temperature)
            + weight_low * low_level_loss(model, x))


class AbstractScheduleLoss(eqx.Module):
    """A loss computed from the schedule alone (no sampling): ``loss(schedule) -> scalar``.
    ``noisesched.learning.fit_schedule`` calls it instead of sampling."""

    @abc.abstractmethod
    def __call__(self, schedule: AbstractSchedule) -> Float[Array, ""]:
        raise NotImplementedError


class ExactLoss(AbstractScheduleLoss):
    """The noise-free loss of an N-step solve of a two-mode mixture (means ±μ), from the exact
    reduction: ``weight_high · (u* − u_p)² + weight_low · (within-mode variance/σ² − 1)²``.

    u* is the threshold of the initial overlap (in standard deviations) above which a sample
    ends in the mode +μ, so the mode weight is P(U > u*), U ~ N(0, 1); u_p = Φ⁻¹(1 − p) is its
    exact value. Measuring the mode error on this probit scale keeps the gradient alive where
    the weight saturates (the constant VP schedule gives p̂ = 1 − 10⁻¹¹ at d = 10⁴, N = 10).
    Differentiable in the schedule through the implicit function theorem (see
    ``noisesched.theory.gm_oracle``); costs the same whatever d. The implicit derivative
    equals central differences of the threshold to 10⁻¹⁰ at d = 10²; at d = 10³ and 10⁴ the
    final overlap jumps across 0 within 10⁻¹⁰ of the threshold and they differ by about 1 % and
    3 % (the descent still converges: ``configs/fit/gm_*_exact.toml``).

    Call as ``loss(schedule)``.
    """

    reduction: TwoModeReduction
    interpolant: Interpolant
    steps: int = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="euler")
    weight_high: float = eqx.field(static=True, default=1.0)
    weight_low: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        check_int("steps", self.steps, lo=1)
        check_choice("solver", self.solver, ORACLE_SOLVERS)
        check_real("weight_high", self.weight_high, lo=0.0, lo_open=False)
        check_real("weight_low", self.weight_low, lo=0.0, lo_open=False)

    @classmethod
    def of(cls, model: GaussianMixture | TwoModeReduction, interpolant: Interpolant, steps: int,
           **options) -> ExactLoss:
        reduction = model if isinstance(model, TwoModeReduction) else TwoModeReduction.of(model)
        return cls(reduction, interpolant, steps, **options)

    def target_threshold(self) -> Float[Array, ""]:
        return -ndtri(jax.nn.sigmoid(2.0 * self.reduction.h))  # p = sigmoid(2h)

    def parts(self, schedule: AbstractSchedule) -> dict[str, Array]:
        """The oracle's outputs (mode weight, within-mode variance, threshold) and both terms."""
        exact = gm_oracle(self.reduction, self.interpolant, schedule, self.steps, self.solver)
        high = (exact["threshold"] - self.target_threshold()) ** 2
        low = (exact["within_mode_var"] / self.reduction.sigma**2 - 1.0) ** 2
        return {**exact, "high": high, "low": low}

    def __call__(self, schedule: AbstractSchedule) -> Float[Array, ""]:
        parts = self.parts(schedule)
        return self.weight_high * parts["high"] + self.weight_low * parts["low"]


class AbstractPriorLoss(eqx.Module):
    """A loss that runs its own solves from the prior batch: ``loss(schedule, x0) -> scalar``.
    ``noisesched.learning.fit_schedule`` passes it each iteration's prior draw."""

    @abc.abstractmethod
    def __call__(self, schedule: AbstractSchedule, x0: Samples) -> Float[Array, ""]:
        raise NotImplementedError


class ThresholdLoss(AbstractPriorLoss):
    """A mode loss through the full sampler whose gradient does not vanish, for a two-mode
    mixture (means ±μ) or Curie–Weiss.

    Write each prior row as x0 = α0 u e + x0⊥ along the mode direction e (μ/|μ|, or (1, …, 1)/√d
    for Curie–Weiss). With x0⊥ fixed, the final mode sign(e·X_1) flips at one threshold u*
    (found by bisection on full solves); since u ~ N(0, 1) independently of x0⊥, the mode
    weight is p̂ = 1 − mean_rows Φ(u*) (a Rao–Blackwellised estimate of the fraction of final
    samples in the + mode). The mode term is (Φ⁻¹(1 − p̂) − Φ⁻¹(1 − p))², a probit scale that
    keeps its gradient where p̂ saturates; the gradient of each u* is the implicit one,
    −∂θ(e·X_1)/∂u(e·X_1) at the threshold. The low-level term is ``low_level_loss`` of the
    final samples of ``x0``. Assumes the final mode is monotone in u (exact for the mixture).
    """

    model: GaussianMixture | CurieWeiss
    interpolant: Interpolant
    steps: int = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="euler")
    method: str = eqx.field(static=True, default="scan")
    weight_high: float = eqx.field(static=True, default=1.0)
    weight_low: float = eqx.field(static=True, default=1.0)
    bisections: int = eqx.field(static=True, default=24)
    span: float = eqx.field(static=True, default=8.0)

    def __check_init__(self):
        if isinstance(self.model, GaussianMixture):
            if not TwoModeReduction.applies(self.model):
                raise ValueError("ThresholdLoss needs a two-mode mixture with means ±μ or a "
                                 "CurieWeiss model")
        elif not isinstance(self.model, CurieWeiss):
            raise _unsupported(self.model)
        check_int("steps", self.steps, lo=1)
        check_int("bisections", self.bisections, lo=1)
        check_real("span", self.span, lo=0.0)
        check_real("weight_high", self.weight_high, lo=0.0, lo_open=False)
        check_real("weight_low", self.weight_low, lo=0.0, lo_open=False)

    def _direction(self, dtype) -> Float[Array, " d"]:
        if isinstance(self.model, GaussianMixture):
            mu = self.model.means[0].astype(dtype)
            return mu / jnp.linalg.norm(mu)
        return jnp.full((self.model.d,), 1.0 / jnp.sqrt(self.model.d), dtype)

    def _target(self) -> Float[Array, ""]:
        return (self.model.weights[0] if isinstance(self.model, GaussianMixture)
                else self.model.positive_phase_weight)

    def _final(self, schedule, x0):
        return solve(self.model, self.interpolant, schedule, x0, steps=self.steps,
                     solver=self.solver, method=self.method).x

    def thresholds(self, schedule: AbstractSchedule, x0: Samples) -> Float[Array, " n"]:
        """u* per row, in units of α0 (value by bisection, derivative implicit)."""
        e = self._direction(x0.dtype)
        scale = self.interpolant.alpha0
        rest = x0 - (x0 @ e)[:, None] * e

        def score(u):
            return self._final(schedule, rest + (scale * u)[:, None] * e) @ e

        n = x0.shape[0]
        lo = jnp.full((n,), -self.span, x0.dtype)
        hi = jnp.full((n,), self.span, x0.dtype)

        def bisect(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            up = jax.lax.stop_gradient(score(mid)) > 0
            return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

        lo, hi = jax.lax.fori_loop(0, self.bisections, bisect, (lo, hi))
        root = jax.lax.stop_gradient(0.5 * (lo + hi))
        value, slope = jax.jvp(score, (root,), (jnp.ones_like(root),))
        slope = jax.lax.stop_gradient(slope)
        # at ±span (no sign change inside) the Newton step extrapolates
        return root - value / jnp.where(slope > 0, slope, jnp.inf)

    def parts(self, schedule: AbstractSchedule, x0: Samples) -> dict[str, Array]:
        u = self.thresholds(schedule, x0)
        below = jnp.mean(jax.scipy.stats.norm.cdf(u))  # 1 − p̂, accurate when p̂ → 1
        high = (ndtri(below) - ndtri(1.0 - self._target())) ** 2
        low = low_level_loss(self.model, self._final(schedule, x0))
        return {"mode_weight": 1.0 - below, "thresholds": u, "high": high, "low": low}

    def __call__(self, schedule: AbstractSchedule, x0: Samples) -> Float[Array, ""]:
        parts = self.parts(schedule, x0)
        return self.weight_high * parts["high"] + self.weight_low * parts["low"]
