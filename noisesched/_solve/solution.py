"""The result of a solve."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, PyTree


class Solution(eqx.Module):
    """Result of ``solve``.

    Attributes:
        x: final states X_1, shape (n, d).
        ts: times at which ``observables`` were saved, shape (S,), or None.
        observables: ``observe(X_t)`` stacked along a leading axis of size S, or None.
        num_steps: number of solver steps taken (the last Euler step included).
        reached_end: False only for an adaptive solve that ran out of ``max_steps`` before
            t = 1 (then ``x`` is not a sample). ``solve`` raises ``MaxStepsReached``
            for it outside ``jit``; inside, check this flag.
    """

    x: Float[Array, "n d"]
    ts: Float[Array, " S"] | None
    observables: PyTree | None
    num_steps: Array
    reached_end: Bool[Array, ""]
