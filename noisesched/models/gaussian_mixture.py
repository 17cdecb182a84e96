"""Gaussian mixture ρ1 = Σ_k π_k N(μ_k, σ² I_d) with a shared σ (spec §2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._typing import ArrayOrSequence
from .._validation import check_int, check_positive, check_real
from ..interpolants import Coefficients
from .base import AbstractModel, Batch


class GaussianMixture(AbstractModel):
    """K Gaussian components with weights π (K,), means μ (K, d) and a shared scale σ.

    Given component k, x_t ~ N(β μ_k, D I) with D = α² + σ²β², so the posterior weights are a
    softmax of log π_k + (β μ_k·x − β²|μ_k|²/2)/D (O(K d) per sample, never a product of
    densities) and the drift has the closed form

        b = (α α̇ + σ² β β̇)/D · x + (β̇ α² − α α̇ β)/D · Σ_k w_k μ_k,

    finite at t = 1 for every σ > 0.
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    sigma: float

    def __init__(self, weights: ArrayOrSequence, means: ArrayOrSequence, sigma: float):
        w = np.asarray(weights, dtype=float)
        mu = np.asarray(means, dtype=float)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(f"weights must be a 1-D array of K >= 1 entries; got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"weights must each be in (0, 1]; got {w.tolist()}")
        if abs(w.sum() - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1; got sum {w.sum():.8g}")
        if mu.ndim != 2 or mu.shape[0] != w.size:
            raise ValueError(
                f"means must have shape (K, d) = ({w.size}, d) to match weights; got {mu.shape}"
            )
        check_int("d", mu.shape[1], lo=1)
        if not np.all(np.isfinite(mu)):
            raise ValueError("means must be finite; got nan or inf entries")
        check_positive("sigma", sigma)
        self.weights = jnp.asarray(w / w.sum())
        self.means = jnp.asarray(mu)
        self.sigma = float(sigma)

    @classmethod
    def two_modes(cls, d: int, p: float = 0.8, m: float = 1.0, sigma: float = 0.5
                  ) -> GaussianMixture:
        """The paper's case: weights (p, 1 − p) on means ±m·(1, …, 1), so |μ|² = m² d."""
        check_int("d", d, lo=1)
        check_real("p", p, 0.0, 1.0)
        check_positive("m", m)
        check_positive("sigma", sigma)
        mean = jnp.full((d,), float(m))
        return cls(weights=[p, 1.0 - p], means=jnp.stack([mean, -mean]), sigma=sigma)

    @property  # type: ignore[misc]
    def d(self) -> int:  # type: ignore[override]  # implements the AbstractVar of AbstractModel
        return self.means.shape[1]

    @property
    def K(self) -> int:  # noqa: N802 - the mixture's conventional name
        return self.means.shape[0]

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights))
        noise = jax.random.normal(k_noise, (self.d,), dtype=self.means.dtype)
        return self.means[comp] + self.sigma * noise

    def statistics(self, c: Coefficients, x: Batch) -> Float[Array, "*batch K"]:
        """μ_k·x for each component, shape (..., K): the drift's only sums over coordinates."""
        return project(x, self.means.astype(x.dtype))

    def _posterior_mean_and_variance(self, c: Coefficients, dots: Array, dtype):
        means = self.means.astype(dtype)
        var = c.alpha_sq + self.sigma**2 * c.beta**2  # D
        norms = jnp.sum(means * means, axis=-1)
        # |μ_k|² is O(d): subtract its smallest value before it meets the O(√d) term μ_k·x, so
        # float32 keeps the digits of μ_k·x (the shift cancels in the softmax).
        logits = (
            jnp.log(self.weights).astype(dtype)
            + (c.beta / var) * dots
            - (0.5 * c.beta**2 / var) * (norms - jnp.min(norms))
        )
        w = jax.nn.softmax(logits, axis=-1)
        return combine(w, means), var

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        mean, var = self._posterior_mean_and_variance(c, self.statistics(c, x), x.dtype)
        return (self.sigma**2 * c.beta / var) * x + (c.alpha_sq / var) * mean

    def velocity_from_statistics(self, c: Coefficients, x: Batch,
                                 stats: Float[Array, "*batch K"]) -> Batch:
        mean, var = self._posterior_mean_and_variance(c, stats, x.dtype)
        a = (c.alpha_dalpha + self.sigma**2 * c.beta * c.dbeta) / var
        b = (c.dbeta * c.alpha_sq - c.alpha_dalpha * c.beta) / var
        return a * x + b * mean

    def overlap(self, x: Batch) -> Float[Array, "*batch K"]:
        """M_k = μ_k·x / |μ_k|² for each component (zero means give 0)."""
        means = self.means.astype(x.dtype)
        norms = jnp.sum(means * means, axis=-1)
        return project(x, means) / jnp.where(norms > 0, norms, 1.0)

    def log_density(self, c: Coefficients, x: Float[Array, " d"]) -> Float[Array, ""]:
        """log ρ_t(x) in closed form (for one point x of shape (d,))."""
        var = c.alpha_sq + self.sigma**2 * c.beta**2
        sq = jnp.sum((x - c.beta * self.means) ** 2, axis=-1)
        log_comp = -0.5 * sq / var - 0.5 * self.d * jnp.log(2 * math.pi * var)
        return jax.nn.logsumexp(jnp.log(self.weights) + log_comp)



#: Up to this many means, μ_k·x and Σ_k w_k μ_k are written as sums of products rather than
#: matrix products: a compiler fuses those with the elementwise update of the state (a matrix
#: product would be a library call that reads or writes a full (n, d) array of its own).
FUSED_MAX_K = 8


def project(x: Batch, means: Float[Array, "K d"]) -> Float[Array, "*batch K"]:
    """μ_k·x for each row of ``means``, shape (..., K)."""
    if means.shape[0] > FUSED_MAX_K:
        return x @ means.T

    def one_reduction(x, means):  # XLA:CPU vectorises one reduction over (..., K, d) best
        return jnp.sum(x[..., None, :] * means, axis=-1)

    def k_reductions(x, means):  # K sums of (..., d): a GPU fuses them with the pass making x
        return jnp.stack([jnp.sum(x * means[k], axis=-1) for k in range(means.shape[0])],
                         axis=-1)

    return jax.lax.platform_dependent(x, means, cpu=one_reduction, default=k_reductions)


def combine(w: Float[Array, "*batch K"], means: Float[Array, "K d"]) -> Batch:
    """Σ_k w_k μ_k, shape (..., d)."""
    if means.shape[0] <= FUSED_MAX_K:
        out = w[..., 0, None] * means[0]
        for k in range(1, means.shape[0]):
            out = out + w[..., k, None] * means[k]
        return out
    return w @ means
