"""Samplers in noise level (σ-space Euler, DPM-Solver++(2M)) and schedules through noise levels
(``KnotSchedule``), against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import theory
from noisesched.schedules import KnotSchedule


def karras_levels(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """EDM's N levels and the trailing zero, written out here."""
    i = np.arange(steps)
    top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return np.r_[(top + i / (steps - 1) * (bottom - top)) ** rho, 0.0]


def gm_denoiser_y(y, sigma, means, weights, s):
    """D(y; σ) = E[x1 | x1 + σ z = y] of a mixture of N(μ_k, s² I), in numpy float64."""
    v = s**2 + sigma**2
    logits = np.log(weights)[None, :] - ((y[:, None, :] - means[None]) ** 2).sum(-1) / (2 * v)
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    component_means = (s**2 * y[:, None, :] + sigma**2 * means[None]) / v
    return (post[:, :, None] * component_means).sum(axis=1)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_sigma_euler_is_euler_in_t_for_the_linear_shape_only(kind, x64):
    """Spec §7: y ← y + (σ' − σ)(y − D)/σ coincides with Euler in t on x for α = α0(1 − τ)."""
    d = 40
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    for shape, same in (("linear", True), ("trig", False)):
        interp = ns.Interpolant(kind, shape, d)
        sched = ns.schedules.make(f"{kind}_dilated", interp)
        x0 = ns.sample_prior(interp, jax.random.key(0), 6, dtype=jnp.float64)
        euler = ns.solve(model, interp, sched, x0, steps=16, solver="euler", method="scan").x
        sigma = ns.solve(model, interp, sched, x0, steps=16, solver="sigma_euler",
                         method="scan").x
        gap = float(jnp.max(jnp.abs(euler - sigma)))
        assert (gap < 1e-12) if same else (gap > 1e-3), (shape, gap)


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
def test_scan_and_diffrax_paths_agree(solver, x64):
    d = 30
    model = ns.GaussianMixture.two_modes(d=d, p=0.7, m=1.0, sigma=0.4)
    interp = ns.Interpolant("vp", "trig", d)
    sched = ns.schedules.make("vp_dilated", interp)
    x0 = ns.sample_prior(interp, jax.random.key(3), 5, dtype=jnp.float64)
    a = ns.solve(model, interp, sched, x0, steps=12, solver=solver, method="scan")
    b = ns.solve(model, interp, sched, x0, steps=12, solver=solver, method="diffrax")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
def test_numpy_sigma_space_sampler_from_a_finite_sigma_max(solver, x64):
    """k-diffusion's loops written here in y = x/β on the EDM list (σ_max = 80, a truncated
    start y_0 = σ_max z) reproduce noisesched's solve of the same schedule, after the β
    scaling, for a K = 3 mixture (no reduction involved)."""
    d, steps = 6, 12
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, d))
    weights = np.array([0.5, 0.3, 0.2])
    s = 0.3
    model = ns.GaussianMixture(means=means, weights=weights, sigma=s)
    interp = ns.Interpolant("ve", "trig", d)
    sigmas = karras_levels(steps)
    sched = KnotSchedule.from_noise_levels(interp, sigmas)
    z = rng.normal(size=(7, d))
    x0 = jnp.asarray(float(interp.prior_scale(sched)) * z)
    x = np.asarray(ns.solve(model, interp, sched, x0, steps=steps, solver=solver).x)

    y = sigmas[0] * z
    old = None
    for i in range(steps):
        den = gm_denoiser_y(y, sigmas[i], means, weights, s)
        if solver == "dpmpp_2m" and old is not None and sigmas[i + 1] > 0:
            h = np.log(sigmas[i] / sigmas[i + 1])
            r = np.log(sigmas[i - 1] / sigmas[i]) / h
            target = (1 + 1 / (2 * r)) * den - old / (2 * r)
        else:
            target = den
        y = target + sigmas[i + 1] / sigmas[i] * (y - target)
        old = den
    np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10)  # β_N = 1


