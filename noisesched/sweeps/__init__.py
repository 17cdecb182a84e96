"""Sweeps: grids of configurations solved in one compiled, vmapped call per group of shapes,
and their results table.

* ``noisesched.sweep(base, grid, out=...)``: a grid of run configs (the base config with
  ``{"section.key": values}`` from lists or ranges, plus ``seeds`` and named ``variants``, sets
  of config overrides) grouped by what a compiled program fixes and solved group by group, into
  a Parquet table (``noisesched sweep CONFIG`` is the command line form, with a ``[sweep]``
  table).
* ``plot(folder)``: the figures of a sweep's table, errors of the features against N or the
  swept parameters (``noisesched sweep CONFIG --plot``).
* ``sample_summaries(points, n, ...)``: the same without configs: ``noisesched.sample_summary``
  of many ``Point`` s (model, interpolant, schedule, key), grouped by structure and vmapped;
  ``solve_group`` solves one group call by call.
* ``shard=(i, N)`` (``noisesched sweep CONFIG --shard i/N``): the i-th of N deterministic slices
  of the grid (``Shard``, ``plan``), for several processes or machines; ``merge(folders, out)``
  (``noisesched sweep merge OUT1 OUT2 ... --out MERGED``) joins their tables in grid order.
  Under ``jax.distributed`` (``jax.process_count()`` > 1) one sweep spreads over the processes
  by the same rule, into one folder they share, and process 0 writes ``results.parquet``.

The table (``OUT/results.parquet``, and one ``OUT/parts/part-*.parquet`` per compiled call) has
one row per configuration:

* ``key``: SHA-256 (20 hex digits) of the resolved config (without ``name``, ``output``,
  ``sample.chunk_size``, ``sample.devices``) and the JAX backend; a rerun skips the rows present;
* ``variant``: the label of the row's variant, where the grid has variants;
* ``section.key`` columns: the resolved parameters (``model.name``, ``model.d``, ``model.p``,
  ``interpolant.kind``, ``schedule.k``, ``solver.steps``, ``sample.n``, ``sample.seed``, ...;
  list values as JSON text);
* the metrics of ``noisesched run``: every feature of the data law, its target and its Monte
  Carlo standard error where it has one (``mode_weight``, ``mode_weight_target``,
  ``mode_weight_se``, ``within_mode_var``, ...) and the Monte-Carlo-free values where the law
  has an oracle (``mode_weight_exact``, ...);
* ``num_steps``, ``error`` (null, or why the solve failed: then no metrics), ``seconds`` (the
  wall time of its compiled call, compilation and metrics included, shared equally among the
  call's configurations), ``group`` (the group, in words), ``backend``, ``config`` (the whole
  resolved config as JSON, to rerun one row with ``noisesched run``).

The metadata of ``results.parquet`` records the grid (``grid``: ``size``, ``digest`` and every
row key, in grid order) and the shard (``shard``: ``[i, N]``).
"""

from ._grid import SEEDS, Grid, Range
from ._merge import MergeResult, merge
from ._plot import FIGURES, NothingToPlot, plot
from ._shard import Shard, plan
from ._stack import Stacking, structure
from ._sweep import (
    GroupReport,
    SweepResult,
    expand,
    parameters,
    row_key,
    solve_configs,
    sweep,
)
from ._table import PARTS, RESULTS, RUN_COLUMNS, ResultStore, to_table
from ._variants import VARIANT, VARIANTS, Variant
from ._vmapped import (
    CPU_VMAP_WIDTH,
    Point,
    PointSource,
    PointSummary,
    call_sizes,
    point_structure,
    sample_summaries,
    solve_group,
    solve_stacked,
)

__all__ = [
    "CPU_VMAP_WIDTH",
    "FIGURES",
    "GroupReport",
    "Grid",
    "MergeResult",
    "NothingToPlot",
    "PARTS",
    "Point",
    "PointSource",
    "PointSummary",
    "RESULTS",
    "RUN_COLUMNS",
    "Range",
    "ResultStore",
    "SEEDS",
    "Shard",
    "Stacking",
    "SweepResult",
    "VARIANT",
    "VARIANTS",
    "Variant",
    "call_sizes",
    "expand",
    "merge",
    "parameters",
    "plan",
    "plot",
    "point_structure",
    "row_key",
    "sample_summaries",
    "solve_configs",
    "solve_group",
    "solve_stacked",
    "structure",
    "sweep",
    "to_table",
]
