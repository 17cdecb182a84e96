"""Sweeps: one compiled, vmapped call per group of shapes, the same numbers as single runs, a
Parquet table that a rerun completes, and one-line errors before any work."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

import noisesched as ns
from noisesched import sweeps
from noisesched.cli import main
from noisesched.experiments.config import ConfigError, from_mapping
from noisesched.experiments.run import exact_metrics
from noisesched.sweeps import _vmapped

BASE = {"name": "gm_sweep",
        "model": {"name": "gm", "d": 200},
        "solver": {"steps": 20, "method": "scan"},
        "sample": {"n": 64, "seed": 3}}


def _single_run(config):
    """What ``noisesched run`` reports for ``config``: sample_summary with the config's key,
    and the oracle."""
    dtype = jnp.float64 if config.sample.dtype == "float64" else jnp.float32
    model, interp, schedule = config.build()
    summary = ns.sample_summary(model, interp, schedule, jax.random.PRNGKey(config.sample.seed),
                                config.sample.n, dtype=dtype, **config.solver.options())
    return {**summary.metrics, **exact_metrics(config)}, summary.num_steps


def _close(row, expected):
    for key, value in expected.items():
        if key.endswith("_exact"):  # float64 oracle
            assert row[key] == pytest.approx(value, rel=1e-10), key
        elif key.startswith("mode_weight"):  # fractions of n samples: equal
            assert row[key] == value, key
        else:
            assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def _one_call_with_the_numbers_of_single_runs(monkeypatch, base, configs):
    traces = []

    def counting_solve(*args, **kwargs):  # called once per trace of the vmapped program
        traces.append(1)
        return ns.solve(*args, **kwargs)

    monkeypatch.setattr(_vmapped, "solve", counting_solve)
    jax.clear_caches()
    ps = np.linspace(0.55, 0.95, configs)
    result = ns.sweep(base, {"model.p": [float(p) for p in ps]}, progress=False,
                      log=lambda *_: None)
    assert len(traces) == 1  # one program for the configurations ...
    (group,) = result.groups
    # ... in one call
    assert (group.calls, group.configs_per_call, group.solved) == (1, configs, configs)
    assert group.vmap_width == (sweeps.CPU_VMAP_WIDTH if jax.default_backend() == "cpu"
                                else configs)
    assert [row["model.p"] for row in result.rows] == pytest.approx(ps)
    for row, config in zip(result.rows, result.configs, strict=True):
        assert row["error"] is None
        expected, num_steps = _single_run(config)
        assert row["num_steps"] == num_steps == base["solver"]["steps"]
        _close(row, expected)
    weights = [row["mode_weight"] for row in result.rows]
    assert np.corrcoef(weights, ps)[0, 1] > 0.95  # each row is its own p


def test_gm_sweep_over_p_is_one_compiled_call_with_the_numbers_of_single_runs(monkeypatch):
    _one_call_with_the_numbers_of_single_runs(monkeypatch, BASE, 24)


# ~20 s on 2 CPU cores: 64 single runs beside the sweep (the test above: the same at d = 200)
@pytest.mark.slow
def test_a_64_configuration_gm_sweep_is_one_compiled_call_with_the_numbers_of_single_runs(
        monkeypatch):
    """d = 10^3, n = 256, N = 100, p over 64 values: one compiled call, the metrics of 64
    single runs with the same keys."""
    base = {**BASE, "model": {"name": "gm", "d": 1000},
            "solver": {"steps": 100, "method": "scan"}, "sample": {"n": 256, "seed": 3}}
    _one_call_with_the_numbers_of_single_runs(monkeypatch, base, 64)


def test_points_that_differ_in_every_float_and_key_match_their_single_summaries():
    d = 64
    interp = ns.Interpolant("ve", "linear", d)
    points = [sweeps.Point(ns.GaussianMixture.two_modes(d, p=0.8, sigma=s),
                           interp, ns.schedules.ve_dilated(d, k), jax.random.PRNGKey(seed))
              for s, k, seed in [(0.3, 2.0, 0), (0.6, 4.0, 1)]]
    stacking = sweeps.Stacking.of(((p.model, p.interp, p.schedule), p.key) for p in points)
    assert stacking.batched_key and len(stacking.varying) == 2  # σ and k; the means are shared
    out = sweeps.sample_summaries(points, 32, steps=6, method="diffrax")
    for point, summary in zip(points, out, strict=True):
        # (the fused loop: the numbers of diffrax's Euler up to rounding, compiled faster)
        single = ns.sample_summary(point.model, point.interp, point.schedule, point.key, 32,
                                   steps=6, method="scan")
        assert summary.num_steps == single.num_steps
        for key, value in single.metrics.items():
            assert summary.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_groups_of_other_shapes_run_one_after_another_and_seeds_are_the_keys():
    result = ns.sweep(BASE, {"model.d": [100, 200], "model.p": [0.6, 0.8], "seeds": [0, 1]},
                      progress=False, log=lambda *_: None)
    assert [(g.configs, g.calls) for g in result.groups] == [(4, 1), (4, 1)]
    assert [(r["model.d"], r["model.p"], r["sample.seed"]) for r in result.rows][:3] == [
        (100, 0.6, 0), (100, 0.6, 1), (100, 0.8, 0)]
    assert len({row["key"] for row in result.rows}) == 8
    # two seeds: other prior draws, so other samples
    assert result.rows[0]["within_mode_var"] != result.rows[1]["within_mode_var"]
    for i in (1, 6):
        expected, _ = _single_run(result.configs[i])
        _close(result.rows[i], expected)


def test_a_lone_configuration_and_every_vmap_width_give_the_single_run_numbers():
    """One configuration per call is solved without a vmap (a vmap of size 1 meets an XLA:CPU
    miscompilation); two side by side, one batch after another, or all at once: the same
    numbers."""
    base = {**BASE, "model": {"name": "gm", "d": 100}, "solver": {"steps": 10,
                                                                  "method": "scan"}}
    grid = {"model.p": [0.6, 0.7, 0.9]}
    singles = [_single_run(config)[0] for config in sweeps.expand(base, grid)[1]]
    for per_call, width, calls in [(1, 0, 3), (3, 2, 1), (3, 3, 1)]:
        result = ns.sweep(base, grid, configs_per_call=per_call, vmap_width=width,
                          progress=False, log=lambda *_: None)
        (group,) = result.groups
        assert group.calls == calls and group.vmap_width == max(width, min(per_call, 2))
        for row, expected in zip(result.rows, singles, strict=True):
            _close(row, expected)


def test_an_interrupted_sweep_finishes_only_the_remaining_rows(tmp_path, monkeypatch):
    grid = {"model.p": {"start": 0.6, "stop": 0.9, "num": 4}, "seeds": [0, 1]}
    out = tmp_path / "sweep"
    # half the grid first
    half = ns.sweep(BASE, {**grid, "seeds": [0]}, out=out, progress=False, log=lambda *_: None)
    assert half.solved == 4
    # then the whole grid, interrupted after its first call of two configurations
    calls = []
    write_part = sweeps.ResultStore.write_part

    def interrupt(self, rows, metadata):
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write_part(self, rows, metadata)

    monkeypatch.setattr(sweeps.ResultStore, "write_part", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ns.sweep(BASE, grid, out=out, configs_per_call=2, progress=False, log=lambda *_: None)
    monkeypatch.setattr(sweeps.ResultStore, "write_part", write_part)
    assert len(list((out / "parts").glob("part-*.parquet"))) == 2  # the half, and one call
    resumed = ns.sweep(BASE, grid, out=out, configs_per_call=2, progress=False,
                       log=lambda *_: None)
    assert resumed.solved == 2  # 8 rows: 4 from the half, 2 from before the interruption
    fresh = ns.sweep(BASE, grid, progress=False, log=lambda *_: None)
    assert fresh.solved == 8
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["key"] for r in table] == [r["key"] for r in fresh.rows]
    for row, expected in zip(table, fresh.rows, strict=True):
        assert row["mode_weight"] == expected["mode_weight"]
        assert row["within_mode_var"] == pytest.approx(expected["within_mode_var"], rel=1e-6)
    again = ns.sweep(BASE, grid, out=out, progress=False, log=lambda *_: None)
    assert again.solved == 0 and again.groups[0].calls == 0


def test_the_table_reads_back_with_its_columns_and_metadata(tmp_path):
    result = ns.sweep(BASE, {"schedule.k": [2.0, 3.0], "seeds": [0, 1]}, out=tmp_path,
                      progress=False, log=lambda *_: None)
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.num_rows == 4
    names = table.column_names
    for column in ("key", "model.name", "model.d", "model.p", "interpolant.kind",
                   "schedule.name", "schedule.k", "solver.steps", "sample.n", "sample.seed",
                   "mode_weight", "mode_weight_target", "within_mode_var",
                   "within_mode_var_target", "coordinate_ks", "mode_weight_exact",
                   "within_mode_var_exact", "num_steps", "error", "seconds", "group", "backend",
                   "config"):
        assert column in names, column
    assert not any(name.startswith(("output.", "sample.chunk")) for name in names)
    schema = table.schema
    assert str(schema.field("schedule.k").type) == "double"
    assert str(schema.field("sample.seed").type) == "int64"
    assert str(schema.field("model.name").type) == "string"
    rows = table.to_pylist()
    assert [(r["schedule.k"], r["sample.seed"]) for r in rows] == [(2.0, 0), (2.0, 1),
                                                                    (3.0, 0), (3.0, 1)]
    assert rows == result.table().to_pylist()
    record = json.loads(schema.metadata[b"noisesched"])
    assert [f["key"] for f in record["features"]["gm"]] == ["mode_weight", "within_mode_var",
                                                           "coordinate_ks"]
    assert [f["se"] for f in record["features"]["gm"]] == ["mode_weight_se",
                                                          "within_mode_var_se", None]
    for column in ("mode_weight_exact", "mode_weight_se", "within_mode_var_se"):
        assert column in record["columns"]["metrics"] and column in names
    assert "schedule.k" in record["columns"]["parameters"]
    # each row reruns alone: its config is the resolved config
    config = from_mapping(json.loads(rows[3]["config"]))
    assert sweeps.row_key(config) == rows[3]["key"]


class Isotropic(ns.AbstractModel):
    """N(0, scale² I): a user's model (README, *Your own model*)."""

    d: int = eqx.field(static=True)
    scale: float

    def denoise(self, c, x):
        v = self.scale**2
        return v * c.beta * x / (c.alpha_sq + v * c.beta**2)

    @property
    def features(self):
        return (ns.Feature("mean_sq", "mean x²", "low", target="mean_sq_target"),)

    def row_statistics(self, x, valid, rows, cols):
        return {"sum_sq": jnp.sum(x * x, axis=-1), "values": x[rows, cols]}

    def summary_from_rows(self, rows):
        n = rows["sum_sq"].shape[0]
        return {"mean_sq": float(np.sum(rows["sum_sq"]) / (n * self.d)),
                "mean_sq_target": self.scale**2}


