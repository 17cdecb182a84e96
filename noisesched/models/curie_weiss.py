"""Curie–Weiss spins in the paper's two-phase form (spec §3)."""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._typing import IntLike, RealLike, RealScalar
from .._validation import check_int, check_positive, check_real
from ..interpolants import Coefficients
from .base import Batch, velocity_from_denoiser
from .spins import AbstractSpinLaw, log_binomial


def mean_field_magnetization(beta: ArrayLike, iterations: int = 60) -> Float[Array, ""]:
    """The largest root m ≥ 0 of m = tanh(β m): 0 for β ≤ 1.

    Newton's method from m = 1, which decreases monotonically to the positive root because
    m − tanh(β m) is convex on m > 0.
    """
    # compiled once per dtype (a loop run eagerly would compile anew for every β)
    return _newton_root(jnp.asarray(beta, dtype=jnp.result_type(float)), iterations)


@functools.partial(jax.jit, static_argnames="iterations")
def _newton_root(beta: Float[Array, ""], iterations: int) -> Float[Array, ""]:

    def newton(_, m):
        th = jnp.tanh(beta * m)
        f = m - th
        df = 1.0 - beta * (1.0 - th**2)
        return jnp.where(df > 0, m - f / df, m)

    m = jax.lax.fori_loop(0, iterations, newton, jnp.ones_like(beta))
    return jnp.where(beta > 1.0, m, 0.0)


