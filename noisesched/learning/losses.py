"""Losses on final samples (spec §6). Each is a function (model, x) -> scalar, differentiable in
x, so gradients reach the schedule through the sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..models import CurieWeiss, GaussianMixture

Samples = Float[Array, "n d"]


def soft_mode_fraction(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """A smooth p̂: mean sigmoid(μ_0·x / (|μ_0| T)) for a mixture, sigmoid(mean_i x_i · √d / T)
    for Curie–Weiss (the positive phase)."""
    if isinstance(model, GaussianMixture):
        mu = model.means[0].astype(x.dtype)
        score = x @ mu / jnp.linalg.norm(mu)
    elif isinstance(model, CurieWeiss):
        score = jnp.mean(x, axis=-1) * jnp.sqrt(model.d)
    else:
        raise ValueError(f"model must be a GaussianMixture or CurieWeiss; got "
                         f"{type(model).__name__}")
    return jnp.mean(jax.nn.sigmoid(score / temperature))


def mode_asymmetry_loss(model, x: Samples, temperature: float = 0.05) -> Float[Array, ""]:
    """(p̂_soft − target)², target p (GM, weight of component 0) or W+ (CW)."""
    target = (model.weights[0] if isinstance(model, GaussianMixture)
              else model.positive_phase_weight)
    return (soft_mode_fraction(model, x, temperature) - target) ** 2


def low_level_loss(model, x: Samples) -> Float[Array, ""]:
    """(within-mode variance/σ² − 1)² for a mixture (the variance off the span of the means);
    (mean x_i² − 1)² for Curie–Weiss."""
    if isinstance(model, GaussianMixture):
        means = model.means.astype(x.dtype)
        q, _ = jnp.linalg.qr(means.T)
        resid = x - (x @ q) @ q.T
        var = jnp.mean(jnp.sum(resid * resid, axis=-1)) / (model.d - q.shape[1])
        return (var / model.sigma**2 - 1.0) ** 2
    if isinstance(model, CurieWeiss):
        return (jnp.mean(x * x) - 1.0) ** 2
    raise ValueError(f"model must be a GaussianMixture or CurieWeiss; got {type(model).__name__}")


def combined_loss(model, x: Samples, weight_high: float = 1.0, weight_low: float = 0.1,
                  temperature: float = 0.05) -> Float[Array, ""]:
    """weight_high · mode-asymmetry loss + weight_low · low-level loss."""
    return (weight_high * mode_asymmetry_loss(model, x, temperature)
            + weight_low * low_level_loss(model, x))
