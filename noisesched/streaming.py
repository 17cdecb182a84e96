"""Large batches: sample in chunks of rows, shard each chunk over devices, stream the metrics.

Row i of a batch starts from X_0 drawn with ``fold_in(key, i)`` and the drift acts row by row,
so a batch can be split into chunks of rows, and each chunk over several devices, without
changing a single sample. ``sample_chunks`` yields the chunks; ``sample_summary`` keeps
only O(n) numbers per batch on the host (``noisesched.metrics.row_statistics``), never the
(n, d) samples.

Several devices: the batch axis is sharded with ``jax.sharding`` (a one-axis ``Mesh`` named
``"batch"`` and ``NamedSharding``); the solver's arrays follow the sharding of X_0, and every
reduction over coordinates stays on its device. With ``jax.distributed.initialize()`` run first
in every process, ``jax.devices()`` lists the devices of all hosts and the same code runs across
them (see README).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray

from . import metrics
from ._atomic import atomic_write, claim_folder
from ._solve.solvers import SolverLike
from ._validation import check_int, check_real
from .interpolants import Interpolant
from .models.base import AbstractDenoiser, check_data_law
from .sampling import all_finite, max_steps_error, nonfinite_error, sample_prior, solve
from .schedules import AbstractSchedule

__all__ = ["Chunk", "ChunkStore", "StreamedSummary", "resolve_devices", "batch_sharding",
           "auto_chunk_size", "sample_chunks", "sample_summary"]

#: Copies of a chunk's state that a fixed-grid solve keeps alive at once (X_0, X, a stage, the
#: compiler's temporaries), used to size chunks automatically.
_LIVE_STATES = 4


def resolve_devices(devices: int | Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The devices to shard over: ``None`` or 0, all visible devices; k > 0, the first k;
    or an explicit list."""
    visible = jax.devices()
    if devices is None or (isinstance(devices, int) and not isinstance(devices, bool)
                           and devices == 0):
        return list(visible)
    if isinstance(devices, int) and not isinstance(devices, bool):
        check_int("devices", devices, lo=0, hi=len(visible))
        return list(visible[:devices])
    chosen = list(devices) if isinstance(devices, Sequence) else []
    if not chosen or not all(isinstance(dev, jax.Device) for dev in chosen):
        raise ValueError(f"devices must be an int in [0, {len(visible)}] (0: all visible) or a "
                         f"non-empty list of jax devices; got {devices!r}")
    return chosen


