"""N* by full solves (``noisesched scaling`` with ``estimate = "monte_carlo"``): the ladder's
crossing rule, agreement with the exact two-mode oracle, and the study end to end on
Curie–Weiss (which has no exact reduction)."""

import json
import math

import pytest

from noisesched.cli import main
from noisesched.experiments.scaling import (
    ScalingConfig,
    _base,
    _quiet_sweep,
    slope_with_error,
    steps_needed,
)
from noisesched.experiments.steps_needed import crossing, steps_needed_monte_carlo


def test_crossing_interpolates_where_the_ratio_falls_to_one_for_good():
    assert crossing([1, 2, 4], [0.5, 0.4, 0.1]) == 1.0  # passes from the first rung
    assert crossing([1, 2, 4], [3.0, 2.0, 1.5]) is None  # never passes
    # log r falls linearly in log N from 4 at N = 2 to 1/4 at N = 8: r = 1 at N = 4
    assert crossing([1, 2, 8], [9.0, 4.0, 0.25]) == pytest.approx(4.0)
    # a rung that passes before a later one fails does not count
    assert crossing([1, 2, 4, 8], [0.9, 2.0, 2.0, 0.5]) == pytest.approx(
        math.exp(math.log(4) + math.log(2) / math.log(4) * math.log(2)))
    assert 1.0 < crossing([1, 2, 4], [2.0, 0.0, 0.0]) <= 2.0  # an error of exactly 0
    assert crossing([1, 2, 4], [math.inf, math.inf, 0.5]) == 4.0  # failed solves before


@pytest.mark.parametrize("case,tol_var", [
    ("vp:constant", 0.1),
    # the low level binding: ~20 s on 2 CPU cores (the high level above, and the low level of
    # Curie–Weiss end to end below, run by default)
    pytest.param("ve:constant", 0.2, marks=pytest.mark.slow)])
def test_monte_carlo_steps_needed_agree_with_the_exact_oracle(case, tol_var):
    """The two-mode mixture at d = 100: VP-constant is bound by the mode weight, VE-constant by
    the within-mode variance. The Monte Carlo N* (4 × 64 samples per rung, paired against a
    128-step Heun reference) matches the oracle's exact N* within 10 %, the error of
    interpolating between rungs a factor 2 apart."""
    kind, _, schedule = case.partition(":")
    config = ScalingConfig(name="t", dims=(100, 1000), tol_weight=0.05, tol_var=tol_var, n=64,
                           seeds=4, reference_steps=128)
    exact, _ = steps_needed(config, kind, schedule, 100)
    found = steps_needed_monte_carlo(
        _base(config, kind, schedule, 100), seeds=config.seeds,
        reference_steps=config.reference_steps, tol_weight=config.tol_weight,
        tol_var=config.tol_var, max_steps=config.max_steps, store=None, run_sweep=_quiet_sweep)
    assert exact is not None and exact > 8
    assert abs(math.log(found["steps"] / exact)) < 0.1, (found["steps"], exact)
    assert found["steps_low"] <= found["steps"] <= found["steps_high"]
    rungs = [r["steps"] for r in found["rungs"]]
    assert rungs == [2**j for j in range(len(rungs))] and rungs[-1] >= found["steps_high"]
    # the reference is the converged sampler: within 4 s.e. of the law's targets
    ref = found["reference"]
    assert abs(ref["high"]) < 4 * ref["high_se"] and abs(ref["low"]) < 4 * ref["low_se"]


