import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules

GRID = jnp.linspace(0.0, 1.0, 101)


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("shape", ["linear", "trig"])
def test_coefficients_closed_form(kind, shape, x64):
    d = 400
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    a0 = 1.0 if kind == "vp" else math.sqrt(d)
    assert interp.alpha0 == pytest.approx(a0)
    sched = schedules.vp_dilated(d, 3.0)
    t = jnp.array([0.0, 0.2, 0.6, 0.9], dtype=jnp.float64)
    c = jax.vmap(lambda s: interp.coefficients(sched, s))(t)
    tau, dtau = jax.vmap(lambda s: schedules.value_and_derivative(sched, s))(t)
    if shape == "linear":
        alpha, dalpha = a0 * (1 - tau), -a0 * dtau
    else:
        alpha = a0 * jnp.sqrt(1 - tau**2)
        dalpha = -a0 * tau * dtau / jnp.sqrt(1 - tau**2)
    np.testing.assert_allclose(c.alpha, alpha, rtol=1e-12)
    np.testing.assert_allclose(c.beta, tau, rtol=1e-12)
    np.testing.assert_allclose(c.dbeta, dtau, rtol=1e-12)
    np.testing.assert_allclose(c.alpha_sq, alpha**2, rtol=1e-12)
    np.testing.assert_allclose(c.alpha_dalpha, alpha * dalpha, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.dalpha, dalpha, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("shape", ["linear", "trig"])
@pytest.mark.filterwarnings("ignore::noisesched.schedules.ScheduleKindWarning")  # every pair
@pytest.mark.parametrize("name", schedules.NAMES)
def test_finite_on_the_whole_grid(kind, shape, name):
    """α, β, β̇, α², α α̇ are finite at t = 0, at t = 1 and in between (float32)."""
    interp = ns.Interpolant(kind=kind, shape=shape, d=10_000)
    sched = schedules.make(name, interp)
    c = jax.jit(jax.vmap(lambda s: interp.coefficients(sched, s)))(GRID)
    for field in ("alpha", "beta", "dbeta", "alpha_sq", "alpha_dalpha"):
        assert bool(jnp.all(jnp.isfinite(getattr(c, field)))), field
    assert float(c.alpha[0]) == pytest.approx(interp.alpha0, rel=1e-6)
    # The ends hold to float32 rounding (XLA may contract a*b+c into one fused operation).
    assert abs(float(c.alpha[-1])) <= 1e-6 * interp.alpha0
    assert float(c.beta[-1]) == pytest.approx(1.0, abs=1e-6)


def test_gradient_through_coefficients_is_finite():
    interp = ns.Interpolant(kind="vp", shape="trig", d=100)

    def total(k):
        sched = schedules.VPDilated(d=100, k=k)
        c = jax.vmap(lambda s: interp.coefficients(sched, s))(GRID)
        return jnp.sum(c.alpha_sq + c.alpha_dalpha + c.dbeta)

    g = jax.grad(total)(3.0)
    assert bool(jnp.isfinite(g)) and float(g) != 0.0


def test_noise_ratio_inverts_tau_of_noise_ratio(x64):
    for shape in ("linear", "trig"):
        interp = ns.Interpolant(kind="ve", shape=shape, d=50)
        sched = schedules.constant()
        t = jnp.linspace(0.05, 0.95, 7, dtype=jnp.float64)
        sigma = jax.vmap(interp.noise_ratio, in_axes=(None, 0))(sched, t)
        np.testing.assert_allclose(interp.tau_of_noise_ratio(sigma), t, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="vpp", shape="linear", d=3), "kind must be one of 'vp', 've'; got 'vpp'"),
        (dict(kind="vp", shape="cos", d=3), "shape must be one of"),
        (dict(kind="vp", shape="linear", d=0), "d must be an integer >= 1; got 0"),
        (dict(kind="vp", shape="linear", d=2.5), "d must be an integer"),
    ],
)
def test_bad_interpolant(kwargs, match, unchecked_types):
    with pytest.raises(ValueError, match=match):
        ns.Interpolant(**kwargs)