@pytest.mark.parametrize("solver,order", [("sigma_euler", 1), ("dpmpp_2m", 2)])
def test_convergence_order_in_log_snr(solver, order, x64):
    """On N(0, diag s²) the σ-space flow is y(σ) = y_0 √((s² + σ²)/(s² + σ_max²)): the error of
    an N-step solve on levels uniform in log σ falls as N^−order (σ_min = 10⁻⁴ keeps the last,
    first-order step to σ = 0 below the error)."""
    scales = np.array([0.3, 1.0, 2.5])
    model = ns.Gaussian(scales)
    interp = ns.Interpolant("vp", "linear", 3)
    sigma_max, sigma_min = 80.0, 1e-4
    errors, counts = [], [16, 32, 64, 128]
    for n in counts:
        levels = np.geomspace(sigma_max, sigma_min, n)
        sched = KnotSchedule.from_noise_levels(interp, np.r_[levels, 0.0])
        x0 = jnp.full((1, 3), float(interp.prior_scale(sched)))
        x = np.asarray(ns.solve(model, interp, sched, x0, steps=n, solver=solver).x[0])
        exact = sigma_max * scales / np.sqrt(scales**2 + sigma_max**2)
        errors.append(np.max(np.abs(x - exact)))
    slope = np.polyfit(np.log(counts), np.log(errors), 1)[0]
    assert abs(slope + order) < 0.15, (errors, slope)


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
@pytest.mark.parametrize("start", ["pure_noise", "sigma_max"])
def test_oracle_matches_monte_carlo(solver, start, x64):
    """The two-mode oracle under noise-level samplers against a full solve: mode weight within
    4 s.e. of n = 4000 samples, within-mode variance within 4 s.e."""
    d, steps, n = 200, 10, 4000
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "trig", d)
    sigmas = karras_levels(steps, sigma_max=30.0)
    if start == "pure_noise":
        sigmas[0] = np.inf
    sched = KnotSchedule.from_noise_levels(interp, sigmas)
    exact = model.exact_metrics(interp, sched, steps, solver)
    x = ns.sample(model, interp, sched, jax.random.key(5), n, steps=steps, solver=solver)
    mu = np.asarray(model.means[0])
    proj = np.asarray(x) @ mu
    plus = proj > 0
    weight = plus.mean()
    assert abs(weight - exact["mode_weight_exact"]) < 4 * np.sqrt(weight * (1 - weight) / n)
    rest = np.asarray(x) - np.outer(proj / (mu @ mu), mu)
    per_row = (rest**2).sum(axis=1) / (d - 1)
    assert abs(per_row.mean() - exact["within_mode_var_exact"]) < 4 * per_row.std() / np.sqrt(n)


def test_knot_schedule_hits_its_noise_levels(x64):
    interp = ns.Interpolant("ve", "trig", 100)
    sigmas = karras_levels(8)
    sched = KnotSchedule.from_noise_levels(interp, sigmas)
    ts = jnp.linspace(0.0, 1.0, 9)
    got = np.asarray(jax.vmap(lambda t: interp.noise_ratio(sched, t))(ts))
    np.testing.assert_allclose(got, sigmas, rtol=1e-12)
    # the truncated start: X_0 = α(0) z with α(0)/β(0) = σ_max
    tau0 = float(sched(0.0))
    assert float(interp.prior_scale(sched)) == pytest.approx(80.0 * tau0, rel=1e-12)
    pure = KnotSchedule.from_noise_levels(interp, np.r_[np.inf, sigmas[1:]])
    assert float(pure(0.0)) == 0.0 and float(interp.prior_scale(pure)) == interp.alpha0
    assert sched.jump_times == tuple(i / 8 for i in range(1, 8))


@pytest.mark.parametrize("sigmas,match", [
    ([80.0, 0.0], "N >= 2"),
    ([80.0, 1.0, 0.5], "end with 0"),
    ([80.0, 90.0, 0.0], "decrease strictly"),
    ([80.0, np.inf, 0.0], "decrease strictly"),
    ([[80.0, 1.0, 0.0]], "1-D"),
])
def test_knot_schedule_rejects_bad_levels(sigmas, match):
    interp = ns.Interpolant("vp", "linear", 10)
    with pytest.raises(ValueError, match=match):
        KnotSchedule.from_noise_levels(interp, sigmas)


def test_noise_level_solvers_reject_final_euler_and_adaptive():
    d = 8
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("vp", "linear", d)
    sched = ns.schedules.constant()
    x0 = ns.sample_prior(interp, jax.random.key(0), 2)
    with pytest.raises(ValueError, match="final_step='euler' does not apply"):
        ns.solve(model, interp, sched, x0, steps=4, solver="dpmpp_2m", final_step="euler")
    with pytest.raises(ValueError, match="solver \\(adaptive\\)"):
        ns.solve(model, interp, sched, x0, steps=4, solver="sigma_euler", adaptive=True)


def test_noise_level_reduction_is_exact(x64):
    """X_N = M_N μ + y_N x_⊥(0) under both noise-level samplers (cf. the t-space solvers)."""
    d, steps = 120, 9
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant("ve", "linear", d)
    sched = ns.schedules.make("ve_dilated", interp)
    x0 = ns.sample_prior(interp, jax.random.key(2), 6, dtype=jnp.float64)
    mu = model.means[0]
    m0 = x0 @ mu / (mu @ mu)
    for solver in ("sigma_euler", "dpmpp_2m"):
        x = ns.solve(model, interp, sched, x0, steps=steps, solver=solver, method="scan").x
        m_n, y_n = theory.reduced_solve(model, interp, sched, m0, steps, solver)
        recon = m_n[:, None] * mu + y_n * (x0 - m0[:, None] * mu)
        np.testing.assert_allclose(recon, x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
def test_oracle_gradient_matches_finite_differences(solver, x64):
    """Schedules can be learned through the oracle under the noise-level samplers: the
    derivative of the exact mode weight in the dilation k against central differences."""
    red = theory.TwoModeReduction.two_modes(d=1000)
    interp = ns.Interpolant("vp", "linear", 1000)

    def weight(k):
        sched = ns.schedules.VPDilated(d=1000, k=k)
        return theory.gm_oracle(red, interp, sched, 10, solver)["mode_weight"]

    h = 1e-5
    value = jax.jit(weight)  # one compilation for both evaluations
    numeric = (value(3.0 + h) - value(3.0 - h)) / (2 * h)
    assert float(jax.jit(jax.grad(weight))(3.0)) == pytest.approx(float(numeric), rel=1e-6)
