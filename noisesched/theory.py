"""Exact reductions of the sampler for the two-mode Gaussian mixture (spec §2).

For means ±μ the drift is b = a(t) x + c(t) μ tanh(h + β μ·x/D), h = ½ log(p/(1 − p)). Writing
x = M μ + x_⊥ with M = μ·x/|μ|², the ODE splits into

    dM/dt = a M + c tanh(h + β |μ|² M / D),        dx_⊥/dt = a x_⊥.

A Runge–Kutta step preserves this split, and so does a step in noise level (σ-space Euler,
DPM-Solver++(2M): x ← A x + B D with the denoiser D = a' x + c' μ tanh(h + β μ·x/v) and
scalars A, B; spec §7), so an N-step solve in any dimension d equals the same N-step solve of
the 2-D system (M, y), y(0) = 1: X_N = M_N μ + y_N x_⊥(0). Hence,
for the same grid, kink rule and final step as ``noisesched.solve``,

* within-mode variance E|x_⊥|²/(d − 1) = α(0)² y_N² exactly (X_0 = α(0) z);
* mode weight P(μ·X_N > 0) = P(M_0 > M_0*), M_0 ~ N(0, α(0)²/|μ|²), where M_0* is the root of the
  increasing map M_0 ↦ M_N, found by repeated grid refinement (no Monte Carlo).

The number of steps may be a traced integer, so one compiled oracle serves every N.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._solve.grid import Step, on_kink
from ._solve.noise_level import NOISE_LEVEL_STEPS
from ._solve.stepping import STEP_METHODS, EulerStep, HeunStep
from ._typing import IntLike, RealLike, RealScalar
from ._validation import as_int, check_choice, check_int, check_positive, check_real, is_traced
from .interpolants import Coefficients, Interpolant
from .schedules import AbstractSchedule, check_schedule

__all__ = ["TwoModeReduction", "reduced_solve", "gm_oracle", "ORACLE_SOLVERS"]

ORACLE_SOLVERS = ("euler", "heun", "sigma_euler", "dpmpp_2m")


class TwoModeReduction(eqx.Module):
    """The 2-D system (M, y) equivalent to the PF-ODE of a mixture with means ±μ."""

    mu_sq: Float[Array, ""]
    h: Float[Array, ""]
    sigma: RealScalar

    @classmethod
    def of(cls, model) -> TwoModeReduction:
        """The reduction of a data law that has one (``model.two_mode_reduction()``, e.g. a
        ``GaussianMixture`` with means ±μ)."""
        reduce = getattr(model, "two_mode_reduction", None)
        reduction = reduce() if reduce is not None else None
        if reduction is None:
            raise ValueError("model must have two components with means μ and −μ for the exact "
                             f"reduction; got {type(model).__name__}"
                             + (f" with K = {model.K}" if hasattr(model, "K") else ""))
        return reduction

    @classmethod
    def applies(cls, model) -> bool:
        """Whether ``model`` has the exact reduction (so ``of`` works)."""
        reduce = getattr(model, "two_mode_reduction", None)
        return reduce is not None and reduce() is not None

    @classmethod
    def two_modes(cls, d: IntLike, p: RealLike = 0.8, m: RealLike = 1.0,
                  sigma: RealLike = 0.5) -> TwoModeReduction:
        """The reduction of ``GaussianMixture.two_modes(d, p, m, sigma)`` without forming its
        (2, d) means: costs nothing whatever d. ``p``, ``m``, ``sigma`` may be traced."""
        check_int("d", d, lo=1)
        weight: Any = check_real("p", p, 0.0, 1.0)
        level: Any = check_positive("m", m)
        scale: Any = check_positive("sigma", sigma)
        dtype = jnp.result_type(float)
        if is_traced(weight):
            weights = jnp.asarray([weight, 1.0 - weight], dtype=dtype)
        else:
            w = np.asarray([weight, 1.0 - weight], dtype=float)
            weights = jnp.asarray(w / w.sum())  # as the mixture normalises its weights
        return cls(mu_sq=jnp.asarray(level**2 * d, dtype=dtype),
                   h=0.5 * (jnp.log(weights[0]) - jnp.log(weights[1])),
                   sigma=scale if is_traced(scale) else float(scale))

    def velocity(self, c: Coefficients, M: Array, y: Array) -> tuple[Array, Array]:
        var = c.alpha_sq + self.sigma**2 * c.beta**2
        a = (c.alpha_dalpha + self.sigma**2 * c.beta * c.dbeta) / var
        b = (c.dbeta * c.alpha_sq - c.alpha_dalpha * c.beta) / var
        return a * M + b * jnp.tanh(self.h + c.beta * self.mu_sq * M / var), a * y

    def denoise(self, c: Coefficients, M: Array, y: Array) -> tuple[Array, Array]:
        """The denoiser η = (σ²β/v) x + (α²/v) μ tanh(h + β μ·x/v), v = α² + σ²β², on the
        state x = M μ + y x_⊥(0): its μ-component and its factor on x_⊥(0)."""
        var = c.alpha_sq + self.sigma**2 * c.beta**2
        a = self.sigma**2 * c.beta / var
        return (a * M + c.alpha_sq / var * jnp.tanh(self.h + c.beta * self.mu_sq * M / var),
                a * y)


def _reduction(model) -> TwoModeReduction:
    return model if isinstance(model, TwoModeReduction) else TwoModeReduction.of(model)


def _steps(steps):
    """A step count as a Python int (a scan, reverse-differentiable), or the traced or array
    count as it is (a while loop)."""
    if not isinstance(steps, jax.Array):
        return as_int("steps", steps, lo=1)
    if steps.ndim != 0 or not jnp.issubdtype(steps.dtype, jnp.integer):
        raise ValueError("steps must be an integer >= 1; got an array of shape "
                         f"{tuple(steps.shape)} and dtype {steps.dtype}")
    return steps


def reduced_solve(
    model: TwoModeReduction | Any,
    interp: Interpolant,
    schedule: AbstractSchedule,
    m0: Float[ArrayLike, " B"],
    steps: IntLike | Int[Array, ""],
    solver: str = "euler",
    final_step: str = "auto",
) -> tuple[Float[Array, " B"], Float[Array, ""]]:
    """(M_N, y_N) for initial overlaps ``m0`` after ``steps`` steps of ``solver``.

    The same grid t_i = i/N, one-sided evaluation at schedule kinks on the grid, and final-step
    rule as ``noisesched.solve``, and the same step (Euler/Heun of
    ``noisesched._solve.stepping``, or a noise-level sampler of
    ``noisesched._solve.noise_level``) acting on the state (M, y). ``steps`` may be traced.
    """
    check_choice("solver", solver, ORACLE_SOLVERS)
    check_choice("final_step", final_step, ("auto", "euler", "solver"))
    check_schedule(schedule)
    steps = _steps(steps)
    red = _reduction(model)
    m0 = jnp.asarray(m0)
    dtype = m0.dtype if jnp.issubdtype(m0.dtype, jnp.floating) else jnp.result_type(float)
    m0 = m0.astype(dtype)
    n = jnp.asarray(steps)
    final_euler = final_step == "euler"  # a mixture with σ > 0 is regular at the data
    jumps = schedule.jump_times

    def time(i):
        return i.astype(dtype) / n.astype(dtype)

    def f(t, state):
        c = interp.coefficients(schedule, t)
        return red.velocity(c, *state)

    def step(i, state):
        t0, t1 = time(i), time(i + 1)
        st = Step.between(t0, t1, on_kink(t0, jumps), on_kink(t1, jumps))
        if not final_euler:
            return STEP_METHODS[solver](f, st, state)
        v0 = f(st.start, state)  # the final step is Euler's
        euler = EulerStep()(f, st, state, v0)
        if solver == "euler":
            return euler
        heun = HeunStep()(f, st, state, v0)
        return jax.tree.map(lambda e, h: jnp.where(i == n - 1, e, h), euler, heun)

    state = (m0, jnp.ones((), dtype))
    # a Python int gives a scan (reverse-differentiable); a traced count a while loop
    upper = steps if isinstance(steps, int) else n
    if solver in NOISE_LEVEL_STEPS:
        method = NOISE_LEVEL_STEPS[solver]

        def level_step(i, carry):
            return method(lambda c, s: red.denoise(c, *s), interp.coefficients(schedule, time(i)),
                          interp.coefficients(schedule, time(i + 1)), *carry)

        return jax.lax.fori_loop(0, upper, level_step, (state, method.init(state)))[0]
    return jax.lax.fori_loop(0, upper, step, state)


def _newton_step(final_overlap, u):
    """u − M_N(u)/M_N'(u) with the derivative held constant: at a root its value is u and its
    derivative in the parameters is the implicit one."""
    m, dm = jax.jvp(final_overlap, (u[None],), (jnp.ones((1,), u.dtype),))
    dm = jax.lax.stop_gradient(dm[0])
    return u - m[0] / jnp.where(dm > 0, dm, jnp.inf)


def gm_oracle(
    model: TwoModeReduction | Any,
    interp: Interpolant,
    schedule: AbstractSchedule,
    steps: IntLike | Int[Array, ""],
    solver: str = "euler",
    final_step: str = "auto",
    *,
    points: int = 257,
    rounds: int = 6,
    span: float = 12.0,
) -> dict[str, Array]:
    """Exact mode weight and within-mode variance of an N-step solve, without Monte Carlo.

    ``model`` is a two-mode mixture with means ±μ, or its ``TwoModeReduction`` (use
    ``TwoModeReduction.two_modes(d, …)`` for any d without forming the means).

    Returns a dict with ``mode_weight`` (P(μ·X_N > 0)), ``within_mode_var`` (α(0)² y_N²),
    ``threshold`` (M_0*, in units of the standard deviation α(0)/|μ| of M_0) and ``monotone``
    (whether M_N was found nondecreasing in M_0 on the first grid: the root is unique only then).
    The root is bracketed in ±``span`` standard deviations and refined ``rounds`` times on grids
    of ``points`` points; a root beyond ±``span`` is extrapolated by a Newton step from the end
    of the bracket (the mode weight is then 0 or 1 to within 10⁻³²).

    Every output is differentiable in the array leaves of ``schedule`` (and of the model): the
    threshold's derivative is −∂M_N/∂θ ÷ ∂M_N/∂M_0 at the root (implicit function theorem),
    carried by a Newton step whose value is the root itself.
    """
    check_schedule(schedule)
    steps = _steps(steps)
    red = _reduction(model)
    dtype = jnp.result_type(float)
    prior = interp.prior_scale(schedule)  # X_0 = α(0) z
    scale = prior / jnp.sqrt(red.mu_sq)  # std of M_0 = μ·X_0/|μ|²

    def final_overlap(u):  # u: initial overlaps in units of the standard deviation
        return reduced_solve(red, interp, schedule, u * scale, steps, solver, final_step)[0]

    lo, hi = jnp.asarray(-span, dtype), jnp.asarray(span, dtype)
    first = jnp.linspace(lo, hi, points)
    first_vals = jax.lax.stop_gradient(final_overlap(first))
    monotone = jnp.all(jnp.diff(first_vals) >= 0)

    def bracket(grid, vals):
        idx = jnp.clip(jnp.argmax(vals > 0), 1, points - 1)
        return grid[idx - 1], grid[idx]

    def refine(_, ends):  # one solve in the program for every round (compiles once)
        grid = jnp.linspace(*ends, points)
        return bracket(grid, jax.lax.stop_gradient(final_overlap(grid)))

    lo, hi = jax.lax.fori_loop(1, max(rounds, 1), refine, bracket(first, first_vals))
    # every start ends positive → the root lies below −span; none does → above +span. There the
    # Newton step below extrapolates from the end of the bracket.
    root = jnp.where(first_vals[0] > 0, -span, jnp.where(first_vals[-1] <= 0, span,
                                                         0.5 * (lo + hi)))
    threshold = _newton_step(final_overlap, jax.lax.stop_gradient(root))
    weight = 0.5 * jax.scipy.special.erfc(threshold / math.sqrt(2.0))
    y_n = reduced_solve(red, interp, schedule, jnp.zeros((1,), dtype), steps, solver,
                        final_step)[1]
    return {
        "mode_weight": weight,
        "within_mode_var": prior**2 * y_n**2,
        "threshold": threshold,
        "monotone": monotone,
    }
