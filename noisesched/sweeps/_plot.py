"""Figures of a sweep, drawn from its table alone (``results.parquet``), so a finished folder can
be plotted again without solving anything.

Each figure shows, for one feature of the data law with a target, its error |value − target|
with ± one standard error bars (where the feature has one, ``Feature.se``), and, dashed, the
error of its Monte-Carlo-free value where the table has one. The axes of the grid are read off
the table: the parameter columns with two or more values among the rows without an error,

* ``sample.seed`` excepted: seeds are replicates, averaged (the standard error of the mean of m
  of them is √(Σ se²)/m);
* with a ``variant`` column, the parameters fixed within each variant (its schedule's name and
  options) are described by the label and are not axes of their own;
* numeric axes (every value a number) are plotted against; the others (variant, schedule name,
  interpolant kind, ...) are series: one line, or one heat-map panel, per combination.

The figures, in ``OUT/figures/`` (PNG, each written atomically):

* ``error_vs_steps_FEATURE.png``, when ``solver.steps`` varies: the error against N, log–log, a
  line per series and per value of the other numeric axes (these held at their first value
  when that would draw more than ``MAX_LINES`` lines);
* ``heatmap_FEATURE.png``, when two or more numeric axes vary: the error over two of them
  (``solver.steps`` across when it varies, else the first two in column order), a panel per
  series; the other numeric axes at their first value; cells whose error is within two
  standard errors of 0 are marked with a dot;
* ``error_vs_AXIS_FEATURE.png``, when one numeric axis other than ``solver.steps`` varies: the
  error against it, a line per series.

A figure's title names the axes held at their first value.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._table import RESULTS, read_metadata
from ._variants import VARIANT

__all__ = ["plot", "NothingToPlot", "MAX_LINES", "FIGURES"]

#: The folder of the figures, inside the sweep's folder.
FIGURES = "figures"
#: The most lines of an error-against-N figure before the other numeric axes are held fixed.
MAX_LINES = 12
STEPS = "solver.steps"
SEED = "sample.seed"


class NothingToPlot(ValueError):
    """The table has no rows, features or numeric axes to draw."""


# ----------------------------------------------------------------------------- the table
def _read(source: Any) -> tuple[Any, Path | None]:
    """(a pyarrow table, its folder or None) of a folder, a Parquet file, a
    ``pyarrow.Table`` or a ``SweepResult``."""
    from ._table import _pyarrow

    pa, pq = _pyarrow()
    if isinstance(source, pa.Table):
        return source, None
    if hasattr(source, "table") and hasattr(source, "path"):  # a SweepResult
        return source.table(), source.path.parent if source.path is not None else None
    if not isinstance(source, str | os.PathLike):
        raise ValueError(f"a sweep to plot is a folder, a results.parquet, a pyarrow.Table or a "
                         f"SweepResult; got {type(source).__name__}")
    path = Path(source)
    file = path / RESULTS if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"no sweep table at {str(file)!r} (run noisesched sweep first)")
    return pq.read_table(file), file.parent


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _axes(rows: list[dict[str, Any]], parameters: Sequence[str]
          ) -> tuple[list[str], list[str]]:
    """(numeric axes, categorical axes) of the rows, in column order."""
    varying = [c for c in parameters if c != SEED
               and len({repr(r.get(c)) for r in rows}) > 1]
    if VARIANT in varying:  # a variant's own settings are named by its label
        def fixed_by_variant(column: str) -> bool:
            seen: dict[Any, str] = {}
            return all(seen.setdefault(r[VARIANT], repr(r.get(column))) == repr(r.get(column))
                       for r in rows)

        varying = [c for c in varying if c == VARIANT or not fixed_by_variant(c)]
    numeric = [c for c in varying if all(_is_number(r.get(c)) for r in rows)]
    return numeric, [c for c in varying if c not in numeric]


def _features(metadata: Mapping[str, Any], columns: Sequence[str]) -> list[dict[str, Any]]:
    """The features of the table's laws that have a target, once each, in order."""
    out: dict[str, dict[str, Any]] = {}
    for features in metadata.get("features", {}).values():
        for f in features:
            if f.get("target") in columns and f["key"] in columns:
                out.setdefault(f["key"], f)
    return list(out.values())


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


