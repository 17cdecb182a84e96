"""How well a denoiser denoises: its excess error over the exact denoiser's, per noise level."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray

from .._typing import ArrayOrSequence
from .._validation import check_int, check_key
from ..interpolants import Coefficients
from ..models.base import AbstractDataLaw, AbstractDenoiser, check_data_law

__all__ = ["sigma_coefficients", "denoising_error"]


def sigma_coefficients(sigma: ArrayLike) -> Coefficients:
    """The coefficients (α, β) = (σ, 1) of y = x1 + σ z (σ-space), for ``denoise``: only α, β
    and α² enter a denoiser (the time derivatives are set to 0)."""
    sigma = jnp.asarray(sigma)
    zero = jnp.zeros_like(sigma)
    return Coefficients(alpha=sigma, beta=jnp.ones_like(sigma), dbeta=zero, alpha_sq=sigma**2,
                        alpha_dalpha=zero)


def denoising_error(denoiser: AbstractDenoiser, exact: AbstractDenoiser,
                    sigmas: ArrayOrSequence, key: PRNGKeyArray, n: int = 4096,
                    law: AbstractDataLaw | None = None) -> dict[str, np.ndarray]:
    """The excess mean squared error of ``denoiser`` over the exact one, per noise level.

    At each σ, n samples x1 of the law (``law``, default ``exact`` itself), y = x1 + σ z:
    MMSE(σ) = mean |η*(y) − x1|²/d with η* the exact denoiser, and the excess
    E(σ) = mean |η(y) − η*(y)|²/d, which equals MSE(η) − MMSE since η* is the conditional mean
    (paired on the same draws, so its Monte Carlo error is that of E alone).

    Returns:
        ``sigma``, ``mmse``, ``mmse_se``, ``excess``, ``excess_se`` and ``ratio`` =
        excess/mmse with ``ratio_se`` (delta method on the two means), arrays of shape (k,);
        the ratio is nan where the MMSE is 0 (a law of finitely many points at small σ).
    """
    check_key("key", key)
    check_int("n", n, lo=2)
    law = check_data_law(exact if law is None else law, "denoising_error")
    if denoiser.d != law.d or exact.d != law.d:
        raise ValueError(f"denoiser d = {denoiser.d}, exact d = {exact.d} and law d = {law.d} "
                         "must be equal")
    levels = np.atleast_1d(np.asarray(sigmas, dtype=float))
    if levels.ndim != 1 or not np.all(np.isfinite(levels)) or np.any(levels <= 0):
        raise ValueError("sigmas must be a 1-D array of positive finite noise levels")

    try:
        probe = jax.eval_shape(lambda k: law.sample(k, 2), jax.random.PRNGKey(0))
    except NotImplementedError:
        raise ValueError(f"denoising_error needs exact samples of the law; "
                         f"{type(law).__name__} has no sample_one") from None

    @jax.jit
    def one(k, sigma):
        kx, kz = jax.random.split(k)
        x1 = law.sample(kx, n)
        y = x1 + sigma * jax.random.normal(kz, x1.shape, x1.dtype)
        c = sigma_coefficients(sigma.astype(x1.dtype))
        best = exact.denoise(c, y)
        err = jnp.mean(jnp.square(best - x1), axis=-1)
        excess = jnp.mean(jnp.square(denoiser.denoise(c, y) - best), axis=-1)
        return err, excess

    out: dict[str, list[float]] = {k: [] for k in ("mmse", "mmse_se", "excess", "excess_se",
                                                   "ratio", "ratio_se")}
    for i, sigma in enumerate(levels):
        err, excess = (np.asarray(v, np.float64)
                       for v in one(jax.random.fold_in(key, i), jnp.asarray(sigma, probe.dtype)))
        m_err, m_exc = err.mean(), excess.mean()
        cov = np.cov(np.stack([err, excess])) / n
        if m_err > 0:
            ratio = m_exc / m_err
            grad = np.array([-m_exc / m_err**2, 1.0 / m_err])
        else:  # a law of finitely many points is denoised exactly at small σ
            ratio, grad = math.nan, np.full(2, math.nan)
        out["mmse"].append(m_err)
        out["mmse_se"].append(math.sqrt(cov[0, 0]))
        out["excess"].append(m_exc)
        out["excess_se"].append(math.sqrt(cov[1, 1]))
        out["ratio"].append(ratio)
        out["ratio_se"].append(math.sqrt(max(grad @ cov @ grad, 0.0))
                               if math.isfinite(ratio) else math.nan)
    return {"sigma": levels, **{k: np.asarray(v) for k, v in out.items()}}
