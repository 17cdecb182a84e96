"""Property-based tests (hypothesis): schedules, drifts, metrics and configs over their whole
valid parameter ranges, not a few hand-picked points."""

import json
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
from hypothesis import HealthCheck, assume, event, given, settings
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
    d = draw(st.sampled_from([3, 24])) if n == 7 else 24
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
# model.d sizes the arrays a model is built with when the config is validated: drawn up to 10^6
# (a d of 10^10 would fill the memory)
_dims = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                  st.floats(-1e6, 1e6) | st.sampled_from([math.nan, math.inf]),
                  st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3))
_numbers = st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=4)
# values of the right type and mostly in range, by key (any section), so that the fuzzing also
# reaches valid configs and every constructor behind them
_PLAUSIBLE = {
    "d": st.integers(1, 1000), "p": st.floats(0.01, 0.99), "m": st.floats(0.1, 5.0),
    "sigma": st.floats(0.05, 3.0), "seed": st.integers(0, 2**63 - 1),
    "weights": st.sampled_from([[1.0], [0.5, 0.5], [0.4, 0.3, 0.2, 0.1], [0.7, 0.2]]),
    "beta": st.floats(0.1, 5.0), "h": st.floats(-2.0, 2.0), "nodes": st.integers(2, 200),
    "max_grid": st.integers(0, 4096), "k": st.floats(0.01, 4.0), "offset": st.floats(0.0, 0.99),
    "sigma_min": st.floats(1e-3, 1.0), "sigma_max": st.floats(1.0, 100.0),
    "rho": st.floats(0.5, 10.0), "logits": _numbers, "decrements": _numbers,
    "centers": _numbers, "log_widths": _numbers, "start": st.floats(-2.0, 4.0),
    "gap": st.floats(0.0, 5.0), "kind": st.sampled_from(["vp", "ve"]),
    "shape": st.sampled_from(["linear", "trig"]), "steps": st.integers(1, 10**6),
    "method": st.sampled_from(cfg.METHODS), "adaptive": st.booleans(),
    "rtol": st.floats(1e-8, 1.0), "atol": st.floats(1e-8, 1.0), "max_steps": st.integers(1, 10**6),
    "n": st.integers(1, 10**9), "dtype": st.sampled_from(cfg.DTYPES),
    "chunk_size": st.integers(0, 10**6), "devices": st.integers(0, 1),
    "shard": st.sampled_from(["rows", "coordinates"]),
    "figures": st.booleans(), "trajectories": st.integers(0, 1000),
}
# every section.key the schema knows, by section
_SECTION_KEYS: dict[str, list[str]] = {}
for _key in cfg.all_keys():
    if "." in _key:
        _section, _, _sub = _key.partition(".")
        _SECTION_KEYS.setdefault(_section, []).append(_sub)
# names worth drawing for the choice sections: the registries, user models, saved schedules
_CHOICES = {
    "model": [*ns.models.REGISTRY, "noisesched:GaussianMixture", "noisesched:Interpolant",
              "noisesched.models:CurieWeiss", "os:path", "nowhere:Model", ".relative:Model",
              "noisesched:"],
    "schedule": [*ns.schedules.REGISTRY, *ns.learning.FAMILIES, "@nowhere.json", "@"],
    "solver": [*ns.sampling.SOLVERS, "rk4"],
}


def _rarely(draw, odds: int) -> bool:
    """True about once in ``odds + 1`` draws (False is what hypothesis shrinks towards)."""
    return draw(st.sampled_from([False] * odds + [True]))


@st.composite
def _plausible(draw, section, key):
    """A value for ``section.key``: mostly of the right type, sometimes anything."""
    if key == "name":
        right = st.sampled_from(_CHOICES[section]) if section in _CHOICES else None
    else:
        right = _PLAUSIBLE.get(key)
    if right is None or _rarely(draw, 7):
        return draw(_dims if (section, key) == ("model", "d") else _values)
    return draw(right)


def _mostly(draw, known, other):
    """``known`` about 15 times in 16, else ``other``."""
    return draw(other if _rarely(draw, 15) else known)


_REGISTRIES = {"model": ns.models.REGISTRY,
               "schedule": {**ns.schedules.REGISTRY, **ns.learning.FAMILIES}}


def _choice_keys(section, name):
    """{key: required} for entry ``name`` of the section's registry (None: not an entry)."""
    if name not in _REGISTRIES.get(section, {}):
        return None
    return {key: p.default is p.empty
            for key, p in cfg.parameters(_REGISTRIES[section][name]).items()
            if key != "interpolant"}


