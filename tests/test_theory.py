import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import theory


def setup(d, kind, shape, name, p=0.8, sigma=0.5):
    model = ns.GaussianMixture.two_modes(d=d, p=p, m=1.0, sigma=sigma)
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    return model, interp, ns.schedules.make(name, interp, k=3.0)


@pytest.mark.parametrize("solver", ["euler", "heun"])
# one step count per solver and case by default; the others on demand (-m slow)
@pytest.mark.parametrize("steps", [pytest.param(5, marks=pytest.mark.slow), 8,
                                   pytest.param(33, marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind,shape,name", [("vp", "linear", "vp_dilated"),
                                             ("ve", "linear", "ve_dilated"),
                                             ("vp", "trig", "constant"),
                                             ("ve", "linear", "constant")])
def test_full_solve_equals_reduction(solver, steps, kind, shape, name, x64):
    """X_N = M_N μ + y_N x_⊥(0) to 1e-6 relative, for the same grid and solver."""
    d = 300
    model, interp, sched = setup(d, kind, shape, name)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(1), 12, dtype=jnp.float64)
    x = ns.solve(model, interp, sched, x0, steps=steps, solver=solver).x
    mu = model.means[0]
    m0 = x0 @ mu / (mu @ mu)
    m_n, y_n = theory.reduced_solve(model, interp, sched, m0, steps, solver)
    recon = m_n[:, None] * mu + y_n * (x0 - m0[:, None] * mu)
    np.testing.assert_allclose(recon, x, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(x))))


def test_final_euler_rule_is_reproduced(x64):
    model, interp, sched = setup(50, "vp", "linear", "vp_dilated")
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 4, dtype=jnp.float64)
    x = ns.solve(model, interp, sched, x0, steps=6, solver="heun", final_step="euler").x
    mu = model.means[0]
    m0 = x0 @ mu / (mu @ mu)
    m_n, _ = theory.reduced_solve(model, interp, sched, m0, 6, "heun", final_step="euler")
    np.testing.assert_allclose(x @ mu / (mu @ mu), m_n, rtol=1e-10)


@pytest.mark.parametrize("kind,name", [("vp", "constant"), ("ve", "constant"),
                                       ("vp", "vp_dilated")])
def test_oracle_agrees_with_monte_carlo(kind, name):
    d, n, steps = 400, 20_000, 6
    model, interp, sched = setup(d, kind, "linear", name)
    x = ns.sample(model, interp, sched, jax.random.PRNGKey(3), n, steps=steps)
    with jax.enable_x64(True):
        exact = theory.gm_oracle(setup(d, kind, "linear", name)[0], interp, sched, steps)
    p = float(exact["mode_weight"])
    assert bool(exact["monotone"])
    assert abs(float(ns.metrics.mode_weight(model, x)) - p) < 4 * math.sqrt(p * (1 - p) / n)
    var = float(exact["within_mode_var"])
    # |x_⊥|²/(var (d−1)) ~ χ²_{d−1}/(d−1) per sample: relative sd √(2/((d−1) n)) for the mean
    assert abs(float(ns.metrics.within_mode_variance(model, x)) / var - 1) < 4 * math.sqrt(
        2 / ((d - 1) * n))


def test_oracle_is_one_compilation_for_every_step_count(x64):
    model, interp, sched = setup(10_000, "vp", "linear", "constant")
    steps = jnp.array([10, 100, 1000])
    out = jax.jit(jax.vmap(lambda n: theory.gm_oracle(model, interp, sched, n)))(steps)
    w = np.asarray(out["mode_weight"])
    assert w[0] > w[1] > w[2] > 0.8  # VP-constant: too many samples in the majority mode
    np.testing.assert_allclose(np.asarray(out["within_mode_var"])[-1], 0.25, rtol=0.01)


def test_oracle_in_a_billion_dimensions(x64):
    """The reduction costs O(N), whatever d: constant VP at d = 10^9 sends p̂ to 1, dilated VP
    keeps it at p."""
    d = 10**9
    model = theory.TwoModeReduction.two_modes(d)  # the means would take 16 GB
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    const = theory.gm_oracle(model, interp, ns.schedules.constant(), 100)
    dilated = theory.gm_oracle(model, interp, ns.schedules.vp_dilated(d), 100)
    assert float(const["mode_weight"]) > 0.999
    assert abs(float(dilated["mode_weight"]) - 0.8) < 0.01


def test_reduction_needs_symmetric_modes():
    model = ns.GaussianMixture([0.5, 0.5], jnp.array([[1.0, 0.0], [0.0, 1.0]]), 0.5)
    interp = ns.Interpolant(kind="vp", shape="linear", d=2)
    with pytest.raises(ValueError, match="two components with means μ and −μ"):
        theory.gm_oracle(model, interp, ns.schedules.constant(), 10)
    with pytest.raises(ValueError, match="solver must be one of 'euler', 'heun'"):
        theory.reduced_solve(ns.GaussianMixture.two_modes(d=2), interp, ns.schedules.constant(),
                             jnp.zeros(2), 10, solver="rk4")


def test_parameter_form_of_the_reduction_matches_the_model(x64):
    model, interp, sched = setup(500, "ve", "linear", "ve_dilated", p=0.7)
    a = theory.gm_oracle(model, interp, sched, 17)
    b = theory.gm_oracle(theory.TwoModeReduction.two_modes(500, p=0.7), interp, sched, 17)
    for key in ("mode_weight", "within_mode_var"):
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-12)
