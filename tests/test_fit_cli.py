"""``noisesched fit``: outputs, resume, the learned schedule in ``noisesched run``, bad input."""

import json
import re

import numpy as np
import pytest

from noisesched.cli import main

SMALL = """
name = "fit_small"

[model]
name = "{model}"
d = 100
{model_options}
[interpolant]
kind = "vp"

[schedule]
name = "constant"

[solver]
steps = 5
method = "scan"

[sample]
n = 200
seed = 1

[fit]
family = "{family}"
pieces = 10
iterations = 6
batch = 32
checkpoint_every = 2
compare = ["constant"]
{extra}
"""

#: what each model needs besides d
MODEL_OPTIONS = {"gm": "", "cw": "beta = 2.0\n"}


def _config(tmp_path, model="gm", family="noise_ratio_knots", extra=""):
    path = tmp_path / "fit.toml"
    path.write_text(SMALL.format(model=model, model_options=MODEL_OPTIONS[model], family=family,
                                 extra=extra))
    return path


@pytest.mark.parametrize("family", ["noise_ratio_knots", "piecewise_linear", "sigmoid_sum"])
def test_fit_writes_schedule_history_figure_and_the_schedule_runs(tmp_path, capsys, monkeypatch,
                                                                  family):
    monkeypatch.chdir(tmp_path)  # relative paths: --out out, @out/schedule.json
    config, out = _config(tmp_path, family=family), "out"
    assert main(["fit", str(config), "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| learned |" in printed and "| constant |" in printed
    history = json.loads((tmp_path / out / "history.json").read_text())
    # exactly the files the history lists: the schedule, its evaluation, figure and checkpoint
    assert {p.name for p in (tmp_path / out).iterdir()} == set(history["files"]) == {
        "schedule.json", "history.json", "evaluation.md", "schedules.png", "schedules.npz",
        "checkpoint.eqx", "checkpoint.json"}
    assert len(history["loss"]) == 6 and history["fit"]["family"] == family
    learned = history["evaluation"][0]
    assert learned["schedule"] == "learned" and learned["d"] == 100
    # the evaluation's keys are the data law's features, with targets and exact values
    assert {"mode_weight", "mode_weight_target", "mode_weight_exact", "within_mode_var",
            "within_mode_var_target", "within_mode_var_exact"} <= set(learned)
    assert "within_mode_var_ratio" not in learned
    # the command it prints runs the saved schedule, and gives the evaluation's numbers
    hint = re.search(r"noisesched run CONFIG --set (\S+)$", printed, re.MULTILINE)
    assert hint is not None and hint.group(1) == "schedule.name=@out/schedule.json"
    assert main(["run", str(config), "--set", hint.group(1), "output.figures=false",
                 "--out", "run"]) == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    metrics = result["metrics"]
    # the run's weight is a float32 mean of 200 indicators, the evaluation's a count / n
    assert metrics["mode_weight"] == pytest.approx(learned["mode_weight"], abs=1e-6)
    assert metrics["within_mode_var"] == pytest.approx(learned["within_mode_var"], rel=1e-5)
    for key in ("mode_weight_target", "within_mode_var_target", "mode_weight_exact",
                "within_mode_var_exact"):
        assert metrics[key] == pytest.approx(learned[key], rel=1e-5), key
    # the schedule's content is in results.json: its rerun needs no file, from anywhere
    assert result["config"]["schedule"]["name"] == family
    (tmp_path / out / "schedule.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "../run/results.json", "--out", "again"]) == 0
    rerun = json.loads((elsewhere / "again" / "results.json").read_text())
    assert rerun["metrics"] == metrics and rerun["config"] == result["config"]


def test_fit_resumes_from_its_checkpoint_and_refuses_another_config(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "out"
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    first = json.loads((out / "history.json").read_text())
    # more iterations into the same folder: resumes at 6 and runs 4 more, the first 6 unchanged
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--set",
                 "fit.iterations=10"]) == 2
    assert "belongs to another run" in capsys.readouterr().err  # iterations is in the hash
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    again = json.loads((out / "history.json").read_text())
    assert again["loss"] == first["loss"]
    # the checkpoint (arrays, then loss history) is at iteration 6
    with open(out / "checkpoint.eqx", "rb") as f:
        assert int(np.load(f)) == 6  # the first array of the file
    assert json.loads((out / "checkpoint.json").read_text())["iteration"] == 6
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--restart",
                 "--set", "fit.iterations=3"]) == 0
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 3
    assert json.loads((out / "checkpoint.json").read_text())["iteration"] == 3


def test_exact_loss_and_curie_weiss_fits_run(tmp_path, capsys):
    out = tmp_path / "exact"
    config = _config(tmp_path, extra='loss = "exact"')
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    out = tmp_path / "cw"
    config = _config(tmp_path, model="cw")
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "positive fraction" in capsys.readouterr().out


def test_teacher_loss_fit_runs(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "teacher"
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--set", "model.d=20",
                 "fit.loss=teacher", "fit.teacher_steps=64"]) == 0
    assert "| learned |" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert {p.name for p in out.iterdir()} == set(history["files"])
    assert history["fit"]["loss"] == "teacher" and history["fit"]["teacher_steps"] == 64
    assert len(history["loss"]) == 6 and all(0 < v < 1 for v in history["loss"])


