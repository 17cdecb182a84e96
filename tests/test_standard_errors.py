"""Standard errors of the features: each checked against an independent truth, the spread of
the estimate over independent batches or a closed form of the estimator's variance, within a
stated error bar."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import metrics

H = 0.5 * math.log(4)


def _batches(law, x, count):
    """The summaries of ``count`` consecutive, independent batches of the rows of ``x``."""
    size = x.shape[0] // count
    return [metrics.summary(law, x[i * size:(i + 1) * size]) for i in range(count)]


def _spread_matches(summaries, key, se_key):
    """The standard deviation of ``key`` over independent batches against the root mean
    square of the reported ``se_key``: the relative error of a standard deviation estimated
    from m normal draws is 1/√(2(m − 1)); four of them are allowed."""
    m = len(summaries)
    values = np.array([s[key] for s in summaries])
    reported = math.sqrt(np.mean([s[se_key] ** 2 for s in summaries]))
    assert np.std(values, ddof=1) / reported == pytest.approx(1, abs=4 / math.sqrt(2 * (m - 1)))


def test_gm_standard_errors_are_the_spread_over_independent_batches():
    d, n, m = 8, 100, 400
    law = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    x = law.sample(jax.random.PRNGKey(0), n * m)
    summaries = _batches(law, x, m)
    s = summaries[0]
    assert s["mode_weight_se"] == math.sqrt(s["mode_weight"] * (1 - s["mode_weight"]) / n)
    _spread_matches(summaries, "mode_weight", "mode_weight_se")
    _spread_matches(summaries, "within_mode_var", "within_mode_var_se")
    # closed form under the law: |P⊥ x|²/σ² ~ χ²_{d−1}, so the estimate has standard error
    # σ² √(2/((d − 1) n)); the mean over m batches of the reported s.e.² is unbiased for its
    # square, with relative sd √(κ − 1)/√(n m), κ = 3 + 12/(d − 1) the kurtosis of χ²_{d−1}
    exact = 0.25 * math.sqrt(2 / ((d - 1) * n))
    rms = math.sqrt(np.mean([s["within_mode_var_se"] ** 2 for s in summaries]))
    kurtosis = 3 + 12 / (d - 1)
    assert (rms / exact) ** 2 == pytest.approx(1, abs=4 * math.sqrt((kurtosis - 1) / (n * m)))


def test_cw_magnetization_se_is_the_exact_laws_spread_over_root_n():
    d, n = 50, 20_000
    law = ns.CurieWeiss(d=d, beta=2.0, h=H)
    s = metrics.summary(law, law.sample(jax.random.PRNGKey(1), n))
    levels, probs = map(lambda a: np.asarray(a, np.float64), law.magnetization_law())
    mean = np.sum(probs * np.abs(levels))
    central = np.abs(levels) - mean
    var, fourth = np.sum(probs * central**2), np.sum(probs * central**4)
    # the sample sd of n draws has relative sd √((κ − 1)/(4n)), κ the kurtosis of |M|
    kurtosis = fourth / var**2
    assert s["mean_abs_magnetization_se"] / math.sqrt(var / n) == pytest.approx(
        1, abs=4 * math.sqrt((kurtosis - 1) / (4 * n)))
    assert s["mean_sq_se"] == 0.0  # exact spins: x_i² = 1 in every sample
    w = s["mode_weight"]
    assert s["mode_weight_se"] == math.sqrt(w * (1 - w) / n)


def test_cw_mean_sq_se_after_a_solve_is_the_spread_over_independent_batches():
    d, n, m = 32, 50, 200
    law = ns.CurieWeiss(d=d, beta=2.0, h=H)
    interp = ns.Interpolant("ve", "linear", d)
    x = ns.sample(law, interp, ns.schedules.constant(), jax.random.PRNGKey(2), n * m, steps=4,
                  method="scan")
    summaries = _batches(law, x, m)
    assert summaries[0]["mean_sq"] != 1.0  # not on the spins: the s.e. measures something
    _spread_matches(summaries, "mean_sq", "mean_sq_se")
    _spread_matches(summaries, "mean_abs_magnetization", "mean_abs_magnetization_se")
    _spread_matches(summaries, "mode_weight", "mode_weight_se")


def test_gaussian_variance_ratio_se_has_the_closed_form_of_a_linear_solve():
    """An N-step solve is X_1 = diag(g) X_0 with X_0 ~ N(0, α0² I): the per-sample
    contribution mean_i x_i²/s_i² = (1/d) Σ_i ρ_i ξ_i², ρ_i = (g_i α0/s_i)² from one solve
    from α0 (1, …, 1), has variance 2 Σ_i ρ_i²/d²."""
    d, n, steps = 16, 20_000, 3
    law = ns.Gaussian.power_law(d, exponent=1.0)
    interp = ns.Interpolant("ve", "linear", d)
    schedule = ns.schedules.constant()
    x = ns.sample(law, interp, schedule, jax.random.PRNGKey(3), n, steps=steps, method="scan")
    s = metrics.summary(law, x)
    ones = jnp.full((1, d), interp.prior_scale(schedule))
    final = np.asarray(ns.solve(law, interp, schedule, ones, steps=steps).x[0], np.float64)
    rho = final**2 / np.asarray(law.scales, np.float64) ** 2
    assert abs(np.mean(rho) - 1) > 0.05  # a solve that is off: not the law's own ratio
    exact = math.sqrt(2 * np.sum(rho**2) / d**2 / n)
    # cumulants of Σ c_i ξ_i²: κ_k = 2^(k−1) (k − 1)! Σ c_i^k, so the excess kurtosis is
    # 12 Σ c⁴/(Σ c²)²; the sample sd of n draws has relative sd √((κ − 1)/(4n))
    kurtosis = 3 + 12 * np.sum(rho**4) / np.sum(rho**2) ** 2
    assert s["variance_ratio_se"] / exact == pytest.approx(
        1, abs=4 * math.sqrt((kurtosis - 1) / (4 * n)))


def test_every_feature_with_a_standard_error_reports_it_and_chunks_do_not_change_it():
    law = ns.GaussianMixture.two_modes(d=64, p=0.7)
    interp = ns.Interpolant("vp", "linear", 64)
    schedule = ns.schedules.vp_dilated(64, 3.0)
    key = jax.random.PRNGKey(4)
    whole = ns.sample_summary(law, interp, schedule, key, 96, steps=8, method="scan",
                              chunk_size=96).metrics
    streamed = ns.sample_summary(law, interp, schedule, key, 96, steps=8, method="scan",
                                 chunk_size=32)
    chunked = streamed.metrics
    for f in law.features:
        if f.se is not None:
            assert math.isfinite(whole[f.se]) and whole[f.se] > 0
            # (a row's sums may differ in the last bit between block shapes, as the value's)
            assert chunked[f.se] == pytest.approx(whole[f.se], rel=1e-6), f.se
    # the s.e. of the whole batch, not of a chunk: the per-row values of all 96 rows
    within = streamed.rows["within_sq"].astype(np.float64) / 63
    assert chunked["within_mode_var_se"] == np.std(within, ddof=1) / math.sqrt(96)
    assert [f.key for f in law.features if f.se is None] == ["coordinate_ks"]
    line = law.describe(whole)
    assert f"mode weight {whole['mode_weight']:.4f} ± {whole['mode_weight_se']:.4f} (target" \
        in line


def test_standard_error_functions_on_edge_cases():
    assert math.isnan(metrics.mean_standard_error(np.array([1.0])))
    assert metrics.mean_standard_error(np.array([1.0, 3.0])) == pytest.approx(1.0)
    assert metrics.binomial_standard_error(1.0, 10) == 0.0
    assert metrics.binomial_standard_error(0.5, 4) == pytest.approx(0.25)
    assert math.isnan(metrics.binomial_standard_error(1.0, 1))  # one sample: no spread known
