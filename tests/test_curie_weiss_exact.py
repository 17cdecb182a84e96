import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import all_spin_configurations

import noisesched as ns


def finite_d_log_prob(s, beta, h):
    d = s.shape[-1]
    mag = jnp.sum(s, axis=-1)
    logits = beta * mag**2 / (2 * d) + h / d * mag
    return logits - jax.nn.logsumexp(logits)


@pytest.mark.parametrize("d", [8, 12])
@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("t", [0.0, 0.1, 0.3, 0.6, 0.9])
def test_denoiser_against_enumeration(d, kind, t, x64):
    """E[s | x_t] by summing over all 2^d configurations of the finite-d law; the quadrature of
    the Hubbard–Stratonovich integral is accurate to 1e-6."""
    cw = ns.CurieWeissExact(d=d, beta=1.6, h=0.7)
    s = all_spin_configurations(d)
    logp = finite_d_log_prob(s, 1.6, 0.7)
    interp = ns.Interpolant(kind=kind, shape="linear", d=d)
    sched = ns.schedules.constant()
    c = interp.coefficients(sched, t)
    key = jax.random.PRNGKey(1)
    x = c.alpha * jax.random.normal(key, (6, d)) + c.beta * cw.sample(key, 6)
    loglik = -jnp.sum((x[:, None, :] - c.beta * s[None]) ** 2, -1) / (2 * c.alpha_sq)
    expected = jax.nn.softmax(logp + loglik, axis=-1) @ s
    np.testing.assert_allclose(cw.denoiser(interp, sched, t, x), expected, atol=1e-6)


@pytest.mark.parametrize("d", [10, 12])
def test_sampler_and_phase_weight_against_enumeration(d, x64):
    cw = ns.CurieWeissExact(d=d, beta=2.0, h=0.5 * np.log(4))
    s = all_spin_configurations(d)
    p = jnp.exp(finite_d_log_prob(s, 2.0, 0.5 * np.log(4)))
    mag = jnp.sum(s, axis=-1)
    w_plus = jnp.sum(jnp.where(mag > 0, p, 0.0)) + 0.5 * jnp.sum(jnp.where(mag == 0, p, 0.0))
    assert float(cw.positive_phase_weight) == pytest.approx(float(w_plus), rel=1e-12)
    levels = jnp.arange(-d, d + 1, 2)
    p_m = jnp.array([jnp.sum(jnp.where(mag == lv, p, 0.0)) for lv in levels])
    np.testing.assert_allclose(cw.magnetization_law()[1], p_m, rtol=1e-10, atol=1e-15)
    n = 40_000
    draws = jnp.sum(cw.sample(jax.random.PRNGKey(d), n), axis=-1)
    counts = jnp.array([jnp.sum(draws == lv) for lv in levels])
    keep = n * p_m > 5
    stat = float(jnp.sum(jnp.where(keep, (counts - n * p_m) ** 2 / (n * p_m), 0.0)))
    dof = int(jnp.sum(keep)) - 1
    assert float(jax.scipy.special.gammaincc(dof / 2, stat / 2)) > 1e-3
    # configurations with a given M are uniform: each spin is up with probability (d + M)/(2d)
    ups = cw.sample(jax.random.PRNGKey(0), 4000)
    ups = ups[jnp.sum(ups, -1) == d - 4]  # two down spins
    assert ups.shape[0] > 100
    frac_down = jnp.mean(ups < 0, axis=0)
    assert float(jnp.max(jnp.abs(frac_down - 2 / d))) < 5 * np.sqrt((2 / d) / ups.shape[0])


def test_finite_d_law_approaches_the_two_phase_form():
    """The positive-phase probability tends to W+ = 0.7904 as d grows (finite-size correction)."""
    gaps = []
    for d in (100, 1000, 10_000):
        exact = ns.CurieWeissExact(d=d, beta=2.0, h=0.5 * np.log(4))
        gaps.append(abs(float(exact.positive_phase_weight) - 0.7904073))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3


def test_sampler_runs_with_the_exact_drift():
    # the solve costs about d^1.5 · n · steps: d = 100 and 50 Heun steps keep n = 1000 samples
    # (the error bar) at under a quarter of the cost of d = 200 and 100 steps; halving the
    # steps moves the phase fraction by far less than its standard error
    d = 100
    cw = ns.CurieWeissExact(d=d, beta=2.0, h=0.5 * np.log(4))
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    x = ns.sample(cw, interp, ns.schedules.vp_dilated(d), jax.random.PRNGKey(0), 1000, steps=50,
                  solver="heun")
    w = float(cw.positive_phase_weight)
    se = np.sqrt(w * (1 - w) / 1000)
    assert abs(float(ns.metrics.positive_phase_fraction(cw, x)) - w) < 4 * se
    assert abs(float(ns.metrics.mean_square(cw, x)) - 1) < 0.01


@pytest.mark.parametrize("t", [0.0, 0.02, 0.1, 0.5])
def test_peak_quadrature_matches_the_uniform_grid(t, x64):
    """Beyond max_grid the denoiser switches to quadrature around the located maxima; at a d
    where both run, they agree."""
    d = 2000
    grid = ns.CurieWeissExact(d=d, beta=2.0, h=0.5 * np.log(4))
    peaks = ns.CurieWeissExact(d=d, beta=2.0, h=0.5 * np.log(4), max_grid=0)
    assert grid._global_grid() <= grid.max_grid
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    sched = ns.schedules.vp_dilated(d)
    c = interp.coefficients(sched, t)
    key = jax.random.PRNGKey(2)
    x = c.alpha * jax.random.normal(key, (8, d)) + c.beta * grid.sample(key, 8)
    np.testing.assert_allclose(peaks.denoiser(interp, sched, t, x),
                               grid.denoiser(interp, sched, t, x), atol=1e-7)
