import json
import math
from pathlib import Path

import pytest

from noisesched.cli import main
from noisesched.experiments import config as cfg
from noisesched.experiments.run import run_experiment
from noisesched.experiments.scaling import ScalingConfig, fit_slope, load_scaling, run_scaling

SMALL = ["--set", "d=200", "--set", "n=128", "--set", "steps=10"]


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("stpes = 3", "unknown config key 'stpes' (did you mean 'steps'?)"),
        ("d = 'big'", "d must be an integer; got 'big'"),
        ("d = 2.5", "d must be an integer; got 2.5"),
        ("adaptive = 'yes'", "adaptive must be true or false; got 'yes'"),
        ("p = true", "p must be a number; got True"),
        ("p = 1.5", "p must be in (0, 1); got 1.5"),
        ("sigma = -1", "sigma must be in (0, inf); got -1.0"),
        ("steps = 0", "steps must be an integer >= 1; got 0"),
        ("d = 100\nk = 10", "k must be in (0, 10); got 10.0"),
        ("schedule = 'cosin'", "schedule must be one of"),
        ("model = 'ising'", "model must be one of 'gm', 'cw'; got 'ising'"),
        ("solver = 'rk4'", "solver must be one of"),
        ("method = 'scan'\nsolver = 'tsit5'", "solver (method = 'scan') must be one of"),
        ("adaptive = true", "solver (adaptive) must be one of"),
        ("dtype = 'float16'", "dtype must be one of 'float32', 'float64'"),
        ("K = 3\nweights = [0.5, 0.5]", "weights must list K = 3 numbers; got 2"),
        ("K = 2\nweights = [0.9, 0.3]", "weights must be positive and sum to 1"),
        ("weights = ['a', 'b']", "weights must be a list of numbers"),
        ("d = 10 = 3", "malformed TOML"),
        ("[model]\nd = 3", "tables are not part of the schema"),
        ("chunk_size = -5", "chunk_size must be an integer >= 0; got -5"),
        ("devices = 1.5", "devices must be an integer; got 1.5"),
        ("d = 100\nn = 4\nsteps = 2\ndevices = 9", "devices must be an integer in [0, 1]; got 9"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert message in str(err.value)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err_text = capsys.readouterr().err.strip()
    assert err_text.startswith("noisesched: error: ") and "\n" not in err_text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_missing_file_and_bad_overrides(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = write(tmp_path, "name = 'x'")
    assert main(["run", str(path), "--set", "d"]) == 2
    assert "--set takes key=value; got 'd'" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "sched=constant"]) == 2
    assert "did you mean 'schedule'" in capsys.readouterr().err


def test_overrides_are_toml_values():
    assert cfg.parse_overrides(["d=1e3", "schedule=constant", "weights=[0.5, 0.5]"]) == {
        "d": 1000.0, "schedule": "constant", "weights": [0.5, 0.5]}
    assert cfg.from_mapping({"d": 1e3}).d == 1000


def test_mismatched_schedule_warns(tmp_path, capsys):
    path = write(tmp_path, "kind = 've'\nschedule = 'vp_dilated'\n" + "\n".join(
        s.replace("--set ", "") for s in ["d = 200", "n = 16", "steps = 4", "figures = false"]))
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 0
    assert ("noisesched: warning: schedule 'vp_dilated' is made for kind = 'vp' interpolants, "
            "not kind = 've'") in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gm", "cw"])
