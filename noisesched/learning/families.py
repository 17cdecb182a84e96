"""Learnable schedule families: eqx.Modules whose only array leaves are their parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_int
from ..schedules import AbstractSchedule


class PiecewiseLinear(AbstractSchedule):
    """Monotone piecewise-linear τ on K equal pieces of [0, 1], ends pinned.

    The increments of τ over the pieces are ``softmax(logits)``: positive and summing to 1, so
    τ(0) = 0, τ(1) = 1 and τ is increasing for every value of the parameters. ``logits`` (K,) is
    the only array leaf, so ``jax.grad`` and optax see exactly the trainable parameters.
    """

    logits: Float[Array, " K"]

    def __init__(self, logits: ArrayLike):
        logits = jnp.asarray(logits, dtype=jnp.result_type(float))
        if logits.ndim != 1 or logits.shape[0] < 1:
            raise ValueError(f"logits must be a 1-D array of K >= 1 entries; got shape "
                             f"{logits.shape}")
        if not isinstance(logits, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(logits))):
            raise ValueError("logits must be finite; got nan or inf entries")
        self.logits = logits

    @classmethod
    def from_schedule(cls, schedule: AbstractSchedule, pieces: int) -> PiecewiseLinear:
        """The piecewise-linear interpolant of ``schedule`` on ``pieces`` equal pieces."""
        check_int("pieces", pieces, lo=1)
        knots = jnp.linspace(0.0, 1.0, pieces + 1)
        tau = np.asarray(jax.vmap(schedule)(knots), dtype=np.float64)
        increments = np.maximum(np.diff(tau), 1e-12)
        return cls(np.log(increments / increments.sum()))

    @property
    def pieces(self) -> int:
        return self.logits.shape[0]

    @property
    def jump_times(self) -> tuple[float, ...]:
        return tuple(j / self.pieces for j in range(1, self.pieces))

    def _knots(self, dtype):
        return jnp.linspace(0.0, 1.0, self.pieces + 1, dtype=dtype)

    def __call__(self, t):
        t = jnp.asarray(t)
        inc = jax.nn.softmax(self.logits).astype(t.dtype)
        values = jnp.concatenate([jnp.zeros((1,), t.dtype), jnp.cumsum(inc)])
        return jnp.interp(t, self._knots(t.dtype), values)

    def complement(self, t):
        t = jnp.asarray(t)
        inc = jax.nn.softmax(self.logits).astype(t.dtype)
        # 1 − τ summed from the data end: no cancellation where τ is close to 1
        values = jnp.concatenate([jnp.cumsum(inc[::-1])[::-1], jnp.zeros((1,), t.dtype)])
        return jnp.interp(t, self._knots(t.dtype), values)
