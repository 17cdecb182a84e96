"""``noisesched fit``: outputs, resume, the learned schedule in ``noisesched run``, bad input."""

import json

import numpy as np
import pytest

from noisesched.cli import main

SMALL = """
name = "fit_small"
model = "{model}"
d = 100
kind = "vp"
steps = 5
method = "scan"
n = 200
seed = 1
schedule = "constant"

[fit]
family = "{family}"
pieces = 10
iterations = 6
batch = 32
checkpoint_every = 2
compare = ["constant"]
{extra}
"""


def _config(tmp_path, model="gm", family="noise_ratio_knots", extra=""):
    path = tmp_path / "fit.toml"
    path.write_text(SMALL.format(model=model, family=family, extra=extra))
    return path


@pytest.mark.parametrize("family", ["noise_ratio_knots", "piecewise_linear", "sigmoid_sum"])
def test_fit_writes_schedule_history_figure_and_the_schedule_runs(tmp_path, capsys, family):
    config, out = _config(tmp_path, family=family), tmp_path / "out"
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| learned |" in printed and "| constant |" in printed
    assert {p.name for p in out.iterdir()} == {"schedule.json", "history.json", "evaluation.md",
                                               "schedules.png", "schedules.npz",
                                               "checkpoint.npz"}
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 6 and history["fit"]["family"] == family
    learned = history["evaluation"][0]
    assert learned["schedule"] == "learned" and learned["d"] == 100
    # the saved schedule in `noisesched run` gives the evaluation's numbers (same keys)
    run_out = tmp_path / "run"
    assert main(["run", str(config), "--set", f"schedule=@{out / 'schedule.json'}",
                 "--set", "figures=false", "--out", str(run_out)]) == 0
    metrics = json.loads((run_out / "results.json").read_text())["metrics"]
    # the run's weight is a float32 mean of 200 indicators, the evaluation's a count / n
    assert metrics["mode_weight"] == pytest.approx(learned["mode_weight"], abs=1e-6)
    assert metrics["within_mode_var"] / 0.25 == pytest.approx(learned["within_mode_var_ratio"],
                                                              rel=1e-5)


def test_fit_resumes_from_its_checkpoint_and_refuses_another_config(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "out"
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    first = json.loads((out / "history.json").read_text())
    # more iterations into the same folder: resumes at 6 and runs 4 more, the first 6 unchanged
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--set",
                 "fit.iterations=10"]) == 2
    assert "belongs to another fit" in capsys.readouterr().err  # iterations is in the hash
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    again = json.loads((out / "history.json").read_text())
    assert again["loss"] == first["loss"]
    with np.load(out / "checkpoint.npz") as data:
        assert int(data["iteration"]) == 6
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--restart",
                 "--set", "fit.iterations=3"]) == 0
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 3


def test_exact_loss_and_curie_weiss_fits_run(tmp_path, capsys):
    out = tmp_path / "exact"
    config = _config(tmp_path, extra='loss = "exact"')
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    out = tmp_path / "cw"
    config = _config(tmp_path, model="cw")
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "positive fraction" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,overrides,message",
    [
        ("iteratons = 5", [], "unknown fit key 'iteratons' (did you mean 'iterations'?)"),
        ('family = "spline"', [], "fit.family must be one of"),
        ('init = "uniform"\nfamily = "sigmoid_sum"', [], "fit.init = 'uniform' needs"),
        ('loss = "exact"', ["model=cw"], "fit.loss = 'exact' needs model = 'gm'"),
        ("", ["fit.batch=0"], "fit.batch must be an integer >= 1; got 0"),
        ("", ["fit.learning_rate=-1"], "fit.learning_rate must be in (0, inf); got -1"),
        ("", ["fit.optimizer=adamax"], "fit.optimizer must be one of"),
        ("", ["fit.compare=['cosin']"], "did you mean 'cosine'"),
        ("", ["steps=0"], "steps must be an integer >= 1; got 0"),
        ("", ["fit.warmup=6"], "fit.warmup must be"),
        ("", ["k=50"], "k must be in (0, 10); got 50.0"),  # a baseline, before any fitting
        ("", ["fit.transfer_dims=[1]"], "fit.transfer_dims entry must be an integer >= 2"),
    ],
)
def test_bad_fit_configs_are_one_line_status_2(tmp_path, capsys, extra, overrides, message):
    config = _config(tmp_path, extra=extra)
    if 'family = "' in extra:  # replace the family line instead of adding a second one
        text = config.read_text().replace('family = "noise_ratio_knots"\n', "")
        config.write_text(text)
    args = ["fit", str(config), "--out", str(tmp_path / "o"), "--no-progress"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisesched: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o" / "history.json").exists()
