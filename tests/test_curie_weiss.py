import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    TEST_FUNCTIONS,
    all_spin_configurations,
    two_phase_log_prob,
    velocity_orthogonality,
)

import noisesched as ns
from noisesched import schedules

H = 0.5 * math.log(4)


@pytest.mark.parametrize("beta,m", [(2.0, 0.957504), (1.1, 0.502941), (1.0, 0.0), (0.5, 0.0)])
def test_mean_field_magnetization(beta, m, x64):
    got = float(ns.mean_field_magnetization(beta))
    assert got == pytest.approx(m, abs=2e-6)
    assert got == pytest.approx(math.tanh(beta * got), abs=1e-12)


def test_phase_weight():
    cw = ns.CurieWeiss(d=100, beta=2.0, h=H)
    assert float(cw.positive_phase_weight) == pytest.approx(0.7904, abs=1e-4)


def _enumerated(cw, interp, sched, t, x):
    """E[s | x_t = x] and log ρ_t(x) by summing over all 2^d configurations."""
    s = all_spin_configurations(cw.d)
    logp = two_phase_log_prob(s, cw.m, cw.positive_phase_weight)
    c = interp.coefficients(sched, t)

    def log_density(y):
        logl = -jnp.sum((y - c.beta * s) ** 2, axis=-1) / (2 * c.alpha_sq)
        return jax.nn.logsumexp(logp + logl) - 0.5 * cw.d * jnp.log(2 * jnp.pi * c.alpha_sq)

    def posterior_mean(y):
        logl = -jnp.sum((y - c.beta * s) ** 2, axis=-1) / (2 * c.alpha_sq)
        return jax.nn.softmax(logp + logl) @ s

    return jax.vmap(posterior_mean)(x), jax.vmap(jax.grad(log_density))(x)


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("vp", "trig"), ("ve", "linear")])
@pytest.mark.parametrize("t", [0.1, 0.4, 0.7, 0.95])
def test_denoiser_and_score_against_enumeration(kind, shape, t, x64):
    d = 8
    cw = ns.CurieWeiss(d=d, beta=1.6, h=0.7)
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = schedules.constant()
    c = interp.coefficients(sched, t)
    key = jax.random.PRNGKey(4)
    x = c.alpha * jax.random.normal(key, (6, d)) + c.beta * cw.sample(key, 6)
    eta, score = _enumerated(cw, interp, sched, t, x)
    np.testing.assert_allclose(cw.denoiser(interp, sched, t, x), eta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cw.score(interp, sched, t, x), score, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("ve", "linear")])
@pytest.mark.parametrize("t", [0.3, 0.7])
def test_drift_is_conditional_velocity(kind, shape, t, x64):
    cw = ns.CurieWeiss(d=3, beta=1.5, h=0.8)
    interp = ns.Interpolant(kind=kind, shape=shape, d=3)
    means, errs = velocity_orthogonality(
        cw, interp, schedules.constant(), t, jax.random.PRNGKey(5), 200_000, TEST_FUNCTIONS
    )
    assert np.all(np.abs(means) < 4 * errs + 1e-12), (means, errs)


def _chi_square_pvalue(stat, dof):
    return float(jax.scipy.special.gammaincc(dof / 2.0, stat / 2.0))


@pytest.mark.parametrize("d", [6, 10, 12])
def test_sample_law_against_enumeration(d, x64):
    """Histogram of M = Σ s_i from ``sample`` against the enumerated two-phase law (χ² test).

    Under the two-phase law P(s) depends on s through M alone, so the law of M is the whole law.
    The test is deterministic (fixed key); it rejects at p < 1e-3.
    """
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    s = all_spin_configurations(d)
    p_config = jnp.exp(two_phase_log_prob(s, cw.m, cw.positive_phase_weight))
    assert float(jnp.sum(p_config)) == pytest.approx(1.0, abs=1e-12)
    levels = jnp.arange(-d, d + 1, 2)
    p_m = jnp.array([jnp.sum(jnp.where(jnp.sum(s, -1) == lv, p_config, 0.0)) for lv in levels])
    n = 40_000
    mags = jnp.sum(cw.sample(jax.random.PRNGKey(d), n), axis=-1)
    counts = jnp.array([jnp.sum(mags == lv) for lv in levels])
    expected = n * p_m
    keep = expected > 5
    stat = float(jnp.sum(jnp.where(keep, (counts - expected) ** 2 / expected, 0.0)))
    pval = _chi_square_pvalue(stat, int(jnp.sum(keep)) - 1)
    assert pval > 1e-3, (stat, pval)
    # and the test has power: a law with the wrong phase weight is rejected
    wrong = 0.6 * p_m[::-1] + 0.4 * p_m
    stat_w = float(jnp.sum(jnp.where(keep, (counts - n * wrong) ** 2 / (n * wrong), 0.0)))
    assert _chi_square_pvalue(stat_w, int(jnp.sum(keep)) - 1) < 1e-6


def test_phase_logit_is_a_stable_sum_at_a_million_spins():
    d = 1_000_000
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    sched = schedules.vp_dilated(d)
    key = jax.random.PRNGKey(0)
    for t in (0.0, 0.25, 0.5, 0.9, 0.999):
        c = interp.coefficients(sched, t)
        x = c.alpha * jax.random.normal(key, (2, d)) + c.beta * cw.sample(key, 2)
        b = cw.drift(interp, sched, t, x)
        assert bool(jnp.all(jnp.isfinite(b)))
        with jax.enable_x64(True):
            cw64 = ns.CurieWeiss(d=d, beta=2.0, h=H)
            c64 = ns.Coefficients(*(jnp.float64(np.float32(v)) for v in c))
            x64 = jnp.asarray(np.asarray(x), jnp.float64)
            b64 = cw64.velocity(c64, x64)
        for row in range(2):
            scale = float(jnp.max(jnp.abs(b64[row])))
            assert float(jnp.max(jnp.abs(b[row] - b64[row]))) <= 1e-4 * scale


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(d=0, beta=2.0), r"d must be an integer >= 1; got 0"),
        (dict(d=10, beta=0.0), r"beta must be in \(0, inf\); got 0.0"),
        (dict(d=10, beta=-1.0), r"beta must be in \(0, inf\)"),
        (dict(d=10, beta=2.0, h=float("nan")), "h must be a real number; got nan"),
        (dict(d=10, beta=float("inf")), "beta must be finite"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ns.CurieWeiss(**kwargs)