def batch_sharding(devices: Sequence[jax.Device]) -> NamedSharding:
    """Rows split over ``devices`` (a one-axis mesh ``"batch"``), coordinates not split."""
    mesh = Mesh(np.asarray(devices), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch", None))


def _device_memory(device: jax.Device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    # host memory (CPU devices share it)
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_chunk_size(d: int, dtype: Any, devices: Sequence[jax.Device],
                    fraction: float = 0.25) -> int:
    """Rows per chunk so that a solve's live states (about four copies of the chunk) take at
    most ``fraction`` of the free memory of each device (CPU: of the host's free memory, shared
    by its devices)."""
    check_int("d", d, lo=1)
    check_real("fraction", fraction, 0.0, 1.0, hi_open=False)
    itemsize = jnp.dtype(dtype).itemsize
    # only this process's devices can be asked (several processes: the others' are alike)
    local = [dev for dev in devices if dev.process_index == jax.process_index()] or list(devices)
    if devices[0].platform == "cpu":
        budget = _device_memory(local[0]) * fraction
    else:
        budget = min(_device_memory(dev) for dev in local) * fraction * len(devices)
    return max(len(devices), int(budget // (_LIVE_STATES * d * itemsize)))


class ChunkStore:
    """The row statistics of the finished chunks of one batch, kept in a folder so that an
    interrupted ``sample_summary`` resumes where it stopped.

    Each finished chunk is one ``.npz`` file, written atomically (a killed process leaves
    whole chunks or none). ``fingerprint`` is any JSON value that identifies the batch (config,
    seed, sizes); a folder that holds another fingerprint is emptied first, so stale chunks are
    never mixed in; the folder is made when the first chunk finishes. Row i of a batch depends
    only on the key and i, so a chunk solved before the interruption equals the chunk solved
    again.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: Any):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        if self.folder.exists():
            claim_folder(self.folder, fingerprint)

    def _path(self, start: int) -> Path:
        return self.folder / f"rows-{start:012d}.npz"

    def starts(self) -> list[int]:
        """First rows of the finished chunks."""
        if not self.folder.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("rows-*.npz"))

    def chunk_size(self) -> int | None:
        """Rows per chunk of the finished chunks (None if there are none)."""
        starts = self.starts()
        if not starts:
            return None
        with np.load(self._path(starts[0])) as data:
            return int(data["chunk_rows"])

    def load(self, start: int, rows: int) -> tuple[dict[str, np.ndarray], int] | None:
        """(row statistics, solver steps) of the chunk at ``start`` of ``rows`` rows, if
        finished."""
        path = self._path(start)
        if not path.is_file():  # also when the folder does not exist
            return None
        with np.load(path) as data:
            if int(data["chunk_rows"]) != rows:
                return None
            stats = {k[len("stat_"):]: data[k] for k in data.files if k.startswith("stat_")}
            return stats, int(data["num_steps"])

    def save(self, start: int, rows: int, stats: dict[str, np.ndarray], num_steps: int) -> None:
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, chunk_rows=rows, num_steps=num_steps,
                         **{f"stat_{k}": v for k, v in stats.items()})

        claim_folder(self.folder, self.fingerprint)
        atomic_write(self._path(start), write)

    def remove(self) -> None:
        """Delete the folder (the batch is finished and its result written elsewhere)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _plan(model, interp, n: int, dtype, chunk_size: int | None, devices, options
          ) -> tuple[int, list]:
    """Validate the arguments; rows per chunk and the devices."""
    check_int("n", n, lo=1)
    if interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    if "observe" in options:
        raise ValueError("observe is not available chunk by chunk; call noisesched.solve on "
                         "the rows to observe")
    d = model.d
    devs = resolve_devices(devices)
    if chunk_size is None or chunk_size == 0:
        chunk_size = auto_chunk_size(d, dtype, devs)
    else:
        check_int("chunk_size", chunk_size, lo=0)
    rows = min(chunk_size, n)
    rows = len(devs) * math.ceil(rows / len(devs))  # every device holds the same number of rows
    return rows, devs


class Chunk(NamedTuple):
    """Rows ``start … start + x.shape[0] − 1`` of a batch of final states, and the solver steps
    their solve took."""

    start: int
    x: Float[Array, "rows d"]
    num_steps: Array


class StreamedSummary(NamedTuple):
    """What ``sample_summary`` returns.

    Attributes:
        metrics: ``noisesched.metrics.summary`` of the whole batch.
        rows: the per-sample statistics it came from (``noisesched.metrics.row_statistics``).
        num_steps: the most solver steps any chunk took.
        chunk_size: rows per chunk (a multiple of the device count).
        devices: how many devices each chunk was sharded over.
    """

    metrics: dict[str, float]
    rows: dict[str, np.ndarray]
    num_steps: int
    chunk_size: int
    devices: int


def sample_chunks(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    n: int,
    *,
    steps: int = 100,
    solver: SolverLike = "euler",
    chunk_size: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    dtype: Any = None,
    **options: Any,
) -> Iterator[Chunk]:
    """Yield a ``Chunk`` (``start``, ``x = X_1[start : start + rows]``, ``num_steps``) for
    consecutive chunks of a batch of ``n`` samples: the rows ``noisesched.sample`` returns
    for the same key and arguments.

    Args:
        chunk_size: rows per chunk (``None`` or 0: as many as fit a quarter of the free memory,
            see ``auto_chunk_size``); rounded up to a multiple of the device count.
        devices: shard each chunk's rows over these devices (``resolve_devices``; default
            all visible).
        dtype: dtype of the states (default JAX's default float).
        **options: passed to ``noisesched.solve``.

    Every chunk has the same shape (the last is computed in full and cut), so one compilation
    serves the batch. Each row equals the row of the unchunked batch to the last bit whenever the
    compiler sums over coordinates in the same order for both shapes (XLA on CPU does for chunks
    of 16 rows or more per device; tested), and up to rounding otherwise.
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    rows, devs = _plan(model, interp, n, dtype, chunk_size, devices, options)
    for chunk in _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype,
                                dict(options, steps=steps, solver=solver)):
        yield chunk._replace(x=chunk.x[: min(rows, n - chunk.start)])


def _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype, options,
                   starts: Iterable[int] | None = None) -> Iterator[Chunk]:
    """Chunks of ``rows`` rows each, the last one with the rows past n still in it.

    Raises ``noisesched.sampling.MaxStepsReached`` or ``FloatingPointError`` (naming the
    first sample, step and time) for a chunk whose solve failed."""
    sharding = batch_sharding(devs)
    for start in range(0, n, rows) if starts is None else starts:
        x, num_steps, reached_end = _solve_rows(model, interp, schedule, key,
                                                jnp.asarray(start), rows, dtype, sharding, options)
        if not bool(reached_end):
            raise max_steps_error(options.get("max_steps", 16_384), options.get("rtol", 1e-4),
                                  options.get("atol", 1e-4))
        valid = min(rows, n - start)
        if not bool(all_finite(x[:valid])):
            x0 = sample_prior(interp, key, valid, dtype, start=start, schedule=schedule)
            raise nonfinite_error(model, interp, schedule, x0, start, options)
        yield Chunk(start, x, num_steps)


def sample_summary(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    n: int,
    *,
    steps: int = 100,
    solver: SolverLike = "euler",
    chunk_size: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    dtype: Any = None,
    max_values: int = 200_000,
    store: ChunkStore | None = None,
    **options: Any,
) -> StreamedSummary:
    """``noisesched.metrics.summary`` of ``n`` samples drawn chunk by chunk
    (``sample_chunks``, same arguments), keeping only O(n) numbers on the host
    (``noisesched.metrics.row_statistics``): the metrics equal those of the unchunked batch
    for the same key.

    ``store``: a ``ChunkStore`` in which each finished chunk's row statistics are saved;
    chunks already there are not solved again (with ``chunk_size`` None or 0, the store's chunk
    size is used), so an interrupted call, repeated, resumes.

    Raises:
        FloatingPointError: a sample holds nan or inf; the message names the first sample and
            the step and time at which its solve left the finite numbers.
        MaxStepsReached: an adaptive solve ran out of ``max_steps``.
    """
    law = check_data_law(model, "sample_summary")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    check_int("max_values", max_values, lo=1)
    if store is not None and not isinstance(store, ChunkStore):
        raise ValueError(f"store must be a noisesched.ChunkStore or None; got {store!r}")
    if store is not None and not chunk_size:
        chunk_size = store.chunk_size()
    rows, devs = _plan(model, interp, n, dtype, chunk_size, devices, options)
    parts: dict[int, dict[str, np.ndarray]] = {}
    num_steps = 0
    if store is not None:
        for start in range(0, n, rows):
            found = store.load(start, rows)
            if found is not None:
                parts[start] = found[0]
                num_steps = max(num_steps, found[1])
    todo = [start for start in range(0, n, rows) if start not in parts]
    # the last chunk keeps its padding rows here: every chunk is summarised with one shape, so
    # each row's sums come out the same whatever the chunk size
    for chunk in _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype,
                                dict(options, steps=steps, solver=solver), todo):
        stats = metrics.row_statistics(law, chunk.x, start=chunk.start, total=n,
                                       max_values=max_values)
        parts[chunk.start] = stats
        num_steps = max(num_steps, int(chunk.num_steps))
        if store is not None:
            store.save(chunk.start, rows, stats, int(chunk.num_steps))
    per_row = metrics.concatenate_rows([parts[start] for start in sorted(parts)])
    return StreamedSummary(metrics.summary_from_rows(law, per_row), per_row, num_steps, rows,
                           len(devs))


@eqx.filter_jit
def _solve_rows(model, interp, schedule, key, start, rows, dtype, sharding, options):
    """Rows ``start … start + rows − 1`` of X_1, drawn and solved on ``sharding``'s devices
    (the constraints keep every intermediate split by rows)."""
    x0 = jax.lax.with_sharding_constraint(
        sample_prior(interp, key, rows, dtype, start=start, schedule=schedule), sharding)
    sol = solve(model, interp, schedule, x0, **options)
    return jax.lax.with_sharding_constraint(sol.x, sharding), sol.num_steps, sol.reached_end