def test_a_column_of_several_kinds_is_written_as_json_text(tmp_path):
    """Seen: a sweep over solver.span = ["auto", true, false] solved every row, then crashed
    writing a column of strings and booleans (and again on the rerun)."""
    base = {**BASE, "solver": {"steps": 20}}
    for _ in range(2):  # the rerun keeps the rows and writes the same table
        ns.sweep(base, {"solver.span": ["auto", True, False]}, out=tmp_path, progress=False,
                 log=lambda *_: None)
        table = pq.read_table(tmp_path / "results.parquet")
        assert table.column("solver.span").to_pylist() == ['"auto"', "true", "false"]
        assert table.column("error").to_pylist() == [None] * 3


def test_span_true_where_it_does_not_apply_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="sweep point solver.name = 'midpoint': solver.span = "
                                          "true needs a fixed-grid Euler or Heun solve"):
        ns.sweep({**BASE, "solver": {"steps": 20, "span": True}},
                 {"solver.name": ["euler", "midpoint"]}, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_failed_solve_is_recorded_and_the_others_go_on():
    interp = ns.Interpolant("vp", "linear", 8)
    key = jax.random.PRNGKey(0)
    points = [sweeps.Point(Isotropic(8, s), interp, ns.schedules.constant(), key)
              for s in (0.5, float("nan"), 2.0)]
    out = sweeps.sample_summaries(points, 16, steps=5, method="scan")
    assert out[1].error is not None and "nan or inf" in out[1].error and not out[1].metrics
    for summary, scale in ((out[0], 0.5), (out[2], 2.0)):
        assert summary.error is None
        assert summary.metrics["mean_sq_target"] == pytest.approx(scale**2)


def test_a_warning_of_every_point_is_said_once():
    base = {**BASE, "interpolant": {"kind": "ve"}}  # vp_dilated with a VE interpolant: runs
    with pytest.warns(ns.schedules.ScheduleKindWarning) as record:
        points, configs = sweeps.expand(base, {"model.p": [0.6, 0.7, 0.8]})
    assert len(configs) == 3
    assert sum(issubclass(w.category, ns.schedules.ScheduleKindWarning) for w in record) == 1


@pytest.mark.parametrize("grid, message", [
    ({"model.pp": [0.6]}, "unknown sweep key 'model.pp' (did you mean 'model.p'?)"),
    ({"model.p": []}, "sweep.model.p is an empty list"),
    ({"model.p": [0.6, "high"]}, "model.p must be a number; got 'high'"),
    ({"schedule.k": {"start": 1, "stop": 3}}, "sweep.schedule.k: a range needs start, stop and "
                                              "num; num is missing"),
    ({"model.p": {"start": 0, "stop": 1, "num": 3, "log": True}}, "log = true needs start > 0"),
    ({"model.beta": [1.5]}, "model.beta = 1.5 does not apply to model 'gm'"),
    ({"seed": [1, 2]}, "(did you mean 'seeds'?)"),
    ({"model.p": [0.6, 0.6]}, "sweep.model.p lists 0.6 twice"),
    ({"schedule.k": [3, 3.0]}, "are the same configuration"),
    ({"output.figures": [True, False]}, "changes no result"),
    ({"model.d": [100, 4]}, "sweep point model.d = 4: schedule.k must be in (0, 2)"),
    ({"model.p": 0.6}, "must be a list of values or a range"),
    # named variants (tests/test_sweep_variants.py)
    ({"variants": {}}, "sweep.variants is empty"),
    ({"variants": {"a": {}}}, "sweep.variants.a is empty"),
    ({"variants": {"a": {"shedule": {"name": "constant"}}}},
     "unknown key 'shedule' in sweep.variants.a: a variant holds config sections"),
    ({"variants": {"a": {"schedule": {"kk": 3.0}}}},
     "unknown key 'schedule.kk' in sweep.variants.a (did you mean 'schedule.k'?)"),
    ({"variants": {"a": {"schedule": {"name": "vp_dilated", "k": 3.0}}},
      "schedule.k": [2.0, 4.0]},
     "sweep.variants.a sets schedule.k and the sweep has the axis sweep.schedule.k"),
    ({"variants": {"a": {"sample": {"seed": 1}}}, "seeds": [0, 1]},
     "sweep.variants.a sets sample.seed and the sweep has the axis sweep.seeds"),
    ({"variants": {"a": {"schedule": {"name": "constant", "k": 3.0}}}},
     "sweep.variants.a: schedule.k = 3.0 does not apply to schedule 'constant'"),
    ({"variants": {"a": {"schedule": {"name": "nope"}}}},
     "sweep.variants.a: schedule.name must be one of"),
    ({"variants": {"a": {"schedule": {"name": "constant"}},
                   "b": {"schedule": {"name": "constant"}}}},
     "sweep points variant = 'a' and variant = 'b' are the same configuration"),
    ({"variants": {"a": {"output": {"figures": False}}}}, "changes no result"),
    ({"variants": {"a": {"sample": {"chunk_size": 8}}}}, "changes no result"),
    ({"variants": {"a": {"schedule": "constant"}}},
     "sweep.variants.a.schedule must be a non-empty table"),
    ({"variants": {"a.b": {"schedule": {"name": "constant"}}}},
     "labels must be non-empty strings without '.'"),
    ({"variant": {"a": {"schedule": {"name": "constant"}}}}, "(did you mean 'variants'?)"),
])
def test_bad_grids_are_refused_before_any_work(grid, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        ns.sweep(BASE, grid, out=tmp_path / "out", progress=False)
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_the_command_line_sweep(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('name = "cli_sweep"\n[model]\nname = "gm"\nd = 100\n'
                      '[solver]\nsteps = 10\nmethod = "scan"\n[sample]\nn = 32\n'
                      '[sweep]\nmodel.p = {start = 0.6, stop = 0.9, num = 3}\nseeds = [0]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "3 rows, 3 solved now, 0 kept" in capsys.readouterr().out
    assert main(["sweep", str(config), "--out", str(out), "--no-progress",
                 "--set", "sweep.seeds=[0,1]"]) == 0
    assert "6 rows, 3 solved now, 3 kept" in capsys.readouterr().out
    assert pq.read_table(out / "results.parquet").num_rows == 6
    for bad, message in [
        (["--set", "sweep.model.q=[1]"], "unknown sweep key 'model.q' (did you mean "),
        (["--set", "sweep.sample.seed=[1]"], "the sweep gives seeds and sample.seed"),
        (["--set", "sweep.configs_per_call=-2"], "sweep.configs_per_call must be an integer"),
        (["--set", "sweep.model.sigma=['wide']"], "model.sigma must be a number"),
    ]:
        assert main(["sweep", str(config), "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("noisesched: error: ") and message in err and "\n" not in err
    run_folder = tmp_path / "run"  # another command's result: not a sweep's folder
    run_folder.mkdir()
    (run_folder / "results.json").write_text("{}")
    assert main(["sweep", str(config), "--out", str(run_folder), "--no-progress"]) == 2
    assert "holds files that are not a sweep's (results.json)" in capsys.readouterr().err
    assert [p.name for p in run_folder.iterdir()] == ["results.json"]
    plain = tmp_path / "plain.toml"
    plain.write_text('[model]\nname = "gm"\nd = 100\n')
    assert main(["sweep", str(plain), "--out", str(tmp_path / "bad")]) == 2
    assert "needs a [sweep] table" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
