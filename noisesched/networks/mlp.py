"""Networks F(x, noise) for the EDM-preconditioned denoiser: an MLP for vectors.

A network is any ``eqx.Module`` called on one sample, ``network(x, noise) -> F`` with ``x`` of
shape (d,) (already scaled by c_in) and ``noise`` a scalar (c_noise); the denoiser maps it over
a batch. To be saved by ``noisesched.save_denoiser`` it also gives ``hyperparameters()``: the
keyword arguments of its constructor besides ``key``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int
from .preconditioning import NOISE_CLIP

__all__ = ["NoiseEmbedding", "MLP"]


class NoiseEmbedding(eqx.Module):
    """The noise input (a scalar in [−¼ log 10⁶, ¼ log 10⁶] for the default range) as a vector of
    size ``width``: sines and cosines at ``frequencies`` fixed geometric frequencies (one to 64
    periods over that range), then a two-layer MLP."""

    frequencies: int = eqx.field(static=True)
    mlp: eqx.nn.MLP

    def __init__(self, width: int, frequencies: int, *, key: PRNGKeyArray):
        self.frequencies = frequencies
        self.mlp = eqx.nn.MLP(2 * frequencies + 1, width, width, depth=2,
                              activation=jax.nn.silu, key=key)

    def __call__(self, noise: Float[Array, ""]) -> Float[Array, " width"]:
        span = 0.5 * NOISE_CLIP  # the width of the noise input's default range
        omega = 2 * jnp.pi * jnp.geomspace(1.0, 64.0, self.frequencies, dtype=noise.dtype) / span
        angles = omega * noise
        return self.mlp(jnp.concatenate([jnp.sin(angles), jnp.cos(angles), noise[None]]))


def zero_weights(layer: eqx.nn.Linear) -> eqx.nn.Linear:
    """``layer`` with its weights and bias set to 0 (an output that starts at F = 0, i.e.
    D = c_skip y: the best linear guess before training)."""
    layer = eqx.tree_at(lambda lin: lin.weight, layer, jnp.zeros_like(layer.weight))
    if layer.bias is not None:
        layer = eqx.tree_at(lambda lin: lin.bias, layer, jnp.zeros_like(layer.bias))
    return layer


class _Block(eqx.Module):
    """h + silu(W norm(h) (1 + a) + b), (a, b) from the noise embedding (FiLM)."""

    norm: eqx.nn.LayerNorm
    linear: eqx.nn.Linear
    film: eqx.nn.Linear

    def __init__(self, width: int, embed: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.norm = eqx.nn.LayerNorm(width)
        self.linear = eqx.nn.Linear(width, width, key=k1)
        self.film = zero_weights(eqx.nn.Linear(embed, 2 * width, key=k2))

    def __call__(self, h: Float[Array, " w"], e: Float[Array, " e"]) -> Float[Array, " w"]:
        scale, shift = jnp.split(self.film(e), 2)
        return h + jax.nn.silu(self.linear(self.norm(h)) * (1.0 + scale) + shift)


class MLP(eqx.Module):
    """F(x, noise) = W_out h(x, e) + g(e) ⊙ x for vectors x ∈ R^d, e the noise embedding.

    h is a residual MLP of ``depth`` blocks of ``width`` units modulated by e (FiLM). The gate
    g(e) ∈ R^d is a per-coordinate linear path: the ideal F of data with a Gaussian part holds
    a term (a(σ) − c_skip) y/c_out that is linear in x with a noise-dependent factor, which a
    bottleneck of ``width`` < d units cannot carry. Output and gate start at 0 (D = c_skip y).

    Args:
        d: the dimension.
        width: units per hidden layer.
        depth: residual blocks.
        embed: size of the noise embedding.
        frequencies: Fourier frequencies of the noise embedding.
        key: initialisation.
    """

    d: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    embed: int = eqx.field(static=True)
    n_frequencies: int = eqx.field(static=True)
    embedding: NoiseEmbedding
    input: eqx.nn.Linear
    input_film: eqx.nn.Linear
    blocks: tuple[_Block, ...]
    output: eqx.nn.Linear
    gate: eqx.nn.Linear

    def __init__(self, d: int, width: int = 256, depth: int = 3, embed: int = 64,
                 frequencies: int = 16, *, key: PRNGKeyArray):
        for name, value in (("d", d), ("width", width), ("embed", embed),
                            ("frequencies", frequencies)):
            check_int(name, value, lo=1)
        check_int("depth", depth, lo=0)
        self.d, self.width, self.depth, self.embed = d, width, depth, embed
        self.n_frequencies = frequencies
        keys = jax.random.split(key, 5 + depth)
        self.embedding = NoiseEmbedding(embed, frequencies, key=keys[0])
        self.input = eqx.nn.Linear(d, width, key=keys[1])
        self.input_film = eqx.nn.Linear(embed, width, key=keys[2])
        self.blocks = tuple(_Block(width, embed, key=k) for k in keys[5:])
        self.output = zero_weights(eqx.nn.Linear(width, d, key=keys[3]))
        self.gate = zero_weights(eqx.nn.Linear(embed, d, key=keys[4]))

    def hyperparameters(self) -> dict[str, Any]:
        return {"d": self.d, "width": self.width, "depth": self.depth, "embed": self.embed,
                "frequencies": self.n_frequencies}

    def __call__(self, x: Float[Array, " d"], noise: Float[Array, ""]) -> Float[Array, " d"]:
        e = self.embedding(noise)
        h = jax.nn.silu(self.input(x) + self.input_film(e))
        for block in self.blocks:
            h = block(h, e)
        return self.output(h) + self.gate(e) * x
