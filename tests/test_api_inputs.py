"""What the public entry points accept and how they refuse the rest: integer-like step counts,
data laws built from traced parameters (under ``jit`` and ``grad``), run-time checks of traced
parameters, the schedule convention, the types of the problem's parts, and ``sample``'s dtype."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules

D = 16
KEY = jax.random.PRNGKey(0)


def _setup(d=D):
    model = ns.GaussianMixture.two_modes(d=d, p=0.7)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    return model, interp, schedules.vp_dilated(d=d, k=2.0)


# ------------------------------------------------------------------ integer-like step counts
@pytest.mark.parametrize("count", [np.int64(6), np.int32(6)], ids=["int64", "int32"])
def test_numpy_integer_steps_give_the_samples_of_an_int(count):
    model, interp, sched = _setup()
    x0 = ns.sample_prior(interp, KEY, np.int64(4))
    paths = {
        "sample": lambda s: ns.sample(model, interp, sched, KEY, np.int64(4), s),
        "solve": lambda s: ns.solve(model, interp, sched, x0, steps=s).x,
        # the chunked and device paths pass steps into a compiled call: it must stay a number
        "devices": lambda s: ns.sample(model, interp, sched, KEY, 4, s, devices=1),
        "summary": lambda s: ns.sample_summary(model, interp, sched, KEY, 4, steps=s).metrics,
        "sweep": lambda s: ns.sweeps.sample_summaries(
            [ns.sweeps.Point(model, interp, sched, KEY)], 4, steps=s)[0].metrics,
    }
    for name, path in paths.items():
        np.testing.assert_equal(jax.tree.map(np.asarray, path(count)),
                                jax.tree.map(np.asarray, path(6)), err_msg=name)


def test_numpy_integer_steps_keep_the_oracle_reverse_differentiable():
    # a NumPy count was an array loop bound (a while loop, no reverse mode); now a scan
    model, interp, _ = _setup()

    def overlap(k, steps):
        m_n, _ = ns.theory.reduced_solve(model, interp, schedules.vp_dilated(D, k),
                                         jnp.array([0.1]), steps)
        return m_n[0]

    grad = jax.grad(overlap)(2.0, np.int64(6))
    np.testing.assert_allclose(grad, jax.grad(overlap)(2.0, 6), rtol=1e-6)


STEP_ENTRIES = {  # (sample, solve, sample_summary: test_bad_inputs.py)
    "exact_metrics": lambda s: _setup()[0].exact_metrics(_setup()[1], _setup()[2], s),
    "gm_oracle": lambda s: ns.theory.gm_oracle(_setup()[0], _setup()[1], _setup()[2], s),
    "reduced_solve": lambda s: ns.theory.reduced_solve(_setup()[0], _setup()[1], _setup()[2],
                                                       jnp.zeros(2), s),
}


@pytest.mark.usefixtures("unchecked_types")  # the library's message, not the test hook's
@pytest.mark.parametrize("steps", [2.5, "10", True, 0], ids=["float", "str", "bool", "zero"])
@pytest.mark.parametrize("entry", list(STEP_ENTRIES))
def test_steps_that_are_not_integers_are_refused_naming_steps(entry, steps):
    with pytest.raises(ValueError) as err:
        STEP_ENTRIES[entry](steps)
    assert str(err.value) == f"steps must be an integer >= 1; got {steps!r}"


# ------------------------------------------------------------------ traced parameters of laws
def _central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.usefixtures("x64")
def test_mixture_drift_is_differentiable_in_p_m_and_sigma():
    interp = ns.Interpolant(kind="vp", shape="linear", d=D)
    sched = schedules.vp_dilated(d=D, k=2.0)
    x = jax.random.normal(KEY, (4, D), jnp.float64)

    def total(params):
        p, m, sigma = params
        model = ns.GaussianMixture.two_modes(d=D, p=p, m=m, sigma=sigma)
        return jnp.sum(jnp.sin(model.drift(interp, sched, 0.3, x)))

    params = jnp.array([0.7, 0.9, 0.5])
    grad, value = jax.jit(jax.grad(total))(params), jax.jit(total)
    for i in range(3):
        step = jnp.zeros(3).at[i].set(1.0)
        fd = _central_difference(lambda h, s=step: value(params + h * s), 0.0)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6)
    # traced parameters give the numbers of concrete ones
    np.testing.assert_allclose(value(params), total((0.7, 0.9, 0.5)), rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_exact_mode_weight_is_differentiable_in_p():
    model, interp, sched = _setup()

    @jax.jit
    def weight(p):
        law = ns.GaussianMixture.two_modes(d=D, p=p)
        return ns.theory.gm_oracle(law, interp, sched, 6)["mode_weight"]

    grad = jax.grad(weight)(0.7)
    np.testing.assert_allclose(grad, _central_difference(weight, 0.7, 1e-5), rtol=1e-6)
    np.testing.assert_allclose(weight(0.7), model.exact_metrics(interp, sched, np.int64(6))[
        "mode_weight_exact"], rtol=1e-12)


def test_mixture_from_traced_weights_means_and_sigma():
    weights = jax.jit(lambda p: ns.GaussianMixture.two_modes(D, p=p).weights)(0.7)
    np.testing.assert_allclose(weights, [0.7, 0.3], rtol=1e-6)
    w = np.array([0.5, 0.3, 0.2])
    mu = np.asarray(jax.random.normal(KEY, (3, D)))
    concrete = ns.GaussianMixture(w, mu, 0.4)
    interp, sched = ns.Interpolant("vp", "linear", D), schedules.vp_dilated(D, 2.0)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, D))

    @jax.jit
    def drift(w, mu, sigma):
        return ns.GaussianMixture(w, mu, sigma).drift(interp, sched, 0.4, x)

    np.testing.assert_allclose(drift(w, mu, 0.4), concrete.drift(interp, sched, 0.4, x),
                               rtol=1e-5, atol=1e-6)
    sigma = jax.jit(lambda s: ns.GaussianMixture.two_modes(D, sigma=s).sigma)(0.5)
    assert isinstance(sigma, jax.Array) and float(sigma) == 0.5
    # concrete values are kept as before: σ a Python float
    assert type(ns.GaussianMixture.two_modes(D, sigma=np.float64(0.5)).sigma) is float


@pytest.mark.usefixtures("x64")
def test_curie_weiss_drift_is_differentiable_in_beta_and_h():
    interp = ns.Interpolant(kind="vp", shape="linear", d=D)
    sched = schedules.vp_dilated(d=D, k=2.0)
    x = jax.random.normal(KEY, (4, D), jnp.float64)

    def total(params):
        law = ns.CurieWeiss(D, beta=params[0], h=params[1])
        return jnp.sum(jnp.sin(law.drift(interp, sched, 0.6, x)))

    params = jnp.array([2.0, 0.3])
    grad, value = jax.jit(jax.grad(total))(params), jax.jit(total)
    for i in range(2):
        step = jnp.zeros(2).at[i].set(1.0)
        fd = _central_difference(lambda h, s=step: value(params + h * s), 0.0)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6)


# ------------------------------------------------------------------ traced values checked when run
RUN_TIME_CASES = [  # (id, build from one value, a bad value, a good one, the message)
    ("curie-weiss beta", lambda b: ns.CurieWeiss(D, beta=b).m, -1.0, 2.0,
     r"beta must be in \(0, inf\)"),
    ("curie-weiss h", lambda h: ns.CurieWeiss(D, beta=2.0, h=h).positive_phase_weight, np.nan,
     0.3, "h must be a finite real number"),
    ("vp_dilated k", lambda k: schedules.vp_dilated(D, k)(0.3), -1.0, 2.0,
     r"k must be in \(0, 4\)"),
    ("ve_dilated k", lambda k: schedules.ve_dilated(D, k)(0.3), 5.0, 2.0,
     r"k must be in \(0, 4\)"),
    ("karras rho", lambda r: schedules.karras(ns.Interpolant("vp", "linear", D), rho=r)(0.3),
     0.0, 7.0, r"rho must be in \(0, inf\)"),
    ("mixture p", lambda p: ns.GaussianMixture.two_modes(D, p=p).weights, 1.5, 0.7,
     r"p must be in \(0, 1\)"),
    ("mixture sigma", lambda s: ns.GaussianMixture.two_modes(D, sigma=s).sigma, -0.5, 0.5,
     r"sigma must be in \(0, 1e\+15\]"),
    ("mixture weights", lambda w: ns.GaussianMixture(jnp.stack([w, 1.0 - w]),
                                                     np.ones((2, D)), 0.5).weights, -0.2, 0.4,
     r"weights must each be in \(0, 1\]"),
]


@pytest.mark.parametrize("build,bad,good,message", [c[1:] for c in RUN_TIME_CASES],
                         ids=[c[0] for c in RUN_TIME_CASES])
def test_traced_parameters_are_checked_when_the_program_runs(build, bad, good, message):
    compiled = eqx.filter_jit(build)
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(compiled(jnp.asarray(bad)))
    # a good traced value runs, with the numbers of a concrete one
    np.testing.assert_allclose(compiled(jnp.asarray(good)), build(good), rtol=1e-6)


# ------------------------------------------------------------------ the schedule convention
class _Custom(schedules.AbstractSchedule):
    """τ(t) = scale·t + bump·sin(2πt) (+ nan at t = ½ when ``hole``)."""

    scale: float = 1.0
    bump: float = 0.0
    hole: bool = eqx.field(static=True, default=False)

    def __call__(self, t):
        t = jnp.asarray(t)
        tau = self.scale * t + self.bump * jnp.sin(2 * jnp.pi * t)
        return jnp.where(self.hole & (t == 0.5), jnp.nan, tau)


class _Shifted(schedules.AbstractSchedule):
    """τ(t) = t + shift, an array leaf (traced under jit)."""

    shift: jax.Array

    def __call__(self, t):
        return jnp.asarray(t) + self.shift


@pytest.mark.parametrize("schedule,message", [
    (_Custom(scale=0.9), r"schedule _Custom breaks the convention .*: τ\(1\) = 0\.9, not 1"),
    (_Custom(bump=0.3), r"schedule _Custom .*: τ decreases from τ\(0\.4961\) = 0\.503456 to "
                        r"τ\(0\.5\) = 0\.5$"),
    (_Custom(bump=-0.3), r"schedule _Custom .*: τ\(0\.003906\) = -0\.00\d+ is outside "
                         r"\[0, 1\]; τ decreases"),
    (_Custom(scale=-1.0), r"τ\(1\) = -1, not 1"),
], ids=["tau(1) != 1", "not monotone", "below 0", "reversed"])
def test_a_schedule_off_the_convention_warns_naming_class_and_value(schedule, message):
    with pytest.warns(schedules.ScheduleConventionWarning, match=message) as record:
        schedules.check_convention(schedule)
    assert len(record) == 1


@pytest.mark.parametrize("entry", ["sample", "sample_summary"])
def test_sampling_checks_the_schedule_convention_once(entry):
    model, interp, _ = _setup()
    run = {"sample": lambda s: ns.sample(model, interp, s, KEY, 4, 4),
           "sample_summary": lambda s: ns.sample_summary(model, interp, s, KEY, 4, steps=4)}
    with pytest.warns(schedules.ScheduleConventionWarning, match=r"τ\(1\) = 0\.9") as record:
        run[entry](_Custom(scale=0.9))
    assert len(record) == 1


def test_a_schedule_with_nan_is_refused():
    model, interp, _ = _setup()
    with pytest.raises(ValueError, match=r"schedule _Custom gives τ\(0\.5\) = nan; a schedule "
                                         r"must be finite on \[0, 1\]"):
        ns.sample(model, interp, _Custom(hole=True), KEY, 4, 4)


def test_a_traced_schedule_is_not_checked():
    model, interp, _ = _setup()
    x0 = ns.sample_prior(interp, KEY, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(lambda s: ns.solve(model, interp, s, x0, steps=4, check_finite=False).x)(
            _Shifted(jnp.asarray(0.2)))
    with pytest.warns(schedules.ScheduleConventionWarning, match=r"τ\(1\) = 1\.2"):
        ns.solve(model, interp, _Shifted(jnp.asarray(0.2)), x0, steps=4, check_finite=False)


def test_built_in_and_learnable_schedules_never_warn():
    # (every family, kind, shape and d in {16, …, 10^9}, in float32 and float64, was checked once
    # by hand; here a sample of them, each evaluation costing its first compilation)
    made = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", schedules.ScheduleKindWarning)
        for interp in (ns.Interpolant("vp", "linear", 10**6), ns.Interpolant("ve", "trig", 10**6)):
            made += [schedules.make(name, interp) for name in schedules.NAMES]
    interp = ns.Interpolant("vp", "linear", 10**6)
    made += [ns.learning.NoiseRatioKnots.uniform(interp, 6), ns.learning.SigmoidSum.linear(3),
             ns.learning.PiecewiseLinear(jnp.zeros(5))]
    # N-point methods: a finite σ_0 starts at τ(0) > 0 (a truncated start), which is allowed
    made += [ns.methods.make(name, None, interp, 8) for name in ("edm", "log_snr", "arctan")]
    assert {type(s).__name__ for s in made} >= {
        "Constant", "VPDilated", "VEDilated", "VEDilatedTrig", "Cosine", "Karras",
        "LogSNRUniform", "ArctanLevels", "KnotSchedule", "NoiseRatioKnots", "PiecewiseLinear",
        "SigmoidSum"}
    assert float(made[-1](0.0)) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for schedule in made:
            schedules.check_convention(schedule)


# ------------------------------------------------------------------ the types of the parts
SCHEDULE_ENTRIES = {
    "sample": lambda s: ns.sample(_setup()[0], _setup()[1], s, KEY, 4, 4),
    "solve": lambda s: ns.solve(_setup()[0], _setup()[1], s, jnp.zeros((4, D)), steps=4),
    "sample_summary": lambda s: ns.sample_summary(_setup()[0], _setup()[1], s, KEY, 4, steps=4),
    "sample_chunks": lambda s: next(ns.sample_chunks(_setup()[0], _setup()[1], s, KEY, 4,
                                                     steps=4)),
    "sample on devices": lambda s: ns.sample(_setup()[0], _setup()[1], s, KEY, 4, 4, devices=1),
    "exact_metrics": lambda s: _setup()[0].exact_metrics(_setup()[1], s, 4),
    "gm_oracle": lambda s: ns.theory.gm_oracle(_setup()[0], _setup()[1], s, 4),
    "drift": lambda s: _setup()[0].drift(_setup()[1], s, 0.5, jnp.zeros((4, D))),
    "noise_ratio": lambda s: _setup()[1].noise_ratio(s, 0.5),
    "schedule_arrays": lambda s: ns.learning.schedule_arrays(s, _setup()[1], 4),
}


@pytest.mark.usefixtures("unchecked_types")
@pytest.mark.parametrize("given,shown", [
    (lambda t: t, "got the function <lambda> (a schedule is a subclass of "
                  "AbstractSchedule with __call__(t) -> τ)"),
    ("constant", "got the string 'constant'; for a schedule by name use "
                 "noisesched.schedules.make('constant', interp)"),
    (None, "got NoneType None"),
], ids=["lambda", "name", "None"])
@pytest.mark.parametrize("entry", list(SCHEDULE_ENTRIES))
def test_a_schedule_of_the_wrong_type_is_named(entry, given, shown):
    with pytest.raises(TypeError) as err:
        SCHEDULE_ENTRIES[entry](given)
    message = str(err.value)
    assert message == ("schedule must be a noisesched.schedules.AbstractSchedule, such as "
                       "noisesched.schedules.vp_dilated(d) or noisesched.schedules.make(name, "
                       f"interp); {shown}")
    assert "\n" not in message


def test_a_sweep_checks_the_convention_of_its_points_schedules():
    """Seen in a hostile test: a sweep point whose schedule had τ(1) ≠ 1 ran silently."""
    model, interp, _ = _setup()
    points = [ns.sweeps.Point(model, interp, _Custom(scale=s), KEY) for s in (1.0, 0.9)]
    with pytest.warns(schedules.ScheduleConventionWarning, match=r"τ\(1\) = 0\.9") as record:
        ns.sweeps.sample_summaries(points, 4, steps=4)
    assert len(record) == 1


@pytest.mark.usefixtures("unchecked_types")
def test_a_sweep_point_with_a_schedule_of_the_wrong_type_is_named():
    model, interp, _ = _setup()
    with pytest.raises(TypeError, match=r"^points\[0\]\.schedule must be a "
                                        r"noisesched\.schedules\.AbstractSchedule, .*; got the "
                                        r"string 'constant'"):
        ns.sweeps.sample_summaries([ns.sweeps.Point(model, interp, "constant", KEY)], 4)


@pytest.mark.usefixtures("unchecked_types")
@pytest.mark.parametrize("entry", ["sample", "solve", "sample_summary"])
def test_a_model_or_interpolant_of_the_wrong_type_is_named(entry):
    model, interp, sched = _setup()
    run = {
        "sample": lambda m, i: ns.sample(m, i, sched, KEY, 4, 4),
        "solve": lambda m, i: ns.solve(m, i, sched, jnp.zeros((4, D)), steps=4),
        "sample_summary": lambda m, i: ns.sample_summary(m, i, sched, KEY, 4, steps=4),
    }[entry]
    with pytest.raises(TypeError, match=r"^model must be a noisesched.AbstractDenoiser .*; got "
                                        r"str 'gm'$"):
        run("gm", interp)
    with pytest.raises(TypeError, match=r"^interp must be a noisesched.Interpolant, such as "
                                        r"noisesched.Interpolant\('vp', 'linear', d\); got str "
                                        r"'vp'$"):
        run(model, "vp")


# ------------------------------------------------------------------ sample's dtype
def test_sample_draws_in_the_dtype_asked_for():
    model, interp, sched = _setup()
    x = ns.sample(model, interp, sched, KEY, 4, 4, dtype="float32")
    assert x.dtype == jnp.float32
    np.testing.assert_array_equal(x, ns.sample(model, interp, sched, KEY, 4, 4))
    with pytest.raises(ValueError, match=r"^dtype float64 needs JAX's 64-bit mode: call inside "
                                         r"`with jax.enable_x64\(True\):`"):
        ns.sample(model, interp, sched, KEY, 4, 4, dtype=jnp.float64)
    with pytest.raises(ValueError, match=r"^dtype must be one of 'float32', 'float64' \(or None "
                                         r"for JAX's default float\); got 'float16'"):
        ns.sample(model, interp, sched, KEY, 4, 4, dtype="float16")


@pytest.mark.usefixtures("x64")
def test_sample_in_x64_mode_keeps_float32():
    model, interp, sched = _setup()
    x = ns.sample(model, interp, sched, KEY, 4, 4, dtype=jnp.float32)
    assert x.dtype == jnp.float32
    x0 = ns.sample_prior(interp, KEY, 4, "float32", schedule=sched)
    np.testing.assert_array_equal(x, ns.solve(model, interp, sched, x0, steps=4).x)


# ----------------------------------------------------------------------------- extreme laws
@pytest.mark.parametrize("beta, h", [(1.5, 0.3), (8.0, 0.3), (50.0, 0.69), (1.5, 20.0),
                                     (0.5, 0.0)])
def test_curie_weiss_magnetization_law_at_extreme_beta_and_h(beta, h):
    """Seen in a hostile test: β ≥ 8 or h ≥ 20 ended in "math domain error" (m or W+ rounded to
    1 before log(1 − q)). Truth: the binomial mixture summed in float64 from m = tanh(βm)
    solved in float64 (exact where it is finite) and, at saturation, its limit."""
    model = ns.CurieWeiss(d=30, beta=beta, h=h)
    levels, probs = (np.asarray(a, np.float64) for a in model.magnetization_law())
    assert np.all(np.isfinite(probs)) and abs(probs.sum() - 1.0) < 1e-5
    m = 0.0
    if beta > 1:
        m = 1.0
        for _ in range(200):
            m = m - (m - np.tanh(beta * m)) / (1 - beta * (1 - np.tanh(beta * m) ** 2))
    w = 1 / (1 + np.exp(-2 * h * m))
    u = np.arange(31)
    from math import comb
    binom = np.array([comb(30, k) for k in u], np.float64)
    law = (w * binom * ((1 + m) / 2) ** u * ((1 - m) / 2) ** (30 - u)
           + (1 - w) * binom * ((1 - m) / 2) ** u * ((1 + m) / 2) ** (30 - u))
    np.testing.assert_allclose(probs, law, atol=1e-6)
    np.testing.assert_allclose(levels, (2 * u - 30) / 30)


@pytest.mark.parametrize("build, name", [
    (lambda: ns.GaussianMixture.two_modes(d=10, sigma=1e160), "sigma"),
    (lambda: ns.GaussianMixture.two_modes(d=10, m=1e20), "m"),
    (lambda: ns.GaussianMixture.random_means(d=10, weights=[0.5, 0.5], m=1e16), "m"),
    (lambda: ns.GaussianMixture([0.5, 0.5], np.ones((2, 3)), sigma=1e16), "sigma")])
def test_mixture_scales_whose_squares_overflow_are_refused(build, name):
    """Seen in a hostile test: sigma = 1e160 ended in OverflowError inside the drift."""
    with pytest.raises(ValueError, match=rf"^{name} must be in \(0, 1e\+15\]"):
        build()


@pytest.mark.usefixtures("unchecked_types")
def test_the_exact_curie_weiss_law_asks_for_concrete_parameters():
    """Seen in a hostile test: CurieWeissExact built under jit failed deep inside NumPy."""
    for build in (lambda b: ns.CurieWeissExact(d=20, beta=b),
                  lambda h: ns.CurieWeissExact(d=20, beta=1.5, h=h)):
        with pytest.raises(ValueError, match="CurieWeissExact needs concrete beta and h"):
            jax.jit(lambda v, build=build: build(v).d)(1.0)
