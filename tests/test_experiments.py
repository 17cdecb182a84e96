import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import pytest

from noisesched.cli import main
from noisesched.experiments import config as cfg
from noisesched.experiments.fit import load_fit
from noisesched.experiments.run import run_experiment
from noisesched.experiments.scaling import (
    ScalingConfig,
    load_scaling,
    run_scaling,
    slope_with_error,
)

CONFIGS = Path(__file__).parents[1] / "configs"
# several section.key=value after one --set
SMALL = ["--set", "model.d=200", "sample.n=128", "solver.steps=10"]
TINY = "[model]\nd = 100\n[solver]\nsteps = 4\n[sample]\nn = 8\n[output]\nfigures = false\n"


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("[solver]\nstpes = 3", "unknown solver key 'stpes' (did you mean 'steps'?)"),
        ("stpes = 3", "unknown config key 'stpes' (did you mean 'solver.steps'?)"),
        ("[modle]\nd = 3", "unknown config key 'modle' (did you mean 'model'?)"),
        ("[model]\nd = 'big'", "model.d must be an integer; got 'big'"),
        ("[model]\nd = 2.5", "model.d must be an integer; got 2.5"),
        ("[solver]\nadaptive = 'yes'", "solver.adaptive must be true or false; got 'yes'"),
        ("[model]\np = true", "model.p must be a number; got True"),
        ("[model]\np = 1.5", "model.p must be in (0, 1); got 1.5"),
        ("[model]\nsigma = -1", "model.sigma must be in (0, 1e+15]; got -1.0"),
        ("[solver]\nsteps = 0", "solver.steps must be an integer >= 1; got 0"),
        ("[model]\nd = 100\n[schedule]\nk = 10", "schedule.k must be in (0, 10); got 10.0"),
        ("[schedule]\nname = 'cosin'",
         ("schedule.name must be one of", "got 'cosin' (did you mean 'cosine'?)")),
        ("[model]\nname = 'ising'",
         ("model.name must be one of 'gm', 'gm_random', 'cw', 'cw_exact'", "; got 'ising'")),
        ("[solver]\nname = 'rk4'", "solver.name must be one of"),
        ("[solver]\nmethod = 'scan'\nname = 'tsit5'",
         "solver.name (method = 'scan') must be one of"),
        ("[solver]\nadaptive = true", "solver.name (adaptive) must be one of"),
        ("[sample]\ndtype = 'float16'", "sample.dtype must be one of 'float32', 'float64'"),
        # K is len(weights) now: the nearest to "weights must list K numbers" is their shape
        ("[model]\nname = 'gm_random'\nweights = [[0.5, 0.5]]",
         "model.weights must be a 1-D array of K >= 1 entries; got shape (1, 2)"),
        ("[model]\nname = 'gm_random'\nweights = [0.9, 0.3]",
         "model.weights must sum to 1; got sum 1.2"),
        ("[model]\nname = 'gm_random'\nweights = [0.5, 0.5, 0.0]",
         "model.weights must each be in (0, 1]; got [0.5, 0.5, 0.0]"),
        ("[model]\nname = 'gm_random'\nweights = ['a', 'b']",
         "model.weights must be a list of numbers; got ['a', 'b']"),
        ("[model]\nname = 'gm_random'\nd = 100", "model.weights is required for model 'gm_random'"),
        ("[model]\nname = 'cw'\nd = 100", "model.beta is required for model 'cw'"),
        ("[model]\nd = 10 = 3", "malformed TOML"),
        # an empty file (or one of comments) is most likely the wrong one: never the defaults
        ("", "c.toml: holds no settings (at most a name and empty tables); a config names "
             "at least its [model]"),
        ("# only a comment\n\n", "holds no settings"),
        ("[model]\n[solver]\n", "holds no settings (at most a name and empty tables)"),
        ("name = 'x'\n[model]\n", "holds no settings"),
        # tables are the schema now: a flat key (an earlier version) is the error
        ("d = 3", "a flat config of an earlier version"),
        ("interpolant = 'vp'", "interpolant must be a table [interpolant]; got 'vp'"),
        ("[sample]\nchunk_size = -5", "sample.chunk_size must be an integer >= 0; got -5"),
        ("[sample]\ndevices = 1.5", "sample.devices must be an integer; got 1.5"),
        ("[sample]\nshard = 'columns'",
         "sample.shard must be one of 'rows', 'coordinates'; got 'columns'"),
        ("[model]\nd = 100\n[sample]\nn = 4\ndevices = 9\n[solver]\nsteps = 2",
         "sample.devices must be an integer in [0, 1]; got 9"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    for part in message if isinstance(message, tuple) else (message,):
        assert part in str(err.value)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err_text = capsys.readouterr().err.strip()
    assert err_text.startswith("noisesched: error: ") and "\n" not in err_text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_missing_file_and_bad_overrides(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = write(tmp_path, "name = 'x'\n[model]\nd = 50")
    out = ["--out", str(tmp_path / "o")]
    assert main(["run", str(path), "--set", "model.d", *out]) == 2
    assert "--set takes section.key=value; got 'model.d'" in capsys.readouterr().err
    assert main(["run", str(path), "--set", "sched.name=constant", *out]) == 2
    assert ("unknown config section 'sched' in 'sched.name=constant' (did you mean 'schedule'?)"
            in capsys.readouterr().err)
    assert main(["run", str(path), "--set", "sched=constant", *out]) == 2
    assert "unknown config key 'sched' (did you mean 'schedule'?)" in capsys.readouterr().err
    # a key of the flat schema says where it lives now
    assert main(["run", str(path), "--set", "d=200", *out]) == 2
    assert "unknown config key 'd' (now model.d)" in capsys.readouterr().err
    # every item after one --set is checked, not only the first
    assert main(["run", str(path), "--set", "model.d=200", "stpes=3", *out]) == 2
    assert ("unknown config key 'stpes' (did you mean 'solver.steps'?)"
            in capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_overrides_are_toml_values():
    assert cfg.parse_overrides(["model.d=1e3", "schedule.name=constant",
                                "model.weights=[0.5, 0.5]", "name=x"]) == {
        "model": {"d": 1000.0, "weights": [0.5, 0.5]}, "schedule": {"name": "constant"},
        "name": "x"}
    config = cfg.from_mapping({"model": {"d": 1e3}})
    assert config.d == 1000 and type(config.model.options["d"]) is int


def test_mismatched_schedule_warns(tmp_path, capsys):
    path = write(tmp_path, "[interpolant]\nkind = 've'\n[schedule]\nname = 'vp_dilated'\n"
                           "[model]\nd = 200\n[sample]\nn = 16\n[solver]\nsteps = 4\n"
                           "[output]\nfigures = false\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 0
    assert ("noisesched: warning: schedule 'vp_dilated' is made for kind = 'vp' interpolants, "
            "not kind = 've'") in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gm", "cw"])
def test_run_writes_results_and_reruns_identically(tmp_path, capsys, model):
    extra = "beta = 2.0\n" if model == "cw" else ""
    path = write(tmp_path, f"name = 'small'\n[model]\nname = '{model}'\n{extra}")
    out = tmp_path / "out"
    assert main(["run", str(path), *SMALL, "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["model"]["d"] == 200 and result["config"]["model"]["name"] == model
    assert result["config"]["sample"]["n"] == 128 and result["config"]["solver"]["steps"] == 10
    assert set(result) >= {"config", "metrics", "features", "timings", "environment", "files"}
    keys = ({"mode_weight", "mode_weight_target", "within_mode_var", "within_mode_var_target",
             "mode_weight_exact", "within_mode_var_exact"} if model == "gm" else
            {"mode_weight", "mode_weight_target", "mean_sq", "mean_abs_magnetization", "m"})
    assert keys <= set(result["metrics"])
    # each feature names its keys in the metrics
    features = {f["key"]: f for f in result["features"]}
    assert "mode_weight" in features and features["mode_weight"]["level"] == "high"
    for f in result["features"]:
        assert f["key"] in result["metrics"]
        assert f["target"] is None or f["target"] in result["metrics"]
        assert f["exact"] is None or f["exact"] in result["metrics"]
        assert f["se"] is None or f["se"] in result["metrics"]
    # the summary line: each feature ± its standard error, with its target (and exact value,
    # for the mixture)
    printed = capsys.readouterr().out
    line = next(s for s in printed.splitlines() if s.startswith("small: "))
    m = result["metrics"]
    assert features["mode_weight"]["se"] == "mode_weight_se"
    w = m["mode_weight"]
    assert m["mode_weight_se"] == pytest.approx((w * (1 - w) / 128) ** 0.5, rel=1e-12)
    if model == "gm":
        assert line.startswith(f"small: mode weight {m['mode_weight']:.4f} ± "
                               f"{m['mode_weight_se']:.4f} (target 0.8000) "
                               f"[exact {m['mode_weight_exact']:.4f}], within-mode variance "
                               f"{m['within_mode_var']:.4f} ± {m['within_mode_var_se']:.4f} "
                               "(target 0.2500)")
    else:
        assert line.startswith(f"small: positive fraction {m['mode_weight']:.4f} ± "
                               f"{m['mode_weight_se']:.4f} (target "
                               f"{m['mode_weight_target']:.4f}), mean x² ")
    for name in ("trajectories.png", "trajectories.npz", "final.png", "final.npz"):
        assert (out / name).stat().st_size > 0
    again = tmp_path / "again"
    assert main(["run", str(out / "results.json"), "--out", str(again)]) == 0
    rerun = json.loads((again / "results.json").read_text())
    assert rerun["metrics"] == result["metrics"]
    assert rerun["config"] == result["config"]
    assert rerun["features"] == result["features"]


def test_float64_runs(tmp_path):
    config = cfg.from_mapping({"model": {"d": 100}, "sample": {"n": 64, "dtype": "float64"},
                               "solver": {"steps": 8}, "output": {"figures": False}})
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
    config = cfg.from_mapping({"model": {"d": 50}, "sample": {"n": 8}, "solver": {"steps": 2}})
    with pytest.raises(FloatingPointError):
        run_experiment(config, tmp_path / "out", log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_a_flat_config_of_an_earlier_version_says_where_its_keys_went(tmp_path, capsys):
    path = write(tmp_path, "name = 'old'\nmodel = 'cw'\ncw_form = 'exact'\nd = 200\n"
                           "beta_cw = 2.0\nsteps = 10\nschedule = 'constant'\nfigures = false\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert str(err.value) == (
        f"{path}: a flat config of an earlier version: its keys now live in sections [model], "
        "[interpolant], [schedule], [solver], [sample], [output]; move them: model → model.name; "
        "cw_form → model.name ('cw' or 'cw_exact'); d → model.d; beta_cw → model.beta; "
        "steps → solver.steps; schedule → schedule.name; figures → output.figures "
        "(see configs/ for examples)")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err_text = capsys.readouterr().err.strip()
    assert err_text == f"noisesched: error: {err.value}"
    # a results.json of an earlier version (K > 2 mixture): the same message, for its keys
    old = write(tmp_path, json.dumps({"config": {"d": 100, "K": 4, "weights": [0.4, 0.3, 0.2, 0.1],
                                                 "means_seed": 1}}), "results.json")
    assert main(["run", str(old), "--out", str(out)]) == 2
    assert ("a flat config of an earlier version: its keys now live in sections [model], "
            "[interpolant], [schedule], [solver], [sample], [output]; move them: d → model.d; "
            "K → model (name = 'gm_random', weights = [...]); weights → model.weights; "
            "means_seed → model.seed") in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_required_argument_is_named(tmp_path, capsys):
    path = write(tmp_path, "[model]\nname = 'gm_random'\nd = 100\n")
    with pytest.raises(cfg.ConfigError, match=re.escape(
            "model.weights is required for model 'gm_random'")):
        cfg.load(path)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        "noisesched: error: model.weights is required for model 'gm_random'")
    # switching the model on the command line: the file's gm options it does not take are
    # dropped, and what it needs is asked for
    gm = write(tmp_path, "[model]\nd = 100\np = 0.7\n", "gm.toml")
    with pytest.raises(cfg.ConfigError, match=re.escape("model.beta is required for model 'cw'")):
        cfg.load(gm, ["model.name=cw"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = cfg.load(gm, ["model.name=cw", "model.beta=2.0"])
    assert config.to_dict()["model"] == {"name": "cw", "d": 100, "beta": 2.0, "h": 0.0}
    config = cfg.load(gm, ["model.name=gm_random", "model.weights=[0.5, 0.25, 0.25]"])
    assert config.build()[0].K == 3 and config.to_dict()["model"]["weights"] == [0.5, 0.25, 0.25]


def test_a_key_of_another_choice_warns_in_the_file_and_is_dropped_by_an_override(
        tmp_path, capsys):
    """``k`` written beside ``name = "constant"`` is a mistake worth a warning; ``k`` of the
    file's dilated schedule, when ``--set schedule.name=constant`` replaces it, is not."""
    message = "schedule.k = 3.0 does not apply to schedule 'constant' (its options: none); ignored"
    path = write(tmp_path, "[schedule]\nname = 'constant'\nk = 3.0\n" + TINY)
    with pytest.warns(cfg.ConfigWarning, match=re.escape(message)):
        config = cfg.load(path)
    assert config.to_dict()["schedule"] == {"name": "constant"}
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert f"noisesched: warning: {message}" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["config"]["schedule"] == {
        "name": "constant"}

    dilated = write(tmp_path, "[schedule]\nname = 'vp_dilated'\nk = 2.0\n" + TINY, "dilated.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind
        config = cfg.load(dilated, ["schedule.name=constant"])
        assert config.to_dict()["schedule"] == {"name": "constant"}
        # a schedule that takes k keeps the file's
        config = cfg.load(dilated, ["schedule.name=ve_dilated", "interpolant.kind=ve"])
        assert config.to_dict()["schedule"] == {"name": "ve_dilated", "k": 2.0}
    quiet = tmp_path / "quiet"
    assert main(["run", str(dilated), "--set", "schedule.name=constant", "--out",
                 str(quiet)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((quiet / "results.json").read_text())["config"]["schedule"] == {
        "name": "constant"}
    # given with the new choice on the command line, it is a mistake again
    with pytest.warns(cfg.ConfigWarning, match=re.escape(
            "schedule.k = 2.5 does not apply to schedule 'constant'")):
        cfg.load(dilated, ["schedule.name=constant", "schedule.k=2.5"])
    # a key no schedule takes is an error, not a warning
    with pytest.raises(cfg.ConfigError, match=re.escape(
            "unknown schedule key 'kk' for schedule 'vp_dilated' (did you mean 'k'?)")):
        cfg.load(dilated, ["schedule.kk=3"])


def test_the_shipped_configs_validate_and_round_trip():
    """Every config in configs/ (the converted ones) loads without a warning, and its resolved
    dict (what results.json records) loads back to the same config."""
    paths = sorted(p for p in CONFIGS.glob("*.toml") if not p.name.startswith("scaling"))
    assert len(paths) >= 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in paths:
            config = cfg.load(path)
            assert config.name == path.stem
            assert cfg.from_mapping(config.to_dict()).to_dict() == config.to_dict()
            if "_k4_" in path.name:
                assert config.model.name == "gm_random" and config.build()[0].K == 4
        for path in sorted((CONFIGS / "fit").glob("*.toml")):
            config, settings = load_fit(path)
            assert config.name == f"fit_{path.stem}"


def test_fit_slope():
    def fit(steps):
        return slope_with_error([{"d": d, "steps": n} for d, n in zip([10, 100, 1000], steps,
                                                                      strict=True)])
    assert fit([3, 30, 300])["slope"] == pytest.approx(1.0)
    assert fit([5, 5, 5])["slope"] == pytest.approx(0.0, abs=1e-12)
    # the scatter about the line: residuals ±ε in log N* at three points
    eps = 0.1
    fitted = fit([5 * math.exp(eps), 5 * math.exp(-2 * eps), 5 * math.exp(eps)])
    assert fitted["slope"] == pytest.approx(0.0, abs=1e-12)
    assert fitted["se"] == pytest.approx(math.sqrt(6 * eps**2 / 1 / (2 * math.log(10) ** 2)))


def check_scaling(config, out):
    """N* ∝ √d for constant schedules, N* independent of d for dilated ones (exact reduction);
    the full sampler at N* (d ≤ full_d_max) meets the criterion within Monte Carlo error."""
    result = run_scaling(config, out, log=lambda *_: None)
    slopes = result["slopes"]
    assert 0.4 <= slopes["vp:constant"] <= 0.6 and 0.4 <= slopes["ve:constant"] <= 0.6
    assert abs(slopes["vp:vp_dilated"]) <= 0.1 and abs(slopes["ve:ve_dilated"]) <= 0.1
    assert (out / "scaling.png").exists() and (out / "scaling.json").exists()
    for row in result["rows"]:
        if "full_d" in row:
            full = row["full_d"]
            se = math.sqrt(0.16 / full["n"])
            assert abs(full["mode_weight"] - 0.8) < 0.01 + 4 * se
            assert abs(full["within_mode_var"] / 0.25 - 1) < 0.1 + 0.01
    assert sum("full_d" in row for row in result["rows"]) == len(config.cases) * sum(
        d <= config.full_d_max for d in config.dims)


def test_scaling_slopes_over_three_decades(tmp_path):
    """The claim of the shipped config on d = 10^2 … 10^5, with the full sampler at d = 10^2:
    the code paths of the six decades below, without their cost (N* of the constant schedules
    grows as √d, to ~10^5 steps at d = 10^8, and each N* takes 12 to 36 oracle solves)."""
    config = dataclasses.replace(load_scaling(CONFIGS / "scaling_gm.toml"),
                                 dims=(10**2, 10**3, 10**4, 10**5), full_d_max=100)
    check_scaling(config, tmp_path)


@pytest.mark.slow  # ~45 s; test_scaling_slopes_over_three_decades runs the same code paths
def test_scaling_slopes_over_six_decades(tmp_path):
    """The claim of the shipped config, as it is: d = 10^2 … 10^8, the full sampler up to
    d = 10^3."""
    check_scaling(load_scaling(CONFIGS / "scaling_gm.toml"), tmp_path)


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


@pytest.mark.slow  # every experiment of the paper; its parts: test_reliability (reproduce)
def test_reproduce_end_to_end_at_tiny_sizes(tmp_path):
    """Every part of `noisesched reproduce` on a small configs folder: each config runs and
    appears in the report beside its target."""
    from noisesched.experiments.reproduce import Sizes, run_reproduce

    configs = tmp_path / "configs"
    configs.mkdir()
    small = "[model]\nd = 300\n{}[sample]\nn = 64\n[solver]\nsteps = 8\n"
    (configs / "a_gm.toml").write_text("name = 'a_gm'\n" + small.format(""))
    (configs / "b_cw.toml").write_text("name = 'b_cw'\n" + small.format("name = 'cw'\n"
                                                                         "beta = 2.0\n"))
    (configs / "scaling_gm.toml").write_text("dims = [100, 1000]\ncases = ['vp:constant']\n")
    # one d per sweep: the K-mode sweep compiles its four samplers anew for each d
    sizes = Sizes(n=64, cw_dims=(50,), cw_sampler_max_d=50, cw_n=32, k_dims=(50,), k_n=32)
    out = tmp_path / "out"
    run_reproduce(configs, out, log=lambda *_: None, sizes=sizes)
    report = (out / "report.md").read_text()
    assert "| a_gm | gm | 300 | 64 | 8 |" in report and "| b_cw | cw | 300 | 64 | 8 |" in report
    assert "(0.8000) [" in report  # GM target and exact value
    for name in ("scaling/scaling.png", "error_vs_steps.png", "k_modes.png", "reproduce.json",
                 "runs/a_gm/results.json", "runs/b_cw/final.png"):
        assert (out / name).exists(), name


def test_run_in_chunks_gives_the_metrics_of_one_chunk(tmp_path):
    def config(**sample):
        return cfg.from_mapping({"model": {"d": 300}, "sample": {"n": 80, **sample},
                                 "solver": {"steps": 8}, "output": {"figures": False}})

    one = run_experiment(config(chunk_size=80), tmp_path / "one", log=lambda *_: None)
    chunked = run_experiment(config(chunk_size=32, devices=1), tmp_path / "chunked",
                             log=lambda *_: None)
    assert chunked["metrics"] == one["metrics"]
    assert chunked["scale"] == {"chunks": 3, "chunk_size": 32, "devices": 1, "shard": "rows",
                                "chunks_resumed": 0}
    assert one["scale"]["chunks"] == 1
