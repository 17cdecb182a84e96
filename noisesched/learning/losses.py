"""Losses for schedule learning (spec §6).

Every loss that ``noisesched.learning.fit_schedule`` minimises is an ``AbstractLoss``, called as
``loss(schedule, x0)`` on the iteration's prior batch ``x0`` (drawn from ``loss.interpolant``):

* ``SampleLoss(fn, model, interpolant, steps)``: solves the PF-ODE from ``x0`` and applies a
  function ``fn(model, x) -> scalar`` of the final samples, differentiable in ``x``, so the
  gradient reaches the schedule through the sampler: ``combined_loss``,
  ``mode_asymmetry_loss``, ``low_level_loss`` or any user function of that form.
* ``ThresholdLoss``: a mode loss through the full sampler whose gradient does not vanish.
* ``ExactLoss``: a Monte-Carlo-free loss of a two-mode mixture computed by the exact reduction
  (``noisesched.theory``); it needs no prior batch (``needs_prior = False``, ``x0`` may be
  None).
* ``TeacherLoss``: the distance of the N-step solve to a fine (or adaptive) solve of the same
  PF-ODE from the same ``x0``; it needs only a denoiser, no data law, so it learns a schedule
  for any denoiser (a trained network).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jaxtyping import Array, Float

from .._validation import check_bool, check_choice, check_int, check_positive, check_real
from ..interpolants import Interpolant
from ..models.base import AbstractDataLaw, AbstractDenoiser, ModeSplit, check_data_law
from ..sampling import ADAPTIVE_SOLVERS, METHODS, SCAN_SOLVERS, SOLVERS, solve
from ..schedules import AbstractSchedule
from ..theory import ORACLE_SOLVERS, TwoModeReduction, gm_oracle

Samples = Float[Array, "n d"]


def _law(model) -> AbstractDataLaw:
    return check_data_law(model, "the loss")


def _mode_split(model) -> ModeSplit:
    split = _law(model).mode_split()
    if split is None:
        raise ValueError(f"the mode loss needs a data law whose high-level feature is a two-way "
                         f"split (mode_split(): a two-mode mixture with means ±μ, Curie–Weiss); "
                         f"{type(model).__name__} has none")
    return split


def soft_mode_fraction(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """A smooth p̂: mean sigmoid(e·x / T) along the law's mode direction e (``mode_split``:
    μ/|μ| for a two-mode mixture, (1, …, 1)/√d for Curie–Weiss)."""
    split = _mode_split(model)
    return jnp.mean(jax.nn.sigmoid((x @ split.direction.astype(x.dtype)) / temperature))


def mode_asymmetry_loss(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """(p̂_soft − target)², target the exact weight of the + side (``mode_split``): p for a
    two-mode mixture, W+ for Curie–Weiss."""
    target = _mode_split(model).weight
    return (soft_mode_fraction(model, x, temperature) - target) ** 2


def low_level_loss(model, x: Samples) -> Float[Array, ""]:
    """The law's own loss of the low-level feature (``AbstractDataLaw.low_level_loss``): for a
    mixture (within-mode variance/σ² − 1)² (the variance off the span of the means, see
    ``noisesched.metrics.within_mode_variance``); for Curie–Weiss (mean x_i² − 1)²."""
    return _law(model).low_level_loss(x)


def combined_loss(model, x: Samples, weight_high: float = 1.0, weight_low: float = 0.1,
                  temperature: float = 0.05) -> Float[Array, ""]:
    """weight_high · mode-asymmetry loss + weight_low · low-level loss."""
    return (weight_high * mode_asymmetry_loss(model, x, temperature)
            + weight_low * low_level_loss(model, x))


def _check_solve(loss) -> None:
    """The fields of a loss that solves from the prior batch: ``model`` (a denoiser),
    ``interpolant`` of its d, ``steps``, ``method``, ``solver``, ``checkpoints``."""
    if not isinstance(loss.model, AbstractDenoiser):
        raise ValueError(f"model must be a denoiser (noisesched.AbstractDenoiser); got "
                         f"{type(loss.model).__name__}")
    if not isinstance(loss.interpolant, Interpolant):
        raise ValueError(f"interpolant must be an ns.Interpolant; got "
                         f"{type(loss.interpolant).__name__}")
    check_int("steps", loss.steps, lo=1)
    check_choice("method", loss.method, METHODS)
    check_choice("solver", loss.solver, SCAN_SOLVERS if loss.method == "scan" else SOLVERS)
    if loss.checkpoints is not None:
        check_int("checkpoints", loss.checkpoints, lo=1)
    if loss.interpolant.d != loss.model.d:
        raise ValueError(f"interpolant d = {loss.interpolant.d} must equal the model's "
                         f"d = {loss.model.d}")


class AbstractLoss(eqx.Module):
    """The loss protocol of ``noisesched.learning.fit_schedule``: ``loss(schedule, x0) ->
    scalar``, differentiable in the schedule's array leaves.

    ``x0`` is the iteration's prior batch, ``sample_prior(loss.interpolant, key, batch)``, for
    a loss whose class has ``needs_prior = True`` (the default: it solves from ``x0``), and
    None for one with ``needs_prior = False`` (computed from the schedule alone, as
    ``ExactLoss``). Subclasses declare the field ``interpolant`` and implement ``__call__``.
    """

    #: Whether ``__call__`` needs the prior batch ``x0`` (False: ``fit_schedule`` passes None
    #: and draws nothing).
    needs_prior: ClassVar[bool] = True

    if TYPE_CHECKING:  # a field ``interpolant: Interpolant`` of every subclass, declared
        # there only: an ``eqx.AbstractVar`` here would become the first field of subclasses

        @property
        def interpolant(self) -> Interpolant: ...

    @abc.abstractmethod
    def __call__(self, schedule: AbstractSchedule, x0: Samples | None = None
                 ) -> Float[Array, ""]:
        """The loss of ``schedule`` on the prior batch ``x0`` (None if not ``needs_prior``)."""
        raise NotImplementedError

    def _prior(self, x0: Samples | None) -> Samples:
        if x0 is None:
            raise ValueError(f"{type(self).__name__} needs the prior batch x0 (needs_prior = "
                             "True); got None")
        return x0


class SampleLoss(AbstractLoss):
    """A loss on final samples: solve the PF-ODE from the prior batch ``x0`` with ``steps``
    steps of ``solver`` (``noisesched.solve``; ``checkpoints``: states stored by reverse mode)
    and apply ``fn(model, X_1) -> scalar``.

    ``fn`` is ``combined_loss``, ``mode_asymmetry_loss``, ``low_level_loss`` or any function
    of the same form differentiable in ``X_1``, so that the gradient reaches the schedule
    through the sampler.
    """

    fn: Callable[..., Any]
    model: AbstractDenoiser
    interpolant: Interpolant
    steps: int = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="euler")
    method: str = eqx.field(static=True, default="scan")
    checkpoints: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.fn):
            raise ValueError(f"fn must be a function (model, x) -> scalar; got "
                             f"{type(self.fn).__name__}")
        _check_solve(self)

    def final(self, schedule: AbstractSchedule, x0: Samples) -> Samples:
        """X_1, the final states of the solve from ``x0``."""
        return solve(self.model, self.interpolant, schedule, x0, steps=self.steps,
                     solver=self.solver, method=self.method, checkpoints=self.checkpoints).x

    def __call__(self, schedule: AbstractSchedule, x0: Samples | None = None
                 ) -> Float[Array, ""]:
        return jnp.asarray(self.fn(self.model, self.final(schedule, self._prior(x0))))


class ExactLoss(AbstractLoss):
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

    Call as ``loss(schedule)``: it needs no prior batch (``needs_prior = False``).
    """

    needs_prior: ClassVar[bool] = False

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
    def of(cls, model: AbstractDataLaw | TwoModeReduction, interpolant: Interpolant, steps: int,
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

    def __call__(self, schedule: AbstractSchedule, x0: Samples | None = None
                 ) -> Float[Array, ""]:
        """The loss of ``schedule``; ``x0`` is ignored."""
        parts = self.parts(schedule)
        return self.weight_high * parts["high"] + self.weight_low * parts["low"]


class ThresholdLoss(AbstractLoss):
    """A mode loss through the full sampler whose gradient does not vanish, for any model whose
    high-level feature is a two-way split (``mode_split``: a two-mode mixture with means ±μ,
    Curie–Weiss).

    Write each prior row as x0 = α0 u e + x0⊥ along the mode direction e (μ/|μ|, or (1, …, 1)/√d
    for Curie–Weiss). With x0⊥ fixed, the final mode sign(e·X_1) flips at one threshold u*
    (found by bisection on full solves); since u ~ N(0, 1) independently of x0⊥, the mode
    weight is p̂ = 1 − mean_rows Φ(u*) (a Rao–Blackwellised estimate of the fraction of final
    samples in the + mode). The mode term is (Φ⁻¹(1 − p̂) − Φ⁻¹(1 − p))², a probit scale that
    keeps its gradient where p̂ saturates; the gradient of each u* is the implicit one,
    −∂θ(e·X_1)/∂u(e·X_1) at the threshold. The low-level term is ``low_level_loss`` of the
    final samples of ``x0``. Assumes the final mode is monotone in u (exact for the mixture).
    """

    model: AbstractDenoiser  # and a data law with a mode split
    interpolant: Interpolant
    steps: int = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="euler")
    method: str = eqx.field(static=True, default="scan")
    weight_high: float = eqx.field(static=True, default=1.0)
    weight_low: float = eqx.field(static=True, default=1.0)
    bisections: int = eqx.field(static=True, default=24)
    span: float = eqx.field(static=True, default=8.0)

    def __check_init__(self):
        if not isinstance(self.model, AbstractDenoiser):
            raise ValueError(f"model must be a denoiser and a data law; got "
                             f"{type(self.model).__name__}")
        if _law(self.model).mode_split() is None:
            raise ValueError("ThresholdLoss needs a model whose high-level feature is a two-way "
                             "split (mode_split(): a two-mode mixture with means ±μ, "
                             f"Curie–Weiss); {type(self.model).__name__} has none")
        check_int("steps", self.steps, lo=1)
        check_choice("method", self.method, METHODS)
        check_choice("solver", self.solver, SCAN_SOLVERS if self.method == "scan" else SOLVERS)
        check_int("bisections", self.bisections, lo=1)
        check_real("span", self.span, lo=0.0)
        check_real("weight_high", self.weight_high, lo=0.0, lo_open=False)
        check_real("weight_low", self.weight_low, lo=0.0, lo_open=False)

    def _direction(self, dtype) -> Float[Array, " d"]:
        return _mode_split(self.model).direction.astype(dtype)

    def _target(self) -> Float[Array, ""]:
        return _mode_split(self.model).weight

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

    def __call__(self, schedule: AbstractSchedule, x0: Samples | None = None
                 ) -> Float[Array, ""]:
        parts = self.parts(schedule, self._prior(x0))
        return self.weight_high * parts["high"] + self.weight_low * parts["low"]


