"""Property-based tests (hypothesis): schedules, drifts, metrics and configs over their whole
valid parameter ranges, not a few hand-picked points."""

import math
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import noisesched as ns
from noisesched.experiments import config as cfg
from noisesched.learning import NoiseRatioKnots, PiecewiseLinear, SigmoidSum

# every example compiles a little; keep the count modest and the clock out of it
# (HYPOTHESIS_PROFILE=explore: 20 times as many, drawn afresh)
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1
FEW = settings(max_examples=25 * SCALE, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=300 * SCALE, deadline=None)
GRID = np.linspace(0.0, 1.0, 513)


def dims():
    return st.integers(min_value=4, max_value=10**8)


class Recipe(NamedTuple):
    """What a strategy draws: a constructor and its arguments, built in the test itself (JAX
    work inside a strategy would run while hypothesis is drawing), shown as such on failure."""

    make: Callable[..., Any]
    kwargs: dict[str, Any]

    def build(self):
        kwargs = {k: v.build() if isinstance(v, Recipe) else v for k, v in self.kwargs.items()}
        return self.make(**kwargs)


def _interpolant(kind, shape, d):
    return Recipe(ns.Interpolant, {"kind": kind, "shape": shape, "d": d})


@st.composite
def dilated(draw):
    d = draw(dims())
    k = draw(st.floats(min_value=1e-3, max_value=0.999, exclude_max=True)) * math.sqrt(d)
    name = draw(st.sampled_from(["vp_dilated", "ve_dilated", "ve_dilated_trig"]))
    return Recipe(getattr(ns.schedules, name), {"d": d, "k": k})


def _vector(values, size):
    return st.lists(values, min_size=size, max_size=size).map(np.asarray)


@st.composite
def any_schedule(draw):
    interp = _interpolant(draw(st.sampled_from(["vp", "ve"])),
                          draw(st.sampled_from(["linear", "trig"])), draw(dims()))
    family = draw(st.sampled_from(["constant", "dilated", "cosine", "karras", "piecewise",
                                   "sigmoid", "knots"]))
    if family == "constant":
        return Recipe(ns.schedules.constant, {})
    if family == "dilated":
        return draw(dilated())
    if family == "cosine":
        return Recipe(ns.schedules.cosine, {"interpolant": interp,
                                            "offset": draw(st.floats(0.0, 0.5))})
    if family == "karras":
        lo = draw(st.floats(1e-4, 1.0))
        return Recipe(ns.schedules.karras, {
            "interpolant": interp, "sigma_min": lo, "sigma_max": lo * draw(st.floats(2.0, 1e5)),
            "rho": draw(st.floats(0.5, 12.0))})
    pieces = draw(st.integers(1, 12))
    values = st.floats(-8.0, 8.0)
    if family == "piecewise":
        return Recipe(PiecewiseLinear, {"logits": draw(_vector(values, pieces))})
    if family == "sigmoid":
        k = draw(st.integers(1, 4))
        return Recipe(SigmoidSum, {"logits": draw(_vector(values, k + 1)),
                                   "centers": draw(_vector(st.floats(0.0, 1.0), k)),
                                   "log_widths": draw(_vector(st.floats(-5.0, 1.0), k))})
    return Recipe(NoiseRatioKnots, {"start": draw(st.floats(-3.0, 4.0)),
                                    "decrements": draw(_vector(values, pieces)),
                                    "interpolant": interp})


@eqx.filter_jit
def _on_grid(schedule, t):
    return jax.vmap(schedule)(t), jax.vmap(schedule.complement)(t)


@FEW
@given(any_schedule())
def test_every_schedule_is_monotone_with_the_right_ends(recipe):
    with jax.enable_x64(True):
        schedule = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64)
                                if eqx.is_inexact_array(a) else a, recipe.build())
        tau, comp = (np.asarray(v) for v in _on_grid(schedule, jnp.asarray(GRID)))
    assert np.all(np.isfinite(tau)) and np.all(np.isfinite(comp))
    assert tau[0] == pytest.approx(0.0, abs=1e-12) and tau[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(tau) >= -1e-12), "τ decreases"
    assert np.all((tau >= -1e-12) & (tau <= 1 + 1e-12))
    np.testing.assert_allclose(comp, 1.0 - tau, atol=1e-9)


