"""Empirical laws ρ1 = Σ_i π_i δ(x − x_i) on finitely many support points, with their exact
denoiser: the memorising reference for networks trained on a finite data set.

Given x_t = α z + β x1, the posterior of the support point is a softmax of

    log π_i − |x − β x_i|²/(2α²) = log π_i + (β x·x_i − β²|x_i|²/2)/α² − |x|²/(2α²),

and the last term is the same for every i, so it drops out: the denoiser needs only the dot
products x·x_i and the norms |x_i|². The largest of the bracketed terms is subtracted before the
division by α², so the logits stay finite as α → 0, where the denoiser tends to the support point
nearest to x/β.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..interpolants import Coefficients
from .base import AbstractModel, Batch


class AbstractEmpiricalModel(AbstractModel):
    """A data law on support points ``points`` (N, d) with prior log-weights ``log_prior``
    (N,) (log π_i, Σ_i π_i = 1), and its exact denoiser and exact samples.

    Subclasses set both fields in their ``__init__`` and implement the features of the law
    (``features``, ``row_statistics``, ``summary_from_rows``).
    """

    #: The support is discrete: the drift is unbounded as α → 0 away from the support points.
    singular_at_data: ClassVar[bool] = True

    points: Float[Array, "N d"]
    log_prior: Float[Array, " N"]

    @property  # type: ignore[misc]
    def d(self) -> int:  # type: ignore[override]  # implements the AbstractVar of the protocols
        return self.points.shape[1]

    def work_per_entry(self) -> float:
        """Two products with the N support points per coordinate (logits and posterior mean)."""
        return 2.0 * self.points.shape[0]

    def posterior_logits(self, c: Coefficients, x: Batch) -> Float[Array, "*batch N"]:
        """log P(x1 = x_i | x_t = x) up to a constant per row, shape (..., N)."""
        return posterior_logits(self.points.astype(x.dtype), self.log_prior.astype(x.dtype), c, x)

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        """η = Σ_i softmax_i(log π_i − |x − β x_i|²/(2α²)) x_i."""
        points = self.points.astype(x.dtype)
        weights = jax.nn.softmax(self.posterior_logits(c, x), axis=-1)
        return weights @ points

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        """A support point x_i drawn with probability π_i."""
        return self.points[jax.random.categorical(key, self.log_prior)]


def posterior_logits(points: Float[Array, "N d"], log_prior: Float[Array, " N"],
                     c: Coefficients, x: Batch) -> Float[Array, "*batch N"]:
    """log π_i + (s_i − max_j s_j)/α² with s_i = β x·x_i − β²|x_i|²/2 = (|x|² − |x − β x_i|²)/2:
    the log posterior of the support points up to a constant per row, finite for every α ≥ 0
    (α = 0 keeps only the nearest points; the tiniest positive α² stands in for 0)."""
    beta = jnp.asarray(c.beta, x.dtype)
    alpha_sq = jnp.maximum(jnp.asarray(c.alpha_sq, x.dtype), jnp.finfo(x.dtype).tiny)
    sq_norms = jnp.sum(points * points, axis=-1)
    s = beta * (x @ points.T) - (0.5 * beta**2) * sq_norms
    s = s - jnp.max(s, axis=-1, keepdims=True)  # ≤ 0, and 0 at the nearest point
    return log_prior + s / alpha_sq
