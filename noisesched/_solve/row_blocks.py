"""Row-blocked fixed-grid solves: each block of rows runs through all N steps before the next.

The rows of a batch never interact: the drift of a sample depends on that sample alone (every
``AbstractDenoiser`` acts row-wise). A block of rows small enough to stay in the processor's
cache is then read from and written to memory once per solve instead of once per step, and the
per-step bandwidth floor (two passes over the state per Euler step) stops being the limit.

Block j holds rows j, j + b, j + 2b, … of the batch (b blocks): a batch whose rows are split
over devices keeps its split inside every block, so each device solves its own share of each
block. The last rows are padded with copies of the last row (solved and dropped), never zeros,
so the padding cannot introduce values whose gradient would be non-finite.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["by_row_blocks", "auto_row_block", "cache_bytes", "keeps_elementwise"]

Batch = Float[Array, "n d"]

#: The fraction of the cache a block's state may take: the step also keeps the next state, the
#: drift and the compiler's temporaries of the block (about four copies in all).
_CACHE_FRACTION = 0.25

#: Fallback where the operating system does not say (a common size of a core's L2).
_DEFAULT_CACHE_BYTES = 1 << 20


@lru_cache(maxsize=1)
def cache_bytes() -> int:
    """The size of one core's largest private (or per-core share of shared) data cache, in bytes:
    the level-2 cache where Linux reports it, else 1 MiB."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    sizes = []
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(path, "size")) as f:
                text = f.read().strip()
            if level == 2 and kind in ("Data", "Unified"):
                units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
                sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units
                             else int(text))
    except (OSError, ValueError):
        return _DEFAULT_CACHE_BYTES
    return max(sizes) if sizes else _DEFAULT_CACHE_BYTES


def auto_row_block(n: int, d: int, dtype: Any, platform: str) -> int | None:
    """The default rows per block of a fixed-grid solve on ``platform``, or None for no blocks.

    CPU: as many rows as fit a quarter of one core's level-2 cache (at least one row), times the
    cores, so that each core keeps its share of every block in its own cache (one block when
    that holds every row: the state then stays in cache for all steps). Other platforms: None
    (a GPU runs each step over the whole batch in parallel; blocking there is the Pallas
    kernel's job).
    """
    if platform != "cpu":
        return None
    row_bytes = d * jnp.dtype(dtype).itemsize
    rows = max(1, int(cache_bytes() * _CACHE_FRACTION // row_bytes)) * (os.cpu_count() or 1)
    return min(rows, n)


def keeps_elementwise(model, x: Batch) -> bool:
    """Whether ``model`` keeps elementwise values across a step when its block of rows stays in
    cache (``statistics_for_blocks`` carries more than ``statistics``): what makes row blocks
    pay on a CPU, where a step over the whole batch already runs on every core (decided at trace
    time, nothing computed)."""
    from ..interpolants import Coefficients

    one = jnp.ones((), x.dtype)
    c = Coefficients(one, one, one, one, one)
    plain = jax.eval_shape(lambda: model.statistics(c, x))
    kept = jax.eval_shape(lambda: model.statistics_for_blocks(c, x))
    return jax.tree.leaves(plain) != jax.tree.leaves(kept)


def by_row_blocks(solve_rows: Callable[[Batch], Batch], x0: Batch, block: int) -> Batch:
    """``solve_rows`` applied to blocks of at most ``block`` rows of ``x0`` (n, d), one after
    another (``jax.lax.map``), with the rows put back in order. Equals ``solve_rows(x0)`` for a
    row-wise ``solve_rows``."""
    n, d = x0.shape
    blocks = math.ceil(n / block)
    size = math.ceil(n / blocks)  # balanced: fewer than `blocks` padded rows
    padded = jnp.pad(x0, ((0, size * blocks - n), (0, 0)), mode="edge")
    # block j = rows i·blocks + j: a split of the rows over devices stays a split of each block
    stacked = padded.reshape(size, blocks, d).swapaxes(0, 1)
    out = jax.lax.map(solve_rows, stacked)
    return out.swapaxes(0, 1).reshape(size * blocks, d)[:n]
