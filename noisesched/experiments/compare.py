"""``noisesched compare CONFIG``: a table of models × schedules × step counts on the same
prior draws.

A compare config is a run config (the base of every cell: model options, shape, solver,
``sample.n`` and ``sample.seed``) plus a ``[compare]`` table:

* ``models``: model names that replace ``model.name`` (``"gm"``, ``"learned:FOLDER"``, ...; a
  registry model keeps the base's options, a saved network has its own);
* ``schedules``: ``"kind:schedule"`` pairs (``"vp:vp_dilated"``, ``"ve:constant"``,
  ``"vp:@FOLDER/schedule.json"`` for a saved or learned schedule);
* ``steps``: the step counts N.

Every cell is validated before any sample is drawn, and every model must carry the same data
law (a network: the law it was trained on). Each cell samples ``sample.n`` points from
``sample.seed`` (the same prior points in every cell of one interpolant kind) and reports every
feature of the model's data law with its target, and the Monte-Carlo-free value of the
discretisation where the law has an oracle (an exact model, not a learned one). Finished cells
are kept in ``OUT/cells/`` and skipped by a rerun of the same config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._atomic import atomic_write, claim_folder
from .._progress import progress_bar
from ..models.base import AbstractDataLaw
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
from .fit import evaluate, feature_columns
from .io import environment, save_figure, write_json

__all__ = ["CompareSettings", "load_compare", "run_compare"]


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """The ``[compare]`` table."""

    models: tuple[str, ...] = ()  # empty: the base config's model
    schedules: tuple[str, ...] = ("vp:constant", "vp:vp_dilated", "ve:constant",
                                  "ve:ve_dilated")
    steps: tuple[int, ...] = (10, 30, 100)

    def __post_init__(self):
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
    """One (model, kind:schedule, N) of the comparison, with its validated run config."""

    model: str
    case: str
    steps: int
    config: RunConfig


def load_compare(path: str | Path, overrides: Sequence[str] = ()
                 ) -> tuple[str, CompareSettings, list[Cell]]:
    """(name, settings, cells) of a compare config; every cell validated."""
    data = read_file(path)
    table = data.pop("compare", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: compare must be a table [compare]")
    updates = parse_overrides(overrides, (*SECTIONS, "compare"))
    table.update(updates.pop("compare", {}))
    settings = settings_from_table("compare", CompareSettings, table)
    base = merge(data, updates)
    base_config = from_mapping(base, where=f"{path}: ")
    models = settings.models or (base_config.model.name,)
    cells = []
    for model in models:
        for case in settings.schedules:
            kind, _, schedule = case.partition(":")
            for steps in settings.steps:
                cell = merge(base, {"model": {"name": model}, "interpolant": {"kind": kind},
                                    "solver": {"steps": steps}})
                cell["schedule"] = {"name": schedule}
                cell.setdefault("output", {})["figures"] = False
                where = f"{path} [{model}, {case}, N = {steps}]: "
                cells.append(Cell(model, case, steps, from_mapping(cell, where=where)))
    _check_one_law(cells, path)
    return base_config.name, settings, cells


def _check_one_law(cells: list[Cell], path) -> None:
    """Every model of a comparison must be measured against the same data law (a network
    carries the law it was trained on), or its rows would sit under another law's targets."""
    first = None
    for cell in cells:
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