class CurieWeiss(AbstractSpinLaw):
    """Two-phase Curie–Weiss law on {−1, +1}^d.

    ρ1(s) = W+ Π_i (1 + m s_i)/2 + W− Π_i (1 − m s_i)/2 with m = tanh(β_cw m) and phase weights
    W± = e^{±hm}/(2 cosh hm): the large-d law of P(s) ∝ exp(β_cw M²/(2d) + (h/d) M), M = Σ_i s_i.

    Args:
        d: number of spins.
        beta: inverse temperature β_cw > 0 (two phases for β_cw > 1).
        h: the paper's field (per-spin field h/d).

    ``beta`` and ``h`` may be traced (a law built inside ``jit`` or ``grad``): their values are
    then checked when the program runs, with the same messages.
    """

    d: int = eqx.field(static=True)
    beta: RealScalar
    h: RealScalar
    m: Float[Array, ""]

    def __init__(self, d: IntLike, beta: RealLike, h: RealLike = 0.0):
        check_int("d", d, lo=1)
        checked: Any = check_positive("beta", beta)  # traced: checked when the program runs
        field: Any = check_real("h", h)
        self.d = int(d)
        self.beta = checked
        self.h = field
        self.m = mean_field_magnetization(checked)

    @property
    def positive_phase_weight(self) -> Float[Array, ""]:
        """W+ = e^{hm}/(2 cosh hm)."""
        return jax.nn.sigmoid(2.0 * self.h * self.m)

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        k_phase, k_spins = jax.random.split(key)
        sign = jnp.where(jax.random.bernoulli(k_phase, self.positive_phase_weight), 1.0, -1.0)
        up = jax.random.bernoulli(k_spins, 0.5 * (1.0 + sign * self.m), (self.d,))
        return jnp.where(up, 1.0, -1.0)

    def phase_logit(self, c: Coefficients, x: Batch) -> Float[Array, "*batch"]:
        """L = log(P(+ | x_t = x)/P(− | x_t = x)) = 2hm + 2 Σ_i atanh(m tanh(γ x_i)), γ = β/α²."""
        return self._logit_given(self._saturation(c, x))[..., 0]

    def _saturation(self, c: Coefficients, x: Batch) -> Batch:
        """v = sign(x)·(1 − |T|) with T = tanh(γ x), γ = β/α² (sign(0) = +1), from one
        exponential: 1 − |T| = 2e/(1 + e), e = exp(−2γ|x|), exact where T rounds to ±1 (the drift
        divides 1 − T² by 1 − m²T², so an error in T near ±1 would grow by (1 + m)/(1 − m)).
        T = sign(v) − v."""
        e = jnp.exp(-2.0 * (c.beta / c.alpha_sq) * jnp.abs(x))
        # never 0, so that v keeps the sign where T rounds to ±1 (1 − tiny rounds to 1)
        u = jnp.maximum(2.0 * e / (1.0 + e), jnp.finfo(x.dtype).tiny)
        return jnp.where(x >= 0, 1.0, -1.0) * u

    def _logit_given(self, saturation: Batch) -> Float[Array, "*batch 1"]:
        m = self.m.astype(saturation.dtype)
        tanh_x = jnp.sign(saturation) - saturation
        return 2.0 * self.h * m + 2.0 * jnp.sum(jnp.arctanh(m * tanh_x), axis=-1, keepdims=True)

    def work_per_entry(self) -> float:
        """One exponential and one atanh per entry: about ten mixture entries on a CPU (measured in
        benchmarks/row_blocks.py)."""
        return 10.0

    def statistics(self, c: Coefficients, x: Batch) -> Float[Array, "*batch 1"]:
        """The phase logit L (see ``phase_logit``) as a trailing axis of size 1."""
        return self._logit_given(self._saturation(c, x))

    def statistics_for_blocks(self, c: Coefficients, x: Batch
                              ) -> tuple[Float[Array, "*batch 1"], Batch]:
        """(L, v = sign(x)(1 − |tanh(γ x)|)): with v kept, a step evaluates one exponential and
        one atanh per entry (``velocity_from_statistics`` then needs none of its own)."""
        saturation = self._saturation(c, x)
        return self._logit_given(saturation), saturation

    def _denoise_given(self, c: Coefficients, x: Batch, stats) -> Batch:
        """η = W+ tanh(atanh m + γ x) + W− tanh(−atanh m + γ x) from L and T = tanh(γ x):
        by tanh(a ± b) = (tanh a ± tanh b)/(1 ± tanh a tanh b), with W± = σ(±L),

            η = (T (1 − m²) + (2 W+ − 1) m (1 − T²)) / ((1 − m²) + m² (1 − T²)),

        one division and no transcendental function beyond T. With u = 1 − |T| (``_saturation``),
        1 − T² = u (2 − u) has no cancellation, so η keeps float precision where T rounds to ±1."""
        logit, saturation = (stats if isinstance(stats, tuple)
                             else (stats, self._saturation(c, x)))
        m = self.m.astype(x.dtype)
        phase = jnp.tanh(0.5 * logit)  # 2 W+ − 1, one per row
        u = jnp.abs(saturation)
        tanh_x = jnp.sign(saturation) - saturation
        one_minus_t2 = u * (2.0 - u)
        return (tanh_x * (1.0 - m * m) + phase * m * one_minus_t2) / (
            (1.0 - m * m) + m * m * one_minus_t2)

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        return self._denoise_given(c, x, self.statistics_for_blocks(c, x))

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        return velocity_from_denoiser(c, x, self.denoise(c, x))

    def velocity_from_statistics(self, c: Coefficients, x: Batch, stats) -> Batch:
        """The drift from ``statistics`` (T recomputed: two tanh per entry per step) or from
        ``statistics_for_blocks`` (T kept: one)."""
        return velocity_from_denoiser(c, x, self._denoise_given(c, x, stats))

    def magnetization_law(self) -> tuple[Float[Array, " d_plus_1"], Float[Array, " d_plus_1"]]:
        """Exact law of mean_i s_i: levels (2u − d)/d, u = 0 … d up spins, and probabilities
        W+ Bin(u; d, (1 + m)/2) + W− Bin(u; d, (1 − m)/2), computed in log space.

        With m = tanh(β m): (1 ± m)/2 = σ(±2βm) and W± = σ(±2hm), so every logarithm is a
        softplus, finite when m or W+ round to 1 (β or h of order 10)."""
        d = self.d
        u = np.arange(d + 1, dtype=np.float64)
        phase, field = float(self.beta) * float(self.m), float(self.h) * float(self.m)

        def softplus(z):
            return np.logaddexp(0.0, z)

        def log_binom(sign):  # log Bin(u; d, σ(2 sign β m))
            return (log_binomial(d) - u * softplus(-2.0 * sign * phase)
                    - (d - u) * softplus(2.0 * sign * phase))

        logp = np.logaddexp(-softplus(-2.0 * field) + log_binom(1.0),
                            -softplus(2.0 * field) + log_binom(-1.0))
        dtype = jnp.result_type(float)
        return jnp.asarray((2.0 * u - d) / d, dtype), jnp.asarray(np.exp(logp), dtype)
