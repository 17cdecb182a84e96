"""``noisesched compare CONFIG``: a table of models × schedules × samplers × d × step counts
on the same prior draws, or on the exact oracle alone.

A compare config is a run config (the base of every cell: model options, shape, solver,
``sample.n`` and ``sample.seed``) plus a ``[compare]`` table:

* ``models``: model names that replace ``model.name`` (``"gm"``, ``"learned:FOLDER"``, ...; a
  registry model keeps the base's options, a saved network has its own);
* ``schedules``: ``"kind:schedule"`` pairs (``"vp:vp_dilated"``, ``"ve:constant"``,
  ``"vp:edm"`` for a schedule method, ``"vp:@FOLDER/schedule.json"`` for a saved or learned
  schedule, ``"vp:LABEL"`` for a ``[compare.variants.LABEL]`` table: a schedule name and its
  options, e.g. ``name = "edm"``, ``sigma_max = "dimension_aware"``);
* ``steps``: the step counts N; ``solvers``: solver names (default: the base's); ``dims``: the
  dimensions d (default: the base's);
* ``tol_high``, ``tol_low``: with both > 0, the fewest steps N* among ``steps`` whose high-level
  error (|value − target| of the mode or phase weight) and low-level error (|value/target − 1|)
  are within them, per (model, schedule, solver) and d, and the slope of log N* in log d;
* ``monte_carlo = false``: the oracle alone (``AbstractDataLaw.exact_metrics``), no samples;
  every (model, solver) must have one.

Every cell is validated before any sample is drawn, and every model must carry the same data
law (a network: the law it was trained on). Each cell samples ``sample.n`` points from
``sample.seed`` (the same prior points in every cell of one interpolant kind) and reports every
feature of the model's data law with its target, and the Monte-Carlo-free value of the
discretisation where the law has an oracle (an exact model, not a learned one). The samples are
drawn by ``noisesched.sweep``'s machinery (``noisesched.sweeps.solve_configs``): cells that share
shapes are solved in one compiled, vmapped call, and their rows form a Parquet table,
``OUT/cells/results.parquet``. Finished cells are kept in ``OUT/cells/`` and skipped by a rerun
of the same config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .. import metrics as metrics_mod
from .._atomic import atomic_write, claim_folder
from .._output import check_output_folder, staged
from .._progress import progress_bar
from ..models.base import AbstractDataLaw
from ..sampling import SOLVERS
from ..sweeps import row_key, solve_configs
from .config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    from_mapping,
    merge,
    parse_overrides,
    read_file,
    settings_from_table,
)
from .fit import feature_columns, table_cell
from .io import environment, save_figure, write_json

__all__ = ["CompareSettings", "load_compare", "run_compare"]


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """The ``[compare]`` table (see the module's docstring)."""

    models: tuple[str, ...] = ()  # empty: the base config's model
    schedules: tuple[str, ...] = ("vp:constant", "vp:vp_dilated", "ve:constant",
                                  "ve:ve_dilated")
    steps: tuple[int, ...] = (10, 30, 100)
    solvers: tuple[str, ...] = ()  # empty: the base config's solver
    dims: tuple[int, ...] = ()  # empty: the base config's d
    tol_high: float = 0.0  # > 0 (with tol_low): the fewest steps N* with both errors within
    tol_low: float = 0.0
    monte_carlo: bool = True  # false: the oracle alone, where the law has one for the solver

    def __post_init__(self):
        for name in self.solvers:
            if name not in SOLVERS:
                raise ConfigError(f"compare.solvers entries must be among "
                                  f"{', '.join(SOLVERS)}; got {name!r}")
        for d in self.dims:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ConfigError(f"compare.dims entries must be integers >= 1; got {d!r}")
        for key in ("tol_high", "tol_low"):
            value = getattr(self, key)
            if not (isinstance(value, float) and 0.0 <= value < 1.0):
                raise ConfigError(f"compare.{key} must be in [0, 1); got {value!r}")
        if (self.tol_high > 0) != (self.tol_low > 0):
            raise ConfigError("compare.tol_high and compare.tol_low must be set together "
                              f"(both > 0 for N*); got {self.tol_high!r} and {self.tol_low!r}")
        for case in self.schedules:
            if not isinstance(case, str) or case.partition(":")[0] not in ("vp", "ve") \
                    or not case.partition(":")[2]:
                raise ConfigError(f"compare.schedules entries must be 'kind:schedule' with kind "
                                  f"vp or ve (e.g. 'vp:vp_dilated'); got {case!r}")
        for n in self.steps:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"compare.steps entries must be integers >= 1; got {n!r}")
        for name in self.models:
            if not isinstance(name, str):
                raise ConfigError(f"compare.models entries must be model names; got {name!r}")
        if not self.schedules or not self.steps:
            raise ConfigError("compare.schedules and compare.steps must not be empty")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (model, kind:schedule, solver, d, N) of the comparison, with its validated run
    config."""

    model: str
    case: str
    steps: int
    config: RunConfig

    @property
    def solver(self) -> str:
        return self.config.solver.name

    @property
    def d(self) -> int:
        return self.config.d


def load_compare(path: str | Path, overrides: Sequence[str] = ()
                 ) -> tuple[str, CompareSettings, list[Cell]]:
    """(name, settings, cells) of a compare config; every cell validated."""
    data = read_file(path)
    table = data.pop("compare", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: compare must be a table [compare]")
    updates = parse_overrides(overrides, (*SECTIONS, "compare"))
    table.update(updates.pop("compare", {}))
    variants = table.pop("variants", {})
    if not isinstance(variants, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) for v in variants.values()):
        raise ConfigError(f"{path}: compare.variants must be tables [compare.variants.LABEL] "
                          "each with a schedule name (name = \"edm\") and its options")
    settings = settings_from_table("compare", CompareSettings, table)
    base = merge(data, updates)
    base_config = from_mapping(base, where=f"{path}: ")
    models = settings.models or (base_config.model.name,)
    solvers = settings.solvers or (base_config.solver.name,)
    cells = []
    for model, case, solver, d, steps in itertools.product(
            models, settings.schedules, solvers, settings.dims or (None,), settings.steps):
        kind, _, schedule = case.partition(":")
        cell = merge(base, {"model": {"name": model}, "interpolant": {"kind": kind},
                            "solver": {"steps": steps, "name": solver}})
        if d is not None:
            cell["model"]["d"] = d
        cell["schedule"] = dict(variants.get(schedule, {"name": schedule}))
        cell.setdefault("output", {})["figures"] = False
        where = f"{path} [{model}, {case}, {solver}, d = {d}, N = {steps}]: "
        cells.append(Cell(model, case, steps, from_mapping(cell, where=where)))
    _check_one_law(cells, path, same_d=not settings.dims)
    if not settings.monte_carlo:
        _check_oracles(cells, path)
    return base_config.name, settings, cells


def _check_oracles(cells: list[Cell], path) -> None:
    """Every (model, solver) of the cells has an oracle (``compare.monte_carlo = false``),
    tried once each on a 2-step constant schedule at the smallest d."""
    from ..schedules import Constant

    tried = set()
    for cell in sorted(cells, key=lambda c: c.d):
        if (cell.model, cell.solver) in tried:
            continue
        tried.add((cell.model, cell.solver))
        model, interp, _ = cell.config.build()
        if not model.exact_metrics(interp, Constant(), 2, cell.solver):
            raise ConfigError(f"{path}: compare.monte_carlo = false needs an oracle for every "
                              f"cell; model {cell.model!r} has none for solver "
                              f"{cell.solver!r} (set monte_carlo = true)")


def _check_one_law(cells: list[Cell], path, same_d: bool = True) -> None:
    """Every model of a comparison must be measured against the same data law (a network
    carries the law it was trained on), or its rows would sit under another law's targets;
    with ``compare.dims``, the same law at each d."""
    if not same_d:
        for d in dict.fromkeys(cell.d for cell in cells):
            _check_one_law([cell for cell in cells if cell.d == d], path)
        return
    first = None
    seen = set()
    for cell in cells:
        if cell.model in seen:
            continue
        seen.add(cell.model)
        model = cell.config.build()[0]
        if not isinstance(model, AbstractDataLaw):
            raise ConfigError(f"{path}: compare.models entry {cell.model!r} has no data law to "
                              "measure its samples against")
        law = model.data_law()
        if first is None:
            first = (cell.model, law)
        elif type(law) is not type(first[1]) or not eqx.tree_equal(law, first[1]):
            raise ConfigError(f"{path}: compare.models {first[0]!r} and {cell.model!r} have "
                              f"different data laws ({type(first[1]).__name__} vs "
                              f"{type(law).__name__} or other parameters): compare models of "
                              "one law (a network's is the law it was trained on)")


def _cell_key(cell: Cell, monte_carlo: bool) -> str:
    text = json.dumps({"identity": cell.config.identity(), "backend": jax.default_backend(),
                       "monte_carlo": monte_carlo}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_compare(name: str, settings: CompareSettings, cells: list[Cell], out: str | Path, *,
                log=print, progress: bool = True) -> dict[str, Any]:
    """Evaluate every cell (keeping finished ones in ``out/cells``), then write
    ``compare.json``, ``compare.md`` and ``compare.png``."""
    out = check_output_folder(out)
    start = time.perf_counter()
    store = claim_folder(out / "cells", "compare cells")  # each cell by its own key
    solved = _solve_cells(cells, out / "cells", progress) if settings.monte_carlo else {}
    rows = []
    bar = progress_bar(len(cells), desc="compare", enabled=progress and not settings.monte_carlo)
    try:
        for cell in cells:
            file = store / f"{_cell_key(cell, settings.monte_carlo)}.json"
            if file.is_file():
                row = json.loads(file.read_text())
            else:
                t0 = time.perf_counter()
                metrics, seconds = (solved[row_key(cell.config)] if settings.monte_carlo
                                    else (_oracle(cell), None))
                row = {"model": cell.model, "schedule": cell.case, "solver": cell.solver,
                       "d": cell.d, "steps": cell.steps,
                       "n": cell.config.sample.n if settings.monte_carlo else 0,
                       "seconds": time.perf_counter() - t0 if seconds is None else seconds,
                       **metrics}
                write_json(file, row)
            law = cell.config.build()[0]
            row.update(errors(law, row))
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    model, _, _ = cells[0].config.build()
    text = table(rows, model)
    how = (f"n = {cells[0].config.sample.n} samples per cell, seed {cells[0].config.sample.seed}"
           if settings.monte_carlo else "exact oracle, no Monte Carlo")
    with staged(out) as stage:  # the result's files appear together
        budget = ""
        files = ["compare.json", "compare.md", "compare.png", "cells/"]
        steps_needed: list[dict] = []
        if settings.tol_high > 0:
            steps_needed = fewest_steps(rows, settings.tol_high, settings.tol_low)
            budget = (f"\n\n## Fewest steps N* with high-level error ≤ {settings.tol_high:g} and "
                      f"low-level error ≤ {settings.tol_low:g}\n\n"
                      + budget_table(steps_needed, settings))
            save_figure(stage / "steps_vs_d.png", _budget_figure(steps_needed, name))
            files.append("steps_vs_d.png")
        atomic_write(stage / "compare.md", lambda tmp: Path(tmp).write_text(
            f"# {name}: {how}\n\n{ERRORS_NOTE}\n\n{text}{budget}\n"))
        save_figure(stage / "compare.png", _figure(rows, model, name))
        record = {"command": "compare", "name": name,
                  "compare": {k: list(v) if isinstance(v, tuple) else v
                              for k, v in dataclasses.asdict(settings).items()},
                  "base": cells[0].config.to_dict(), "rows": rows, "fewest_steps": steps_needed,
                  "seconds": time.perf_counter() - start, "files": files,
                  "environment": environment()}
        write_json(stage / "compare.json", record)
    log(text + budget)
    return record


def _solve_cells(cells: list[Cell], folder: Path, progress: bool
                 ) -> dict[str, tuple[dict[str, float], float]]:
    """(metrics, seconds) of the cells' samples by row key, from ``noisesched.sweep``'s
    machinery: cells that share shapes in one compiled, vmapped call, each finished call kept
    in ``folder/parts`` (a rerun solves only the cells not there). The metrics are those of
    ``noisesched run``: every feature of the law with its target and standard error, and the
    Monte-Carlo-free values where the law has an oracle."""
    unique = {row_key(cell.config): cell.config for cell in cells}
    result = solve_configs(list(unique.values()), out=folder, progress=progress,
                           log=lambda *_: None)
    laws = {key: config.build()[0] for key, config in unique.items()}
    out = {}
    for row in result.rows:
        if row.get("error"):
            raise FloatingPointError(f"compare cell {row['config']}: {row['error']} (kept in "
                                     f"{folder}: delete it to solve the cell again)")
        law = laws[row["key"]]
        keys = [k for f in law.features for k in (f.key, f.target, f.se, f.exact)
                if k is not None and k in row]
        out[row["key"]] = ({k: float(row[k]) for k in keys}, float(row["seconds"]))
    return out


def _oracle(cell: Cell) -> dict[str, float]:
    """The targets of the features (from a few exact samples: they depend on the law only)
    and the Monte-Carlo-free values of the cell's discretisation, in float64."""
    with jax.enable_x64(True):
        model, interp, schedule = cell.config.build()
        law = model.data_law()
        summary = metrics_mod.summary(law, law.sample(jax.random.key(0), 8))
        out = {f.target: summary[f.target] for f in law.features if f.target is not None}
        out.update(model.exact_metrics(interp, schedule, cell.steps, cell.solver))
    return {k: float(v) for k, v in out.items()}


