import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules

T = jnp.linspace(0.0, 1.0, 1001)


def all_schedules(d=400, k=3.0):
    out = {}
    for kind in ("vp", "ve"):
        for shape in ("linear", "trig"):
            interp = ns.Interpolant(kind=kind, shape=shape, d=d)
            for name in schedules.NAMES:
                out[f"{kind}-{shape}-{name}"] = schedules.make(name, interp, k=k)
    return out


@pytest.mark.parametrize("name,sched", all_schedules().items())
def test_end_values_and_monotone(name, sched, x64):
    tau = jax.vmap(sched)(jnp.linspace(0.0, 1.0, 1001, dtype=jnp.float64))
    assert abs(float(tau[0])) < 1e-12 and abs(float(tau[-1]) - 1.0) < 1e-12
    assert bool(jnp.all(jnp.diff(tau) >= -1e-15)), name
    assert bool(jnp.all(jnp.isfinite(tau)))


@pytest.mark.parametrize("name,sched", all_schedules().items())
def test_derivative_matches_finite_differences(name, sched, x64):
    t = jnp.array([0.1, 0.3, 0.45, 0.55, 0.7, 0.9], dtype=jnp.float64)
    _, dtau = jax.vmap(lambda s: schedules.value_and_derivative(sched, s))(t)
    h = 1e-6
    fd = (jax.vmap(sched)(t + h) - jax.vmap(sched)(t - h)) / (2 * h)
    np.testing.assert_allclose(dtau, fd, rtol=1e-6, atol=1e-8)


def test_dilated_closed_forms():
    d, k = 10_000, 3.0
    kappa = k / math.sqrt(d)
    vp, ve = schedules.vp_dilated(d, k), schedules.ve_dilated(d, k)
    assert float(vp(0.25)) == pytest.approx(0.5 * kappa)
    assert float(vp(0.5)) == pytest.approx(kappa)
    assert float(vp(0.75)) == pytest.approx(kappa + 0.5 * (1 - kappa))
    # VE-dilated runs α = √d (1 − τ) from √d to k on the first half, k to 0 on the second.
    interp = ns.Interpolant(kind="ve", shape="linear", d=d)
    assert float(interp.alpha_of_tau(ve(0.5))) == pytest.approx(k, rel=1e-4)
    assert float(interp.alpha_of_tau(ve(0.75))) == pytest.approx(k / 2, rel=1e-3)
    trig = schedules.ve_dilated_trig(d, k)
    interp_t = ns.Interpolant(kind="ve", shape="trig", d=d)
    for t in (0.5, 0.6, 0.8):  # α = 2k(1 − t) on the second half
        assert float(interp_t.alpha_of_tau(trig(t))) == pytest.approx(2 * k * (1 - t), rel=1e-3)


def test_cosine_vp_trig_is_sine(x64):
    sched = schedules.cosine(ns.Interpolant(kind="vp", shape="trig", d=10))
    t = jnp.linspace(0, 1, 11, dtype=jnp.float64)
    np.testing.assert_allclose(jax.vmap(sched)(t), jnp.sin(0.5 * jnp.pi * t), atol=1e-12)


