"""ns.Gaussian: N(0, diag(s²)), against closed forms, Monte Carlo with stated error bars, and its
exact per-coordinate oracle."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TEST_FUNCTIONS, velocity_orthogonality
from scipy.special import polygamma

import noisesched as ns
from noisesched.cli import main


def _euler_variances(scales, kind, steps):
    """Per-coordinate variance after N Euler steps of the constant linear schedule, from the
    closed form of the drift coefficient a_i(t) = (α α̇ + s_i² β β̇)/(α² + s_i² β²) (float64,
    by hand: α = α0 (1 − t), β = t)."""
    d = scales.size
    a0 = 1.0 if kind == "vp" else math.sqrt(d)
    g = np.ones(d)
    for i in range(steps):
        t, dt = i / steps, 1.0 / steps
        alpha, dalpha, beta = a0 * (1 - t), -a0, t
        a = (alpha * dalpha + scales**2 * beta) / (alpha**2 + scales**2 * beta**2)
        g *= 1.0 + a * dt
    return a0**2 * g**2


def _variance_ratios(model, interp, sched, steps):
    """v_i/s_i² of the N-step Euler solve, per coordinate (a solve from α0 (1, …, 1) in float64:
    the solve is linear and diagonal). Used for standard errors only."""
    with jax.enable_x64(True):
        scales = np.asarray(model.scales, np.float64)
        law = ns.Gaussian(scales)
        x0 = jnp.full((1, scales.size), interp.alpha0, jnp.float64)
        g = np.asarray(ns.solve(law, interp, sched, x0, steps=steps).x[0])
    return g**2 / scales**2


def test_power_law_and_validation():
    g = ns.Gaussian.power_law(d=5, exponent=0.5, scale=2.0)
    np.testing.assert_allclose(np.asarray(g.scales), 2.0 * np.arange(1, 6) ** -0.5, rtol=1e-6)
    assert g.d == 5
    with pytest.raises(ValueError, match="scales must be positive"):
        ns.Gaussian([1.0, 0.0])
    with pytest.raises(ValueError, match=r"scales must be a 1-D array"):
        ns.Gaussian(np.ones((2, 2)))
    with pytest.raises(ValueError, match="exponent must be a finite real number"):
        ns.Gaussian.power_law(d=4, exponent=math.nan)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_drift_is_the_conditional_velocity(kind):
    """Monte Carlo: E[(α̇ z + β̇ x1 − b(t, x_t)) · f(x_t)] = 0 within 4 standard errors."""
    model = ns.Gaussian.power_law(d=16, exponent=1.0)
    interp = ns.Interpolant(kind, "linear", 16)
    for t in (0.2, 0.7):
        means, errs = velocity_orthogonality(model, interp, ns.schedules.constant(), t,
                                             jax.random.PRNGKey(3), 40_000, TEST_FUNCTIONS)
        assert np.all(np.abs(means) < 4 * errs + 1e-6)


def test_exact_variances_equal_the_closed_form(x64):
    scales = np.asarray(ns.Gaussian.power_law(d=32, exponent=1.0).scales)
    model = ns.Gaussian(scales)
    for kind in ("vp", "ve"):
        interp = ns.Interpolant(kind, "linear", 32)
        exact = model.exact_metrics(interp, ns.schedules.constant(), 12)
        ratio = _euler_variances(scales, kind, 12) / scales**2
        assert exact["variance_ratio_exact"] == pytest.approx(np.mean(ratio), rel=1e-12)
        assert exact["log_spectrum_error_exact"] == pytest.approx(np.mean(np.log(ratio) ** 2),
                                                                  rel=1e-10)


def test_sample_summary_matches_the_oracle_and_exact_samples():
    model = ns.Gaussian.power_law(d=48, exponent=0.7)
    interp = ns.Interpolant("vp", "linear", 48)
    sched = ns.schedules.vp_dilated(48, k=2.0)
    n = 3000
    out = ns.sample_summary(model, interp, sched, jax.random.PRNGKey(0), n, steps=15,
                            chunk_size=1024)
    with jax.enable_x64(True):
        exact = ns.Gaussian(np.asarray(model.scales, np.float64)).exact_metrics(
            ns.Interpolant("vp", "linear", 48), ns.schedules.vp_dilated(48, k=2.0), 15)
    # Var(x_i²/s_i²) = 2 r_i² for a centred Gaussian with variance ratio r_i: the mean over n d
    # entries has standard error √(2 mean r²/(n d))
    ratios = _variance_ratios(model, interp, sched, 15)
    se = math.sqrt(2.0 * np.mean(ratios**2) / (n * 48))
    assert abs(out.metrics["variance_ratio"] - exact["variance_ratio_exact"]) < 4 * se
    # exact samples: the debiased log-spectrum error has mean 0 and standard error about
    # √(2/d) ψ'(n/2) (d independent terms of variance 2 ψ'²)
    x = model.sample(jax.random.PRNGKey(1), n)
    s = ns.metrics.summary(model, x)
    assert abs(s["log_spectrum_error"]) < 4 * math.sqrt(2 / 48) * polygamma(1, n / 2)
    assert abs(s["variance_ratio"] - 1.0) < 4 * math.sqrt(2.0 / (n * 48))
    assert s["coordinate_ks"] < 1.63 / math.sqrt(n * 48)  # 1 % level; all n d ≤ 200 000 kept


def test_chunked_summary_equals_the_whole_batch():
    model = ns.Gaussian.power_law(d=20)
    x = model.sample(jax.random.PRNGKey(4), 100)
    whole = ns.metrics.summary(model, x)
    parts = [ns.metrics.row_statistics(model, jnp.concatenate([x[a:a + 32], x[:0]])
                                       if a + 32 <= 100 else
                                       jnp.concatenate([x[a:], jnp.zeros((a + 32 - 100, 20))]),
                                       start=a, total=100)
             for a in range(0, 100, 32)]
    chunked = ns.metrics.summary_from_rows(model, ns.metrics.concatenate_rows(parts))
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_low_level_loss_is_zero_at_the_target_spectrum():
    model = ns.Gaussian(jnp.asarray([1.0, 2.0]))
    x = jnp.asarray([[1.0, 2.0], [-1.0, -2.0]])  # sample variances exactly s²
    assert float(model.low_level_loss(x)) == pytest.approx(0.0, abs=1e-12)
    assert float(ns.learning.low_level_loss(model, 2 * x)) == pytest.approx(math.log(4) ** 2)


def test_run_and_fit_from_the_command_line(tmp_path):
    config = tmp_path / "g.toml"
    config.write_text(
        'name = "gauss"\n[model]\nname = "gaussian"\nd = 24\nexponent = 1.0\n'
        '[interpolant]\nkind = "vp"\n[schedule]\nname = "constant"\n'
        '[solver]\nsteps = 8\nmethod = "scan"\n[sample]\nn = 512\n[output]\ntrajectories = 8\n'
        '[fit]\nfamily = "piecewise_linear"\npieces = 8\nloss = "low"\nbatch = 128\n'
        'iterations = 40\nlearning_rate = 0.1\ncompare = ["constant"]\n')
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    metrics = result["metrics"]
    assert {"variance_ratio", "log_spectrum_error", "variance_ratio_exact"} <= set(metrics)
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"final.png", "trajectories.png"}
    # 512 × 24 entries: the variance ratio within 4 standard errors of the exact value
    ratios = _variance_ratios(ns.Gaussian.power_law(d=24, exponent=1.0),
                              ns.Interpolant("vp", "linear", 24), ns.schedules.constant(), 8)
    se = math.sqrt(2.0 * np.mean(ratios**2) / (512 * 24))
    assert abs(metrics["variance_ratio"] - metrics["variance_ratio_exact"]) < 4 * se
    assert main(["fit", str(config), "--out", str(tmp_path / "fit"), "--no-progress"]) == 0
    history = json.loads((tmp_path / "fit" / "history.json").read_text())
    learned, _, constant = history["evaluation"]
    assert learned["schedule"] == "learned" and constant["schedule"] == "constant"
    # the low-level loss, learned, beats the constant schedule's exact log-spectrum error
    assert learned["log_spectrum_error_exact"] < 0.5 * constant["log_spectrum_error_exact"]
