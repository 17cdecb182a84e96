"""A small convolutional network F(x, noise) for image-shaped data (e.g. 8×8 digits)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int
from .mlp import NoiseEmbedding, zero_weights

__all__ = ["ConvNet"]


class _ConvBlock(eqx.Module):
    """h + conv(silu(conv(silu(norm(h))) (1 + a) + b)), (a, b) from the noise embedding."""

    norm: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    film: eqx.nn.Linear

    def __init__(self, channels: int, groups: int, embed: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm = eqx.nn.GroupNorm(groups, channels)
        self.conv1 = eqx.nn.Conv2d(channels, channels, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(channels, channels, 3, padding=1, key=k2)
        self.film = zero_weights(eqx.nn.Linear(embed, 2 * channels, key=k3))

    def __call__(self, h: Float[Array, "c H W"], e: Float[Array, " e"]) -> Float[Array, "c H W"]:
        scale, shift = jnp.split(self.film(e), 2)
        u = self.conv1(jax.nn.silu(self.norm(h)))
        u = jax.nn.silu(u * (1.0 + scale[:, None, None]) + shift[:, None, None])
        return h + self.conv2(u)


class ConvNet(eqx.Module):
    """F(x, noise) for images of ``image_shape`` = (H, W) flattened row-major to x ∈ R^(H·W):
    a 3×3 convolution to ``channels`` channels, ``blocks`` residual blocks at full resolution
    modulated by the noise embedding (FiLM), a 3×3 convolution back to one channel, plus a
    per-pixel gate g(e) ⊙ x (as ``MLP``: the linear part of the ideal F). Small images need no
    down-sampling: 8×8 pixels lie within the receptive field of four blocks.

    Args:
        image_shape: (H, W); d = H·W.
        channels: feature channels (a multiple of ``groups``).
        blocks: residual blocks.
        embed: size of the noise embedding.
        groups: groups of the group normalisation.
        frequencies: Fourier frequencies of the noise embedding.
        key: initialisation.
    """

    image_shape: tuple[int, int] = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    n_blocks: int = eqx.field(static=True)
    embed: int = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    n_frequencies: int = eqx.field(static=True)
    embedding: NoiseEmbedding
    conv_in: eqx.nn.Conv2d
    blocks: tuple[_ConvBlock, ...]
    norm_out: eqx.nn.GroupNorm
    conv_out: eqx.nn.Conv2d
    gate: eqx.nn.Linear

    def __init__(self, image_shape: tuple[int, int] | list[int] = (8, 8), channels: int = 64,
                 blocks: int = 4, embed: int = 64, groups: int = 8, frequencies: int = 16, *,
                 key: PRNGKeyArray):
        if not isinstance(image_shape, tuple | list) or len(image_shape) != 2:
            raise ValueError(f"image_shape must be (H, W); got {image_shape!r}")
        for name, value in (("image_shape[0]", image_shape[0]),
                            ("image_shape[1]", image_shape[1]), ("channels", channels),
                            ("embed", embed), ("groups", groups),
                            ("frequencies", frequencies)):
            check_int(name, value, lo=1)
        check_int("blocks", blocks, lo=0)
        if channels % groups:
            raise ValueError(f"channels must be a multiple of groups = {groups}; got {channels}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.channels, self.n_blocks, self.embed, self.groups = channels, blocks, embed, groups
        self.n_frequencies = frequencies
        keys = jax.random.split(key, 4 + blocks)
        self.embedding = NoiseEmbedding(embed, frequencies, key=keys[0])
        self.conv_in = eqx.nn.Conv2d(1, channels, 3, padding=1, key=keys[1])
        self.blocks = tuple(_ConvBlock(channels, groups, embed, key=k) for k in keys[4:])
        self.norm_out = eqx.nn.GroupNorm(groups, channels)
        conv_out = eqx.nn.Conv2d(channels, 1, 3, padding=1, key=keys[2])
        assert conv_out.bias is not None
        self.conv_out = eqx.tree_at(lambda c: (c.weight, c.bias), conv_out,
                                    (jnp.zeros_like(conv_out.weight),
                                     jnp.zeros_like(conv_out.bias)))  # starts at F = 0
        self.gate = zero_weights(eqx.nn.Linear(embed, self.d, key=keys[3]))

    @property
    def d(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def hyperparameters(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "channels": self.channels,
                "blocks": self.n_blocks, "embed": self.embed, "groups": self.groups,
                "frequencies": self.n_frequencies}

    def __call__(self, x: Float[Array, " d"], noise: Float[Array, ""]) -> Float[Array, " d"]:
        e = self.embedding(noise)
        h = self.conv_in(x.reshape(1, *self.image_shape))
        for block in self.blocks:
            h = block(h, e)
        out = self.conv_out(jax.nn.silu(self.norm_out(h))).reshape(self.d)
        return out + self.gate(e) * x
