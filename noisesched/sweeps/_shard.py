"""Shards of a sweep: ``shard = (i, N)`` solves the i-th of N slices of the grid, so that
several processes or machines (a SLURM array, the processes of ``jax.distributed``) share one
sweep and ``noisesched.sweeps.merge`` joins their tables.

The slices are a pure function of the grid, the same on every machine:

1. the configurations are put in the order a sweep solves them: group by group (a group: the
   configurations of one compiled program), the groups in the order of their first
   configuration in the grid, each group's configurations in grid order;
2. each configuration weighs the size of its solve, d × n × solver.steps;
3. the sequence is cut into N contiguous pieces of equal weight: cut j (j = 1, …, N − 1) goes
   where the cumulative weight is nearest to j/N of the total (the earlier place on a tie);
   when the border between two groups lies within a quarter of a piece's weight of that point,
   the cut moves to the nearest such border, so that a group is split (one more compilation)
   only where whole groups would leave the shards uneven;
4. shard i solves the configurations of piece i, in grid order; a piece may be empty (more
   shards than configurations, or configurations heavier than a piece).

Every comparison is in integers: no rounding can differ between machines.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from typing import Any

from ..experiments.config import ConfigError

__all__ = ["Shard", "plan"]


def plan(groups: Sequence[Sequence[int]], weights: Sequence[int], count: int
         ) -> list[list[int]]:
    """The configurations of each of ``count`` shards (the rule of
    ``noisesched.sweeps._shard``), each list in grid order.

    Args:
        groups: the grid indices of each group, in the order the sweep solves them.
        weights: the weight of each grid index (integers ≥ 1).
        count: the number of shards (≥ 1).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1; got {count!r}")
    order = [i for members in groups for i in members]
    scaled = [0]  # count × cumulative weight: cut j aims at j × total
    borders = [0]  # positions in ``order`` between two groups, and both ends
    for members in groups:
        for i in members:
            if isinstance(weights[i], bool) or not isinstance(weights[i], int) or weights[i] < 1:
                raise ValueError(f"weights[{i}] must be an integer >= 1; got {weights[i]!r}")
            scaled.append(scaled[-1] + count * weights[i])
        borders.append(len(scaled) - 1)
    total = scaled[-1] // count
    border_scaled = [scaled[b] for b in borders]
    cuts = [0]
    for j in range(1, count):
        target = j * total
        cut = _nearest(scaled, list(range(len(scaled))), target)
        border = _nearest(border_scaled, borders, target)
        if 4 * abs(scaled[border] - target) <= total:
            cut = border
        cuts.append(max(cut, cuts[-1]))
    cuts.append(len(order))
    return [sorted(order[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


def _nearest(values: list[int], positions: list[int], target: int) -> int:
    """The position whose value (increasing) is nearest to ``target``, the earlier on a tie."""
    k = bisect.bisect_left(values, target)
    if k == len(values) or (k > 0 and target - values[k - 1] <= values[k] - target):
        k -= 1
    return positions[k]


def _valid(index: Any, count: Any) -> bool:
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count))
    return ints and count >= 1 and 0 <= index < count


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 ≤ index < count; ``Shard()``: the whole grid).

    Written ``"i/N"`` on the command line (``noisesched sweep CONFIG --shard i/N``)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not _valid(self.index, self.count):
            raise ConfigError(_message("shard", (self.index, self.count)))

    @classmethod
    def of(cls, value: Shard | tuple[int, int] | str, name: str = "shard") -> Shard:
        """A shard from a ``Shard``, a pair ``(i, N)`` or the text ``"i/N"``;
        ``ConfigError`` naming ``name`` and the allowed range otherwise."""
        if isinstance(value, Shard):
            return value
        pair: Any = value
        if isinstance(value, str):
            index, sep, count = value.partition("/")
            try:
                pair = (int(index), int(count)) if sep else None
            except ValueError:
                pair = None
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and _valid(*pair)):
            raise ConfigError(_message(name, value))
        return cls(*pair)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, groups: Sequence[Sequence[int]], weights: Sequence[int]) -> list[int]:
        """This shard's grid indices (``plan``), in grid order."""
        return plan(groups, weights, self.count)[self.index] if self.count > 1 else sorted(
            i for members in groups for i in members)


def _message(name: str, value: Any) -> str:
    if name.startswith("--"):
        return (f"{name} must be I/N with integers N >= 1 and 0 <= I < N (e.g. {name} 0/4: the "
                f"first of 4 shards); got {value!r}")
    return (f"{name} must be (i, n) with integers n >= 1 and 0 <= i < n, or the text 'i/n'; "
            f"got {value!r}")
