"""A model written outside the package runs through ns.sample_summary and noisesched run."""

import json
import math
import sys
import textwrap

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched.cli import main
from noisesched.experiments import config as cfg

MODULE = '''
"""A user's isotropic Gaussian N(0, scale² I), written by hand against the protocols."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import noisesched as ns


class Isotropic(ns.AbstractModel):
    d: int = eqx.field(static=True)
    scale: float

    def denoise(self, c, x):
        v = self.scale**2
        return v * c.beta * x / (c.alpha_sq + v * c.beta**2)

    def sample_one(self, key):
        return self.scale * jax.random.normal(key, (self.d,))

    @property
    def features(self):
        return (ns.Feature("mean_sq", "mean x²", "low", "mean_sq_target"),)

    def row_statistics(self, x, valid, rows, cols):
        return {"sum_sq": jnp.sum(x * x, axis=-1), "values": x[rows, cols]}

    def summary_from_rows(self, rows):
        n = rows["sum_sq"].shape[0]
        return {"mean_sq": float(np.sum(rows["sum_sq"], dtype=np.float64) / (n * self.d)),
                "mean_sq_target": self.scale**2}


class Unfinished(ns.AbstractModel):
    d: int = eqx.field(static=True)

    def denoise(self, c, x):
        return x


class NotAModel:
    pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield sys.modules.setdefault("my_models", __import__("my_models"))
    sys.modules.pop("my_models", None)


def _exact_mean_sq(kind, d, scale, steps):
    """The exact mean x² of the N-step Euler solve of N(0, scale² I), from ns.Gaussian's
    oracle (an independent implementation of the same law)."""
    with jax.enable_x64(True):
        law = ns.Gaussian(np.full(d, scale))
        exact = law.exact_metrics(ns.Interpolant(kind, "linear", d), ns.schedules.constant(),
                                  steps)
    return scale**2 * exact["variance_ratio_exact"]


def _four_standard_errors(mean_sq, n, d):
    # x_i² has variance 2 v² for a centred Gaussian of variance v: the mean over n d entries
    return 4 * math.sqrt(2 / (n * d)) * mean_sq


def test_sample_summary_of_a_user_model(user_module):
    model = user_module.Isotropic(d=40, scale=2.0)
    interp = ns.Interpolant("vp", "linear", 40)
    sched = ns.schedules.constant()
    n = 2000
    out = ns.sample_summary(model, interp, sched, jax.random.PRNGKey(0), n, steps=200,
                            chunk_size=500)
    # the streamed batch equals ns.sample's rows, and matches the exact discretisation
    x = ns.sample(model, interp, sched, jax.random.PRNGKey(0), n, steps=200)
    direct = float(np.mean(np.asarray(x, np.float64) ** 2))
    assert out.metrics["mean_sq"] == pytest.approx(direct, rel=1e-5)
    exact = _exact_mean_sq("vp", 40, 2.0, 200)
    assert abs(out.metrics["mean_sq"] - exact) < _four_standard_errors(exact, n, 40)


def test_user_model_through_the_command_line(user_module, tmp_path):
    config = tmp_path / "u.toml"
    config.write_text('name = "user"\n[model]\nname = "my_models:Isotropic"\nd = 30\n'
                      'scale = 0.5\n[interpolant]\nkind = "ve"\n[schedule]\nname = "constant"\n'
                      '[solver]\nsteps = 100\n[sample]\nn = 1000\n[output]\ntrajectories = 4\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["config"]["model"] == {"name": "my_models:Isotropic", "d": 30, "scale": 0.5}
    m = result["metrics"]
    assert m["mean_sq_target"] == 0.25
    exact = _exact_mean_sq("ve", 30, 0.5, 100)  # VE constant: below 0.25 at this N
    assert abs(m["mean_sq"] - exact) < _four_standard_errors(exact, 1000, 30)
    # no figure of its own features: only the trajectories
    assert "final.png" not in result["files"] and "trajectories.png" in result["files"]


@pytest.mark.parametrize("name,message", [
    ("my_models:Unfinished", "Unfinished does not implement features, row_statistics, "
                             "summary_from_rows of the model protocol"),
    ("my_models:NotAModel", "NotAModel must subclass noisesched.AbstractDenoiser and "
                            "noisesched.AbstractDataLaw"),
    ("my_models:Missing", "module 'my_models' has no attribute 'Missing'"),
    ("no_such_module_xyz:Model", "cannot import module 'no_such_module_xyz'"),
    ("my_models:Isotropic", "model.scale is required for model 'my_models:Isotropic'"),
])
def test_user_model_errors_name_what_is_missing(user_module, tmp_path, capsys, name, message):
    config = tmp_path / "u.toml"
    config.write_text(f'[model]\nname = "{name}"\nd = 4\n')
    with pytest.raises(cfg.ConfigError, match=message.replace("(", r"\(")):
        cfg.load(config)
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_a_denoiser_without_a_data_law_samples_but_has_no_metrics():
    class Shrink(ns.AbstractDenoiser):
        d: int = 3

        def denoise(self, c, x):
            return c.beta * x / (c.alpha_sq + c.beta**2)

    model, interp = Shrink(), ns.Interpolant("vp", "linear", 3)
    x = ns.sample(model, interp, ns.schedules.constant(), jax.random.PRNGKey(0), 8, steps=10)
    assert x.shape == (8, 3)
    with pytest.raises(ValueError, match="must be a data law .*: sample_summary needs its"):
        ns.sample_summary(model, interp, ns.schedules.constant(), jax.random.PRNGKey(0), 8,
                          steps=10)
    with pytest.raises(ValueError, match="observe='overlap' needs a data law"):
        ns.solve(model, interp, ns.schedules.constant(), x, steps=2, observe="overlap")
