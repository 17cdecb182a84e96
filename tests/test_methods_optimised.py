"""Schedule methods optimised for a model: Align Your Steps (KLUB minimisation) and LD3 (levels
learned through the sampler), against independent computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize

import noisesched as ns
from noisesched.methods import METHODS, edm_levels, make
from noisesched.methods.ays import klub_costs
from noisesched.methods.ld3 import Student, fit_ld3, logits_of


# ----------------------------------------------------------------------------- AYS
def gaussian_step_klub(scales, lo, hi):
    """∫_lo^hi σ^−3 E|D(y_σ; σ) − D(y_hi; hi)|² dσ for N(0, diag s²), D = s²/(s² + σ²) y, with
    y_hi = y_σ + √(hi² − σ²) ε on one forward path. The expectation is Σ s⁴(1/(s² + σ²) −
    1/(s² + hi²)) (the path's martingale), and s⁴/(σ³ (s² + σ²)) = s²/σ³ − 1/σ + σ/(s² + σ²)
    integrates in closed form."""
    s = np.asarray(scales, np.float64)[:, None]
    lo, hi = np.atleast_1d(lo)[None], np.atleast_1d(hi)[None]

    def antiderivative(x):
        return -s**2 / (2 * x**2) - np.log(x) + 0.5 * np.log(s**2 + x**2)

    top = s**4 / (s**2 + hi**2)
    return np.sum(antiderivative(hi) - antiderivative(lo) + top * (0.5 / hi**2 - 0.5 / lo**2),
                  axis=0)


def gaussian_step_klub_by_quadrature(scales, lo, hi):
    """The same step, integrating the path-law expectation directly: with a = s²/(s² + σ²),
    D(y_σ) − D(y_hi) = (a − a_hi) y_σ − a_hi √(hi² − σ²) ε, so E|·|² = Σ (a − a_hi)²(s² + σ²)
    + a_hi² (hi² − σ²)."""
    s = np.asarray(scales, np.float64)
    a_hi = s**2 / (s**2 + hi**2)

    def integrand(u):
        sigma = math.exp(u)
        a = s**2 / (s**2 + sigma**2)
        mean_sq = np.sum((a - a_hi) ** 2 * (s**2 + sigma**2) + a_hi**2 * (hi**2 - sigma**2))
        return mean_sq / sigma**2  # σ^−3 dσ = σ^−2 du

    return quad(integrand, math.log(lo), math.log(hi), epsabs=0, epsrel=1e-11, limit=200)[0]


def test_gaussian_step_klub_closed_form_is_the_path_expectation():
    scales = [0.1, 0.5, 2.0]
    for lo, hi in [(0.01, 0.03), (0.05, 2.0), (0.3, 20.0), (1.0, 1.1)]:
        closed = gaussian_step_klub(scales, lo, hi)[0]
        assert closed == pytest.approx(gaussian_step_klub_by_quadrature(scales, lo, hi),
                                       rel=1e-9)


def test_ays_step_costs_estimate_the_gaussian_klub(x64):
    """Every step of the grid against the closed form, on 3 scales × 64 coordinates and 256
    paths: the Monte-Carlo relative s.d. is ≈ √(2/(n k)) ≈ 1.1 % per scale (n k = 16384), and T
    linear in log σ between grid levels costs < 0.6 % on steps of ≥ 8 cells at 8 levels per
    e-fold; tolerance 5 %."""
    scales = np.repeat([0.1, 0.5, 2.0], 64)
    model = ns.Gaussian(scales)
    interp = ns.Interpolant("ve", "linear", scales.size)
    costs = klub_costs(model, interp, sigma_min=0.01, sigma_max=20.0, samples=256, grid=8)
    sigmas, m = costs.sigmas, costs.sigmas.size
    assert np.allclose(np.diff(np.log(sigmas)), math.log(2000.0) / (m - 1))
    lo, hi = np.triu_indices(m, k=8)
    exact = gaussian_step_klub(scales, sigmas[lo], sigmas[hi])
    ratio = costs.cost[lo, hi] / exact
    assert np.max(np.abs(ratio - 1)) < 0.05, (np.min(ratio), np.max(ratio))
    assert np.all(np.isinf(costs.cost[np.tril_indices(m)]))


def test_ays_levels_minimise_the_gaussian_klub(x64):
    """The method's levels against scipy's minimum of the closed-form KLUB (4 steps between
    σ_min = 0.01 and σ_max = 20, from EDM's levels). Tolerance 0.05 in log σ: the grid's
    half-step (1/64) plus ≈ 3 s.d. of the Monte-Carlo spread (seeds 0-2 spread ≤ 0.03); the
    optimum's KLUB is 8× below EDM's, whose levels are ≥ 0.3 away in log σ."""
    base, steps, lo, hi = np.array([0.1, 0.5, 2.0]), 5, 0.01, 20.0
    start = edm_levels(steps, lo, hi)

    def klub(logs):
        levels = np.exp(np.r_[math.log(hi), logs, math.log(lo)])
        return float(np.sum(gaussian_step_klub(base, levels[1:], levels[:-1])))

    best = minimize(klub, np.log(start[1:-1]), method="Nelder-Mead",
                    options=dict(xatol=1e-9, fatol=1e-12, maxiter=20000))
    assert best.success and best.fun < klub(np.log(start[1:-1])) / 8
    assert np.min(np.abs(best.x - np.log(start[1:-1]))) > 0.3

    scales = np.repeat(base, 64)
    interp = ns.Interpolant("ve", "linear", scales.size)
    sched = ns.methods.ays(ns.Gaussian(scales), interp, steps, sigma_min=lo, sigma_max=hi,
                           samples=256, grid=32)
    levels = np.asarray(interp.noise_ratio(sched, jnp.arange(steps) / steps))
    assert levels[0] == pytest.approx(hi) and levels[-1] == pytest.approx(lo)
    np.testing.assert_allclose(np.log(levels[1:-1]), best.x, atol=0.05)
    assert klub(np.log(levels[1:-1])) < 1.01 * best.fun


@pytest.mark.parametrize("sigma_max", [80.0, math.inf])
def test_ays_levels_are_a_coordinatewise_minimum_of_the_estimate(sigma_max):
    """On the two-mode mixture, every interior level of the result is the best grid level
    between its neighbours for the same estimated KLUB (same options, same seed), and the
    result's KLUB is below EDM's levels' on the grid."""
    d, steps = 16, 8
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", d)
    options = dict(sigma_max=sigma_max, samples=64, grid=8, seed=3)
    sched = ns.methods.ays(model, interp, steps, **options)
    levels = np.asarray(interp.noise_ratio(sched, jnp.arange(steps) / steps), np.float64)
    assert math.isinf(levels[0]) == math.isinf(sigma_max)
    costs = klub_costs(model, interp, **options)
    u = np.log(costs.sigmas)
    finite = np.where(np.isinf(levels), costs.sigmas[-1], levels)
    idx = np.rint((np.log(finite) - u[0]) / (u[1] - u[0])).astype(int)
    np.testing.assert_allclose(costs.sigmas[idx[1:-1]], levels[1:-1], rtol=1e-5)
    for i in range(1, steps - 1):
        below, above = idx[i + 1], idx[i - 1]
        others = np.arange(below + 1, above)
        values = costs.cost[others, above] + costs.cost[below, others]
        assert values.min() >= costs.cost[idx[i], above] + costs.cost[below, idx[i]], i
    edm = np.array(edm_levels(steps, 0.002, sigma_max))
    edm = np.where(np.isinf(edm), costs.sigmas[-1], edm)
    edm_idx = np.rint((np.log(edm) - u[0]) / (u[1] - u[0])).astype(int)
    assert costs.klub(idx) < costs.klub(edm_idx)


def test_ays_is_deterministic():
    model = ns.GaussianMixture.two_modes(d=4, p=0.7, m=1.0, sigma=0.5)
    interp = ns.Interpolant("ve", "linear", 4)
    a = make("ays", model, interp, 6, samples=16, grid=6, seed=1)
    b = make("ays", model, interp, 6, samples=16, grid=6, seed=1)
    np.testing.assert_array_equal(np.asarray(a.tau), np.asarray(b.tau))


class Shrink(ns.AbstractDenoiser):
    """A user's denoiser without a data law."""

    d: int = 3

    def denoise(self, c, x):
        return c.beta * x / (c.alpha_sq + c.beta**2)


@pytest.mark.parametrize("options,message", [
    (dict(steps=1), "steps must be an integer >= 2"),
    (dict(sigma_min=0.0), "sigma_min must be in"),
    (dict(sigma_max=0.001), "sigma_max must be greater than sigma_min"),
    (dict(samples=1), "samples must be an integer >= 2"),
    (dict(grid=1), "grid must be an integer >= 2"),
    (dict(sweeps=0), "sweeps must be an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(steps=40, grid=2), "grid is too coarse for steps = 40"),
])
def test_ays_bad_options_name_the_parameter(options, message):
    model = ns.GaussianMixture.two_modes(d=4, p=0.7, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", 4)
    options = dict(dict(steps=5), **options)
    steps = options.pop("steps")
    with pytest.raises(ValueError, match=message):
        ns.methods.ays(model, interp, steps, **options)


@pytest.mark.parametrize("model", [None, Shrink()])
def test_ays_needs_exact_data_samples(model):
    with pytest.raises(ValueError, match="method 'ays' needs exact data samples"):
        ns.methods.ays(model, ns.Interpolant("vp", "linear", 3), 5)


# ----------------------------------------------------------------------------- LD3
def gm_denoiser_y(y, sigma, means, weights, s):
    """D(y; σ) of a mixture of N(μ_k, s² I), in numpy float64."""
    v = s**2 + sigma**2
    logits = np.log(weights)[None, :] - ((y[:, None, :] - means[None]) ** 2).sum(-1) / (2 * v)
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return (post[:, :, None] * (s**2 * y[:, None, :] + sigma**2 * means[None]) / v).sum(axis=1)


def sigma_euler_numpy(x_start, levels, alpha0, model):
    """σ-space Euler written here in y = x/β from a finite σ_0 (VP linear: β = α0/(α0 + σ)):
    y ← D + (σ_{i+1}/σ_i)(y − D), the last step to σ = 0 returning D."""
    means, weights = np.asarray(model.means, np.float64), np.asarray(model.weights, np.float64)
    y = np.asarray(x_start, np.float64) * (alpha0 + levels[0]) / alpha0
    sigmas = np.r_[levels, 0.0]
    for i in range(levels.size):
        den = gm_denoiser_y(y, sigmas[i], means, weights, float(model.sigma))
        y = den + sigmas[i + 1] / sigmas[i] * (y - den)
    return y


D8, STEPS8 = 8, 6


@pytest.fixture(scope="module")
def mixture8():
    return (ns.GaussianMixture.two_modes(d=D8, p=0.8, m=1.0, sigma=0.5),
            ns.Interpolant("vp", "linear", D8))


def test_ld3_learned_levels_reduce_the_teacher_loss(mixture8):
    """Two-mode mixture, d = 8, N = 6, σ-space Euler: on 256 fresh starts (4 batches of the
    training shape) the plain distance to the 128-step teacher falls to below 60 % of EDM's (the
    levels LD3 starts from; measured 0.43-0.44 of it for training seeds 0-2)."""
    model, interp = mixture8
    fit = fit_ld3(model, interp, STEPS8, iterations=150, batch=64)
    assert fit.losses[-1] < 0.5 * fit.losses[0]
    teacher = ns.methods._levels.through_levels(interp, edm_levels(128, 0.002, 80.0))
    schedules = {name: ns.methods._levels.through_levels(interp, levels)
                 for name, levels in (("edm", fit.start), ("ld3", fit.levels))}
    sums = dict(edm=0.0, ld3=0.0)
    for batch in range(4):
        x = ns.sample_prior(interp, jax.random.key(100 + batch), 64, schedule=teacher)
        target = ns.solve(model, interp, teacher, x, steps=128, solver="sigma_euler").x
        for name, sched in schedules.items():
            out = ns.solve(model, interp, sched, x, steps=STEPS8, solver="sigma_euler").x
            sums[name] += float(jnp.mean((out - target) ** 2)) / 4
    assert sums["ld3"] < 0.6 * sums["edm"], sums
    sched = ns.methods.ld3(model, interp, STEPS8, iterations=150, batch=64)
    levels = np.asarray(interp.noise_ratio(sched, jnp.arange(STEPS8) / STEPS8))
    np.testing.assert_allclose(levels, fit.levels, rtol=1e-5)


@pytest.mark.parametrize("solver", ["sigma_euler",
                                    pytest.param("dpmpp_2m", marks=pytest.mark.slow)])
def test_ld3_gradient_matches_finite_differences(solver, x64):
    """The gradient that reaches the logits through the solver against central differences of
    the same loss (float64, h = 10⁻⁵: truncation O(h²) ≈ 10⁻¹⁰ relative)."""
    d, steps = 4, 5
    model = ns.GaussianMixture.two_modes(d=d, p=0.7, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", d)
    student = Student(model, interp, solver, jnp.log(jnp.asarray(80.0)),
                      jnp.log(jnp.asarray(0.002)), False)
    rng = np.random.default_rng(0)
    theta = jnp.asarray(logits_of(edm_levels(steps), math.log(80.0), math.log(0.002))
                        + 0.3 * rng.normal(size=steps - 1))
    x0 = jnp.asarray(rng.normal(size=(6, d)) * float(interp.alpha0 * 80.0 / (1.0 + 80.0)))
    target = jnp.asarray(rng.normal(size=(6, d)))

    def loss(t):
        return jnp.mean(student.losses(t, x0, target))

    grad = np.asarray(jax.grad(loss)(theta))
    h = 1e-5
    numeric = np.array([(float(loss(theta + h * e)) - float(loss(theta - h * e))) / (2 * h)
                        for e in np.eye(steps - 1)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9 * np.abs(numeric).max())
    assert np.abs(grad).max() > 1e-3  # the levels matter


def test_ld3_without_slack_is_the_plain_distance(mixture8):
    """slack = 0: the student starts at the teacher's starts, and the reported loss is the plain
    distance of the student's σ-Euler solve (written in numpy here) to the teacher. With a
    slack the starts move, inside their balls."""
    model, interp = mixture8
    fit = fit_ld3(model, interp, STEPS8, iterations=20, batch=64, slack=0.0)
    np.testing.assert_array_equal(np.asarray(fit.x_student), np.asarray(fit.x_T))
    out = sigma_euler_numpy(fit.x_T, fit.levels, 1.0, model)
    plain = np.mean((out - np.asarray(fit.target, np.float64)) ** 2)
    assert fit.loss == pytest.approx(plain, rel=1e-4)
    soft = fit_ld3(model, interp, STEPS8, iterations=20, batch=64, slack=0.05)
    gap = np.linalg.norm(np.asarray(soft.x_student - soft.x_T), axis=-1)
    size = np.linalg.norm(np.asarray(soft.x_T), axis=-1)
    assert np.all(gap <= 0.05 * size * (1 + 1e-5)) and np.any(gap > 0)


@pytest.mark.parametrize("options,message", [
    (dict(steps=1), "steps must be an integer >= 2"),
    (dict(solver="euler"), "solver must be one of 'sigma_euler', 'dpmpp_2m'"),
    (dict(teacher_steps=4), "teacher_steps must be an integer >= 5"),
    (dict(iterations=0), "iterations must be an integer >= 1"),
    (dict(lr=0.0), "lr must be in"),
    (dict(batch=0), "batch must be an integer >= 1"),
    (dict(slack=-0.1), r"slack must be in \[0, 1\)"),
    (dict(seed=1.5), "seed must be an integer >= 0"),
    (dict(sigma_min=-1.0), "sigma_min must be in"),
])
def test_ld3_bad_options_name_the_parameter(options, message, unchecked_types):
    model = ns.GaussianMixture.two_modes(d=4, p=0.7, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", 4)
    options = dict(dict(steps=5), **options)
    steps = options.pop("steps")
    with pytest.raises(ValueError, match=message):
        ns.methods.ld3(model, interp, steps, **options)


def test_ld3_needs_a_model():
    with pytest.raises(ValueError, match="method 'ld3' needs a model"):
        ns.methods.ld3(None, ns.Interpolant("vp", "linear", 3), 5)


def test_registry_names_both_methods():
    assert METHODS["ays"] is ns.methods.ays and METHODS["ld3"] is ns.methods.ld3
