"""What float rounding resolves: a mixture's scales that the samples' dtype would swamp are
refused before any work, and a within-mode variance that a sampler shrank below what the dtype
resolves is reported as such. Checked against the exact two-mode oracle (float64)."""

from pathlib import Path

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched.cli import main

D, N, STEPS = 200, 2000, 20
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "gm_ve_constant.toml")


def _measured_and_exact(model, dtype):
    interp = ns.Interpolant("ve", "linear", D)
    schedule = ns.schedules.Constant()
    x = ns.sample(model, interp, schedule, jax.random.PRNGKey(0), N, steps=STEPS, dtype=dtype)
    measured = ns.metrics.summary(model, x)
    with jax.enable_x64(True):
        model64 = ns.GaussianMixture.two_modes(d=D, m=model.means[0, 0].item(),
                                               sigma=model.sigma)
        exact = model64.exact_metrics(ns.Interpolant("ve", "linear", D), schedule, STEPS)
    return measured, exact


def test_a_spread_that_rounding_would_swamp_is_refused_before_sampling():
    """m = 10^6 with σ = 0.5 in float32: the within-mode variance came out 20 standard errors
    above the exact value, with status 0. σ must be 30 float spacings at the states' size."""
    model = ns.GaussianMixture.two_modes(d=D, m=1e6, sigma=0.5)
    interp = ns.Interpolant("ve", "linear", D)
    with pytest.raises(ValueError, match=r"sigma must be at least 3\.58 for samples in float32 "
                                         r"\(30 float spacings at the states' size 1e\+06"):
        ns.sample(model, interp, ns.schedules.Constant(), jax.random.PRNGKey(0), 4, steps=2)
    with pytest.raises(ValueError, match="sigma must be at least"):
        list(ns.streaming.sample_chunks(model, interp, ns.schedules.Constant(),
                                        jax.random.PRNGKey(0), 4, steps=2))
    # the noise scale α0 sets the size when the means are small: 1 for vp, √d for ve (seen:
    # σ = 1e-5, ve, d = 2000 in float32 measured 1.8e-11 for an exact 2.8e-18)
    small = ns.GaussianMixture.two_modes(d=D, m=1e-6, sigma=1e-6)
    vp = ns.Interpolant("vp", "linear", D)
    with pytest.raises(ValueError, match=r"at least 3\.58e-06 for samples in float32 .* size 1:"):
        ns.sample(small, vp, ns.schedules.Constant(), jax.random.PRNGKey(0), 4, steps=2)
    small = ns.GaussianMixture.two_modes(d=D, m=1, sigma=1e-5)
    ns.sample(small, vp, ns.schedules.Constant(), jax.random.PRNGKey(0), 4, steps=2)
    with pytest.raises(ValueError, match=r"at least 5\.06e-05 for samples in float32 .* size "
                                         r"14\.1421: the noise scale α0 of the ve interpolant"):
        ns.sample(small, interp, ns.schedules.Constant(), jax.random.PRNGKey(0), 4, steps=2)


def test_a_resolved_spread_at_a_large_level_matches_the_oracle(x64):
    """The same mixture in float64 (allowed: σ ≥ 30 ε·10^6 = 6.7e-9) agrees with the exact
    value, and so does m = 10^3 in float32 (σ ≥ 3.6e-3)."""
    import jax.numpy as jnp

    for m, dtype in ((1e6, jnp.float64), (1e3, jnp.float32)):
        measured, exact = _measured_and_exact(ns.GaussianMixture.two_modes(d=D, m=m, sigma=0.5),
                                              dtype)
        error = abs(measured["within_mode_var"] - exact["within_mode_var_exact"])
        assert error < 4 * measured["within_mode_var_se"], (m, measured, exact)


def test_a_level_that_rounds_to_zero_is_refused(x64):
    """m = 1e-300 rounded to 0 in float32 and the exact mode weight printed nan; in float64 the
    oracle's |μ|² = m²·d underflows below m = 1.5e-154."""
    with pytest.raises(ValueError, match=r"m must be at least 1\.49e-154 \(m² must be a normal "
                                         r"float64"):
        ns.GaussianMixture.two_modes(d=D, m=1e-300)
    model = ns.GaussianMixture.two_modes(d=D, m=1e-150)
    exact = model.exact_metrics(ns.Interpolant("ve", "linear", D), ns.schedules.Constant(), 4)
    assert exact["mode_weight_exact"] == 0.5  # the modes cannot be told apart
    with jax.enable_x64(False):
        for make in (lambda: ns.GaussianMixture.two_modes(d=D, m=1e-39),
                     lambda: ns.GaussianMixture.random_means(d=D, weights=[0.5, 0.5], m=1e-300)):
            with pytest.raises(ValueError, match=r"m must be at least 1\.18e-38 \(the smallest "
                                                 r"normal float32; a smaller m rounds to 0"):
                make()
        assert ns.GaussianMixture.two_modes(d=D, m=1e-30).means[0, 0] == np.float32(1e-30)