def test_run_writes_results_and_reruns_identically(tmp_path, model):
    path = write(tmp_path, f"name = 'small'\nmodel = '{model}'\n")
    out = tmp_path / "out"
    assert main(["run", str(path), *SMALL, "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["d"] == 200 and result["config"]["model"] == model
    assert set(result) >= {"config", "metrics", "timings", "environment", "files"}
    keys = ({"mode_weight", "mode_weight_target", "within_mode_var", "within_mode_var_target",
             "mode_weight_exact", "within_mode_var_exact"} if model == "gm" else
            {"mode_weight", "mode_weight_target", "mean_sq", "mean_abs_magnetization", "m"})
    assert keys <= set(result["metrics"])
    for name in ("trajectories.png", "trajectories.npz", "final.png", "final.npz"):
        assert (out / name).stat().st_size > 0
    again = tmp_path / "again"
    assert main(["run", str(out / "results.json"), "--out", str(again)]) == 0
    rerun = json.loads((again / "results.json").read_text())
    assert rerun["metrics"] == result["metrics"]
    assert rerun["config"] == result["config"]


def test_float64_runs(tmp_path):
    config = cfg.from_mapping({"d": 100, "n": 64, "steps": 8, "dtype": "float64",
                               "figures": False})
    result = run_experiment(config, tmp_path / "o", log=lambda *_: None)
    # float64 Monte Carlo of 64 samples against the exact reduction of the same solve
    assert math.isfinite(result["metrics"]["within_mode_var"])
    assert abs(result["metrics"]["within_mode_var"] / result["metrics"]["within_mode_var_exact"]
               - 1) < 4 * math.sqrt(2 / (99 * 64))


def test_a_failed_run_leaves_nothing(tmp_path, monkeypatch):
    import noisesched.experiments.run as run_mod

    def broken(*args, **kwargs):
        raise FloatingPointError("the solve produced nan or inf")

    monkeypatch.setattr(run_mod, "sample_summary", broken)
    config = cfg.from_mapping({"d": 50, "n": 8, "steps": 2})
    with pytest.raises(FloatingPointError):
        run_experiment(config, tmp_path / "out", log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_fit_slope():
    assert fit_slope([10, 100, 1000], [3, 30, 300]) == pytest.approx(1.0)
    assert fit_slope([10, 100, 1000], [5, 5, 5]) == pytest.approx(0.0, abs=1e-12)


def test_scaling_slopes_over_six_decades(tmp_path):
    """The claim: N* ∝ √d for constant schedules, N* independent of d for dilated ones, for
    d = 10^2 … 10^8 (exact reduction, so this runs in seconds)."""
    config = load_scaling(Path(__file__).parents[1] / "configs" / "scaling_gm.toml")
    result = run_scaling(config, tmp_path, log=lambda *_: None)
    slopes = result["slopes"]
    assert 0.4 <= slopes["vp:constant"] <= 0.6 and 0.4 <= slopes["ve:constant"] <= 0.6
    assert abs(slopes["vp:vp_dilated"]) <= 0.1 and abs(slopes["ve:ve_dilated"]) <= 0.1
    assert (tmp_path / "scaling.png").exists() and (tmp_path / "scaling.json").exists()
    # the full sampler at N* (d ≤ 10^3) meets the criterion within Monte Carlo error
    for row in result["rows"]:
        if "full_d" in row:
            full = row["full_d"]
            se = math.sqrt(0.16 / full["n"])
            assert abs(full["mode_weight"] - 0.8) < 0.01 + 4 * se
            assert abs(full["within_mode_var"] / 0.25 - 1) < 0.1 + 0.01


@pytest.mark.parametrize("text,message", [
    ("dims = [100]", "at least two different dimensions"),
    ("cases = ['vp:cosine']", "cases[] schedule must be one of"),
    ("tol_weight = 0", "tol_weight must be in (0, inf)"),
    ("dimz = [1, 2]", "unknown scaling key 'dimz' (did you mean 'dims'?)"),
])
def test_bad_scaling_configs(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    assert main(["scaling", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_scaling_config_defaults_are_valid():
    assert ScalingConfig().dims[0] == 100


def test_reproduce_end_to_end_at_tiny_sizes(tmp_path):
    """Every part of `noisesched reproduce` on a small configs folder: each config runs and
    appears in the report beside its target."""
    from noisesched.experiments.reproduce import Sizes, run_reproduce

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "a_gm.toml").write_text("name = 'a_gm'\nd = 300\nn = 64\nsteps = 8\n")
    (configs / "b_cw.toml").write_text("name = 'b_cw'\nmodel = 'cw'\nd = 300\nn = 64\nsteps = 8\n")
    (configs / "scaling_gm.toml").write_text("dims = [100, 1000]\ncases = ['vp:constant']\n")
    sizes = Sizes(n=64, cw_dims=(50,), cw_sampler_max_d=50, cw_n=32, k_dims=(50, 100), k_n=32)
    out = tmp_path / "out"
    run_reproduce(configs, out, log=lambda *_: None, sizes=sizes)
    report = (out / "report.md").read_text()
    assert "| a_gm | gm | 300 | 64 | 8 |" in report and "| b_cw | cw | 300 | 64 | 8 |" in report
    assert "(0.800) [" in report  # GM target and exact value
    for name in ("scaling/scaling.png", "error_vs_steps.png", "k_modes.png", "reproduce.json",
                 "runs/a_gm/results.json", "runs/b_cw/final.png"):
        assert (out / name).exists(), name


def test_run_in_chunks_gives_the_metrics_of_one_chunk(tmp_path):
    base = {"d": 300, "n": 80, "steps": 8, "figures": False}
    one = run_experiment(cfg.from_mapping({**base, "chunk_size": 80}), tmp_path / "one",
                         log=lambda *_: None)
    chunked = run_experiment(cfg.from_mapping({**base, "chunk_size": 32, "devices": 1}),
                             tmp_path / "chunked", log=lambda *_: None)
    assert chunked["metrics"] == one["metrics"]
    assert chunked["scale"] == {"chunk_size": 32, "devices": 1, "chunks": 3, "chunks_resumed": 0}
    assert one["scale"]["chunks"] == 1