def test_karras_noise_levels_follow_rho_law(x64):
    interp = ns.Interpolant(kind="vp", shape="linear", d=10)
    sched = schedules.karras(interp, sigma_min=0.01, sigma_max=50.0, rho=7.0)
    t = jnp.linspace(0.0, 1.0, 21, dtype=jnp.float64)
    # Undo the affine pinning to recover τ_K, then σ = α/β must follow the ρ-interpolation.
    tau0, tau1 = 1 / (1 + 50.0), 1 / (1 + 0.01)
    tau_k = tau0 + jax.vmap(sched)(t) * (tau1 - tau0)
    sigma = (1 - tau_k) / tau_k
    expected = (50.0 ** (1 / 7) + t * (0.01 ** (1 / 7) - 50.0 ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigma, expected, rtol=1e-10)


def test_jit_vmap_grad_in_parameters():
    def loss(k):
        sched = ns.schedules.VPDilated(d=100, k=k)
        return jnp.sum(jax.vmap(sched)(T) ** 2)

    g = jax.jit(jax.grad(loss))(3.0)
    h = 1e-3
    fd = (loss(3.0 + h) - loss(3.0 - h)) / (2 * h)
    assert float(g) == pytest.approx(float(fd), rel=1e-3)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: schedules.vp_dilated(100, 0.0), r"k must be in \(0, 10\)"),
        (lambda: schedules.vp_dilated(100, 10.0), r"k must be in \(0, 10\)"),
        (lambda: schedules.ve_dilated(0, 3.0), r"d must be an integer >= 1"),
        (lambda: schedules.ve_dilated(100, float("nan")), "k must be a real number; got nan"),
        (lambda: schedules.karras(ns.Interpolant("vp", "linear", 4), rho=-1.0), "rho"),
        (lambda: schedules.karras(ns.Interpolant("vp", "linear", 4), sigma_max=0.001),
         "sigma_max"),
        (lambda: schedules.make("vp_dilatd", ns.Interpolant("vp", "linear", 4)),
         "did you mean 'vp_dilated'"),
        (lambda: schedules.make("constant", ns.Interpolant("vp", "linear", 4), rho=2.0),
         "not used by schedule 'constant'"),
    ],
)
def test_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("name,sched", all_schedules().items())
def test_complement_is_one_minus_tau(name, sched, x64):
    t = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    np.testing.assert_allclose(jax.vmap(sched.complement)(t), 1.0 - jax.vmap(sched)(t),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,sched", all_schedules(d=10_000).items())
def test_complement_keeps_relative_precision_near_the_data_in_float32(name, sched):
    """α ∝ 1 − τ near t = 1: float32 must keep its relative digits where τ rounds to 1."""
    t32 = jnp.array([0.99, 0.999, 0.9999], dtype=jnp.float32)
    got = np.asarray(jax.vmap(sched.complement)(t32), dtype=np.float64)
    with jax.enable_x64(True):
        ref = np.asarray(jax.vmap(sched.complement)(jnp.asarray(np.asarray(t32), jnp.float64)))
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def _levels_through_tau(sched, interp, sigma_min, sigma_max, t):
    """The noise levels σ_K(t) of a law of noise levels, recovered from the schedule's τ by
    undoing the affine pinning and inverting the interpolant's α/β (independent of the
    schedule's own level function)."""
    a0 = interp.alpha0
    if interp.shape == "linear":
        tau0, tau1 = a0 / (a0 + sigma_max), a0 / (a0 + sigma_min)
    else:
        tau0, tau1 = a0 / math.hypot(a0, sigma_max), a0 / math.hypot(a0, sigma_min)
    tau_k = tau0 + np.asarray(jax.vmap(sched)(t)) * (tau1 - tau0)
    return np.asarray(jax.vmap(interp.alpha_of_tau)(tau_k)) / tau_k


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("ve", "trig")])
def test_log_snr_uniform_has_equal_log_snr_steps(x64, kind, shape):
    """DPM-Solver's default: equal increments of log-SNR = −2 log σ at uniform t."""
    interp = ns.Interpolant(kind=kind, shape=shape, d=16)
    sched = schedules.make("log_snr_uniform", interp, sigma_min=0.01, sigma_max=50.0)
    t = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float64)
    log_snr = -2 * np.log(_levels_through_tau(sched, interp, 0.01, 50.0, t))
    np.testing.assert_allclose(np.diff(log_snr), np.full(10, 2 * math.log(5000.0) / 10),
                               rtol=1e-8)
    assert float(sched(0.0)) == 0.0 and float(sched(1.0)) == 1.0


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("ve", "linear"), ("vp", "trig")])
def test_arctan_levels_have_equal_angle_steps(x64, kind, shape):
    """The "KL-optimal" law: equal increments of atan σ at uniform t; for VP-trig, where
    σ = cot θ for the path angle θ, τ = sin θ moves at constant angular speed between its
    pinned ends."""
    interp = ns.Interpolant(kind=kind, shape=shape, d=16)
    sched = schedules.make("arctan_levels", interp, sigma_min=0.002, sigma_max=80.0)
    t = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float64)
    angles = np.arctan(_levels_through_tau(sched, interp, 0.002, 80.0, t))
    np.testing.assert_allclose(np.diff(angles),
                               np.full(10, (math.atan(0.002) - math.atan(80.0)) / 10), rtol=1e-8)


def test_noise_level_laws_refuse_bad_ranges():
    interp = ns.Interpolant("vp", "linear", 4)
    for name in ("karras", "log_snr_uniform", "arctan_levels"):
        with pytest.raises(ValueError, match=r"sigma_max must be in \(1, inf\); got 1.0"):
            schedules.make(name, interp, sigma_min=1.0, sigma_max=1.0)
        with pytest.raises(ValueError, match="sigma_min"):
            schedules.make(name, interp, sigma_min=0.0)