ERRORS_NOTE = ("Errors: high level = the largest |value − target| of the high-level features "
               "(mode or phase weights); low level = the largest |value/target − 1| of the "
               "low-level features with a nonzero target (|value| where it is 0); each from "
               "the Monte-Carlo-free value where the law has one, else the sample estimate.")


def errors(law, row: dict) -> dict[str, float]:
    """``high_error`` and ``low_error`` of a row (see ``ERRORS_NOTE``); nan where the law has
    no feature of that level with a target."""
    out = {"high_error": math.nan, "low_error": math.nan}
    for f in law.features:
        if f.target is None or f.target not in row:
            continue
        value = row.get(f.exact) if f.exact is not None and f.exact in row else row.get(f.key)
        if value is None:
            continue
        target = row[f.target]
        if f.level == "high":
            err = abs(value - target)
        else:
            err = abs(value / target - 1.0) if target != 0 else abs(value)
        key = f"{f.level}_error"
        out[key] = err if math.isnan(out[key]) else max(out[key], err)
    return out


def fewest_steps(rows: list[dict], tol_high: float, tol_low: float) -> list[dict]:
    """For each (model, schedule, solver): N*(d), the fewest steps among the compared N with
    the high-level error within ``tol_high`` and the low-level one within ``tol_low`` (a level
    the law lacks is not checked; None where no N qualifies), and the least-squares slope of
    log N* in log d over the d's where N* exists (None with fewer than two)."""
    tolerances = {"high_error": tol_high, "low_error": tol_low}
    out = []
    groups = dict.fromkeys((r["model"], r["schedule"], r["solver"]) for r in rows)
    for model, case, solver in groups:
        mine = [r for r in rows if (r["model"], r["schedule"], r["solver"]) == (model, case,
                                                                                 solver)]
        per_d: dict[int, int | None] = {}
        for d in sorted({r["d"] for r in mine}):
            good = [r["steps"] for r in mine if r["d"] == d
                    and all(r[k] <= tol for k, tol in tolerances.items()
                            if not math.isnan(r[k]))
                    and not all(math.isnan(r[k]) for k in tolerances)]
            per_d[d] = min(good) if good else None
        found = [(d, n) for d, n in per_d.items() if n is not None]
        slope = None
        if len(found) >= 2 and len({d for d, _ in found}) >= 2:
            logd, logn = np.log([d for d, _ in found]), np.log([n for _, n in found])
            slope = float(np.polyfit(logd, logn, 1)[0])
        out.append({"model": model, "schedule": case, "solver": solver,
                    "steps": {str(d): n for d, n in per_d.items()}, "slope": slope})
    return out