def test_a_variance_below_the_resolution_is_reported_as_rounding(x64):
    """A constant VE schedule leaves a within-mode variance of O(σ⁴): 4.9e-15 at m = σ = 1e-4,
    which float32 samples measure as 5.2e-15 (rounding). It is reported; float64 samples of the
    same mixture resolve it and agree with the oracle."""
    import jax.numpy as jnp

    model = ns.GaussianMixture.two_modes(d=D, m=1e-4, sigma=1e-4)
    with pytest.warns(RuntimeWarning, match=r"below 1.28e-11, \(30 float spacings\)² at the "
                                            r"size of the float32 samples: the rounding of "
                                            r"each step \(about 1.2e-07 per coordinate\) may "
                                            r"dominate it"):
        measured, _ = _measured_and_exact(model, jnp.float32)
    # recorded beside the value, and said in its summary line
    assert measured["within_mode_var_floor"] == pytest.approx((30 * 2.0**-23) ** 2, rel=1e-12)
    assert "(below the rounding floor 1.279e-11)" in model.describe(measured)
    measured, exact = _measured_and_exact(model, jnp.float64)
    error = abs(measured["within_mode_var"] - exact["within_mode_var_exact"])
    assert error < 4 * measured["within_mode_var_se"]


def test_the_cli_refuses_an_unresolved_spread_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", CONFIG, "--set", "model.d=50", "--set", "sample.n=8",
            "--set", "model.m=1e6", "--set", "output.figures=false", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisesched: error: model.sigma must be at least 3.58 for samples in "
                          "float32") and "\n" not in err
    assert not out.exists()
    # the same run in float64 is resolved
    assert main([*args[:-2], "--set", "sample.dtype=float64", "--set", "solver.steps=4",
                 "--out", str(out)]) == 0


def test_the_spread_is_measured_about_the_mean_not_through_the_level():
    """Seen: m = 10^6, σ = 3.6 (allowed), d = 2000 in float32 measured 16.83 ± 0.011 for an
    exact 12.22: |P⊥x|² was computed from x, whose sums over coordinates of numbers of size m
    lose the spread's digits. It is computed from x − μ_k now."""
    d, steps = 2000, 50
    model = ns.GaussianMixture.two_modes(d=d, m=1e6, sigma=3.6)
    interp = ns.Interpolant("vp", "linear", d)
    schedule = ns.schedules.vp_dilated(d)
    x = ns.sample(model, interp, schedule, jax.random.PRNGKey(0), 1000, steps=steps)
    measured = ns.metrics.summary(model, x)
    with jax.enable_x64(True):
        exact = ns.GaussianMixture.two_modes(d=d, m=1e6, sigma=3.6).exact_metrics(
            ns.Interpolant("vp", "linear", d), ns.schedules.vp_dilated(d), steps)
    error = abs(measured["within_mode_var"] - exact["within_mode_var_exact"])
    assert error < 4 * measured["within_mode_var_se"], (measured, exact)
    assert abs(float(ns.metrics.within_mode_variance(model, x)) - measured["within_mode_var"]) \
        < 1e-3 * measured["within_mode_var"]


def test_means_that_round_to_zero_in_the_samples_dtype_are_refused(x64):
    """Dense means of 1e-40, all-zero means, and a mixture made in float64 then sampled in
    float32 gave a mode weight of 1.0 for a target of 0.8 with status 0."""
    import jax.numpy as jnp

    interp = ns.Interpolant("vp", "linear", D)
    key = jax.random.PRNGKey(0)
    for means in (1e-40 * np.stack([np.ones(D), -np.ones(D)]), np.zeros((2, D))):
        model = ns.GaussianMixture([0.8, 0.2], means, 0.5)
        dtypes = (jnp.float32,) if means.any() else (jnp.float32, jnp.float64)
        for dtype in dtypes:
            with pytest.raises(ValueError, match=r"means must have coordinates of at least "
                                                 r".* \(the smallest normal float"):
                ns.sample(model, interp, ns.schedules.Constant(), key, 4, steps=2, dtype=dtype)
    model = ns.GaussianMixture.two_modes(d=D, m=1e-40)  # fine in float64
    ns.sample(model, interp, ns.schedules.Constant(), key, 4, steps=2, dtype=jnp.float64)
    with pytest.raises(ValueError, match=r"at least 1\.18e-38 \(the smallest normal float32"):
        ns.sample(model, interp, ns.schedules.Constant(), key, 4, steps=2, dtype=jnp.float32)
