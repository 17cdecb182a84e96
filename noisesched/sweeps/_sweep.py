"""``noisesched.sweep``: a grid of run configurations, solved group by group in compiled,
vmapped calls, into one table.

Every point of the grid is a run config: the base config with the point's values
(``noisesched.experiments.config.from_mapping``), validated before any work, like every config
of ``noisesched run``. The configurations are grouped by what a compiled program fixes (the
data law's class and its shapes, d, the interpolant, the schedule family, N, the solver and its
options, n, the dtype); a group is solved by ``noisesched.sweeps.solve_group``, one program for
all its configurations, mapped over their parameters and keys (``jax.vmap``, a few
configurations side by side on a CPU). Groups run one after another, under a progress bar.

Key rule: configuration j draws its prior from ``jax.random.PRNGKey(sample.seed)``, row i from
``fold_in(key, i)``, as ``noisesched run`` does; its row holds the metrics ``noisesched run``
reports for that config: every feature of the data law with its target (from the final
samples, as ``noisesched.sample_summary``) and the Monte-Carlo-free values where the law has an
oracle (``AbstractDataLaw.exact_metrics``, in float64).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax

from .._progress import progress_bar
from .._validation import check_int
from ..experiments.config import (
    SECTIONS,
    ConfigError,
    ConfigWarning,
    RunConfig,
    all_keys,
    from_mapping,
    suggest,
)
from ..models.base import check_data_law
from ._grid import Grid
from ._shard import Shard
from ._table import PARTS, RUN_COLUMNS, ResultStore, merge_metadata, normal_row, to_table
from ._variants import NO_RESULT, VARIANT, grid_rows
from ._vmapped import Point, PointSummary, call_sizes, point_structure, solve_group

__all__ = ["sweep", "solve_configs", "SweepResult", "GroupReport", "expand", "row_key",
           "parameters"]

def _row_config(config: RunConfig) -> dict[str, Any]:
    """The resolved config without the entries that change no row (``NO_RESULT``)."""
    out = {}
    for section, value in config.identity().items():
        if section in NO_RESULT:
            continue
        out[section] = ({k: v for k, v in value.items() if f"{section}.{k}" not in NO_RESULT}
                        if isinstance(value, dict) else value)
    return out


def row_key(config: RunConfig, backend: str | None = None) -> str:
    """The key of a configuration's row: SHA-256 (20 hex digits) of its resolved config
    (without ``name``, ``output``, ``sample.chunk_size``, ``sample.devices``; with the digest
    of a saved model's files) and the JAX backend (default ``jax.default_backend()``)."""
    text = json.dumps({"config": _row_config(config),
                       "backend": backend or jax.default_backend()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def parameters(config: RunConfig) -> dict[str, Any]:
    """The resolved parameters of a row, ``{"section.key": value}`` (lists as JSON text)."""
    out: dict[str, Any] = {}
    for section, value in _row_config(config).items():
        if not isinstance(value, dict):
            continue  # the digest of a saved model is part of the key, not a parameter
        for key, v in value.items():
            out[f"{section}.{key}"] = (json.dumps(v) if isinstance(v, list | tuple | dict)
                                       else v)
    return out


class GroupReport(NamedTuple):
    """One group of configurations that share a compiled program.

    Attributes:
        description: what the group's program fixes, in words.
        configs: its configurations in the grid.
        solved: how many were solved by this sweep (the others had rows already).
        calls: compiled calls made (each ``configs_per_call`` configurations, all rows).
        configs_per_call: configurations per call (the last call padded to it).
        vmap_width: configurations solved side by side within a call.
        seconds: wall time of its calls, compilation and metrics included.
    """

    description: str
    configs: int
    solved: int
    calls: int
    configs_per_call: int
    vmap_width: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What ``noisesched.sweep`` returns.

    Attributes:
        rows: one dict per configuration of the shard (the whole grid by default), in grid
            order (see ``noisesched.sweeps`` for the columns).
        configs: the validated config of each row.
        points: the grid values of each row, ``{section.key: value}``.
        groups: a ``GroupReport`` per group solved by this process, in the order they ran.
        path: ``results.parquet`` when the sweep has a folder (and this is process 0), else
            None.
        metadata: the JSON record of the table (``noisesched.sweeps._table``), with the grid
            (``grid``: ``size``, ``digest``, and every row key in grid order) and ``shard``
            (``[i, N]``).
        shard: the shard of the grid these rows are.
        kept: rows found in the folder from an earlier run.
        process: (``jax.process_index()``, ``jax.process_count()``).
    """

    rows: list[dict[str, Any]]
    configs: list[RunConfig]
    points: list[dict[str, Any]]
    groups: list[GroupReport]
    path: Path | None
    metadata: dict[str, Any]
    shard: Shard = Shard()
    kept: int = 0
    process: tuple[int, int] = (0, 1)

    @property
    def solved(self) -> int:
        """Rows solved by this call (by this process)."""
        return sum(g.solved for g in self.groups)

    def summary(self) -> str:
        """One line: what was written, solved and kept."""
        index, count = self.process
        by = f" by process {index} of {count}" if count > 1 else ""
        if self.path is None and count > 1:
            return (f"process {index} of {count}: {self.solved} rows solved now, {self.kept} "
                    "kept; process 0 writes the table")
        of = (f" (shard {self.shard} of a grid of {self.metadata['grid']['size']})"
              if self.shard.count > 1 else "")
        where = f"wrote {self.path}: " if self.path is not None else ""
        return (f"{where}{len(self.rows)} rows{of}, {self.solved} solved now{by}, {self.kept} "
                "kept")

    def table(self):
        """The rows as a ``pyarrow.Table``, with the metadata of the Parquet files."""
        return to_table(self.rows, self.metadata)


# ----------------------------------------------------------------------------- expansion
def _check_keys(grid: Grid) -> None:
    known = [k for k in all_keys() if not k.startswith(NO_RESULT)]
    for key in grid.keys:
        section = key.partition(".")[0]
        if key.startswith(NO_RESULT):
            raise ConfigError(f"sweep.{key} changes no result (it is not part of a row): set "
                              f"it in [{section}] instead")
        if section not in SECTIONS:
            raise ConfigError(f"unknown sweep key {key!r}: {section!r} is not a config section"
                              + suggest(key, known))
        if key not in known:
            raise ConfigError(f"unknown sweep key {key!r}" + suggest(key, known))


def _describe(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} = {value!r}" for key, value in point.items())


def _config(base: RunConfig, point: Mapping[str, Any]) -> RunConfig:
    updates: dict[str, dict[str, Any]] = {}
    for key, value in point.items():
        if key == VARIANT:  # applied to the base already
            continue
        section, _, sub = key.partition(".")
        updates.setdefault(section, {})[sub] = value
    where = f"sweep point {_describe(point)}: "
    with warnings.catch_warnings():
        # a swept key that the point's model or schedule ignores would repeat a configuration
        warnings.simplefilter("error", ConfigWarning)
        try:
            return from_mapping(updates, base=base)
        except ConfigWarning as warning:
            text = str(warning).removesuffix("; ignored")
            raise ConfigError(f"{where}{text}: a sweep over it would repeat one "
                              "configuration") from None
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None


def expand(base: RunConfig | Mapping[str, Any], grid: Grid | Mapping[str, Any]
           ) -> tuple[list[dict[str, Any]], list[RunConfig]]:
    """(points, configs) of a sweep: each point of ``grid`` applied to ``base``, validated;
    ``ConfigError`` for an unknown key (with the nearest known one), a value a key does not
    take, a key that does not apply to the point's model or schedule, or two points that are
    the same configuration."""
    grid = Grid.of(grid)
    _check_keys(grid)
    points = grid.points()
    with warnings.catch_warnings(record=True) as caught:  # said once, not once per point
        warnings.simplefilter("always")
        base = base if isinstance(base, RunConfig) else from_mapping(base)
        bases = {variant.label: variant.apply(base) for variant in grid.variants}
        configs = [_config(bases[point[VARIANT]] if VARIANT in point else base, point)
                   for point in points]
    for category, message in dict.fromkeys((w.category, str(w.message)) for w in caught):
        warnings.warn(message, category, stacklevel=2)
    seen: dict[str, dict[str, Any]] = {}
    for point, config in zip(points, configs, strict=True):
        key = row_key(config)
        if key in seen:
            raise ConfigError(f"sweep points {_describe(seen[key])} and {_describe(point)} are "
                              "the same configuration")
        seen[key] = point
    return points, configs


# ----------------------------------------------------------------------------- groups
def _x64(config: RunConfig) -> bool:
    return config.sample.dtype == "float64"


def _point(config: RunConfig) -> Point:
    model, interp, schedule = config.build()
    return Point(model, interp, schedule, jax.random.PRNGKey(config.sample.seed))


class _Points:
    """The points of some configs, built when indexed (in the caller's precision), so that a
    group holds only the configurations of the call in flight."""

    def __init__(self, configs: list[RunConfig]):
        self.configs = configs

    def __len__(self) -> int:
        return len(self.configs)

    def __getitem__(self, i: int) -> Point:
        return _point(self.configs[i])


def _group_key(config: RunConfig) -> Hashable:
    """What one compiled program fixes: the precision, n, rows per call, the solver's options
    and the structure of the built (model, interpolant, schedule)."""
    with jax.enable_x64(_x64(config)):
        point = _point(config)
        check_data_law(point.model, "noisesched sweep")
        structure = point_structure(point)
    solve_options = tuple(sorted(config.solver.options().items()))
    return (config.sample.dtype, config.sample.n, config.sample.chunk_size, solve_options,
            structure)


def _group_description(config: RunConfig) -> str:
    """What a group's program fixes, in words (the ``group`` column)."""
    model = _row_config(config)["model"]
    s = config.solver
    return (f"{model['name']} d={model.get('d', '?')}, {config.interpolant.kind} "
            f"{config.interpolant.shape}, {config.schedule.name}, N={s.steps} "
            f"{s.name}/{s.method}, n={config.sample.n}, {config.sample.dtype}")


def _exact(config: RunConfig) -> dict[str, float]:
    """The data law's Monte-Carlo-free values of the config's discretisation, in float64, as
    ``noisesched run`` computes them; the schedule's float parameters are passed as arrays, so
    that one compiled oracle serves every value of them."""
    if config.solver.adaptive:
        return {}
    with jax.enable_x64(True):
        model, interp, schedule = config.build()
        schedule = jax.tree.map(lambda v: jax.numpy.asarray(v) if isinstance(v, float) else v,
                                schedule)
        return model.exact_metrics(interp, schedule, config.solver.steps, config.solver.name)


def _metadata(config: RunConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON record of a table (``noisesched.sweeps._table``) of ``rows`` of one group
    (``config``: one of its configs)."""
    from .. import __version__

    with jax.enable_x64(_x64(config)):
        law = check_data_law(config.build()[0], "noisesched sweep")
    params = list(parameters(config))
    run = ["key", *RUN_COLUMNS]
    metric_names = dict.fromkeys(k for row in rows for k in row if k not in params and k not in run)
    return {"version": __version__,
            "key": "SHA-256 of the resolved config (without name, output, sample.chunk_size, "
                   "sample.devices) and the JAX backend",
            "features": {config.model.name: [f._asdict() for f in law.features]},
            "columns": {"parameters": params, "metrics": list(metric_names), "run": run}}


def _row(config: RunConfig, key: str, summary: PointSummary, seconds: float, group: str
         ) -> dict[str, Any]:
    row: dict[str, Any] = {"key": key, **parameters(config)}
    if summary.error is None:
        row.update(summary.metrics)
        row.update(_exact(config))
    row.update(num_steps=summary.num_steps, error=summary.error, seconds=seconds, group=group,
               backend=jax.default_backend(),
               config=json.dumps(config.to_dict(), sort_keys=True, default=str))
    return row


def _solve_rows(configs: list[RunConfig], keys: list[str], description: str,
                configs_per_call: int | None, vmap_width: int | None
                ) -> Iterator[tuple[list[dict[str, Any]], float]]:
    """The rows of ``configs`` (one group), yielded after each compiled call with its wall
    time."""
    first = configs[0]
    with jax.enable_x64(_x64(first)):
        solved = solve_group(_Points(configs), first.sample.n, dtype=first.sample.dtype,
                             chunk_size=first.sample.chunk_size or None,
                             configs_per_call=configs_per_call or None,
                             vmap_width=vmap_width or None, **first.solver.options())
        start = time.perf_counter()
        for indices, summaries in solved:
            elapsed = time.perf_counter() - start
            yield [_row(configs[i], keys[i], summary, elapsed / len(indices), description)
                   for i, summary in zip(indices, summaries, strict=True)], elapsed
            start = time.perf_counter()


# ----------------------------------------------------------------------------- the sweep
def grid_record(keys: list[str]) -> dict[str, Any]:
    """The grid of a table's metadata: its size, a digest and every row key, in grid order."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return {"size": len(keys), "digest": digest, "keys": keys}


def _weight(config: RunConfig) -> int:
    """The size of a configuration's solve, by which shards are balanced."""
    return config.d * config.sample.n * config.solver.steps


def _shares(groups: list[list[int]], weights: list[int], shard: Shard,
            process: tuple[int, int]) -> tuple[list[int], set[int]]:
    """(the shard's configurations, in grid order: the rows of its table; those this process
    solves: its share of them, by the same rule)."""
    selected = shard.select(groups, weights)
    if process[1] == 1:
        return selected, set(selected)
    chosen = set(selected)
    return selected, set(Shard(*process).select(
        [[i for i in members if i in chosen] for members in groups], weights))


def _check_settings(configs_per_call: int | None, vmap_width: int | None) -> None:
    for setting, value in (("configs_per_call", configs_per_call), ("vmap_width", vmap_width)):
        if value is not None:
            check_int(setting, value, lo=0)


def sweep(
    base: RunConfig | Mapping[str, Any],
    grid: Grid | Mapping[str, Any],
    *,
    out: str | os.PathLike | None = None,
    shard: Shard | tuple[int, int] | str | None = None,
    configs_per_call: int | None = None,
    vmap_width: int | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> SweepResult:
    """Run every configuration of ``grid`` on top of ``base``, one compiled, vmapped call per
    group of configurations that share shapes, and return (and write) a table of their rows.

    Args:
        base: a ``RunConfig``, or its sections as a mapping (``{"model": {"name": "gm",
            "d": 1000}, "solver": {...}, ...}``).
        grid: ``{"section.key": values}`` with values a list or a range
            (``noisesched.sweeps.Range`` or ``{"start", "stop", "num", "log"}``), and
            ``"seeds"`` for ``sample.seed``, ``"variants"`` for named sets of config
            overrides (``{label: {"schedule": {...}, ...}}``, a ``variant`` column); a
            ``noisesched.sweeps.Grid``.
        out: a folder for the table (``results.parquet`` and ``parts/``, see
            ``noisesched.sweeps``); rows already there are not solved again. None: no files.
        shard: ``(i, N)`` (or ``"i/N"``, a ``noisesched.sweeps.Shard``): solve only the i-th of
            N slices of the grid (``noisesched.sweeps._shard``: whole groups where the shards
            stay even, the same slices on every machine); the table holds its rows, and its
            metadata the shard and the whole grid, for ``noisesched.sweeps.merge``. None: the
            whole grid.
        configs_per_call: configurations per compiled call (None or 0: as many as fit a quarter
            of the free memory of the device with their ``sample.n`` rows each; a config's
            ``sample.chunk_size`` caps the rows per call).
        vmap_width: configurations solved side by side within a call (None or 0: a few on a
            CPU, ``noisesched.sweeps.CPU_VMAP_WIDTH``, whose cache a wide vmap leaves; all of the
            call's elsewhere).
        progress: a progress bar (stderr) over the configurations.
        log (Callable[[str], Any]): where a line per group goes (default print).

    Every configuration is validated before any work. A configuration whose solve fails (nan
    or inf, an adaptive solve out of steps) gets a row with its ``error`` and no metrics.

    Several processes (``jax.distributed.initialize()`` first, ``jax.process_count()`` > 1):
    each process solves its share of the shard's configurations (the rule of shards again,
    with ``(jax.process_index(), jax.process_count())``) and writes its parts to ``out``, which
    every process must see (a shared file system); once all have (a barrier of
    ``jax.distributed``'s coordination service), every process reads all the parts and returns
    every row, and process 0 alone writes ``results.parquet``.
    """
    points, configs = expand(base, grid)
    return solve_configs(configs, points=points, out=out, shard=shard,
                         configs_per_call=configs_per_call, vmap_width=vmap_width,
                         progress=progress, log=log)


def solve_configs(
    configs: Sequence[RunConfig],
    *,
    points: Sequence[Mapping[str, Any]] | None = None,
    out: str | os.PathLike | None = None,
    shard: Shard | tuple[int, int] | str | None = None,
    configs_per_call: int | None = None,
    vmap_width: int | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> SweepResult:
    """``noisesched.sweep`` of a list of validated configurations rather than a grid: the same
    groups, calls, rows and table (``points``: the grid values of each, for the result and a
    ``variant`` column; default none). Two equal configurations are an error."""
    _check_settings(configs_per_call, vmap_width)
    configs = list(configs)
    if not configs:
        raise ValueError("configs must hold at least one configuration")
    values: list[dict[str, Any]] = ([{} for _ in configs] if points is None
                                    else [dict(p) for p in points])
    if len(values) != len(configs):
        raise ValueError(f"points must give one entry per configuration: {len(values)} for "
                         f"{len(configs)} configurations")
    keys = [row_key(config) for config in configs]
    if len(set(keys)) < len(keys):
        raise ValueError("configs holds the same configuration twice")
    shard = Shard() if shard is None else Shard.of(shard)
    process = (jax.process_index(), jax.process_count())
    if process[1] > 1 and out is None:
        raise ValueError(f"a sweep across {process[1]} processes needs out: a folder that every "
                         "process can write (on a shared file system)")
    store = ResultStore(out) if out is not None else None
    groups: dict[Hashable, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(_group_key(config), []).append(i)
    selected, mine = _shares(list(groups.values()), [_weight(c) for c in configs], shard,
                             process)
    table_keys = [keys[i] for i in selected]
    table_points = [values[i] for i in selected]
    labels = {keys[i]: values[i][VARIANT] for i in selected if VARIANT in values[i]}
    record = {"grid": grid_record(keys), "shard": [shard.index, shard.count]}
    done, metadata = store.finished(table_keys) if store is not None else ({}, {})
    rows: dict[str, dict[str, Any]] = dict(done)
    reports = []
    name = configs[0].name if process[1] == 1 else (
        f"{configs[0].name} (process {process[0]} of {process[1]})")
    kept = sum(keys[i] in done for i in mine)
    if kept:
        log(f"{name}: {kept} of {len(mine)} rows kept from an earlier run")
    bar = progress_bar(len(mine), desc=name, initial=kept, enabled=progress)
    try:
        for members in groups.values():
            members = [i for i in members if i in mine]
            if not members:
                continue
            description = _group_description(configs[members[0]])
            todo = [i for i in members if keys[i] not in rows]
            calls, seconds = 0, 0.0
            first = configs[members[0]]
            _, per_call, width = call_sizes(
                first.d, first.sample.n, max(len(todo), 1), jax.numpy.dtype(first.sample.dtype),
                first.sample.chunk_size or None, configs_per_call or None, vmap_width or None)
            bar.set_postfix_str(description, refresh=False)
            for new, elapsed in _solve_rows([configs[i] for i in todo], [keys[i] for i in todo],
                                            description, configs_per_call,
                                            vmap_width) if todo else ():
                part = _metadata(configs[todo[0]], new)
                for row in new:  # the grid's label, for a merge of shards' parts
                    if row["key"] in labels:
                        row[VARIANT] = labels[row["key"]]
                metadata = merge_metadata([metadata, part])
                if store is not None:
                    store.write_part(new, part)
                rows.update((row["key"], normal_row(row)) for row in new)
                calls, seconds = calls + 1, seconds + elapsed
                bar.update(len(new))
            reports.append(GroupReport(description, len(members), len(todo), calls, per_call,
                                       width, seconds))
            if todo:
                if store is not None and process[1] == 1:
                    store.write_results(*grid_rows(rows, table_keys, table_points,
                                                   {**metadata, **record}))
                log(f"{name}: {description}: {len(todo)} configuration(s) in {calls} call(s) "
                    f"of {per_call} ({width} side by side), {seconds:.2f} s")
    finally:
        bar.close()
    if process[1] > 1 and store is not None:
        _barrier(f"noisesched.sweep {next(_SWEEPS)}")  # every process has written its parts
        metadata = _gather(store, table_keys, rows, metadata)
    ordered, metadata = grid_rows(rows, table_keys, table_points, {**metadata, **record})
    path = (store.write_results(ordered, metadata)
            if store is not None and process[0] == 0 else None)
    return SweepResult(ordered, [configs[i] for i in selected], table_points, reports, path,
                       metadata, shard, kept, process)


#: How long a process waits for the others at the end of a sweep, their shares done (a process
#: that dies stops the others sooner: ``jax.distributed`` watches every process).
BARRIER_SECONDS = 7 * 24 * 3600
#: The sweeps of this program (the same sequence in every process): one barrier each.
_SWEEPS = itertools.count()


def _barrier(name: str) -> None:
    """Wait until every process has reached ``name``: a barrier of the coordination service of
    ``jax.distributed`` (the one of its shutdown), which waits up to ``BARRIER_SECONDS``;
    ``multihost_utils.sync_global_devices`` where no such service runs. (Not the latter
    always: a collective of the devices gives up after ``xla_cpu_collective_timeout_seconds``
    on a CPU, and its first call when the others are 30 s late.)"""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
    else:
        client.wait_at_barrier(name, BARRIER_SECONDS * 1000)


def _gather(store: ResultStore, keys: list[str], rows: dict[str, dict[str, Any]],
            metadata: dict[str, Any]) -> dict[str, Any]:
    """Once every process has written its parts: the rows of ``keys`` from all the parts,
    into ``rows``; the parts' metadata merged with ``metadata``."""
    found, theirs = store.finished(keys)
    rows.update(found)
    missing = [k for k in keys if k not in rows]
    if missing:
        raise OSError(errno.ENOENT, f"{len(missing)} rows of other processes are not in the "
                      "parts: every process must run the same sweep, with an out folder that "
                      "every process sees (a shared file system)", str(store.folder / PARTS))
    return merge_metadata([metadata, theirs])
