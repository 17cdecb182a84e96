"""The acceptance checks of a trained network at the paper's size (``pytest -m slow``, about
5 minutes on a 2-core CPU): GM d = 10^3 (p = 0.8, m = 1, σ = 0.5), trained as
``configs/learned/gm_d1000_train.toml``."""

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched.experiments.train import load_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    config = load_train("configs/learned/gm_d1000_train.toml")
    law, data, network = config.build()
    settings = config.train
    result = ns.train_denoiser(network, data, jax.random.PRNGKey(settings.seed),
                               noise=settings.noise_law(),
                               options=ns.TrainOptions(steps=settings.steps,
                                                       batch=settings.batch,
                                                       ema_decay=settings.ema_decay))
    return law, result.denoiser


def test_denoising_error_within_five_percent_of_the_mmse(trained):
    """Excess MSE / exact MMSE < 5 % at 13 levels from 10⁻² to 3·10² (every level where a
    feature is decided: σ ≈ 0.5 and the speciation level m√d ≈ 32), with 4 s.e. of margin."""
    law, denoiser = trained
    err = ns.denoising_error(denoiser, law, np.geomspace(1e-2, 3e2, 13), jax.random.PRNGKey(9),
                             n=4096)
    assert np.all(err["ratio"] + 4 * err["ratio_se"] < 0.05), err["ratio"]


def test_vp_dilated_samples_match_the_exact_drift(trained):
    """VP-dilated, N = 100 Euler, n = 20 000 on the same prior points: mode weight within 0.02
    of the exact drift's, within-mode variance within 5 %."""
    law, denoiser = trained
    interp = ns.Interpolant("vp", "linear", law.d)
    schedule = ns.schedules.make("vp_dilated", interp)
    key = jax.random.PRNGKey(4)
    exact = ns.sample_summary(law, interp, schedule, key, 20_000, steps=100, method="scan")
    model = ns.LearnedModel(denoiser, law)
    learned = ns.sample_summary(model, interp, schedule, key, 20_000, steps=100, method="scan")
    e, m = exact.metrics, learned.metrics
    assert abs(m["mode_weight"] - e["mode_weight"]) < 0.02
    assert abs(m["within_mode_var"] / e["within_mode_var"] - 1) < 0.05
