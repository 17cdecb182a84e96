"""Sweeps over named variants (sets of config overrides), and the figures of a sweep's table."""

import json
import math

import pyarrow.parquet as pq
import pytest

import noisesched as ns
from noisesched import sweeps
from noisesched.cli import main
from noisesched.sweeps import _plot

BASE = {"name": "gm_variants",
        "model": {"name": "gm", "d": 100},
        "solver": {"steps": 10, "method": "scan"},
        "sample": {"n": 32, "seed": 3}}
DILATED = {"schedule": {"name": "vp_dilated", "k": 3.0}}
CONSTANT = {"schedule": {"name": "constant"}}


def _quiet(base, grid, **kwargs):
    return ns.sweep(base, grid, progress=False, log=lambda *_: None, **kwargs)


def _same(row, other, ignore=("seconds",)):
    assert {k: v for k, v in row.items() if k not in ignore} == \
        {k: v for k, v in other.items() if k not in ignore}


def test_a_two_variant_sweep_equals_the_two_one_variant_sweeps(tmp_path):
    ps = [0.6, 0.8]
    both = _quiet(BASE, {"model.p": ps, "variants": {"dilated": DILATED,
                                                      "constant": CONSTANT}}, out=tmp_path)
    assert [(r["variant"], r["model.p"]) for r in both.rows] == [
        ("dilated", 0.6), ("dilated", 0.8), ("constant", 0.6), ("constant", 0.8)]
    assert [r["schedule.name"] for r in both.rows] == ["vp_dilated"] * 2 + ["constant"] * 2
    assert both.points[2] == {"variant": "constant", "model.p": 0.6}
    for label, overrides, rows in (("dilated", DILATED, both.rows[:2]),
                                   ("constant", CONSTANT, both.rows[2:])):
        alone = _quiet(BASE, {"variants": {label: overrides}, "model.p": ps})
        for row, single in zip(rows, alone.rows, strict=True):
            _same(row, single)
        # and a plain sweep with the variant's overrides in the base: the same rows, unlabelled
        plain = _quiet({**BASE, **overrides}, {"model.p": ps})
        for row, single in zip(rows, plain.rows, strict=True):
            assert "variant" not in single
            _same(row, single, ignore=("seconds", "variant"))
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.column_names[:2] == ["key", "variant"]
    record = json.loads(table.schema.metadata[b"noisesched"])
    assert record["columns"]["parameters"][0] == "variant"
    assert "variant" not in record["columns"]["metrics"]
    # the label names rows of this grid: a relabelled rerun keeps the rows under the new label
    again = _quiet(BASE, {"model.p": ps, "variants": {"wide": DILATED, "flat": CONSTANT}},
                   out=tmp_path)
    assert again.solved == 0
    assert [r["variant"] for r in pq.read_table(tmp_path / "results.parquet").to_pylist()] == [
        "wide", "wide", "flat", "flat"]


def test_the_command_line_variants_plot_and_set(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('name = "cli_variants"\n[model]\nname = "gm"\nd = 100\n'
                      '[solver]\nsteps = 10\nmethod = "scan"\n[sample]\nn = 32\n'
                      '[sweep]\nmodel.p = [0.6, 0.8]\n'
                      '[sweep.variants.constant]\nschedule = {name = "constant"}\n'
                      '[sweep.variants.dilated]\nschedule = {name = "vp_dilated", k = 3.0}\n')
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out), "--no-progress", "--plot"]) == 0
    printed = capsys.readouterr().out
    assert "4 rows, 4 solved now, 0 kept" in printed
    assert "wrote 2 figure(s) into" in printed
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["error_vs_model_p_mode_weight.png",
                       "error_vs_model_p_within_mode_var.png"]
    # plotting a finished sweep solves nothing
    assert main(["sweep", str(config), "--out", str(out), "--no-progress", "--plot"]) == 0
    assert "4 rows, 0 solved now, 4 kept" in capsys.readouterr().out
    # a variant's entry from the command line: another configuration
    assert main(["sweep", str(config), "--out", str(out), "--no-progress",
                 "--set", "sweep.variants.dilated.schedule.k=4.0"]) == 0
    assert "4 rows, 2 solved now, 2 kept" in capsys.readouterr().out
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["schedule.k"] for r in rows if r["variant"] == "dilated"] == [4.0, 4.0]
    assert main(["sweep", str(config), "--out", str(tmp_path / "bad"),
                 "--set", "sweep.variants.dilated.schedule.kk=4.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisesched: error: unknown key 'schedule.kk' in "
                          "sweep.variants.dilated") and "\n" not in err


SMALL = {"name": "plots", "model": {"name": "gm", "d": 50},
         "solver": {"steps": 4, "method": "scan"}, "sample": {"n": 16, "seed": 0}}


def test_figures_of_a_one_dimensional_grid_with_seeds(tmp_path):
    result = _quiet(SMALL, {"model.p": [0.6, 0.7, 0.8], "seeds": [0, 1]}, out=tmp_path)
    written = sweeps.plot(tmp_path)
    assert sorted(p.name for p in written) == ["error_vs_model_p_mode_weight.png",
                                               "error_vs_model_p_within_mode_var.png"]
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 0 for p in written)
    # from the table alone, anywhere
    again = sweeps.plot(result.table(), tmp_path / "elsewhere")
    assert len(again) == 2 and all(p.parent == tmp_path / "elsewhere" for p in again)


