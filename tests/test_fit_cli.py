"""``noisesched fit``: outputs, resume, the learned schedule in ``noisesched run``, bad input."""

import contextlib
import io
import json
import re
import shutil

import numpy as np
import pytest
from helpers import result_files

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


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``fitted(family, model)``: (folder, config, printed) of ``noisesched fit`` of the small
    config, run from ``folder`` into the relative ``--out out``. Each fit runs once per module
    (worker); a test that changes the output works on a copy of ``folder/out``."""
    done = {}

    def fit(family, model="gm"):
        if (family, model) not in done:
            folder = tmp_path_factory.mktemp(f"{model}_{family}")
            config, printed = _config(folder, model=model, family=family), io.StringIO()
            with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
                patch.chdir(folder)  # relative paths: --out out, @out/schedule.json
                assert main(["fit", str(config), "--out", "out", "--no-progress"]) == 0
            done[family, model] = folder, config, printed.getvalue()
        return done[family, model]

    return fit


#: the keys of the evaluation: each feature of the data law, its target and exact value (gm)
FEATURE_KEYS = {
    "gm": {"mode_weight", "mode_weight_target", "mode_weight_exact", "within_mode_var",
           "within_mode_var_target", "within_mode_var_exact"},
    "cw": {"mode_weight", "mode_weight_target", "mean_sq", "mean_sq_target",
           "mean_abs_magnetization", "m", "magnetization_ks"},
}


@pytest.mark.parametrize("family,model", [
    ("noise_ratio_knots", "gm"),  # a family whose from_schedule takes the interpolant
    ("piecewise_linear", "cw"),  # one whose from_schedule does not; the Curie–Weiss fit
    # ~40 s (its initial schedule is a least-squares fit, made twice per fit): the two above
    # cover the command's code paths; test_learning fits, saves and loads every family, and
    # test_a_saved_schedule_of_every_family_reruns_from_results puts each in a run config
    pytest.param("sigmoid_sum", "gm", marks=pytest.mark.slow),
])
def test_fit_writes_schedule_history_figure_and_the_schedule_runs(fitted, tmp_path, monkeypatch,
                                                                  family, model):
    folder, config, printed = fitted(family, model)
    out = "out"
    shutil.copytree(folder / out, tmp_path / out)  # this test removes a file of it
    monkeypatch.chdir(tmp_path)
    assert "| learned |" in printed and "| constant |" in printed
    history = json.loads((tmp_path / out / "history.json").read_text())
    # exactly the files the history lists: the schedule, its evaluation, figure and checkpoint
    assert set(result_files(tmp_path / out)) == set(history["files"]) == {
        "schedule.json", "history.json", "evaluation.md", "schedules.png", "schedules.npz",
        "checkpoint.eqx", "checkpoint.json"}
    assert len(history["loss"]) == 6 and history["fit"]["family"] == family
    learned = history["evaluation"][0]
    assert learned["schedule"] == "learned" and learned["d"] == 100
    # the evaluation's keys are the data law's features, with targets and exact values
    assert FEATURE_KEYS[model] <= set(learned)
    assert "within_mode_var_ratio" not in learned
    if model == "cw":
        assert "positive fraction" in printed
    # the command it prints runs the saved schedule, and gives the evaluation's numbers
    hint = re.search(r"noisesched run CONFIG --set (\S+)$", printed, re.MULTILINE)
    assert hint is not None and hint.group(1) == "schedule.name=@out/schedule.json"
    assert main(["run", str(config), "--set", hint.group(1), "output.figures=false",
                 "--out", "run"]) == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    metrics = result["metrics"]
    # the run's weight is a float32 mean of 200 indicators, the evaluation's a count / n
    assert metrics["mode_weight"] == pytest.approx(learned["mode_weight"], abs=1e-6)
    for key in sorted(set(learned) - {"schedule", "d", "mode_weight"}):
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


def test_a_saved_schedule_of_every_family_reruns_from_results(tmp_path):
    """``schedule.name = "@file"`` of every learnable family, without a fit: the config holds
    the file's content, and what results.json records of it builds the same schedule with the
    file gone (the fit test above runs this end to end for two of the families)."""
    import jax
    import jax.numpy as jnp

    from noisesched.experiments.config import from_mapping
    from noisesched.experiments.fit import load_fit
    from noisesched.learning import FAMILIES, save_schedule

    base, _ = load_fit(_config(tmp_path))
    interp = base.build()[1]
    schedules = {"piecewise_linear": FAMILIES["piecewise_linear"](jnp.array([0.3, -1.0, 2.0])),
                 "sigmoid_sum": FAMILIES["sigmoid_sum"](jnp.array([0.2, 1.0, -0.5]),
                                                        jnp.array([0.2, 0.7]),
                                                        jnp.array([-2.0, -3.0])),
                 "noise_ratio_knots": FAMILIES["noise_ratio_knots"].uniform(interp, 4)}
    assert set(schedules) == set(FAMILIES)
    t = jnp.linspace(0.0, 1.0, 101)
    for family, schedule in schedules.items():
        path = save_schedule(schedule, tmp_path / f"{family}.json")
        config, _ = load_fit(_config(tmp_path), [f"schedule.name=@{path}"])
        assert config.to_dict()["schedule"]["name"] == family
        path.unlink()
        again = from_mapping(json.loads(json.dumps(config.to_dict())))
        assert again.to_dict() == config.to_dict()
        np.testing.assert_array_equal(jax.vmap(again.build()[2])(t), jax.vmap(schedule)(t))


def test_fit_resumes_from_its_checkpoint_and_refuses_another_config(fitted, tmp_path, capsys):
    folder, config, _ = fitted("noise_ratio_knots")  # the default family of _config
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)  # a finished fit of config, with its checkpoint
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


def test_exact_loss_fit_runs(tmp_path):
    # (the Curie–Weiss fit is the piecewise_linear case of the fit test above)
    out = tmp_path / "exact"
    config = _config(tmp_path, extra='loss = "exact"')
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0


def test_teacher_loss_fit_runs(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "teacher"
    assert main(["fit", str(config), "--out", str(out), "--no-progress", "--set", "model.d=20",
                 "fit.loss=teacher", "fit.teacher_steps=64"]) == 0
    assert "| learned |" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert set(result_files(out)) == set(history["files"])
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
        ("", ["fit.learning_rate=-1"], "fit.learning_rate must be in (0, 1000]; got -1"),
        ("", ["fit.learning_rate=1e308"], "fit.learning_rate must be in (0, 1000]; got 1e+308"),
        ("", ["fit.pieces=100000000"],
         "fit.pieces must be an integer in [2, 1000]; got 100000000"),
        ("", ["fit.pieces=10000"], "fit.pieces must be an integer in [2, 1000]; got 10000"),
        ("", ["solver.final_step=last"], "solver.final_step must be one of"),
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
