"""``noisesched train`` and trained networks in ``run``, ``fit`` and ``compare``; bad input."""

import json

import numpy as np
import pytest

from noisesched.cli import main

TRAIN = """
name = "train_small"

[model]
name = "gm"
d = 16

[network]
name = "mlp"
width = 16
depth = 1
embed = 8

[train]
steps = 30
batch = 16
warmup = 3
checkpoint_every = 10
noise = "log_uniform"
sigma_min = 0.01
sigma_max = 50.0
eval_n = 64
eval_sigmas = [0.1, 1.0, 10.0]
"""

RUN = """
name = "run_small"

[model]
name = "learned:{folder}"

[schedule]
name = "vp_dilated"

[solver]
steps = 5
method = "scan"

[sample]
n = 64

[output]
figures = false
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    config = folder / "train.toml"
    config.write_text(TRAIN)
    assert main(["train", str(config), "--out", str(folder / "net"), "--no-progress"]) == 0
    return folder / "net"


def test_train_writes_the_model_and_its_measurements(trained, tmp_path, capsys):
    for name in ("denoiser.eqx", "denoiser.json", "train.json", "loss.png", "denoising.png",
                 "checkpoint.eqx", "checkpoint.json"):
        assert (trained / name).is_file(), name
    record = json.loads((trained / "train.json").read_text())
    assert len(record["loss"]) == 30
    assert record["denoising_error"]["sigma"] == [0.1, 1.0, 10.0]
    assert json.loads((trained / "denoiser.json").read_text())["law"]["name"] == "gm"
    # a rerun of the finished training resumes at its end: the same weights
    before = (trained / "denoiser.eqx").read_bytes()
    config = tmp_path / "train.toml"
    config.write_text(TRAIN)
    assert main(["train", str(config), "--out", str(trained), "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert (trained / "denoiser.eqx").read_bytes() == before


def test_learned_model_in_run_fit_and_compare(trained, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(RUN.format(folder=trained))
    assert main(["run", str(config), "--out", str(tmp_path / "r")]) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert 0.0 <= results["metrics"]["mode_weight"] <= 1.0
    assert "mode_weight_exact" not in results["metrics"]  # no oracle for a network

    fit = tmp_path / "fit.toml"
    fit.write_text(RUN.format(folder=trained) + "\n[fit]\nloss = \"threshold\"\niterations = 2\n"
                   "batch = 8\ncompare = [\"constant\"]\npieces = 4\nbisections = 4\n")
    assert main(["fit", str(fit), "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    assert (tmp_path / "f" / "schedule.json").is_file()

    compare = tmp_path / "compare.toml"
    base = RUN.format(folder=trained).replace('name = "learned:', 'name = "gm"\nd = 16\n#')
    compare.write_text(base + f'\n[compare]\nmodels = ["gm", "learned:{trained}"]\n'
                       'schedules = ["ve:constant", '
                       f'"vp:@{tmp_path / "f" / "schedule.json"}"]\nsteps = [3]\n')
    assert main(["compare", str(compare), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "c" / "compare.json").read_text())["rows"]
    assert len(rows) == 2 * 2 * 1
    gm = [r for r in rows if r["model"] == "gm"]
    assert all("mode_weight_exact" in r for r in gm)
    # cells of the same kind start from the same prior points: a rerun reads them back
    assert main(["compare", str(compare), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["rows"] == rows


def test_train_from_an_array_file(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 2, 3))
    np.savez(tmp_path / "data.npz", images=x)
    config = tmp_path / "train.toml"
    config.write_text(TRAIN.split("[model]")[0] + TRAIN.split("d = 16\n")[1].replace(
        "[train]", f'[train]\ndata_file = "{tmp_path / "data.npz"}"').replace(
        "eval_n = 64\n", ""))
    assert main(["train", str(config), "--out", str(tmp_path / "net"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "net" / "denoiser.json").read_text())
    assert record["d"] == 6 and record["law"] is None
    run = tmp_path / "run.toml"
    run.write_text(RUN.format(folder=tmp_path / "net"))
    assert main(["run", str(run), "--out", str(tmp_path / "r")]) == 2  # no data law to measure
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("change,message", [
    ({"model": 'name = "learned:{missing}"'}, "no trained denoiser"),
    ({"model": 'name = "learned:{folder}"\nd = 9'}, "trained for d = 16"),
    ({"model": 'name = "learned:"'}, "needs a path"),
])
def test_run_refuses_bad_model_files(trained, tmp_path, capsys, change, message):
    text = RUN.format(folder=trained).replace(f'name = "learned:{trained}"',
                                              change["model"].format(folder=trained,
                                                                     missing=tmp_path / "x"))
    config = tmp_path / "run.toml"
    config.write_text(text)
    assert main(["run", str(config), "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_run_refuses_a_corrupt_model(trained, tmp_path, capsys):
    import shutil

    copy = tmp_path / "net"
    shutil.copytree(trained, copy)
    arrays = copy / "denoiser.eqx"
    arrays.write_bytes(arrays.read_bytes()[:100])
    config = tmp_path / "run.toml"
    config.write_text(RUN.format(folder=copy))
    assert main(["run", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("array,extra,message", [
    (np.ones((10, 5)), "", "holds samples of d = 5"),
    (np.ones(10), "", "must have shape (n, d)"),
    (None, "", "does not exist"),
    (np.ones((10, 8)), 'data_key = "nope"', "is not in"),
    ("text", "", "not a readable .npz"),
])
def test_train_refuses_bad_array_files(tmp_path, capsys, array, extra, message):
    data = tmp_path / "data.npz"
    if isinstance(array, np.ndarray):
        np.savez(data, x=array)
    elif array == "text":
        data.write_text("not an archive")
    config = tmp_path / "train.toml"
    config.write_text(TRAIN.replace("[train]", f'[train]\ndata_file = "{data}"\n{extra}'))
    assert main(["train", str(config), "--out", str(tmp_path / "net")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "net").exists()


@pytest.mark.parametrize("override,message", [
    ("network.name=transformer", "network.name"),
    ("network.width=0", "width"),
    ("train.noise=gaussian", "train.noise"),
    ("train.stpes=3", "did you mean 'steps'"),
    ("model.name=cw_exact", "model.beta"),
])
def test_train_refuses_bad_settings(tmp_path, capsys, override, message):
    config = tmp_path / "train.toml"
    config.write_text(TRAIN)
    assert main(["train", str(config), "--set", override, "--out", str(tmp_path / "net")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "net").exists()


def test_compare_refuses_models_of_different_laws(trained, tmp_path, capsys):
    """A network is measured against the law it was trained on: beside an exact model of
    another law its rows would sit under the wrong targets."""
    base = RUN.format(folder=trained).replace('name = "learned:', 'name = "gm"\nd = 16\np = 0.6\n#')
    config = tmp_path / "compare.toml"
    config.write_text(base + f'\n[compare]\nmodels = ["gm", "learned:{trained}"]\nsteps = [2]\n')
    assert main(["compare", str(config), "--out", str(tmp_path / "c")]) == 2
    assert "different data laws" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_train_refuses_to_resume_on_changed_data(tmp_path, capsys):
    """The data file is hashed by content: new samples under the same path are another run."""
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(40, 16)))
    config = tmp_path / "train.toml"
    config.write_text(TRAIN.replace("steps = 30", "steps = 4").replace("warmup = 3", "warmup = 1")
                      .replace("[train]", f'[train]\ndata_file = "{data}"'))
    out = tmp_path / "net"
    assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 0
    np.savez(data, x=np.random.default_rng(1).normal(size=(40, 16)))
    assert main(["train", str(config), "--out", str(out), "--no-progress"]) == 2
    assert "belongs to another run" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(out), "--no-progress", "--restart"]) == 0


def test_conv_network_shape_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(TRAIN.replace('name = "mlp"\nwidth = 16\ndepth = 1\nembed = 8',
                                    'name = "conv"\nimage_shape = 2'))
    assert main(["train", str(config), "--out", str(tmp_path / "net")]) == 2
    assert "network.image_shape must be a list" in capsys.readouterr().err