class TeacherLoss(AbstractLoss):
    """The discretisation error of the student's N-step solve against a teacher's accurate solve
    of the same PF-ODE from the same prior batch: for ``x0`` of shape (n, d),

        loss = mean over rows of |X_N(x0) − X_teacher(x0)|² / d,

    where X_N is the solve with ``steps`` steps of ``solver`` (``method``, ``checkpoints``: as
    ``SampleLoss``) on the schedule being learned, and X_teacher the solve with
    ``teacher_steps`` steps of ``teacher_solver`` on ``reference`` (``teacher_adaptive``: an
    adaptive diffrax solve with ``teacher_rtol``, ``teacher_atol``, ``teacher_max_steps``;
    ``teacher_steps`` is then unused). It needs only a denoiser (``model``: any
    ``AbstractDenoiser``, an exact model or a trained network), no data law.

    Why one target serves every schedule. The drift is b = α α̇ (x − β η)/α² + β̇ η with
    η = E[x1 | x_t = x]; β = τ(t) and α is a function of τ fixed by the interpolant's kind and
    shape, so b(t, x) = τ̇(t) F(τ(t), x) with F(τ, x) = (dα/dτ)/α (x − τ η) + η independent of
    the schedule. Every monotone τ with τ(0) = 0 and τ(1) = 1 therefore only reparametrises the
    time of dX/dτ = F(τ, X): the exact flow map x0 ↦ X_1 of the PF-ODE does not depend on the
    schedule, only on the interpolant and the denoiser (one that sees t only through the noise
    level, α and β, as E[x1 | x_t] does). The teacher approximates that map, and what is left
    of the loss is the student's N-step discretisation error: what the schedule controls. A
    Heun teacher with 512 steps on the constant and the VP-dilated schedule gives end points
    within 2·10⁻⁵ of each other for a two-mode mixture at d = 20, a gap that shrinks 16-fold per
    4× steps (second order), and adaptive solves at tolerance 10⁻¹⁰ agree to 3·10⁻¹¹ (test).

    ``reference`` is the teacher's schedule: None (the default) means the schedule being
    learned, held fixed with ``jax.lax.stop_gradient``. X_teacher is under ``stop_gradient``
    too, so the gradient reaches the schedule only through the student's solve. The teacher's
    accuracy depends on its schedule (a schedule that resolves the features of the data, such
    as the kind's dilated one, is a good reference) and must be well below the student's error:
    Heun with ``teacher_steps`` ≫ ``steps`` for an Euler or Heun student. A denoiser whose
    drift is not finite at t = 1 (no closed form there, as a network's through
    ``velocity_from_denoiser``) declares ``singular_at_data``: both solves then end with an
    Euler step, which never evaluates t = 1; a fixed-grid teacher stays second order, an
    adaptive one ends with an Euler step from t = 1 − 10⁻³ (``solve``'s ``terminal_dt``).

    Cost: the teacher's solve runs inside every call (``teacher_steps`` × 2 denoiser
    evaluations for Heun, forward only), often more than the student's solve and its gradient.
    X_teacher depends only on ``x0`` (and ``reference``), not on the learned parameters, so a
    caller that reuses its prior batch (``FitOptions.common_random_numbers`` with a fixed
    ``reference``) may compute ``teacher(x0)`` once and compare ``final(schedule, x0)`` with it
    (``__call__`` recomputes it, as ``fit_schedule`` draws a batch per iteration). Inside
    ``jit`` an adaptive teacher that runs out of ``teacher_max_steps`` makes the loss nan
    (outside, ``solve`` raises ``MaxStepsReached``).
    """

    model: AbstractDenoiser  # no data law needed
    interpolant: Interpolant
    steps: int = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="euler")
    method: str = eqx.field(static=True, default="scan")
    checkpoints: int | None = eqx.field(static=True, default=None)
    teacher_steps: int = eqx.field(static=True, default=512)
    teacher_solver: str = eqx.field(static=True, default="heun")
    reference: AbstractSchedule | None = None
    teacher_adaptive: bool = eqx.field(static=True, default=False)
    teacher_rtol: float = eqx.field(static=True, default=1e-6)
    teacher_atol: float = eqx.field(static=True, default=1e-6)
    teacher_max_steps: int = eqx.field(static=True, default=16_384)

    def __check_init__(self):
        _check_solve(self)
        if self.reference is not None and not isinstance(self.reference, AbstractSchedule):
            raise ValueError(f"reference must be a schedule (noisesched.schedules."
                             f"AbstractSchedule) or None; got {type(self.reference).__name__}")
        check_bool("teacher_adaptive", self.teacher_adaptive)
        check_int("teacher_steps", self.teacher_steps, lo=1)
        if self.teacher_adaptive:
            check_choice("teacher_solver (teacher_adaptive)", self.teacher_solver,
                         ADAPTIVE_SOLVERS)
            check_positive("teacher_rtol", self.teacher_rtol)
            check_positive("teacher_atol", self.teacher_atol)
            check_int("teacher_max_steps", self.teacher_max_steps, lo=1)
        else:
            check_choice("teacher_solver", self.teacher_solver, SOLVERS)
            if self.teacher_steps <= self.steps:
                raise ValueError(f"teacher_steps must exceed steps = {self.steps} (the teacher "
                                 f"must be the finer solve); got {self.teacher_steps}")

    def final(self, schedule: AbstractSchedule, x0: Samples) -> Samples:
        """X_N, the student's final states from ``x0``, shape (n, d)."""
        return solve(self.model, self.interpolant, schedule, x0, steps=self.steps,
                     solver=self.solver, method=self.method, checkpoints=self.checkpoints).x

    def teacher(self, x0: Samples, schedule: AbstractSchedule | None = None) -> Samples:
        """X_teacher, the teacher's final states from ``x0``, shape (n, d), under
        ``stop_gradient``: on ``reference``, or on ``schedule`` (held fixed) where
        ``reference`` is None."""
        ref = self.reference if self.reference is not None else schedule
        if ref is None:
            raise ValueError("TeacherLoss.teacher needs a schedule: reference is None (the "
                             "schedule being learned), so pass teacher(x0, schedule)")
        params, static = eqx.partition(ref, eqx.is_array)
        ref = eqx.combine(jax.lax.stop_gradient(params), static)
        fixed_scan = not self.teacher_adaptive and self.teacher_solver in SCAN_SOLVERS
        sol = solve(self.model, self.interpolant, ref, jax.lax.stop_gradient(x0),
                    steps=self.teacher_steps, solver=self.teacher_solver,
                    method="scan" if fixed_scan else "diffrax", adaptive=self.teacher_adaptive,
                    rtol=self.teacher_rtol, atol=self.teacher_atol,
                    max_steps=self.teacher_max_steps)
        x = jnp.where(sol.reached_end, sol.x, jnp.nan) if self.teacher_adaptive else sol.x
        return jax.lax.stop_gradient(x)

    def __call__(self, schedule: AbstractSchedule, x0: Samples | None = None
                 ) -> Float[Array, ""]:
        x0 = self._prior(x0)
        error = self.final(schedule, x0) - self.teacher(x0, schedule)
        return jnp.mean(jnp.sum(error**2, axis=-1)) / self.interpolant.d