def _cell_key(cell: Cell) -> str:
    text = json.dumps({"identity": cell.config.identity(), "backend": jax.default_backend()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_compare(name: str, settings: CompareSettings, cells: list[Cell], out: str | Path, *,
                log=print, progress: bool = True) -> dict[str, Any]:
    """Evaluate every cell (keeping finished ones in ``out/cells``), then write
    ``compare.json``, ``compare.md`` and ``compare.png``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    start = time.perf_counter()
    store = claim_folder(out / "cells", "compare cells")  # each cell by its own key
    rows = []
    bar = progress_bar(len(cells), desc="compare", enabled=progress)
    try:
        for cell in cells:
            file = store / f"{_cell_key(cell)}.json"
            if file.is_file():
                row = json.loads(file.read_text())
            else:
                t0 = time.perf_counter()
                x64 = cell.config.sample.dtype == "float64"
                with jax.enable_x64(x64):
                    model, interp, schedule = cell.config.build()
                    metrics = evaluate(model, interp, schedule, cell.config)
                row = {"model": cell.model, "schedule": cell.case, "steps": cell.steps,
                       "n": cell.config.sample.n, "seconds": time.perf_counter() - t0,
                       **metrics}
                write_json(file, row)
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    model, _, _ = cells[0].config.build()
    text = table(rows, model)
    atomic_write(out / "compare.md", lambda tmp: Path(tmp).write_text(
        f"# {name}: n = {cells[0].config.sample.n} samples per cell, seed "
        f"{cells[0].config.sample.seed}, {cells[0].config.solver.name}\n\n{text}\n"))
    save_figure(out / "compare.png", _figure(rows, model, name))
    record = {"name": name, "compare": {k: list(v) for k, v in
                                        dataclasses.asdict(settings).items()},
              "base": cells[0].config.to_dict(), "rows": rows,
              "seconds": time.perf_counter() - start,
              "files": ["compare.json", "compare.md", "compare.png", "cells/"],
              "environment": environment()}
    write_json(out / "compare.json", record)
    log(text)
    return record


def table(rows: list[dict], model) -> str:
    """Markdown: one row per (model, schedule, N), a column per feature (target in the
    heading) and its Monte-Carlo-free value where there is one."""
    columns = feature_columns(model, rows, "exact drift, no MC")
    lines = ["| model | schedule | N | " + " | ".join(h for h, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[key]:.4f}" if key in r and math.isfinite(r[key]) else "–"
                 for _, key in columns]
        lines.append(f"| {_short(r['model'])} | {_short(r['schedule'])} | {r['steps']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(rows: list[dict], model, title: str):
    from matplotlib.lines import Line2D

    from .._plotting import pyplot

    plt = pyplot()
    features = [f for f in model.features if f.target is not None] or list(model.features)[:1]
    cols = min(4, len(features))
    rows_ = math.ceil(len(features) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.5 * cols, 3.6 * rows_), squeeze=False)
    for ax in axes.flat[len(features):]:
        ax.set_visible(False)
    models = list(dict.fromkeys(r["model"] for r in rows))
    cases = list(dict.fromkeys(r["schedule"] for r in rows))
    styles = ["-", "--", ":", "-."]
    for ax, f in zip(axes.flat, features, strict=False):
        for j, case in enumerate(cases):
            for i, name in enumerate(models):
                pts = sorted((r["steps"], r[f.key]) for r in rows
                             if r["model"] == name and r["schedule"] == case)
                if pts:
                    steps, values = np.asarray(pts).T
                    ax.plot(steps, values, styles[i % len(styles)], marker="o", ms=3,
                            color=f"C{j}")
        target = rows[0].get(f.target) if f.target is not None else None
        if target is not None:
            ax.axhline(target, color="gray", lw=0.8, ls="--")
        ax.set(xscale="log", xlabel="steps N", ylabel=f.label, title=f.label)
    handles = [Line2D([], [], color=f"C{j}", marker="o", ms=3, label=_short(case))
               for j, case in enumerate(cases)]
    handles += [Line2D([], [], color="black", ls=styles[i % len(styles)], label=_short(name))
                for i, name in enumerate(models)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _short(name: str) -> str:
    """A saved model or schedule by its folder's name (``learned:out/gm_mlp`` → ``learned:gm_mlp``,
    ``vp:@out/fit/schedule.json`` → ``vp:@fit``)."""
    head, sep, path = name.rpartition("@") if "@" in name else name.partition(":")
    if not sep or "/" not in path:
        return name
    folder = Path(path).parent.name if path.endswith(".json") else Path(path).name
    return f"{head}{sep}{folder}"
