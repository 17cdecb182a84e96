"""Large batches: sample in chunks of rows, shard each chunk over devices, stream the metrics.

Row i of a batch starts from X_0 drawn with ``fold_in(key, i)`` and the drift acts row by row,
so a batch can be split into chunks of rows, and each chunk over several devices, without
changing a single sample. ``sample_chunks`` yields the chunks; ``sample_summary`` keeps
only O(n) numbers per batch on the host (``noisesched.metrics.row_statistics``), never the
(n, d) samples.

Several devices, two ways (``shard``):

* ``"rows"`` (default): the batch axis is sharded with ``jax.sharding`` (a one-axis ``Mesh``
  named ``"batch"`` and ``NamedSharding``); the solver's arrays follow the sharding of X_0, and
  every reduction over coordinates stays on its device.
* ``"coordinates"``: the coordinate axis d is sharded (a one-axis mesh ``"coordinates"``), for
  a d too large for one device. Each device holds columns ``j·d/k … (j + 1)·d/k − 1`` of every
  row of the state, and the same columns of each model array whose last axis has length d (a
  mixture's means). The rows never interact and the drift of an exact model needs only a few
  sums over coordinates of its row (``AbstractDenoiser.statistics``), so the compiler's SPMD
  partitioner turns each such sum into partial sums on the devices and one all-reduce of
  O(rows · K) numbers; no device ever holds a whole row. The prior is drawn on the devices, each
  its own columns: JAX's draws do not depend on the sharding (the numbers are the unsharded
  ones), and with ``jax_threefry_partitionable`` (JAX's default) the partitioner also splits the
  generation of the random bits, so no device computes another's columns.

With ``jax.distributed.initialize()`` run first in every process, ``jax.devices()`` lists the
devices of all hosts and the same code runs across them (see README).
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import sys
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
from ._interrupt import wait_interruptibly
from ._solve.problem import check_problem
from ._solve.solvers import SolverLike
from ._typing import IntLike
from ._validation import (
    as_dtype,
    as_int,
    check_choice,
    check_int,
    check_positive,
    check_real,
)
from .interpolants import Interpolant
from .models.base import AbstractDenoiser, check_data_law
from .sampling import all_finite, max_steps_error, nonfinite_error, sample_prior, solve
from .schedules import AbstractSchedule

__all__ = ["Chunk", "ChunkStore", "StreamedSummary", "SHARDS", "resolve_devices",
           "batch_sharding", "coordinate_sharding", "auto_chunk_size", "sample_chunks",
           "sample_summary", "check_memory", "solve_memory_bytes",
           "wait_interruptibly"]

#: How a chunk is split over devices: by rows (samples) or by coordinates (the d axis).
SHARDS = ("rows", "coordinates")

#: Copies of a chunk's state that a fixed-grid solve keeps alive at once (X_0, X, a stage, the
#: compiler's temporaries), used to size chunks automatically (measured with XLA's memory
#: analysis of the compiled solve: 4 for the mixture, 5 for Curie–Weiss, 12 for an adaptive
#: Dopri5 with its stages).
_LIVE_STATES = 4
#: The same, with a margin, for the memory check before a solve: fixed grid, adaptive.
_STATES_FIXED, _STATES_ADAPTIVE = 6, 14
#: Numbers per step of the time grid's tables (coefficients at each stage; 3 measured),
#: with a margin.
_TABLE_NUMBERS_PER_STEP = 8
#: On a CPU, entries × steps of one chunk per device, at most, for a model of work 1 per entry
#: (``AbstractDenoiser.work_per_entry`` scales it): a chunk is the unit of work a run keeps
#: when interrupted (about 0.3 s for the mixture on one core of the benchmark machine; a GPU's
#: chunks, sized by its memory, take well under a second anyway). One row is the least.
CPU_CHUNK_WORK = 2**28


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


def coordinate_sharding(devices: Sequence[jax.Device]) -> NamedSharding:
    """Coordinates split over ``devices`` (a one-axis mesh ``"coordinates"``), rows not split:
    device j of k holds columns ``j·d/k … (j + 1)·d/k − 1`` of an (n, d) array."""
    mesh = Mesh(np.asarray(devices), ("coordinates",))
    return NamedSharding(mesh, PartitionSpec(None, "coordinates"))


def _split_coordinates(tree: Any, d: int, sharding: NamedSharding) -> Any:
    """``tree`` with every array leaf whose last axis has length ``d`` constrained to be split
    along that axis over ``sharding``'s mesh (inside ``jit``); other leaves unchanged."""
    axis = sharding.spec[-1]

    def split(leaf):
        if not isinstance(leaf, jax.Array) or leaf.ndim == 0 or leaf.shape[-1] != d:
            return leaf
        spec = PartitionSpec(*(None,) * (leaf.ndim - 1), axis)
        return jax.lax.with_sharding_constraint(leaf, NamedSharding(sharding.mesh, spec))

    return jax.tree.map(split, tree)


