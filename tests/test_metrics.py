import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import metrics

H = 0.5 * math.log(4)


def test_gm_metrics_on_exact_samples_hit_their_targets():
    model = ns.GaussianMixture.two_modes(d=200, p=0.8, m=1.0, sigma=0.5)
    n = 10_000
    x = model.sample(jax.random.PRNGKey(0), n)
    s = metrics.summary(model, x)
    assert abs(s["mode_weight"] - 0.8) < 4 * math.sqrt(0.16 / n)
    # |P⊥ x|² / σ² ~ χ²_{d−1}: the mean over n samples has relative sd √(2/((d−1) n))
    assert abs(s["within_mode_var"] / 0.25 - 1) < 4 * math.sqrt(2 / (199 * n))
    assert s["coordinate_ks"] < 0.01


def test_k_mode_weights_and_variance():
    key = jax.random.PRNGKey(1)
    d = 100
    means = 0.5 * jax.random.normal(key, (4, d)) * 2.0
    weights = jnp.array([0.4, 0.3, 0.2, 0.1])
    model = ns.GaussianMixture(weights, means, sigma=0.3)
    n = 20_000
    x = model.sample(jax.random.PRNGKey(2), n)
    w = metrics.mode_weights(model, x)
    se = jnp.sqrt(weights * (1 - weights) / n)
    assert bool(jnp.all(jnp.abs(w - weights) < 4 * se))
    assert abs(float(metrics.within_mode_variance(model, x)) / 0.09 - 1) < 0.01


def test_metrics_detect_the_failures():
    """Samples collapsed onto the means, or all in one mode, are told apart from the data law."""
    model = ns.GaussianMixture.two_modes(d=100, p=0.8, m=1.0, sigma=0.5)
    collapsed = jnp.concatenate([jnp.tile(model.means[0], (80, 1)),
                                 jnp.tile(model.means[1], (20, 1))])
    assert float(metrics.within_mode_variance(model, collapsed)) < 1e-10
    assert float(metrics.coordinate_ks(model, collapsed)) > 0.4
    one_mode = model.means[0] + 0.5 * jax.random.normal(jax.random.PRNGKey(0), (100, 100))
    assert float(metrics.mode_weight(model, one_mode)) == 1.0


def test_cw_metrics_on_exact_samples():
    d, n = 2000, 5000
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    x = cw.sample(jax.random.PRNGKey(0), n)
    s = metrics.summary(cw, x)
    w = s["mode_weight_target"]
    assert w == pytest.approx(0.7904, abs=1e-4)
    assert abs(s["mode_weight"] - w) < 4 * math.sqrt(w * (1 - w) / n)
    assert s["mean_sq"] == 1.0
    # |mean_i s_i| has mean m and sd √((1 − m²)/d) per sample
    assert abs(s["mean_abs_magnetization"] - s["m"]) < 4 * math.sqrt((1 - s["m"] ** 2) / (d * n))


def test_bad_sample_shapes(unchecked_types):
    model = ns.GaussianMixture.two_modes(d=10)
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\) = \(n, 10\); got \(4, 9\)"):
        metrics.mode_weight(model, jnp.zeros((4, 9)))
    with pytest.raises(ValueError, match="at least one sample"):
        metrics.within_mode_variance(model, jnp.zeros((0, 10)))
    with pytest.raises(ValueError, match="model must be a data law"):
        metrics.summary(object(), np.zeros((2, 2)))


def test_magnetization_law_matches_enumeration(x64):
    from helpers import all_spin_configurations, two_phase_log_prob

    d = 10
    cw = ns.CurieWeiss(d=d, beta=1.5, h=0.4)
    levels, probs = metrics.magnetization_law(cw)
    s = all_spin_configurations(d)
    p = jnp.exp(two_phase_log_prob(s, cw.m, cw.positive_phase_weight))
    mags = jnp.mean(s, axis=-1)
    expected = jnp.array([jnp.sum(jnp.where(jnp.abs(mags - lv) < 1e-9, p, 0.0)) for lv in levels])
    np.testing.assert_allclose(probs, expected, rtol=1e-10, atol=1e-15)


def test_magnetization_ks_separates_right_and_wrong_laws():
    d, n = 1000, 4000
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    x = cw.sample(jax.random.PRNGKey(0), n)
    # exact samples: the KS distance is of order 1/√n (the 99.9 % quantile is 1.95/√n)
    assert float(metrics.magnetization_ks(cw, x)) < 1.95 / math.sqrt(n)
    hotter = ns.CurieWeiss(d=d, beta=1.8, h=H).sample(jax.random.PRNGKey(0), n)
    assert float(metrics.magnetization_ks(cw, hotter)) > 0.3