@st.composite
def sectioned_configs(draw):
    """A mapping as a TOML config holds it: sections of known keys (for a model or schedule,
    mostly the keys its choice takes) and some unknown ones, or a section that is not a table;
    sometimes a stray key or a flat key of an earlier version."""
    data = {}
    for section in draw(st.lists(st.sampled_from(cfg.SECTIONS), max_size=6, unique=True)):
        if _rarely(draw, 19):
            data[section] = draw(_values)  # not a table
            continue
        table = {}
        own = None
        if section in _CHOICES and not _rarely(draw, 3):
            table["name"] = draw(_plausible(section, "name"))
            if isinstance(table["name"], str):
                own = _choice_keys(section, table["name"])
        for key, required in (own or {}).items():  # what the choice takes
            if not _rarely(draw, 9) if required else draw(st.booleans()):
                table[key] = draw(_plausible(section, key))
        for _ in range(draw(st.integers(0, 2 if own else 4))):  # any keys of the section
            key = _mostly(draw, st.sampled_from(_SECTION_KEYS[section]),
                          st.text(min_size=1, max_size=10))
            table[key] = draw(_plausible(section, key))
        data[section] = table
    if draw(st.booleans()):
        data["name"] = _mostly(draw, st.text(max_size=12), _values)
    if _rarely(draw, 7):  # a stray key: an earlier version's flat key, or anything
        key = draw(st.one_of(st.sampled_from(sorted(cfg.FLAT_KEYS)),
                             st.text(min_size=1, max_size=10)))
        data[key] = draw(_values)
    return data


# values of the wrong type on purpose: the errors a user sees, not the type-checking hook's
# (conftest.unchecked_types, a flag for the whole test)
FUZZ = settings(MANY, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(sectioned_configs())
def test_fuzzed_configs_validate_or_fail_with_a_config_error(unchecked_types, data):
    """Any mapping either becomes a valid RunConfig or raises ConfigError (a ValueError naming
    the key): never another exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = cfg.from_mapping(data)
        except cfg.ConfigError as err:
            assert str(err)
            event("config error")
            return
        assert isinstance(config, cfg.RunConfig)
        event(f"valid: model {config.model.name}, schedule {config.schedule.name}")
        # what results.json records is a config again
        assert cfg.from_mapping(config.to_dict()).to_dict() == config.to_dict()


def _toml(value) -> str:
    """``value`` as TOML value text (NaN and infinities come out as bare words)."""
    return json.dumps(value)


def _raw(section, key):
    """The value text of ``--set section.key=value``: TOML literals, bare words, anything."""
    if (section, key) == ("model", "d"):  # sizes: see _dims
        return st.one_of(st.integers(-10**6, 10**6).map(str), _plausible("model", "d").map(_toml),
                         st.sampled_from(["1e3", "2.5", "nan", "inf", "'x'", "[1, 2]", "true"]),
                         st.text(alphabet=st.characters(exclude_categories=["Nd"]),
                                 max_size=8))
    literals = st.sampled_from(["1", "0", "-1", "1e3", "2.5", "-0.5", "nan", "inf", "true",
                                "false", "'x'", '""', "[0.5, 0.5]", "[1, 'a']", "[]",
                                "{a = 1}", "[[1.0]]"])
    return st.one_of(_plausible(section, key).map(_toml), _plausible(section, key).map(_toml),
                     literals, st.text(max_size=12))


@st.composite
def override_items(draw):
    """One ``--set`` item: ``section.key=value`` of a known section and key, or anything."""
    if _rarely(draw, 9):
        return draw(st.text(max_size=20))
    section = _mostly(draw, st.sampled_from(sorted(_SECTION_KEYS)), st.text(max_size=6))
    key = _mostly(draw, st.sampled_from(_SECTION_KEYS.get(section, ["name"])),
                  st.text(max_size=6))
    return f"{section}.{key}={draw(_raw(section, key))}"


_BASE = {"name": "base", "model": {"name": "gm", "d": 64, "p": 0.7},
         "schedule": {"name": "vp_dilated", "k": 2.0}, "solver": {"steps": 4},
         "sample": {"n": 8}, "output": {"figures": False}}


@FUZZ
@given(st.lists(override_items(), max_size=4))
def test_fuzzed_overrides_parse_or_fail_with_a_config_error(unchecked_types, items):
    """``--set`` items parse or raise ConfigError; applied to a config file's mapping (as
    ``noisesched run`` does, switching choices) they validate or raise ConfigError."""
    try:
        values = cfg.parse_overrides(items)
    except cfg.ConfigError as err:
        assert str(err)
        event("parse error")
        return
    assume(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data, what in ((values, "alone"), (cfg.merge(_BASE, values), "on a file")):
            try:
                cfg.from_mapping(data)
                event(f"{what}: valid")
            except cfg.ConfigError:
                event(f"{what}: config error")
