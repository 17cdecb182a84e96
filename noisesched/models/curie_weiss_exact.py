"""The finite-d Curie–Weiss law, exactly, through the Hubbard–Stratonovich identity (spec §3).

P(s) ∝ exp(β M²/(2d) + H M), M = Σ_i s_i, H = h/d, is a one-dimensional mixture of product
measures: P(s) ∝ ∫ dy exp(−d y²/(2β)) Π_i e^{(y + H) s_i}. Given x_t = α z + β_t s, the posterior
over y is π(y | x) ∝ exp(f(y)), f(y) = −d y²/(2β) + Σ_i log cosh(y + H + γ x_i), γ = β_t/α², and

    η_i = E[s_i | x] = ∫ π(y | x) tanh(y + H + γ x_i) dy.

Since f'' ≥ −d/β, π(y | x) varies on no scale finer than √(β/d): while that takes at most
``max_grid`` points, the integral is a trapezoid rule on a uniform grid covering [−β, β] with
margins (spectrally accurate for any shape of f). Beyond, π(y | x) has width ~ 1/√d around one or
two maxima, all inside [−β, β]; the two highest are located by a scan of that interval and
refined by Newton, and the integral is a trapezoid rule on ±12 Laplace widths around each peak,
the two windows joined by a smooth partition of unity (log space), with no double counting when
the peaks merge.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int, check_positive, check_real, is_traced
from ..interpolants import Coefficients
from .base import Batch
from .curie_weiss import mean_field_magnetization
from .spins import AbstractSpinLaw, log_binomial


def _log_cosh(z):
    a = jnp.abs(z)
    return a + jnp.log1p(jnp.exp(-2.0 * a)) - math.log(2.0)


class CurieWeissExact(AbstractSpinLaw):
    """Finite-d Curie–Weiss law P(s) ∝ exp(β M²/(2d) + (h/d) M), exact sampler and denoiser.

    Args:
        d: number of spins.
        beta: inverse temperature β_cw > 0.
        h: the paper's field (per-spin field h/d).
        nodes: quadrature nodes per peak of the posterior over y (beyond ``max_grid``).
        max_grid: the most points of the uniform grid over y before peaks are used.

    ``m`` is kept as the mean-field magnetisation, for reference; the phase weight is the exact
    P(M > 0) + ½ P(M = 0).
    """

    d: int = eqx.field(static=True)
    beta: float
    h: float
    m: Float[Array, ""]
    nodes: int = eqx.field(static=True)
    max_grid: int = eqx.field(static=True)

    def __init__(self, d: int, beta: float, h: float = 0.0, nodes: int = 96,
                 max_grid: int = 2048):
        check_int("d", d, lo=1)
        if is_traced((beta, h)):
            raise ValueError("CurieWeissExact needs concrete beta and h (its quadrature grid and "
                             "law of M are sized and summed on the host from them); for a law "
                             "to differentiate in beta or h use noisesched.CurieWeiss")
        check_positive("beta", beta)
        check_real("h", h)
        check_int("nodes", nodes, lo=2)
        check_int("max_grid", max_grid, lo=0)
        self.d = int(d)
        self.beta = beta
        self.h = h
        self.m = mean_field_magnetization(beta)
        self.nodes = nodes
        self.max_grid = max_grid

    # ---------------------------------------------------------------- law of M, sampling
    def _log_prob_up(self) -> Array:
        """log P(u up spins), u = 0 … d, computed in float64 with NumPy (values of order d log 2
        cancel in the normalisation) and returned in JAX's default float type."""
        d = self.d
        mag = 2.0 * np.arange(d + 1, dtype=np.float64) - d
        logits = (log_binomial(d) + float(self.beta) * mag**2 / (2.0 * d)
                  + float(self.h) / d * mag)
        top = logits.max()
        logits -= top + np.log(np.sum(np.exp(logits - top)))
        return jnp.asarray(logits, dtype=jnp.result_type(float))

    def magnetization_law(self):
        u = jnp.arange(self.d + 1, dtype=jnp.result_type(float))
        return (2.0 * u - self.d) / self.d, jnp.exp(self._log_prob_up())

    @property
    def positive_phase_weight(self) -> Float[Array, ""]:
        """P(M > 0) + ½ P(M = 0) under the finite-d law."""
        levels, probs = self.magnetization_law()
        return jnp.sum(jnp.where(levels > 0, probs, 0.0)) + 0.5 * jnp.sum(
            jnp.where(levels == 0, probs, 0.0))

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        k_up, k_perm = jax.random.split(key)
        ups = jax.random.categorical(k_up, self._log_prob_up())
        # a uniformly random configuration with `ups` up spins: the ranks of d uniform numbers
        ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k_perm, (self.d,))))
        return jnp.where(ranks < ups, 1.0, -1.0)

    # ---------------------------------------------------------------- denoiser
    def _log_posterior(self, y, a):
        """f(y) for one row: y (J,), a = H + γ x (d,) → (J,)."""
        return -self.d * y**2 / (2.0 * self.beta) + jnp.sum(_log_cosh(y[:, None] + a), axis=-1)

    def _peaks(self, a, scan: int = 65):
        """The two highest local maxima of f (equal if f has one) and their Laplace widths, for
        one row a (d,). Every maximum lies in [−β, β], since f' < 0 beyond β and > 0 below −β:
        scan that interval, then refine by Newton within one grid cell."""
        beta, d = self.beta, self.d
        grid = jnp.linspace(-beta, beta, scan, dtype=a.dtype)
        f = self._log_posterior(grid, a)
        left = jnp.concatenate([jnp.array([-jnp.inf], a.dtype), f[:-1]])
        right = jnp.concatenate([f[1:], jnp.array([-jnp.inf], a.dtype)])
        score = jnp.where((f >= left) & (f >= right), f, -jnp.inf)
        top = jnp.argsort(-score)[:2]
        top = jnp.where(jnp.isfinite(score[top]), top, top[0])  # one maximum: use it twice
        cell = grid[1] - grid[0]
        lo, hi = grid[top] - cell, grid[top] + cell

        def newton(_, y):
            th = jnp.tanh(y[:, None] + a)
            grad = -d * y / beta + jnp.sum(th, axis=-1)
            curv = -d / beta + jnp.sum(1.0 - th**2, axis=-1)
            step = jnp.where(curv < 0, -grad / curv, 0.0)
            return jnp.clip(y + step, lo, hi)

        y = jax.lax.fori_loop(0, 12, newton, grid[top])
        th = jnp.tanh(y[:, None] + a)
        curv = -d / beta + jnp.sum(1.0 - th**2, axis=-1)
        width = 1.0 / jnp.sqrt(jnp.maximum(-curv, 1e-3 * d / beta))
        return y, width

    def _global_grid(self) -> int:
        """Points of a uniform grid on [−β − 12w, β + 12w] with spacing w/3, w = √(β/d): f'' ≥ −d/β
        everywhere, so the posterior varies on no scale finer than w and the trapezoid rule on
        this grid is spectrally accurate whatever the shape of f."""
        w = math.sqrt(self.beta / self.d)
        return int(math.ceil((2 * self.beta + 24 * w) / (w / 3))) + 1

    def work_per_entry(self) -> float:
        """One per evaluation of log cosh or tanh at a point of the posterior's quadrature (the
        uniform grid, or the scan, the two Newton refinements and the two windows around the
        peaks): 0.08 s per row was measured at d = 10^3 and 3 s at d = 10^4 (Heun, 100 steps,
        one core), against 0.15 s and 4 s predicted from this work."""
        points = self._global_grid()
        return float(2 * points if points <= self.max_grid else 65 + 2 * 12 + 4 * self.nodes)

    def _row_denoise(self, a):
        points = self._global_grid()
        if points <= self.max_grid:
            w = math.sqrt(self.beta / self.d)
            ys = jnp.linspace(-self.beta - 12 * w, self.beta + 12 * w, points, dtype=a.dtype)
            weights = jax.nn.softmax(self._log_posterior(ys, a))  # uniform spacing cancels
            return weights @ jnp.tanh(ys[:, None] + a)
        centers, widths = self._peaks(a)
        # trapezoid rule on a window of ±12 widths around each peak, each window weighted by the
        # smooth partition of unity ρ_c = N_c / (N_+ + N_−): spectrally accurate, no double count
        grid = jnp.linspace(-12.0, 12.0, self.nodes, dtype=a.dtype)
        ys = (centers[:, None] + widths[:, None] * grid).reshape(-1)  # (2J,)
        ends = jnp.zeros(self.nodes, a.dtype).at[jnp.array([0, -1])].set(math.log(0.5))
        log_h = (jnp.log(widths * (grid[1] - grid[0]))[:, None] + ends).reshape(-1)
        log_bump = -0.5 * ((ys[:, None] - centers) / widths) ** 2 - jnp.log(widths)  # (2J, 2)
        own = jnp.repeat(jnp.arange(2), self.nodes)
        log_rho = jnp.take_along_axis(log_bump, own[:, None], axis=1)[:, 0] - jax.nn.logsumexp(
            log_bump, axis=1)
        weights = jax.nn.softmax(log_h + log_rho + self._log_posterior(ys, a))
        return weights @ jnp.tanh(ys[:, None] + a)

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        a = self.h / self.d + (c.beta / c.alpha_sq) * x
        flat = a.reshape(-1, self.d)
        return jax.vmap(self._row_denoise)(flat).reshape(x.shape)
