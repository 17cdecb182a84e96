"""The K means of a Gaussian mixture, each form with its own cost per step.

The mixture's drift needs two things of its means at every step: the projections μ_k·x and the
combination Σ_k w_k μ_k. A dense (K, d) array makes the solver read K·d numbers from memory per
step (8 MB at d = 10^6, K = 2), which is more than the state itself for a block of a few rows. Means
with structure need none of that:

* ``DenseMeans``: any (K, d) array;
* ``ConstantMeans``: μ_k = a_k·(1, …, 1) (the paper's ±m·1 two-mode mixture, any K): μ_k·x is
  a_k Σ_i x_i, one sum per row whatever K, and Σ_k w_k μ_k is one number per row;
* ``SeededMeans``: μ_k = scale·g_k with g ~ N(0, I) drawn from a seed on the device where they are
  used (never built on the host; under a sharded d axis each device draws its own slice).
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._typing import IntLike, RealLike, RealScalar
from .._validation import check_int, check_positive, is_traced

__all__ = ["AbstractMeans", "DenseMeans", "ConstantMeans", "SeededMeans", "means_from_array",
           "project", "combine", "FUSED_MAX_K"]

Batch = Float[Array, "*batch d"]

#: Up to this many means, μ_k·x and Σ_k w_k μ_k are written as sums of products rather than
#: matrix products: a compiler fuses those with the elementwise update of the state (a matrix
#: product would be a library call that reads or writes a full (n, d) array of its own).
FUSED_MAX_K = 8


class AbstractMeans(eqx.Module):
    """K means in R^d: what the mixture's drift and metrics ask of them."""

    @property
    @abc.abstractmethod
    def K(self) -> int:  # noqa: N802 - the mixture's conventional name
        """The number of means."""

    @property
    @abc.abstractmethod
    def d(self) -> int:
        """The dimension."""

    @abc.abstractmethod
    def dense(self, dtype=None) -> Float[Array, "K d"]:
        """The means as a (K, d) array (built where it is called: under ``jit``, on device)."""

    def project(self, x: Batch) -> Float[Array, "*batch K"]:
        """μ_k·x for each mean, shape (..., K)."""
        return project(x, self.dense(x.dtype))

    # The drift needs μ_k·x, but fewer sums over coordinates may determine them (one, Σ_i x_i,
    # for constant means whatever K). A solver carries these sums, shape (..., S) with S ≤ K;
    # they are linear in x, so a step updates them from those of the drift.
    def sums(self, x: Batch) -> Float[Array, "*batch S"]:
        """The sums over coordinates that determine every μ_k·x (here μ_k·x itself)."""
        return self.project(x)

    def projections_from_sums(self, sums: Float[Array, "*batch S"]) -> Float[Array, "*batch K"]:
        """μ_k·x from ``sums(x)``."""
        return sums

    def sums_of_combination(self, w: Float[Array, "*batch K"]) -> Float[Array, "*batch S"]:
        """``sums`` of Σ_k w_k μ_k, from the (K, K) Gram matrix (no pass over coordinates)."""
        # a sum of products, not a matrix product: fused with the other per-row work
        return jnp.sum(w[..., :, None] * self.gram(w.dtype), axis=-2)

    def combine(self, w: Float[Array, "*batch K"]) -> Batch:
        """Σ_k w_k μ_k, shape (..., d)."""
        return combine(w, self.dense(w.dtype))

    def norms_sq(self, dtype=None) -> Float[Array, " K"]:
        """|μ_k|² for each mean."""
        means = self.dense(dtype)
        return jnp.sum(means * means, axis=-1)

    def gram(self, dtype=None) -> Float[Array, "K K"]:
        """μ_j·μ_k for every pair."""
        means = self.dense(dtype)
        return means @ means.T

    def coordinate_scale(self) -> float | None:
        """max_k |μ_k|/√d, the root-mean-square coordinate of the largest mean: the size at
        which float rounds a state's coordinates near the data. None where the means are
        traced."""
        means = self.dense()
        if is_traced(means):
            return None
        values = np.asarray(means, np.float64)  # |μ|² may overflow float32, not this
        return math.sqrt(float(np.max(np.mean(values * values, axis=-1))))


class DenseMeans(AbstractMeans):
    """Any K means, stored as a (K, d) array."""

    values: Float[Array, "K d"]

    @property
    def K(self) -> int:  # noqa: N802
        return self.values.shape[0]

    @property
    def d(self) -> int:
        return self.values.shape[1]

    def dense(self, dtype=None) -> Float[Array, "K d"]:
        return self.values if dtype is None else self.values.astype(dtype)