def budget_table(entries: list[dict], settings: CompareSettings) -> str:
    """Markdown: N*(d) per (model, schedule, solver) and its slope in log d ("> N_max" where no
    compared N reaches the tolerance)."""
    dims = sorted({int(d) for e in entries for d in e["steps"]})
    top = max(settings.steps)
    lines = ["| model | schedule | solver | " + " | ".join(f"d = {d:.0e}" for d in dims)
             + " | slope of log N* in log d |",
             "|---|---|---|" + "---|" * (len(dims) + 1)]
    for e in entries:
        cells = [str(e["steps"].get(str(d))) if e["steps"].get(str(d)) is not None
                 else f"> {top}" for d in dims]
        slope = "–" if e["slope"] is None else f"{e['slope']:.2f}"
        lines.append(f"| {_short(e['model'])} | {_short(e['schedule'])} | {e['solver']} | "
                     + " | ".join(cells) + f" | {slope} |")
    return "\n".join(lines)


def _budget_figure(entries: list[dict], title: str):
    from .._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles: dict[str, str] = {}
    cases = list(dict.fromkeys(e["schedule"] for e in entries))
    for e in entries:
        pts = sorted((int(d), n) for d, n in e["steps"].items() if n is not None)
        if not pts:
            continue
        ls = styles.setdefault(e["solver"], ["-", "--", ":", "-."][len(styles) % 4])
        d, n = np.asarray(pts).T
        ax.plot(d, n, ls, marker="o", ms=3, color=_colour(plt, cases.index(e["schedule"])),
                label=f"{_short(e['schedule'])} / {e['solver']}")
    ax.set(xscale="log", yscale="log", xlabel="d", ylabel="fewest steps N*", title=title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def table(rows: list[dict], model) -> str:
    """Markdown: one row per (model, schedule, N), a column per feature (target in the
    heading; the value ± its standard error where the law gives one) and its
    Monte-Carlo-free value where there is one."""
    columns = feature_columns(model, rows, "exact drift, no MC")
    columns += [("high-level error", "high_error"), ("low-level error", "low_error")]
    lines = ["| model | schedule | solver | d | N | " + " | ".join(h for h, _ in columns)
             + " |", "|---|---|---|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = [table_cell(r, key, model) for _, key in columns]
        lines.append(f"| {_short(r['model'])} | {_short(r['schedule'])} | "
                     f"{r.get('solver', '')} | {r.get('d', '')} | {r['steps']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(rows: list[dict], model, title: str):
    """Both errors against N: a column per d, a colour per schedule, a line style per solver
    and a marker per model."""
    from matplotlib.lines import Line2D

    from .._plotting import pyplot

    plt = pyplot()
    dims = sorted({r.get("d", 0) for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    cases = list(dict.fromkeys(r["schedule"] for r in rows))
    solvers = list(dict.fromkeys(r.get("solver", "") for r in rows))
    levels = [k for k in ("high_error", "low_error")
              if any(math.isfinite(r.get(k, math.nan)) for r in rows)] or ["high_error"]
    fig, axes = plt.subplots(len(levels), len(dims), figsize=(4.2 * len(dims),
                                                             3.4 * len(levels)), squeeze=False)
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "v", "D"]
    for (li, level), (di, d) in itertools.product(enumerate(levels), enumerate(dims)):
        ax = axes[li, di]
        for (mi, name), (ci, case), (si, solver) in itertools.product(
                enumerate(models), enumerate(cases), enumerate(solvers)):
            pts = sorted((r["steps"], r[level]) for r in rows
                         if (r["model"], r["schedule"], r.get("solver", ""), r.get("d", 0))
                         == (name, case, solver, d) and math.isfinite(r.get(level, math.nan)))
            if pts:
                steps, values = np.asarray(pts).T
                ax.plot(steps, np.maximum(values, 1e-6), styles[si % len(styles)],
                        marker=markers[mi % len(markers)], ms=3, color=_colour(plt, ci))
        label = "high-level error" if level == "high_error" else "low-level error"
        ax.set(xscale="log", yscale="log", xlabel="steps N", ylabel=label,
               title=f"d = {d}" if d else label)
    handles = [Line2D([], [], color=_colour(plt, j), label=_short(case))
               for j, case in enumerate(cases)]
    handles += [Line2D([], [], color="black", ls=styles[i % len(styles)], label=solver)
                for i, solver in enumerate(solvers) if solver]
    handles += [Line2D([], [], color="black", ls="", marker=markers[i % len(markers)],
                       label=_short(name)) for i, name in enumerate(models)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _colour(plt, index: int):
    """A distinct colour for each of up to 20 schedules."""
    return plt.get_cmap("tab20")(index % 20)


def _short(name: str) -> str:
    """A saved model or schedule by its folder's name (``learned:out/gm_mlp`` → ``learned:gm_mlp``,
    ``vp:@out/fit/schedule.json`` → ``vp:@fit``)."""
    head, sep, path = name.rpartition("@") if "@" in name else name.partition(":")
    if not sep or "/" not in path:
        return name
    folder = Path(path).parent.name if path.endswith(".json") else Path(path).name
    return f"{head}{sep}{folder}"
