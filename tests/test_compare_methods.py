"""``noisesched compare`` over schedule methods, solvers, dimensions and step counts, with the
oracle alone: every cell against a direct call of the oracle, N* and its slope recomputed."""

import math

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched import methods
from noisesched.experiments.compare import fewest_steps, load_compare, run_compare
from noisesched.experiments.config import ConfigError

CONFIG = """
name = "methods_small"
[model]
name = "gm"
p = 0.8
m = 1.0
sigma = 0.5
[solver]
method = "scan"
[compare]
schedules = ["vp:constant", "vp:edm_d", "ve:ve_dilated"]
solvers = ["euler", "sigma_euler"]
dims = [100, 2500]
steps = [5, 40]
tol_high = 0.02
tol_low = 0.2
monte_carlo = false
[compare.variants.edm_d]
name = "edm"
sigma_max = "dimension_aware"
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare_methods")
    path = folder / "c.toml"
    path.write_text(CONFIG)
    name, settings, cells = load_compare(path)
    record = run_compare(name, settings, cells, folder / "out", log=lambda *a: None,
                         progress=False)
    return folder / "out", record


def test_every_cell_is_the_oracle(study):
    out, record = study
    rows = record["rows"]
    assert len(rows) == 3 * 2 * 2 * 2
    assert (out / "compare.md").is_file() and (out / "steps_vs_d.png").is_file()
    for row in rows[::5]:
        with jax.enable_x64(True):
            model = ns.GaussianMixture.two_modes(d=row["d"], p=0.8, m=1.0, sigma=0.5)
            kind, _, name = row["schedule"].partition(":")
            interp = ns.Interpolant(kind, "linear", row["d"])
            if name == "edm_d":
                sched = methods.edm(model, interp, row["steps"],
                                    sigma_max=100.0 * math.sqrt(row["d"]))
            else:
                sched = ns.schedules.make(name, interp)
            exact = model.exact_metrics(interp, sched, row["steps"], row["solver"])
        assert row["mode_weight_exact"] == pytest.approx(exact["mode_weight_exact"], abs=1e-12)
        assert row["within_mode_var_exact"] == pytest.approx(exact["within_mode_var_exact"],
                                                             rel=1e-12)
        assert row["high_error"] == pytest.approx(abs(exact["mode_weight_exact"] - 0.8),
                                                  abs=1e-12)
        assert row["low_error"] == pytest.approx(
            abs(exact["within_mode_var_exact"] / 0.25 - 1.0), abs=1e-12)


def test_fewest_steps_and_slope(study):
    _, record = study
    rows = record["rows"]
    for entry in record["fewest_steps"]:
        mine = [r for r in rows if (r["model"], r["schedule"], r["solver"])
                == (entry["model"], entry["schedule"], entry["solver"])]
        found = {}
        for d in (100, 2500):
            good = [r["steps"] for r in mine if r["d"] == d
                    and r["high_error"] <= 0.02 and r["low_error"] <= 0.2]
            found[d] = min(good) if good else None
            assert entry["steps"][str(d)] == found[d]
        if all(v is not None for v in found.values()):
            expected = math.log(found[2500] / found[100]) / math.log(25.0)
            assert entry["slope"] == pytest.approx(expected, abs=1e-12)
        else:
            assert entry["slope"] is None


def test_fewest_steps_counts_none_and_nan():
    rows = [dict(model="gm", schedule="vp:x", solver="euler", d=10, steps=5,
                 high_error=0.1, low_error=0.01),
            dict(model="gm", schedule="vp:x", solver="euler", d=10, steps=9,
                 high_error=0.01, low_error=math.nan),
            dict(model="gm", schedule="vp:x", solver="euler", d=100, steps=9,
                 high_error=0.2, low_error=0.0)]
    (entry,) = fewest_steps(rows, 0.05, 0.05)
    assert entry["steps"] == {"10": 9, "100": None} and entry["slope"] is None


@pytest.mark.parametrize("extra,match", [
    ('solvers = ["rk4"]', "compare.solvers entries must be among"),
    ("dims = [0]", "compare.dims entries must be integers >= 1"),
    ("tol_high = 1.5", "compare.tol_high must be in"),
    ("tol_high = 0.1", "must be set together"),
])
def test_bad_compare_settings(tmp_path, extra, match):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[model]\nname = "gm"\nd = 50\n[compare]\n' + extra + "\n")
    with pytest.raises(ConfigError, match=match):
        load_compare(path)


def test_oracle_only_needs_an_oracle(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[model]\nname = "gm_random"\nd = 50\n'
                    'weights = [0.4, 0.3, 0.2, 0.1]\n[compare]\n'
                    'schedules = ["vp:constant"]\nsteps = [4]\nmonte_carlo = false\n')
    with pytest.raises(ConfigError, match="monte_carlo = false needs an oracle"):
        load_compare(path)


def test_dimension_aware_sigma_max_follows_the_law():
    law = ns.GaussianMixture.two_modes(d=10_000, p=0.8, m=2.0, sigma=0.5)
    assert methods.dimension_aware_sigma_max(law) == pytest.approx(100.0 * 2.0 * 100.0)
    assert methods.dimension_aware_sigma_max(ns.GaussianMixture.two_modes(d=4)) == 200.0
    assert methods.dimension_aware_sigma_max(ns.GaussianMixture.two_modes(d=4), 10.0) == 80.0
    assert np.isfinite(methods.dimension_aware_sigma_max(ns.Gaussian([1.0, 2.0])))


def test_monte_carlo_cells_are_the_samples_of_single_runs(tmp_path):
    """With samples, the cells are solved by the sweep machinery (a Parquet table of the cells
    beside compare.json); each cell's features equal a direct ``sample_summary`` of its config
    with its seed (float32), and its exact values the oracle."""
    path = tmp_path / "c.toml"
    path.write_text('name = "mc_small"\n[model]\nname = "gm"\nd = 64\n[solver]\nmethod = "scan"\n'
                    '[sample]\nn = 48\nseed = 5\n[compare]\nschedules = ["vp:k2", "vp:k4"]\n'
                    'steps = [6]\n[compare.variants.k2]\nname = "vp_dilated"\n'
                    'k = 2.0\n[compare.variants.k4]\nname = "vp_dilated"\nk = 4.0\n')
    name, settings, cells = load_compare(path)
    record = run_compare(name, settings, cells, tmp_path / "out", log=lambda *a: None,
                         progress=False)
    assert (tmp_path / "out" / "cells" / "results.parquet").is_file()
    for cell, row in zip(cells, record["rows"], strict=True):
        model, interp, schedule = cell.config.build()
        summary = ns.sample_summary(model, interp, schedule, jax.random.PRNGKey(5), 48,
                                    steps=6).metrics
        assert row["mode_weight"] == summary["mode_weight"]
        for key in ("within_mode_var", "within_mode_var_se", "mode_weight_se"):
            assert row[key] == pytest.approx(summary[key], rel=1e-5), key
        with jax.enable_x64(True):
            model, interp, schedule = cell.config.build()
            exact = model.exact_metrics(interp, schedule, 6, "euler")
        assert row["mode_weight_exact"] == pytest.approx(exact["mode_weight_exact"], abs=1e-12)
