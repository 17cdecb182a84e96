"""The hand-made laws of noise levels and the methods' common layer: each law's defining
equal increments, the trailing zero, the pure-noise start, configs and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import methods
from noisesched.experiments.config import ConfigError, from_mapping


def levels_of(schedule, interp):
    """σ_i = α/β of ``schedule`` at t_i = i/N, computed from τ (not from the method)."""
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 1.0, schedule.steps + 1, dtype=jnp.float64)
        return np.asarray(jax.vmap(lambda t: interp.noise_ratio(schedule, t))(ts))


@pytest.mark.parametrize("name,g", [
    ("edm", lambda s: s ** (1 / 7.0)),
    ("log_snr", np.log),
    ("arctan", np.arctan),
])
@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("ve", "trig")])
def test_equal_increments_of_the_defining_function(name, g, kind, shape, x64):
    interp = ns.Interpolant(kind, shape, 400)
    sched = methods.make(name, None, interp, 9, sigma_min=0.01, sigma_max=50.0)
    sigma = levels_of(sched, interp)
    assert sigma[-1] == 0.0 and sigma[0] == pytest.approx(50.0, rel=1e-12)
    assert sigma[-2] == pytest.approx(0.01, rel=1e-10)
    steps = np.diff(g(sigma[:-1]))
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-9)


def test_edm_levels_are_eq5_of_karras():
    i = np.arange(6)
    expected = (80 ** (1 / 7) + i / 5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(methods.edm_levels(6), expected, rtol=1e-12)


def test_pure_noise_start(x64):
    interp = ns.Interpolant("vp", "linear", 100)
    for name in ("edm", "log_snr", "arctan"):
        sched = methods.make(name, None, interp, 6, sigma_max=math.inf)
        sigma = levels_of(sched, interp)
        assert math.isinf(sigma[0]) and float(sched(0.0)) == 0.0, name
        assert np.all(np.diff(sigma[1:]) < 0) and sigma[-1] == 0.0
    # the arctangent law reaches atan ∞ = π/2 itself: equal angle steps from σ = ∞
    sched = methods.arctan(None, interp, 6, sigma_max=math.inf)
    angles = np.arctan(levels_of(sched, interp)[:-1])
    np.testing.assert_allclose(np.diff(angles), np.diff(angles).mean(), rtol=1e-9)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="nope"), "method must be one of"),
    (dict(steps=1), "steps must be an integer >= 2"),
    (dict(sigma_min=1.0, sigma_max=1.0), "sigma_max must be greater than sigma_min"),
    (dict(sigma_min=0.0), "sigma_min must be"),
    (dict(sigma_max=float("nan")), "sigma_max must be greater"),
    (dict(rho=0.0), "rho must be"),
    (dict(k=3.0), "option 'k' is not used by method 'edm'"),
])
def test_bad_input(kwargs, match):
    interp = ns.Interpolant("vp", "linear", 10)
    args = dict(name="edm", steps=5)
    args.update(kwargs)
    name, steps = args.pop("name"), args.pop("steps")
    with pytest.raises(ValueError, match=match):
        methods.make(name, None, interp, steps, **args)


def test_a_method_in_a_run_config():
    """``[schedule] name = "edm"`` is made for the config's model, d and N;
    ``sigma_max = "dimension_aware"`` is 100 m√d; the result is built once per config."""
    config = from_mapping({"name": "x", "model": {"name": "gm", "d": 400, "m": 2.0},
                           "schedule": {"name": "log_snr", "sigma_max": "dimension_aware"},
                           "solver": {"name": "dpmpp_2m", "steps": 7}})
    model, interp, sched = config.build()
    assert sched.steps == 7
    assert config.build()[2] is sched  # not made again
    with jax.enable_x64(True):
        sigma0 = float(interp.noise_ratio(sched, 0.0))
    assert sigma0 == pytest.approx(100 * 2.0 * 20.0, rel=1e-5)
    assert config.to_dict()["schedule"]["sigma_max"] == "dimension_aware"
    with pytest.raises(ConfigError, match="steps must be an integer >= 2"):
        from_mapping({"name": "x", "model": {"name": "gm", "d": 40},
                      "schedule": {"name": "edm"}, "solver": {"steps": 1}})
    with pytest.raises(ConfigError, match="sigma_max must be a number"):
        from_mapping({"name": "x", "model": {"name": "gm", "d": 40},
                      "schedule": {"name": "edm", "sigma_max": "large"}})


def test_a_method_is_made_for_the_configs_sampler(monkeypatch):
    seen = {}

    def spy(model, interp, steps, *, solver="sigma_euler"):
        seen["solver"] = solver
        return methods.edm(model, interp, steps)

    monkeypatch.setitem(methods.METHODS, "spy", spy)
    for name, expected in (("dpmpp_2m", "dpmpp_2m"), ("heun", "sigma_euler")):
        from_mapping({"name": "x", "model": {"name": "gm", "d": 40},
                      "schedule": {"name": "spy"}, "solver": {"name": name, "steps": 5}})
        assert seen["solver"] == expected