def test_slope_with_error():
    rows = [{"d": 100, "steps": 10.0}, {"d": 10000, "steps": 100.0}]
    fitted = slope_with_error(rows)
    assert fitted["slope"] == pytest.approx(0.5) and fitted["se"] is None  # two exact points
    # intervals of ±2 s.d. = a factor e^0.4 on each side: s.e. of the slope from two points
    wide = [dict(r, steps_low=r["steps"] * math.exp(-0.4), steps_high=r["steps"] * math.exp(0.4))
            for r in rows]
    assert slope_with_error(wide)["se"] == pytest.approx(math.sqrt(2) * 0.2 / math.log(100))
    assert slope_with_error(rows[:1] + [{"d": 10000, "steps": None}]) is None
    # a bound beyond max_steps: the slope has no standard error
    open_end = [wide[0], dict(wide[1], steps_high=None)]
    assert slope_with_error(open_end)["se"] is None


def test_curie_weiss_study_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "cw.toml"
    path.write_text('name = "cw_small"\nmodel = "cw"\nestimate = "monte_carlo"\n'
                    'dims = [20, 80]\ncases = ["vp:vp_dilated"]\ntol_weight = 0.15\n'
                    'tol_var = 0.15\nn = 16\nseeds = 2\nreference_steps = 32\n')
    assert main(["scaling", str(path), "--out", str(tmp_path / "o")]) == 0
    result = json.loads((tmp_path / "o" / "scaling.json").read_text())
    assert (tmp_path / "o" / "scaling.png").is_file()
    rows = result["rows"]
    assert [(r["case"], r["d"]) for r in rows] == [("vp:vp_dilated", 20), ("vp:vp_dilated", 80)]
    for row in rows:
        assert row["features"] == {"high": "mode_weight", "low": "mean_sq"}
        assert row["steps_low"] <= row["steps"] <= row["steps_high"]
    fitted = result["slope_errors"]["vp:vp_dilated"]
    assert result["slopes"]["vp:vp_dilated"] == fitted["slope"] and fitted["se"] > 0
    assert "vp:vp_dilated    slope of log N* on log d: " in capsys.readouterr().out
    assert not (tmp_path / ".o.resume").exists()


def test_a_case_with_one_finite_steps_needed_has_no_slope(tmp_path, capsys):
    """N* of VE-constant is beyond max_steps at d = 10^8: the study finishes, the slope is
    n/a (and a rerun too)."""
    path = tmp_path / "s.toml"
    path.write_text('name = "sc1"\ndims = [100, 100000000]\ncases = ["ve:constant"]\n'
                    'max_steps = 1000\n')
    for _ in range(2):
        assert main(["scaling", str(path), "--out", str(tmp_path / "S")]) == 0
        result = json.loads((tmp_path / "S" / "scaling.json").read_text())
        assert result["slopes"] == {"ve:constant": None}
        assert [r["steps"] for r in result["rows"]][1] is None
        assert "slope of log N* on log d: n/a" in capsys.readouterr().out


def test_a_study_with_no_finite_steps_needed_draws_its_reason_not_a_warning(tmp_path, capsys):
    """Seen by a user: no case within max_steps printed matplotlib's empty-legend warning."""
    path = tmp_path / "s.toml"
    path.write_text('name = "sc0"\ndims = [100, 400]\ncases = ["ve:constant"]\nmax_steps = 2\n')
    assert main(["scaling", str(path), "--out", str(tmp_path / "S")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert (tmp_path / "S" / "scaling.png").exists()


@pytest.mark.parametrize("text,message", [
    ("cases = []", "cases must list at least one case"),
    ("model = 'cw'", "estimate = 'exact' needs the two-mode oracle"),
    ("model = 'ising'", "model must be one of"),
    ("estimate = 'mc'", "estimate must be one of"),
    ("seeds = 1", "seeds must be"),
    ("reference_solver = 'dopri5'", "reference_solver must be one of"),
    # the runs' own checks, before any oracle work
    ("m = 1e6\nestimate = 'monte_carlo'", "sigma must be at least 3.58 for samples in float32"),
    ("m = 1e6\nfull_d_max = 100", "sigma must be at least 3.58"),
])
def test_bad_study_configs(tmp_path, capsys, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text + "\n")
    assert main(["scaling", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