class _Cells:
    """The rows grouped by the values of the axes (seeds averaged), and each feature's error
    in each group: (|mean − target|, s.e. of the mean or nan, |exact − target| or nan)."""

    def __init__(self, rows: list[dict[str, Any]], axes: Sequence[str],
                 features: list[dict[str, Any]]):
        self.axes = list(axes)
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row.get(a) for a in axes), []).append(row)
        self.values = {a: list(dict.fromkeys(key[i] for key in groups))
                       for i, a in enumerate(axes)}
        self.errors: dict[str, dict[tuple, tuple[float, float, float]]] = {}
        for f in features:
            table = self.errors[f["key"]] = {}
            se_key, exact_key = f.get("se") or "", f.get("exact") or ""
            for key, members in groups.items():
                mine = [r for r in members if _finite(r.get(f["key"]))
                        and _finite(r.get(f["target"]))]
                if not mine:
                    continue
                value = float(np.mean([r[f["key"]] for r in mine]))
                target = float(np.mean([r[f["target"]] for r in mine]))
                se = math.nan
                if all(_finite(r.get(se_key)) for r in mine):  # the s.e. of the mean of seeds
                    se = math.sqrt(sum(r[se_key] ** 2 for r in mine)) / len(mine)
                exact = math.nan
                if all(_finite(r.get(exact_key)) for r in mine):
                    exact = abs(float(np.mean([r[exact_key] for r in mine])) - target)
                table[key] = (abs(value - target), se, exact)

    def get(self, feature: str, point: Mapping[str, Any]) -> tuple[float, float, float]:
        nan = (math.nan, math.nan, math.nan)
        return self.errors[feature].get(tuple(point[a] for a in self.axes), nan)


# ----------------------------------------------------------------------------- figures
def _combos(cells: _Cells, axes: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo, strict=True))
            for combo in itertools.product(*(cells.values[a] for a in axes))]


def _label(combo: Mapping[str, Any]) -> str:
    if list(combo) == [VARIANT]:
        return str(combo[VARIANT])
    return ", ".join(f"{v}" if k == VARIANT else f"{k} = {v:g}" if _is_number(v)
                     else f"{k} = {v}" for k, v in combo.items()) or "all rows"


def _held(cells: _Cells, axes: Sequence[str]) -> dict[str, Any]:
    """The first value of each of ``axes`` that has several."""
    return {a: cells.values[a][0] for a in axes}


def _title(feature: dict[str, Any], held: Mapping[str, Any]) -> str:
    text = feature["label"]
    if held:
        text += " (at " + ", ".join(f"{k} = {v}" for k, v in held.items()) + ")"
    return text


def _log_scale(values: Sequence[Any]) -> bool:
    vals = [float(v) for v in values]
    return min(vals) > 0 and max(vals) / min(vals) >= 20


def _lines(ax, cells: _Cells, feature: dict[str, Any], x_axis: str,
           series: list[dict[str, Any]], colours) -> None:
    """The error against ``x_axis``, one line per entry of ``series`` (values of the other
    axes), with error bars, and the exact error dashed."""
    for i, fixed in enumerate(series):
        xs = sorted(cells.values[x_axis])
        pts = [(x, *cells.get(feature["key"], {**fixed, x_axis: x})) for x in xs]
        pts = [p for p in pts if math.isfinite(p[1])]
        if not pts:
            continue
        x, err, se, exact = map(np.asarray, zip(*pts, strict=True))
        colour = colours(i % 10)
        ax.errorbar(x, err, yerr=np.where(np.isfinite(se), se, 0.0), marker="o", ms=3,
                    capsize=2, color=colour, label=_label(fixed))
        if np.isfinite(exact).any():
            ax.plot(x, exact, "--", color=colour, lw=1)
    ax.set_yscale("log", nonpositive="clip")
    ax.set(ylabel=f"|{feature['label']} − target|")