def _table(points):
    """A table as a sweep writes it, of GM rows at ``points`` (parameters by column), with
    made-up metrics: the figures read nothing else."""
    law = ns.GaussianMixture.two_modes(d=50)
    rows = []
    for i, point in enumerate(points):
        rows.append({"key": f"k{i}", **point, "sample.seed": 0,
                     "mode_weight": 0.8 + 0.01 * i, "mode_weight_target": 0.8,
                     "mode_weight_se": 0.02, "mode_weight_exact": 0.8 + 0.005 * i,
                     "within_mode_var": 0.25 - 0.001 * i, "within_mode_var_target": 0.25,
                     "within_mode_var_se": 0.001, "coordinate_ks": 0.01, "error": None})
    params = [*points[0], "sample.seed"]
    metadata = {"features": {"gm": [f._asdict() for f in law.features]},
                "columns": {"parameters": params, "metrics": [k for k in rows[0] if k not in
                                                              (*params, "key", "error")],
                            "run": ["key", "error"]}}
    return sweeps.to_table(rows, metadata)


def test_figures_of_a_two_dimensional_grid_and_of_steps(tmp_path):
    grid = [{"model.p": p, "model.sigma": s} for p in (0.6, 0.8) for s in (0.3, 0.5, 0.7)]
    assert sorted(p.name for p in sweeps.plot(_table(grid), tmp_path / "2d")) == [
        "heatmap_mode_weight.png", "heatmap_within_mode_var.png"]
    steps = [{"variant": v, "schedule.name": name, "solver.steps": n}
             for v, name in (("dilated", "vp_dilated"), ("constant", "constant"))
             for n in (2, 4, 8)]
    assert sorted(p.name for p in sweeps.plot(_table(steps), tmp_path / "steps")) == [
        "error_vs_steps_mode_weight.png", "error_vs_steps_within_mode_var.png"]
    # steps and another numeric axis: error against N, and a heat map over both
    both = [{"solver.steps": n, "model.p": p} for n in (2, 4) for p in (0.6, 0.8)]
    assert sorted(p.name for p in sweeps.plot(_table(both), tmp_path / "both")) == [
        "error_vs_steps_mode_weight.png", "error_vs_steps_within_mode_var.png",
        "heatmap_mode_weight.png", "heatmap_within_mode_var.png"]
    # a variant's own settings (its schedule's name) are not an axis of their own
    assert _plot._axes(_table(steps).to_pylist(), ["variant", "schedule.name", "solver.steps"]
                       ) == (["solver.steps"], ["variant"])
    with pytest.raises(ValueError, match="out is needed to plot a table that has no folder"):
        sweeps.plot(_table(both))


def test_a_table_without_a_numeric_axis_says_so(tmp_path, capsys):
    _quiet(SMALL, {"variants": {"dilated": DILATED, "constant": CONSTANT}, "seeds": [0, 1]},
           out=tmp_path / "out")
    with pytest.raises(sweeps.NothingToPlot, match=r"no numeric axis varies \(varying: "
                                                   r"variant\): the figures need solver.steps"):
        sweeps.plot(tmp_path / "out")
    with pytest.raises(ValueError, match="no sweep table at"):
        sweeps.plot(tmp_path / "missing")
    config = tmp_path / "sweep.toml"
    config.write_text('name = "flat"\n[model]\nname = "gm"\nd = 50\n[solver]\nsteps = 4\n'
                      'method = "scan"\n[sample]\nn = 16\n[sweep]\nseeds = [0, 1]\n')
    assert main(["sweep", str(config), "--out", str(tmp_path / "cli"), "--no-progress",
                 "--plot"]) == 0
    assert "no figures: no numeric axis varies (varying: none but the seeds)" in \
        capsys.readouterr().out


def test_seeds_are_averaged_with_the_standard_error_of_the_mean():
    feature = {"key": "w", "label": "w", "target": "w_target", "se": "w_se", "exact": None}
    rows = [{"model.p": 0.6, "w": 0.5, "w_target": 0.6, "w_se": 0.03},
            {"model.p": 0.6, "w": 0.6, "w_target": 0.6, "w_se": 0.04},
            {"model.p": 0.8, "w": 0.9, "w_target": 0.8, "w_se": 0.02}]
    cells = _plot._Cells(rows, ["model.p"], [feature])
    err, se, exact = cells.get("w", {"model.p": 0.6})
    assert err == pytest.approx(0.05) and se == pytest.approx(0.05 / 2)  # √(0.03² + 0.04²)/2
    assert math.isnan(exact)
    assert cells.get("w", {"model.p": 0.8})[:2] == pytest.approx((0.1, 0.02))