def _state_sharding(shard: str, devices: Sequence[jax.Device]) -> NamedSharding:
    """The sharding of a chunk's (rows, d) states: ``batch_sharding`` for ``shard="rows"``,
    ``coordinate_sharding`` for ``"coordinates"``."""
    check_choice("shard", shard, SHARDS)
    return batch_sharding(devices) if shard == "rows" else coordinate_sharding(devices)


def _check_coordinate_split(d: int, devices: Sequence[jax.Device]) -> None:
    """A ``ValueError`` unless ``d`` splits evenly over ``devices`` (``shard="coordinates"``: a
    JAX array's shards have one shape, so d is not padded)."""
    k = len(devices)
    if d % k:
        fits = [j for j in range(1, k) if d % j == 0]
        raise ValueError(f"shard='coordinates' needs d divisible by the number of devices; got "
                         f"d = {d} over {k} devices: pass devices = one of {fits} (divisors of "
                         f"d), or shard='rows'")


def _device_memory(device: jax.Device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    # host memory (CPU devices share it), within this process's limits
    return min(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), _limit_headroom())


def _limit_headroom() -> int:
    """What the memory limits of this process leave (a container's cgroup, ``ulimit -v``)."""
    room = []
    cgroup = Path("/sys/fs/cgroup")
    for limit, usage in (("memory.max", "memory.current"),  # cgroup v2, then v1
                         ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            room.append(int((cgroup / limit).read_text()) - int((cgroup / usage).read_text()))
            break
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pages = 0
        room.append(soft - pages * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(room)) if room else sys.maxsize


def auto_chunk_size(d: int, dtype: Any, devices: Sequence[jax.Device],
                    fraction: float = 0.25, steps: int | None = None,
                    work_per_entry: float = 1.0) -> int:
    """Rows per chunk so that a solve's live states (about four copies of the chunk) take at
    most ``fraction`` of the free memory of each device (CPU: of the host's free memory, shared
    by its devices, within the process's limits); on a CPU, with ``steps``, also at most
    ``CPU_CHUNK_WORK`` entries × steps × ``work_per_entry`` (the model's, see
    ``AbstractDenoiser.work_per_entry``) per device, so that a chunk takes seconds at most.
    At least one row per device."""
    check_int("d", d, lo=1)
    check_real("fraction", fraction, 0.0, 1.0, hi_open=False)
    itemsize = jnp.dtype(dtype).itemsize
    # only this process's devices can be asked (several processes: the others' are alike)
    local = [dev for dev in devices if dev.process_index == jax.process_index()] or list(devices)
    if devices[0].platform == "cpu":
        budget = _device_memory(local[0]) * fraction
    else:
        budget = min(_device_memory(dev) for dev in local) * fraction * len(devices)
    rows = int(budget // (_LIVE_STATES * d * itemsize))
    check_positive("work_per_entry", work_per_entry)
    if steps is not None:
        check_int("steps", steps, lo=1)
    if steps is not None and devices[0].platform == "cpu":
        rows = min(rows, len(devices) * int(CPU_CHUNK_WORK // (d * steps * work_per_entry)))
    return max(len(devices), rows)


def solve_memory_bytes(d: int, rows: int, dtype: Any, devices: Sequence[jax.Device], *,
                       steps: int, adaptive: bool = False) -> float:
    """Bytes one device needs to solve a chunk of ``rows`` samples of dimension d split evenly
    over ``devices`` (by rows or by coordinates): its live states (``_STATES_FIXED`` or
    ``_STATES_ADAPTIVE`` copies of its share) and the time grid's tables
    (``_TABLE_NUMBERS_PER_STEP`` numbers per step)."""
    itemsize = jnp.dtype(dtype).itemsize
    states = _STATES_ADAPTIVE if adaptive else _STATES_FIXED
    return float(_TABLE_NUMBERS_PER_STEP) * itemsize * steps + (
        rows * d * itemsize * states / len(devices))


def check_memory(d: int, rows: int, dtype: Any, devices: Sequence[jax.Device], *, steps: int,
                 adaptive: bool = False, rows_name: str = "chunk_size",
                 can_split_coordinates: bool = True) -> None:
    """Refuse a chunk whose solve would not fit the free memory of its devices, before any
    work (``solve_memory_bytes``; CPU devices share the host's memory). The message names
    ``rows_name`` as what bounds the rows, and offers ``shard = 'coordinates'`` where the caller
    ``can_split_coordinates``.

    Raises:
        ValueError: naming what to reduce (``rows_name``, ``steps``, d or the devices).
    """
    itemsize = jnp.dtype(dtype).itemsize
    local = [dev for dev in devices if dev.process_index == jax.process_index()] or list(devices)
    cpu = devices[0].platform == "cpu"
    free = _device_memory(local[0]) if cpu else min(_device_memory(dev) for dev in local)
    holders = len(local) if cpu else 1  # the host holds every local CPU device's share
    tables = solve_memory_bytes(d, 0, dtype, devices, steps=steps, adaptive=adaptive)
    per_row = solve_memory_bytes(d, 1, dtype, devices, steps=0, adaptive=adaptive)
    need = (tables + rows * per_row) * holders
    if need <= free:
        return
    where = "the host" if cpu else f"{local[0].platform} device {local[0].id}"
    if 2 * tables * holders > free:
        raise ValueError(f"steps = {steps} needs about {_size(tables * holders)} for the time "
                         f"grid's tables alone and {_size(free)} are free on {where}: use "
                         "fewer steps")
    fit = int((free / holders - tables) // per_row)
    if fit < len(devices):
        split = (", or split its coordinates over more devices (shard = 'coordinates')"
                 if can_split_coordinates else "")
        raise ValueError(f"a sample of d = {d} needs about {_size(per_row * len(devices))} "
                         f"for its solve and {_size(free)} are free on {where}: reduce d"
                         f"{', use float32' if itemsize > 4 else ''}{split}")
    automatic = " (or 0: sized from the free memory)" if rows_name == "chunk_size" else ""
    raise ValueError(f"{rows} samples of d = {d} need about {_size(need)} and {_size(free)} "
                     f"are free on {where}: set {rows_name} to at most {fit}{automatic}")


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError


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


def _plan(model, interp, n: int, dtype, chunk_size: int | None, devices, options,
          shard: str = "rows") -> tuple[int, list]:
    """Validate the arguments; rows per chunk and the devices."""
    check_int("n", n, lo=1)
    check_choice("shard", shard, SHARDS)
    if "observe" in options:
        raise ValueError("observe is not available chunk by chunk; call noisesched.solve on "
                         "the rows to observe")
    model.check_resolution(interp, dtype)
    d = model.d
    devs = resolve_devices(devices)
    steps = options.get("steps", 100)
    check_int("steps", steps, lo=1)
    if chunk_size is None or chunk_size == 0:
        chunk_size = auto_chunk_size(d, dtype, devs, steps=steps,
                                     work_per_entry=model.work_per_entry())
    else:
        check_int("chunk_size", chunk_size, lo=0)
    rows = min(chunk_size, n)
    if shard == "rows":  # every device holds the same number of rows
        rows = len(devs) * math.ceil(rows / len(devs))
    else:
        _check_coordinate_split(d, devs)
    check_memory(d, rows, dtype, devs, steps=steps, adaptive=bool(options.get("adaptive")))
    return rows, devs


def _solve_options(options: dict[str, Any], steps, solver) -> dict[str, Any]:
    """``solve``'s options for every chunk, NumPy integers as Python ints: the compiled chunk
    takes its options as arguments, and would trace a NumPy integer (a step count) that
    ``solve`` needs as a number."""
    out = {key: int(value) if isinstance(value, np.integer) else value
           for key, value in options.items()}
    return dict(out, steps=as_int("steps", steps, lo=1), solver=solver)


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
        chunk_size: rows per chunk (``shard="rows"``: a multiple of the device count).
        devices: how many devices each chunk was sharded over.
        shard: how: ``"rows"`` or ``"coordinates"`` (``SHARDS``).
    """

    metrics: dict[str, float]
    rows: dict[str, np.ndarray]
    num_steps: int
    chunk_size: int
    devices: int
    shard: str = "rows"


def sample_chunks(
    model: AbstractDenoiser,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    n: IntLike,
    *,
    steps: IntLike = 100,
    solver: SolverLike = "euler",
    chunk_size: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    shard: str = "rows",
    dtype: Any = None,
    **options: Any,
) -> Iterator[Chunk]:
    """Yield a ``Chunk`` (``start``, ``x = X_1[start : start + rows]``, ``num_steps``) for
    consecutive chunks of a batch of ``n`` samples: the rows ``noisesched.sample`` returns
    for the same key and arguments.

    Args:
        chunk_size: rows per chunk (``None`` or 0: as many as fit a quarter of the free memory,
            see ``auto_chunk_size``); with ``shard="rows"`` rounded up to a multiple of the
            device count.
        devices: shard each chunk over these devices (``resolve_devices``; default all
            visible).
        shard: ``"rows"`` (each device solves whole rows) or ``"coordinates"`` (each device
            holds a slice of the d coordinates of every row, for a d too large for one device;
            d must be divisible by the device count). Every ``chunk.x`` is sharded so.
        dtype: dtype of the states, ``"float32"`` or ``"float64"`` (float64 needs
            ``jax.enable_x64``); None: JAX's default float.
        **options: passed to ``noisesched.solve``.

    Raises:
        ValueError: ``shard`` not in ``SHARDS``; ``shard="coordinates"`` with d not divisible
            by the device count.

    Every chunk has the same shape (the last is computed in full and cut), so one compilation
    serves the batch. With ``shard="rows"`` each row equals the row of the unchunked batch to the
    last bit whenever the compiler sums over coordinates in the same order for both shapes (XLA
    on CPU does for chunks of 16 rows or more per device; tested), and up to rounding otherwise.
    With ``shard="coordinates"`` each sum over coordinates is a sum of the devices' partial sums,
    so rows equal the unsharded rows up to float rounding (tested to about 1e-5 relative in
    float32).
    """
    check_problem(model, interp, schedule, stacklevel=2)
    n = as_int("n", n, lo=1)
    dtype = as_dtype("dtype", dtype)
    options = _solve_options(options, steps, solver)
    rows, devs = _plan(model, interp, n, dtype, chunk_size, devices, options, shard)
    for chunk in _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype, options,
                                shard=shard):
        yield chunk._replace(x=chunk.x[: min(rows, n - chunk.start)])


def _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype, options,
                   starts: Iterable[int] | None = None, shard: str = "rows") -> Iterator[Chunk]:
    """Chunks of ``rows`` rows each, the last one with the rows past n still in it.

    Raises ``noisesched.sampling.MaxStepsReached`` or ``FloatingPointError`` (naming the
    first sample, step and time) for a chunk whose solve failed."""
    sharding = _state_sharding(shard, devs)
    for start in range(0, n, rows) if starts is None else starts:
        x, num_steps, reached_end = wait_interruptibly(_solve_rows(
            model, interp, schedule, key, jnp.asarray(start), rows, dtype, sharding, shard,
            options))
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
    n: IntLike,
    *,
    steps: IntLike = 100,
    solver: SolverLike = "euler",
    chunk_size: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    shard: str = "rows",
    dtype: Any = None,
    max_values: int = 200_000,
    store: ChunkStore | None = None,
    **options: Any,
) -> StreamedSummary:
    """``noisesched.metrics.summary`` of ``n`` samples drawn chunk by chunk
    (``sample_chunks``, same arguments), keeping only O(n) numbers on the host
    (``noisesched.metrics.row_statistics``): the metrics equal those of the unchunked batch
    for the same key (``shard="coordinates"``: up to the float rounding of the sums over
    coordinates, see ``sample_chunks``).

    ``store``: a ``ChunkStore`` in which each finished chunk's row statistics are saved;
    chunks already there are not solved again (with ``chunk_size`` None or 0, the store's chunk
    size is used), so an interrupted call, repeated, resumes.

    Raises:
        FloatingPointError: a sample holds nan or inf; the message names the first sample and
            the step and time at which its solve left the finite numbers.
        MaxStepsReached: an adaptive solve ran out of ``max_steps``.
    """
    check_problem(model, interp, schedule, stacklevel=2)
    n = as_int("n", n, lo=1)
    law = check_data_law(model, "sample_summary")
    dtype = as_dtype("dtype", dtype)
    options = _solve_options(options, steps, solver)
    check_int("max_values", max_values, lo=1)
    if store is not None and not isinstance(store, ChunkStore):
        raise ValueError(f"store must be a noisesched.ChunkStore or None; got {store!r}")
    if store is not None and not chunk_size:
        chunk_size = store.chunk_size()
    rows, devs = _plan(model, interp, n, dtype, chunk_size, devices, options, shard)
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
    for chunk in _padded_chunks(model, interp, schedule, key, n, rows, devs, dtype, options,
                                todo, shard):
        stats = metrics.row_statistics(law, chunk.x, start=chunk.start, total=n,
                                       max_values=max_values)
        parts[chunk.start] = stats
        num_steps = max(num_steps, int(chunk.num_steps))
        if store is not None:
            store.save(chunk.start, rows, stats, int(chunk.num_steps))
    per_row = metrics.concatenate_rows([parts[start] for start in sorted(parts)])
    return StreamedSummary(metrics.summary_from_rows(law, per_row), per_row, num_steps, rows,
                           len(devs), shard)


@eqx.filter_jit
def _solve_rows(model, interp, schedule, key, start, rows, dtype, sharding, shard, options):
    """Rows ``start … start + rows − 1`` of X_1, drawn and solved on ``sharding``'s devices
    (the constraints keep every intermediate split by rows, or by coordinates together with the
    model's arrays of last axis d)."""
    if shard == "coordinates":
        model = _split_coordinates(model, interp.d, sharding)
    x0 = jax.lax.with_sharding_constraint(
        sample_prior(interp, key, rows, dtype, start=start, schedule=schedule), sharding)
    sol = solve(model, interp, schedule, x0, **options)
    return jax.lax.with_sharding_constraint(sol.x, sharding), sol.num_steps, sol.reached_end