@st.composite
def model_and_interpolant(draw):
    d = draw(st.sampled_from([2, 16, 300, 20_000]))  # few shapes: each compiles once
    kind = draw(st.sampled_from(["vp", "ve"]))
    interp = _interpolant(kind, draw(st.sampled_from(["linear", "trig"])), d)
    if draw(st.booleans()):
        model = Recipe(ns.GaussianMixture.two_modes, {
            "d": d, "p": draw(st.floats(0.01, 0.99)), "m": draw(st.floats(0.05, 5.0)),
            "sigma": draw(st.floats(0.05, 3.0))})
    else:
        model = Recipe(ns.CurieWeiss, {"d": d, "beta": draw(st.floats(0.1, 5.0)),
                                       "h": draw(st.floats(-2.0, 2.0))})
    schedule = Recipe(ns.schedules.constant, {})
    if d >= 16 and draw(st.booleans()):
        name = "vp_dilated" if kind == "vp" else "ve_dilated"
        schedule = Recipe(getattr(ns.schedules, name),
                          {"d": d, "k": draw(st.floats(0.5, 0.9)) * math.sqrt(d)})
    return model, interp, schedule


@eqx.filter_jit
def _drift_along_the_path(model, interp, schedule, ts, z, x1):
    def at(t):
        c = interp.coefficients(schedule, t)
        return model.drift(interp, schedule, t, c.alpha * z + c.beta * x1)

    return jax.vmap(at)(ts)


@FEW
@given(model_and_interpolant(), st.integers(1, 200), st.integers(0, 2**31 - 1))
def test_drift_is_finite_at_every_grid_time(case, steps, seed):
    """float32, on states of the interpolant itself, at t_i = i/N for i < N (and i = N where the
    model is not singular at the data)."""
    model, interp, schedule = (recipe.build() for recipe in case)
    key_z, key_x = jax.random.split(jax.random.PRNGKey(seed))
    z = jax.random.normal(key_z, (3, model.d))
    x1 = model.sample(key_x, 3)
    last = steps if not model.singular_at_data else steps - 1
    ts = np.minimum(np.arange(201), last) / steps  # t_0 … t_last, padded to one shape
    # parameters as arrays, so that new values do not compile again
    model, schedule = jax.tree.map(lambda a: jnp.asarray(a) if isinstance(a, float) else a,
                                   (model, schedule))
    b = _drift_along_the_path(model, interp, schedule, jnp.asarray(ts, jnp.float32), z, x1)
    assert bool(jnp.all(jnp.isfinite(b)))


@st.composite
def batch(draw):
    # few distinct shapes (each compiles the metrics once); the data and the order vary freely
    n = draw(st.sampled_from([7, 40]))
    d = draw(st.sampled_from([3, 24]))
    seed = draw(st.integers(0, 2**31 - 1))
    cw = draw(st.booleans())
    return n, d, seed, cw


@FEW
@given(batch(), st.randoms(use_true_random=False))
def test_metrics_do_not_depend_on_the_order_of_samples(case, random):
    n, d, seed, cw = case
    with jax.enable_x64(True):
        if cw:
            model = ns.CurieWeiss(d=d, beta=2.0, h=0.3)
        else:
            model = ns.GaussianMixture.two_modes(d=d, p=0.7, sigma=0.5)
        x = np.asarray(model.sample(jax.random.PRNGKey(seed), n)) + (
            0.1 * np.asarray(jax.random.normal(jax.random.PRNGKey(seed + 1), (n, d))))
        order = list(range(n))
        random.shuffle(order)
        a = ns.metrics.summary(model, jnp.asarray(x))
        b = ns.metrics.summary(model, jnp.asarray(x[order]))
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.one_of(st.floats(-2, 2), st.integers(-3, 3), st.text(max_size=3)), max_size=5),
)
_keys = st.one_of(st.sampled_from(sorted(cfg.FIELDS)), st.text(min_size=1, max_size=10))


@MANY
@given(st.dictionaries(_keys, _values, max_size=6))
def test_fuzzed_configs_validate_or_fail_with_a_config_error(data):
    """Any mapping either becomes a valid RunConfig or raises ConfigError (a ValueError naming
    the key): never another exception."""
    data = {k: v for k, v in data.items() if k != "schedule" or not str(v).startswith("@")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = cfg.from_mapping(data)
        except cfg.ConfigError as err:
            assert str(err)
            return
    assert isinstance(config, cfg.RunConfig)


@MANY
@given(st.lists(st.text(max_size=20), max_size=4))
def test_fuzzed_overrides_parse_or_fail_with_a_config_error(items):
    try:
        values = cfg.parse_overrides(items)
    except cfg.ConfigError as err:
        assert str(err)
        return
    assume(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cfg.from_mapping({k: v for k, v in values.items()
                              if k != "schedule" or not str(v).startswith("@")})
        except cfg.ConfigError:
            pass