class ConstantMeans(AbstractMeans):
    """μ_k = a_k·(1, …, 1): nothing of length d is stored or read.

    μ_k·x = a_k Σ_i x_i (one sum per row for every K) and Σ_k w_k μ_k = (Σ_k w_k a_k)·1, so a
    solver step reads the state alone.
    """

    levels: Float[Array, " K"]
    dimension: int = eqx.field(static=True)

    @property
    def K(self) -> int:  # noqa: N802
        return self.levels.shape[0]

    @property
    def d(self) -> int:
        return self.dimension

    def dense(self, dtype=None) -> Float[Array, "K d"]:
        levels = self.levels if dtype is None else self.levels.astype(dtype)
        return jnp.broadcast_to(levels[:, None], (self.K, self.dimension))

    def project(self, x: Batch) -> Float[Array, "*batch K"]:
        return self.projections_from_sums(self.sums(x))

    def sums(self, x: Batch) -> Float[Array, "*batch 1"]:
        """Σ_i x_i, shape (..., 1): one sum per row whatever K."""
        return jnp.sum(x, axis=-1, keepdims=True)

    def projections_from_sums(self, sums: Float[Array, "*batch 1"]) -> Float[Array, "*batch K"]:
        return sums * self.levels.astype(sums.dtype)

    def sums_of_combination(self, w: Float[Array, "*batch K"]) -> Float[Array, "*batch 1"]:
        return float(self.dimension) * self._level(w)

    def combine(self, w: Float[Array, "*batch K"]) -> Batch:
        return jnp.broadcast_to(self._level(w), (*w.shape[:-1], self.dimension))

    def _level(self, w: Float[Array, "*batch K"]) -> Float[Array, "*batch 1"]:
        """Σ_k w_k a_k, the constant value of Σ_k w_k μ_k."""
        # unrolled, not a reduction over k: XLA:CPU would recompute a reduction inside the
        # (n, d) update it feeds, for every coordinate, and stop vectorising that update
        levels = self.levels.astype(w.dtype)
        if self.K > FUSED_MAX_K:
            return (w @ levels)[..., None]
        level = w[..., 0:1] * levels[0]
        for k in range(1, self.K):
            level = level + w[..., k:k + 1] * levels[k]
        return level

    def norms_sq(self, dtype=None) -> Float[Array, " K"]:
        levels = self.levels if dtype is None else self.levels.astype(dtype)
        return float(self.dimension) * levels * levels

    def gram(self, dtype=None) -> Float[Array, "K K"]:
        levels = self.levels if dtype is None else self.levels.astype(dtype)
        return float(self.dimension) * levels[:, None] * levels[None, :]

    def coordinate_scale(self) -> float | None:
        return None if is_traced(self.levels) else float(np.max(np.abs(self.levels)))


class SeededMeans(AbstractMeans):
    """μ_k = scale·g_k, g ~ N(0, I_{K×d}) from ``jax.random.PRNGKey(seed)``: drawn where they are
    used (on the device, inside the compiled solve), never stored on the host.

    Inside a solve the compiler draws them once and keeps them for every step: regenerating
    K·d Gaussians per step would cost more than reading them.
    """

    seed: int = eqx.field(static=True)
    scale: RealScalar
    count: int = eqx.field(static=True)
    dimension: int = eqx.field(static=True)

    def __init__(self, seed: IntLike, scale: RealLike, count: IntLike, dimension: IntLike):
        check_int("seed", seed, lo=0)
        checked: Any = check_positive("m", scale)  # traced: checked when the program runs
        check_int("K", count, lo=1)
        check_int("d", dimension, lo=1)
        self.seed, self.scale = int(seed), checked
        self.count, self.dimension = int(count), int(dimension)

    @property
    def K(self) -> int:  # noqa: N802
        return self.count

    @property
    def d(self) -> int:
        return self.dimension

    def dense(self, dtype=None) -> Float[Array, "K d"]:
        directions = jax.random.normal(jax.random.PRNGKey(self.seed), (self.count, self.dimension))
        means = self.scale * directions
        return means if dtype is None else means.astype(dtype)

    def coordinate_scale(self) -> float | None:
        """The scale m: the root-mean-square coordinate of m·g_k is m to O(1/√d) (the means
        are not drawn to tell)."""
        return None if is_traced(self.scale) else float(self.scale)


def means_from_array(means: np.ndarray) -> AbstractMeans:
    """``ConstantMeans`` where every row of ``means`` (K, d) is constant, else ``DenseMeans``."""
    if np.all(means == means[:, :1]):
        return ConstantMeans(jnp.asarray(means[:, 0]), means.shape[1])
    return DenseMeans(jnp.asarray(means))


def project(x: Batch, means: Float[Array, "K d"]) -> Float[Array, "*batch K"]:
    """μ_k·x for each row of ``means``, shape (..., K)."""
    if means.shape[0] > FUSED_MAX_K:
        return x @ means.T

    def one_reduction(x, means):  # XLA:CPU vectorises one reduction over (..., K, d) best
        # on rows flattened to (m, d): with a leading axis of size 1, (1, n, K, d) reduced under
        # jit gives every k the sum of the first mean (XLA:CPU, JAX 0.10), as in a vmap of one
        rows = x.reshape(-1, x.shape[-1])
        return jnp.sum(rows[:, None, :] * means, axis=-1).reshape(*x.shape[:-1], means.shape[0])

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