def _legend(fig, ax, exact: bool) -> None:
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    if exact:
        handles.append(Line2D([], [], color="black", ls="--", lw=1, label="exact (no MC)"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _has_exact(cells: _Cells, feature: dict[str, Any]) -> bool:
    return any(math.isfinite(e[2]) for e in cells.errors[feature["key"]].values())


def _steps_figure(plt, cells: _Cells, feature, categorical, others):
    series_axes = [*categorical, *others]
    held = {}
    if len(_combos(cells, series_axes)) > MAX_LINES:
        held = _held(cells, others)
        series = [{**combo, **held} for combo in _combos(cells, categorical)]
    else:
        series = _combos(cells, series_axes)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _lines(ax, cells, feature, STEPS, series, plt.get_cmap("tab10"))
    ax.set(xscale="log", xlabel="steps N", title=_title(feature, held))
    steps = sorted(cells.values[STEPS])
    if len(steps) <= MAX_LINES:  # the step counts themselves as ticks
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(steps, [f"{n:g}" for n in steps])
        ax.xaxis.set_minor_formatter(NullFormatter())
    _legend(fig, ax, _has_exact(cells, feature))
    fig.tight_layout()
    return fig


def _line_figure(plt, cells: _Cells, feature, axis: str, categorical, others):
    held = _held(cells, others)
    series = [{**combo, **held} for combo in _combos(cells, categorical)]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _lines(ax, cells, feature, axis, series, plt.get_cmap("tab10"))
    if _log_scale(cells.values[axis]):
        ax.set_xscale("log")
    ax.set(xlabel=axis, title=_title(feature, held))
    _legend(fig, ax, _has_exact(cells, feature))
    fig.tight_layout()
    return fig


def _ticks(values: Sequence[Any], most: int = 8) -> tuple[np.ndarray, list[str]]:
    step = max(1, math.ceil(len(values) / most))
    index = np.arange(0, len(values), step)
    return index, [f"{values[int(i)]:.4g}" for i in index]


def _heatmap_figure(plt, cells: _Cells, feature, x_axis: str, y_axis: str, categorical,
                    others):
    from matplotlib.colors import LogNorm

    held = _held(cells, others)
    panels = _combos(cells, categorical)
    xs, ys = sorted(cells.values[x_axis]), sorted(cells.values[y_axis])
    grids = []
    for panel in panels:
        err = np.full((len(ys), len(xs)), np.nan)
        se = np.full_like(err, np.nan)
        for (j, y), (i, x) in itertools.product(enumerate(ys), enumerate(xs)):
            err[j, i], se[j, i], _ = cells.get(feature["key"],
                                               {**panel, **held, x_axis: x, y_axis: y})
        grids.append((err, se))
    positive = np.concatenate([e[np.isfinite(e) & (e > 0)] for e, _ in grids])
    low, high = (positive.min(), positive.max()) if positive.size else (1e-6, 1.0)
    norm = LogNorm(vmin=low, vmax=max(high, low * 1.0001))
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols + 1.2, 3.6 * rows), squeeze=False)
    image = None
    for ax, panel, (err, se) in zip(axes.flat, panels, grids, strict=False):
        shown = np.where(np.isfinite(err), np.maximum(err, low), np.nan)
        image = ax.imshow(shown, origin="lower", aspect="auto", norm=norm, cmap="viridis",
                          interpolation="nearest")
        rows_in, cols_in = np.nonzero(np.isfinite(se) & (err < 2 * se))
        ax.plot(cols_in, rows_in, ".", color="white", ms=3)
        for setter, values in ((ax.set_xticks, xs), (ax.set_yticks, ys)):
            index, labels = _ticks(values)
            setter(index, labels, fontsize=7)
        ax.set(xlabel=x_axis, ylabel=y_axis, title=_label(panel) if categorical else "")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat), label=f"|{feature['label']} − target|"
                     " (dots: within 2 s.e. of 0)")
    fig.suptitle(_title(feature, held))
    return fig


# ----------------------------------------------------------------------------- the entry point
def plot(source: str | os.PathLike | Any, out: str | os.PathLike | None = None) -> list[Path]:
    """Draw the figures of a sweep (see the module's docstring) from its table alone.

    Args:
        source: the sweep's folder (its ``results.parquet``), a Parquet file, a
            ``pyarrow.Table`` written by ``noisesched.sweep`` or a ``SweepResult``.
        out: the folder of the figures (default: ``figures/`` in the sweep's folder; needed
            for a table that has none).

    Returns the paths written. Raises ``NothingToPlot`` (a ``ValueError``) for a table without
    finished rows, without a feature with a target, or where no numeric parameter varies.
    """
    from .._plotting import pyplot
    from ..experiments.io import save_figure

    table, folder = _read(source)
    metadata = read_metadata(table)
    if "columns" not in metadata:
        raise ValueError("the table has no noisesched record (schema metadata 'noisesched'): "
                         "plot a table written by noisesched.sweep")
    if out is None and folder is None:
        raise ValueError("out is needed to plot a table that has no folder")
    target = Path(out) if out is not None else Path(folder) / FIGURES  # type: ignore[arg-type]
    rows = [r for r in table.to_pylist() if r.get("error") is None]
    if not rows:
        raise NothingToPlot("the table has no finished rows (every solve failed, or none ran)")
    features = _features(metadata, table.column_names)
    if not features:
        raise NothingToPlot("the table's data law has no feature with a target to plot")
    parameters = [c for c in metadata["columns"].get("parameters", [])
                  if c in table.column_names]
    numeric, categorical = _axes(rows, parameters)
    if not numeric:
        varying = ", ".join(categorical) or "none but the seeds"
        raise NothingToPlot(f"no numeric axis varies (varying: {varying}): the figures need "
                            f"{STEPS} or another numeric parameter with two or more values")
    cells = _Cells(rows, [*categorical, *numeric], features)
    plt = pyplot()
    written: list[Path] = []

    def save(name: str, fig) -> None:
        written.append(save_figure(target / name, fig))
        plt.close(fig)

    others = [a for a in numeric if a != STEPS]
    for f in features:
        if STEPS in numeric:
            save(f"error_vs_steps_{f['key']}.png",
                 _steps_figure(plt, cells, f, categorical, others))
        if len(numeric) >= 2:
            x_axis, y_axis = (STEPS, others[0]) if STEPS in numeric else (others[0], others[1])
            held = [a for a in numeric if a not in (x_axis, y_axis)]
            save(f"heatmap_{f['key']}.png",
                 _heatmap_figure(plt, cells, f, x_axis, y_axis, categorical, held))
        elif others:
            (axis,) = others
            save(f"error_vs_{axis.replace('.', '_')}_{f['key']}.png",
                 _line_figure(plt, cells, f, axis, categorical, []))
    return written
