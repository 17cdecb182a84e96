"""Samplers that step in noise level, as most samplers in use do: σ-space Euler (DDIM,
k-diffusion's Euler) and DPM-Solver++(2M) (Lu et al. 2022, data prediction, multistep).

Both are written for y = x/β and σ = α/β (spec §7): y ← D + (σ_{i+1}/σ_i)(y − D), with D the
denoiser's output η at (t_i, x_i). Here they act on x itself, because y is infinite at t = 0
(β = 0) while x is not:

    x_{i+1} = (α_{i+1}/α_i) x_i + (β_{i+1} − α_{i+1} β_i/α_i) D_i.

σ-space Euler takes D_i = η_i. DPM-Solver++(2M) corrects it with the previous output: with
λ = −log σ, h_i = λ_{i+1} − λ_i and r_i = h_{i−1}/h_i, D_i = η_i + (η_i − η_{i−1})/(2 r_i); its
first step, a step after one from σ = ∞ (h_{i−1} = ∞) and the last step to σ = 0 are σ-space
Euler steps, as in k-diffusion. From σ_0 = ∞ the first step lands on x_1 = α_1 z + β_1 E[x1].

They need α and β at the grid points only (never α̇, β̇): the kinks of a schedule, where τ' jumps,
are no concern, and the denoiser is never evaluated at t = 1. A step acts on any pytree state
with a denoiser of the same structure: the (n, d) batch of ``noisesched.solve`` and the 2-D
reduction (M, y) of ``noisesched.theory``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ..interpolants import Coefficients

#: η(c, state): the denoiser's output at coefficients c, a pytree of the structure of state.
Denoise = Callable[[Coefficients, PyTree], PyTree]


def _transition(c0: Coefficients, c1: Coefficients) -> tuple[Array, Array]:
    """(α_{i+1}/α_i, β_{i+1} − α_{i+1} β_i/α_i): x_{i+1} = A x_i + B D_i."""
    ratio = c1.alpha / c0.alpha
    return ratio, c1.beta - ratio * c0.beta


def _log_step(c0: Coefficients, c1: Coefficients) -> Array:
    """h = λ_{i+1} − λ_i = log(α_i β_{i+1}) − log(α_{i+1} β_i); ∞ from σ = ∞ or to σ = 0.
    Written with safe arguments so that its gradient stays finite where it is ∞."""
    below = c1.alpha * c0.beta
    finite = below > 0
    return jnp.where(finite, jnp.log(c0.alpha * c1.beta) - jnp.log(jnp.where(finite, below, 1.0)),
                     jnp.inf)


def _update(c0: Coefficients, c1: Coefficients, state: PyTree, target: PyTree) -> PyTree:
    a, b = _transition(c0, c1)
    return jax.tree.map(lambda x, e: a * x + b * e, state, target)


class AbstractNoiseLevelStep(eqx.Module):
    """One step of a sampler in noise level: ``(state, memory) -> (state, memory)`` given the
    coefficients at both ends of the step and the denoiser."""

    #: the order of accuracy in the step size (in λ)
    order: ClassVar[int]

    @abc.abstractmethod
    def init(self, state: PyTree) -> PyTree:
        """The memory carried before the first step."""

    @abc.abstractmethod
    def __call__(self, denoise: Denoise, c0: Coefficients, c1: Coefficients, state: PyTree,
                 memory: PyTree) -> tuple[PyTree, PyTree]:
        """The state at the end of the step from ``state`` at its start, and the new memory."""


class SigmaEulerStep(AbstractNoiseLevelStep):
    """σ-space Euler (DDIM): y_{i+1} = y_i + (σ_{i+1} − σ_i)(y_i − D(y_i, σ_i))/σ_i."""

    order: ClassVar[int] = 1

    def init(self, state):
        return None

    def __call__(self, denoise, c0, c1, state, memory):
        return _update(c0, c1, state, denoise(c0, state)), None


class DPMSolverPP2MStep(AbstractNoiseLevelStep):
    """DPM-Solver++(2M): the σ-space Euler step with D_i = η_i + (η_i − η_{i−1})/(2 r_i),
    r_i = h_{i−1}/h_i (second order in h). The memory is (η_{i−1}, h_{i−1})."""

    order: ClassVar[int] = 2

    def init(self, state):
        return (jax.tree.map(jnp.zeros_like, state),
                jnp.asarray(jnp.inf, jax.tree.leaves(state)[0].dtype))

    def __call__(self, denoise, c0, c1, state, memory):
        previous, h_previous = memory
        eta = denoise(c0, state)
        h = _log_step(c0, c1)
        usable = jnp.isfinite(h) & jnp.isfinite(h_previous)
        # h/(2 h_{i−1}) = 1/(2 r); 0 where either step is infinite (a first-order step)
        weight = jnp.where(usable, h / (2.0 * jnp.where(usable, h_previous, 1.0)), 0.0)
        target = jax.tree.map(lambda e, p: e + weight * (e - p), eta, previous)
        return _update(c0, c1, state, target), (eta, h)


#: The steps by solver name.
NOISE_LEVEL_STEPS: dict[str, AbstractNoiseLevelStep] = {
    "sigma_euler": SigmaEulerStep(),
    "dpmpp_2m": DPMSolverPP2MStep(),
}


class AbstractNoiseLevelSolver(diffrax.AbstractSolver):
    """A noise-level step as a diffrax solver on a fixed grid. Expects ``args`` to be a
    ``noisesched._solve.problem.Piece`` (as ``noisesched.solve`` passes it): the step reads the
    model's denoiser and the coefficients from it, not the ODE term."""

    step_method: ClassVar[AbstractNoiseLevelStep]
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return self.step_method.order

    def init(self, terms, t0, t1, y0, args):
        return self.step_method.init(y0)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        problem = args.problem
        y1, memory = self.step_method(problem.model.denoise, problem.coefficients(t0),
                                      problem.coefficients(t1), y0, solver_state)
        return y1, None, dict(y0=y0, y1=y1), memory, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class SigmaEuler(AbstractNoiseLevelSolver):
    """σ-space Euler (DDIM, k-diffusion's Euler) as a diffrax solver (see ``SigmaEulerStep``)."""

    step_method: ClassVar[AbstractNoiseLevelStep] = SigmaEulerStep()


class DPMSolverPP2M(AbstractNoiseLevelSolver):
    """DPM-Solver++(2M) as a diffrax solver (see ``DPMSolverPP2MStep``)."""

    step_method: ClassVar[AbstractNoiseLevelStep] = DPMSolverPP2MStep()


def noise_level_loop(step_method: AbstractNoiseLevelStep, denoise: Denoise,
                     coefficients: Callable[[Float[Array, ""]], Coefficients], ts: Array,
                     state: PyTree, observe: Callable[[PyTree], Any] | None = None,
                     scan: Callable[..., Any] = jax.lax.scan) -> tuple[PyTree, Any]:
    """Every step of the grid ``ts`` (shape (M + 1,)) from ``state``: the final state and
    ``observe`` at each grid point after the first (None without ``observe``). ``scan`` is the
    loop (``lax.scan``, or a blocked one under ``jax.checkpoint``)."""

    def body(carry, i):
        x, memory = carry
        x, memory = step_method(denoise, coefficients(ts[i]), coefficients(ts[i + 1]), x,
                                memory)
        return (x, memory), (None if observe is None else observe(x))

    (x, _), obs = scan(body, (state, step_method.init(state)), jnp.arange(ts.shape[0] - 1))
    return x, obs
