"""Losses for schedule learning (spec §6).

* Losses on final samples: functions ``(model, x) -> scalar``, differentiable in ``x``, so the
  gradient reaches the schedule through the sampler. Any user function of that form works.
* :class:`ExactLoss`: a Monte-Carlo-free loss of a two-mode mixture computed by the exact
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
    :func:`noisesched.metrics.within_mode_variance`); (mean x_i² − 1)² for Curie–Weiss."""
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
    :func:`noisesched.learning.fit_schedule` calls it instead of sampling."""

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
    :func:`noisesched.theory.gm_oracle`); costs the same whatever d.

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