def test_the_fingerprint_covers_the_teacher_keys_of_a_teacher_fit_only(tmp_path):
    from noisesched.experiments.fit import fingerprint, load_fit

    def hashed(*overrides):
        return fingerprint(*load_fit(_config(tmp_path), overrides))

    assert hashed("fit.loss=teacher") != hashed("fit.loss=teacher", "fit.teacher_steps=256")
    assert hashed("fit.loss=teacher") != hashed("fit.loss=teacher", "fit.teacher_solver=tsit5")
    assert hashed("fit.loss=teacher") != hashed("fit.loss=teacher", "fit.teacher_adaptive=true",
                                                "fit.teacher_solver=tsit5")
    # another loss ignores them: its checkpoints from before the teacher keys stay valid
    assert hashed() == hashed("fit.teacher_steps=256")


DENOISER_ONLY = """
from typing import ClassVar

import equinox as eqx

import noisesched as ns


class Network(ns.AbstractDenoiser):
    singular_at_data: ClassVar[bool] = True  # as a trained network: Euler on the last step
    law: ns.GaussianMixture
    d: int = eqx.field(static=True)

    def denoise(self, c, x):
        return self.law.denoise(c, x)


def network(d: int = 20) -> Network:
    return Network(law=ns.GaussianMixture.two_modes(d=d), d=d)
"""


def test_a_teacher_fit_of_a_denoiser_without_data_law(tmp_path, capsys, monkeypatch):
    """The fit (here with an adaptive teacher) needs only the denoiser; with no data law there
    are no features to evaluate: the schedule, history (evaluation empty) and figure are
    written, and the table says why it is empty."""
    monkeypatch.chdir(tmp_path)  # model.name = "module:function" from the current folder
    (tmp_path / "teacher_only_denoiser.py").write_text(DENOISER_ONLY)
    config, out = _config(tmp_path), tmp_path / "net"
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--set",
                 "model.name=teacher_only_denoiser:network", "model.d=20", "fit.loss=teacher",
                 "fit.teacher_adaptive=true", "fit.teacher_solver=tsit5"]) == 0
    assert "is not a data law (no features to measure)" in capsys.readouterr().out
    stored = json.loads((out / "checkpoint.json").read_text())
    assert stored["iteration"] == 6 and all(0 < v < 1 for v in stored["history"])
    history = json.loads((out / "history.json").read_text())
    assert history["evaluation"] == [] and len(history["loss"]) == 6
    assert (out / "schedule.json").is_file() and (out / "schedules.png").is_file()


@pytest.mark.parametrize(
    "extra,overrides,message",
    [
        ("iteratons = 5", [], "unknown fit key 'iteratons' (did you mean 'iterations'?)"),
        ('family = "spline"', [], "fit.family must be one of"),
        ('init = "uniform"\nfamily = "sigmoid_sum"', [], "fit.init = 'uniform' needs"),
        ('loss = "exact"', ["model.name=cw", "model.beta=2.0"],
         "fit.loss = 'exact' needs a model with the exact two-mode reduction"),
        ("", ["fit.batch=0"], "fit.batch must be an integer >= 1; got 0"),
        ("", ["fit.learning_rate=-1"], "fit.learning_rate must be in (0, inf); got -1"),
        ("", ["fit.optimizer=adamax"], "fit.optimizer must be one of"),
        ("", ["fit.compare=['cosin']"], "did you mean 'cosine'"),
        ("", ["solver.steps=0"], "solver.steps must be an integer >= 1; got 0"),
        ("", ["steps=0"], "unknown config key 'steps' (now solver.steps)"),
        ("", ["fit.warmup=6"], "fit.warmup must be"),
        # the initial schedule, and a baseline (dilated at the default k > √d), before any
        # fitting
        ("", ["schedule.name=vp_dilated", "schedule.k=50"],
         "schedule.k must be in (0, 10); got 50.0"),
        ("", ["model.d=4", "fit.compare=['vp_dilated']"], "schedule.k must be in (0, 2); got 3.0"),
        ("", ["fit.transfer_dims=[1]"], "fit.transfer_dims entry must be an integer >= 2"),
        ("", ["fit.loss=teacher", "fit.teacher_steps=5"],
         "fit.teacher_steps must exceed solver.steps = 5 (the teacher is the finer solve); "
         "got 5"),
        ("", ["fit.teacher_steps=0"], "fit.teacher_steps must be an integer >= 1; got 0"),
        ("", ["fit.teacher_solver=rk4"], "fit.teacher_solver must be one of"),
        ("", ["fit.teacher_adaptive=true"],
         "fit.teacher_solver (fit.teacher_adaptive = true) must be one of 'bosh3', 'tsit5', "
         "'dopri5'; got 'heun'"),
        ("", ["fit.teacher_adaptive=1"], "fit.teacher_adaptive must be true or false; got 1"),
    ],
)
def test_bad_fit_configs_are_one_line_status_2(tmp_path, capsys, extra, overrides, message):
    config = _config(tmp_path, extra=extra)
    if 'family = "' in extra:  # replace the family line instead of adding a second one
        text = config.read_text().replace('family = "noise_ratio_knots"\n', "")
        config.write_text(text)
    args = ["fit", str(config), "--out", str(tmp_path / "o"), "--no-progress"]
    if overrides:
        args += ["--set", *overrides]  # several after one --set
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisesched: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o" / "history.json").exists()
