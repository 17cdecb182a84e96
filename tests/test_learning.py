import io
import json
import math
import re
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched.learning import (
    FitOptions,
    NoiseRatioKnots,
    PiecewiseLinear,
    SampleLoss,
    SigmoidSum,
    combined_loss,
    fit_schedule,
)


def test_piecewise_linear_is_a_valid_schedule_for_any_parameters(x64):
    for seed in range(5):
        logits = 3.0 * jax.random.normal(jax.random.PRNGKey(seed), (7,))
        sched = PiecewiseLinear(logits)
        t = jnp.linspace(0.0, 1.0, 701, dtype=jnp.float64)
        tau = jax.vmap(sched)(t)
        assert float(tau[0]) == 0.0 and float(tau[-1]) == pytest.approx(1.0, abs=1e-15)
        assert bool(jnp.all(jnp.diff(tau) >= 0))
        np.testing.assert_allclose(jax.vmap(sched.complement)(t), 1 - tau, atol=1e-14)
    assert sched.jump_times == tuple(j / 7 for j in range(1, 7))


def test_from_schedule_interpolates_it(x64):
    d = 400
    target = ns.schedules.vp_dilated(d)
    sched = PiecewiseLinear.from_schedule(target, 4)  # knots at 0, ¼, ½, ¾, 1: exact
    t = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    np.testing.assert_allclose(jax.vmap(sched)(t), jax.vmap(target)(t), atol=1e-12)


def soft_mode_fraction(model, x, temperature=0.1):
    mu = model.means[0]
    return jnp.mean(jax.nn.sigmoid(x @ mu / (jnp.linalg.norm(mu) * temperature)))


@pytest.mark.parametrize("method", ["diffrax", "scan"])
def test_gradient_through_the_sampler_matches_finite_differences(method, x64):
    """d loss / d logits through a 10-step Euler solve against central differences (float64)."""
    d = 50
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 64, dtype=jnp.float64)
    base = PiecewiseLinear.from_schedule(ns.schedules.vp_dilated(d), 5)

    def loss(logits):
        x = ns.solve(model, interp, PiecewiseLinear(logits), x0, steps=10, method=method).x
        return (soft_mode_fraction(model, x) - 0.8) ** 2 + jnp.mean(x**2) * 1e-3

    logits = base.logits + 0.1 * jnp.arange(5.0)
    grad = jax.grad(loss)(logits)
    eps = 1e-6
    fd = jnp.array([(loss(logits.at[i].add(eps)) - loss(logits.at[i].add(-eps))) / (2 * eps)
                    for i in range(5)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)
    assert float(jnp.max(jnp.abs(grad))) > 1e-6  # the loss does depend on the schedule


def test_bad_logits():
    with pytest.raises(ValueError, match="logits must be a 1-D array"):
        PiecewiseLinear(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="logits must be finite"):
        PiecewiseLinear(jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="pieces must be an integer >= 1; got 0"):
        PiecewiseLinear.from_schedule(ns.schedules.constant(), 0)


def test_losses_vanish_on_exact_samples_and_not_on_failures():
    from noisesched.learning import low_level_loss, mode_asymmetry_loss, soft_mode_fraction

    model = ns.GaussianMixture.two_modes(d=200)
    x = model.sample(jax.random.PRNGKey(0), 4000)
    hard = float(ns.metrics.mode_weight(model, x))
    assert float(soft_mode_fraction(model, x, 0.05)) == pytest.approx(hard, abs=1e-6)
    assert float(mode_asymmetry_loss(model, x)) < (4 * np.sqrt(0.16 / 4000)) ** 2
    assert float(low_level_loss(model, x)) < 1e-3
    collapsed = jnp.tile(model.means[0], (10, 1))
    assert float(low_level_loss(model, collapsed)) == pytest.approx(1.0)
    assert float(mode_asymmetry_loss(model, collapsed)) == pytest.approx(0.04, rel=1e-3)
    cw = ns.CurieWeiss(d=200, beta=2.0, h=0.5 * np.log(4))
    s = cw.sample(jax.random.PRNGKey(1), 4000)
    assert float(low_level_loss(cw, s)) == 0.0
    w = float(cw.positive_phase_weight)
    assert float(mode_asymmetry_loss(cw, s)) < (4 * np.sqrt(w * (1 - w) / 4000)) ** 2


def test_fit_improves_the_ve_low_level_feature():
    """VE, constant start, N = 6 ≪ √d: the fit moves grid time towards the data end and the
    within-mode variance on fresh keys rises from collapse towards σ²."""
    d = 400
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant(kind="ve", shape="linear", d=d)
    init = PiecewiseLinear.from_schedule(ns.schedules.constant(), 6)
    result = fit_schedule(SampleLoss(combined_loss, model, interp, 6), init,
                          jax.random.PRNGKey(0), FitOptions(batch=128, iterations=60))
    sched, history = result.schedule, result.history
    assert len(history) == 60 and history[-1] < 0.5 * history[0]
    key = jax.random.PRNGKey(99)
    before = ns.metrics.within_mode_variance(
        model, ns.sample(model, interp, init, key, 2000, steps=6))
    after = ns.metrics.within_mode_variance(
        model, ns.sample(model, interp, sched, key, 2000, steps=6))
    assert float(after) > 2 * float(before)
    assert abs(float(after) / 0.25 - 1) < abs(float(before) / 0.25 - 1)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e308
def test_a_fit_whose_parameters_leave_the_finite_numbers_fails():
    """Seen in a hostile test: a learning rate of 1e308 made the parameters -inf on the last
    iteration (the loss, computed before it, was finite) and the fit "succeeded"."""
    model = ns.GaussianMixture.two_modes(d=20)
    interp = ns.Interpolant(kind="vp", shape="linear", d=20)
    loss = SampleLoss(combined_loss, model, interp, 4)
    with pytest.raises(FloatingPointError, match="parameters left the finite numbers"):
        fit_schedule(loss, PiecewiseLinear.from_schedule(ns.schedules.constant(), 4),
                     jax.random.PRNGKey(0), FitOptions(batch=8, iterations=1),
                     optimizer=ns.learning.make_optimizer("sgd", 1e308, lr_schedule="constant"))


def test_fit_rejects_bad_input(unchecked_types):
    model = ns.GaussianMixture.two_modes(d=20)
    interp = ns.Interpolant(kind="vp", shape="linear", d=20)
    loss = SampleLoss(combined_loss, model, interp, 10)
    with pytest.raises(ValueError, match="no trainable array leaves"):
        fit_schedule(loss, ns.schedules.constant(), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1; got 0"):
        fit_schedule(loss, PiecewiseLinear(jnp.zeros(3)), jax.random.PRNGKey(0),
                     FitOptions(iterations=0))
    with pytest.raises(ValueError, match=r"loss must be an AbstractLoss \(SampleLoss\(fn, "):
        fit_schedule(combined_loss, PiecewiseLinear(jnp.zeros(3)), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="options must be a FitOptions; got dict"):
        fit_schedule(loss, PiecewiseLinear(jnp.zeros(3)), jax.random.PRNGKey(0),
                     {"iterations": 3})
    with pytest.raises(ValueError, match="key must be one PRNG key"):
        fit_schedule(loss, PiecewiseLinear(jnp.zeros(3)), 0)
    # the checks of a loss on final samples (the interpolant's d, the step count, the solver)
    with pytest.raises(ValueError, match="interpolant d = 30 must equal the model's d = 20"):
        SampleLoss(combined_loss, model, ns.Interpolant("vp", "linear", 30), 10)
    with pytest.raises(ValueError, match="steps must be an integer >= 1; got 0"):
        SampleLoss(combined_loss, model, interp, 0)
    with pytest.raises(ValueError, match="solver must be one of 'euler', 'heun', 'sigma_euler', "
                                         "'dpmpp_2m'; got 'tsit5'"):
        SampleLoss(combined_loss, model, interp, 10, solver="tsit5")
    with pytest.raises(ValueError, match="checkpoints must be an integer >= 1; got 0"):
        SampleLoss(combined_loss, model, interp, 10, checkpoints=0)
    with pytest.raises(ValueError, match="fn must be a function"):
        SampleLoss("combined", model, interp, 10)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"batch": 0}, "batch must be an integer >= 1; got 0"),
        ({"iterations": 2.0}, "iterations must be an integer >= 1; got 2.0"),
        ({"common_random_numbers": "yes"}, "common_random_numbers must be True or False"),
        ({"patience": 0}, "patience must be an integer >= 1; got 0"),
        ({"min_delta": -1.0}, r"min_delta must be in \[0, inf\); got -1.0"),
        ({"smoothing": 1.0}, r"smoothing must be in \[0, 1\); got 1.0"),
        ({"smoothing": math.nan}, "smoothing must be a real number; got nan"),
        ({"checkpoint": "fit.json"}, "checkpoint must not end in .json"),
        ({"checkpoint": 3}, "checkpoint must be a path or None; got 3"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1; got 0"),
        ({"fingerprint": 7}, "fingerprint must be a string; got 7"),
        ({"progress": 1}, "progress must be True or False; got 1"),
    ],
)
def test_fit_options_reject_bad_values_naming_the_parameter(options, message, unchecked_types):
    with pytest.raises(ValueError, match=message):
        FitOptions(**options)


class _Mismatch(ns.learning.AbstractLoss):
    """A user's loss of the schedule alone: the squared distance of τ to t² on a grid."""

    needs_prior: ClassVar[bool] = False
    interpolant: ns.Interpolant
    record: Callable  # called with the x0 it was given

    def __call__(self, schedule, x0=None):
        self.record(x0)
        t = jnp.linspace(0.0, 1.0, 33)
        return jnp.mean((jax.vmap(schedule)(t) - t**2) ** 2)


def test_a_users_loss_without_prior_batch_is_fitted():
    seen = []
    loss = _Mismatch(ns.Interpolant("vp", "linear", 10), seen.append)
    init = PiecewiseLinear(jnp.zeros(8))
    result = fit_schedule(loss, init, jax.random.PRNGKey(0), FitOptions(iterations=150))
    assert seen and all(x0 is None for x0 in seen)  # traced once, with no prior batch
    assert result.history[-1] < 0.01 * result.history[0]

    class NoInterpolant(ns.learning.AbstractLoss):
        def __call__(self, schedule, x0=None):
            return jnp.sum(x0)

    with pytest.raises(ValueError, match="NoInterpolant needs the prior batch: it must have a "
                                         "field interpolant"):
        fit_schedule(NoInterpolant(), init, jax.random.PRNGKey(0))


def test_a_checkpoint_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give a file such as"):
        _small_fit(checkpoint=tmp_path)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_export_round_trip(tmp_path, suffix):
    import json

    from noisesched.learning import export_schedule, schedule_arrays

    d = 10_000
    interp = ns.Interpolant(kind="ve", shape="linear", d=d)
    sched = ns.schedules.ve_dilated(d)
    arrays = schedule_arrays(sched, interp, 8)
    t = arrays["times"]
    np.testing.assert_allclose(t, np.linspace(0, 1, 9))
    # VE-dilated: α runs from √d to k at t = ½, then linearly to 0
    np.testing.assert_allclose(arrays["alpha"][[0, 4, 6, 8]], [100.0, 3.0, 1.5, 0.0], atol=1e-9)
    sigma = arrays["sigma"]
    assert np.isinf(sigma[0]) and sigma[-1] == 0.0 and np.all(np.diff(sigma[1:]) < 0)
    np.testing.assert_allclose(sigma[1:], arrays["alpha"][1:] / arrays["beta"][1:])
    path = export_schedule(sched, interp, 8, tmp_path / f"s{suffix}")
    if suffix == ".json":
        data = json.loads(path.read_text())
        assert data["sigma"][0] is None and data["d"] == d and data["steps"] == 8
        np.testing.assert_allclose(data["alpha"], arrays["alpha"])
    else:
        with np.load(path) as data:
            np.testing.assert_array_equal(data["sigma"], sigma)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"s{suffix}"]
    with pytest.raises(ValueError, match="path must end in .json or .npz"):
        export_schedule(sched, interp, 8, tmp_path / "s.txt")


# ----------------------------------------------------------------------------- families
def _families(interp):
    return [
        PiecewiseLinear(jnp.array([0.3, -1.0, 2.0, 0.1])),
        SigmoidSum(jnp.array([0.2, 1.0, -0.5]), jnp.array([0.2, 0.7]), jnp.array([-2.0, -3.0])),
        NoiseRatioKnots(4.0, jnp.array([0.5, -1.0, 2.0]), interp),
    ]


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_every_family_is_pinned_monotone_with_an_accurate_complement(kind, x64):
    interp = ns.Interpolant(kind, "linear", 10_000)
    t = jnp.linspace(0.0, 1.0, 2001, dtype=jnp.float64)
    for sched in _families(interp):
        tau, comp = jax.vmap(sched)(t), jax.vmap(sched.complement)(t)
        assert float(tau[0]) == 0.0 and float(tau[-1]) == pytest.approx(1.0, abs=1e-14)
        assert bool(jnp.all(jnp.diff(tau) >= 0)), type(sched).__name__
        np.testing.assert_allclose(comp, 1.0 - tau, atol=1e-14)
        # the complement keeps relative precision where τ → 1
        near_one = jnp.asarray([1.0 - 1e-9], jnp.float64)
        assert float(jax.vmap(sched.complement)(near_one)[0]) > 0.0


def test_sigmoid_sum_jvp_matches_finite_differences(x64):
    sched = _families(ns.Interpolant("vp", "linear", 100))[1]
    for t in (0.1, 0.5, 0.93):
        _, dtau = jax.jvp(sched, (jnp.float64(t),), (jnp.float64(1.0),))
        fd = (sched(jnp.float64(t + 1e-6)) - sched(jnp.float64(t - 1e-6))) / 2e-6
        assert float(dtau) == pytest.approx(float(fd), rel=1e-7)


def test_sigmoid_sum_fits_a_builtin_schedule(x64):
    target = ns.schedules.vp_dilated(1000, k=3.0)
    fitted = SigmoidSum.from_schedule(target, 6, iterations=1500)
    t = jnp.linspace(0.0, 1.0, 201, dtype=jnp.float64)
    err = jnp.max(jnp.abs(jax.vmap(fitted)(t) - jax.vmap(target)(t)))
    assert float(err) < 0.02  # a kinked curve by six smooth steps
    for k in (1, 3, 8, 16):  # the near-constant start (the end sigmoids are cut at 0 and 1)
        np.testing.assert_allclose(jax.vmap(SigmoidSum.linear(k))(t), t, atol=0.03)


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("shape", ["linear", "trig"])
def test_noise_ratio_knots_reproduce_a_schedule_on_its_knots(kind, shape, x64):
    interp = ns.Interpolant(kind, shape, 5000)
    target = ns.schedules.make(f"{kind}_dilated", interp, k=2.0)
    sched = NoiseRatioKnots.from_schedule(target, interp, 8)
    knots = jnp.linspace(0.0, 1.0, 9, dtype=jnp.float64)
    np.testing.assert_allclose(jax.vmap(sched)(knots), jax.vmap(target)(knots), rtol=1e-10,
                               atol=1e-13)
    # the coordinate map and its inverse
    r = jnp.linspace(-5.0, 12.0, 50, dtype=jnp.float64)
    np.testing.assert_allclose(sched.log_noise_ratio(sched.coordinate(r)), r, atol=1e-12)


def test_noise_ratio_knots_put_both_windows_at_fixed_coordinates(x64):
    """ν = e^ξ below the gap and ν/√d = e^{ξ − gap} above it, for every d."""
    for d in (10**3, 10**5, 10**7):
        sched = NoiseRatioKnots.uniform(ns.Interpolant("vp", "linear", d), 10)
        assert float(jnp.exp(sched.log_noise_ratio(-1.0))) == pytest.approx(math.exp(-1.0))
        ratio = float(jnp.exp(sched.log_noise_ratio(2.5)))
        assert ratio / math.sqrt(d) == pytest.approx(math.exp(2.5 - 3.0), rel=1e-12)


def test_noise_ratio_knots_transfer_keeps_the_coordinates(x64):
    small = ns.Interpolant("vp", "linear", 1000)
    sched = NoiseRatioKnots.uniform(small, 6)
    big = sched.at(ns.Interpolant("ve", "linear", 10**5))
    np.testing.assert_array_equal(big.knot_coordinates(), sched.knot_coordinates())
    assert big.interpolant.d == 10**5


def test_family_parameters_are_the_only_trainable_leaves():
    interp = ns.Interpolant("vp", "linear", 100)
    for sched in _families(interp):
        params, _ = eqx.partition(sched, eqx.is_inexact_array)
        names = {type(sched).__name__: len(jax.tree.leaves(params))}
        expected = {"PiecewiseLinear": 1, "SigmoidSum": 3, "NoiseRatioKnots": 2}
        assert names[type(sched).__name__] == expected[type(sched).__name__]


def test_bad_family_parameters(unchecked_types):
    interp = ns.Interpolant("vp", "linear", 100)
    with pytest.raises(ValueError, match="centers must be a 1-D array of 2 entries"):
        SigmoidSum(jnp.zeros(3), jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="start must be finite"):
        NoiseRatioKnots(jnp.nan, jnp.zeros(2), interp)
    with pytest.raises(ValueError, match="interpolant must be an ns.Interpolant"):
        NoiseRatioKnots(0.0, jnp.zeros(2), "vp")
    with pytest.raises(ValueError, match="pieces must be an integer >= 2; got 1"):
        NoiseRatioKnots.uniform(interp, 1)
    with pytest.raises(ValueError, match="gap must be"):
        NoiseRatioKnots(0.0, jnp.zeros(2), interp, gap=-1.0)


def _gradient_and_central_differences(fn, schedule, eps):
    """jax.grad of ``fn(schedule)`` over the schedule's parameters (flattened) and central
    differences of the same function, both jitted."""
    params, static = eqx.partition(schedule, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def f(v):
        return fn(eqx.combine(unravel(v), static))

    grad = jax.jit(jax.grad(f))(flat)
    fd = jnp.array([(f(flat.at[i].add(eps)) - f(flat.at[i].add(-eps))) / (2 * eps)
                    for i in range(flat.shape[0])])
    return grad, fd


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("family", [1, 2])
def test_gradient_of_smooth_and_dimension_aware_families_matches_finite_differences(
        family, x64):
    d = 40
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("ve", "linear", d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(1), 32, dtype=jnp.float64)
    def loss(s):
        x = ns.solve(model, interp, s, x0, steps=8, method="scan").x
        return soft_mode_fraction(model, x) + 0.01 * jnp.mean(x**2)

    grad, fd = _gradient_and_central_differences(loss, _families(interp)[family], 1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)


def test_checkpointing_changes_neither_values_nor_gradients(x64):
    d = 30
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("vp", "linear", d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(2), 16, dtype=jnp.float64)
    base = PiecewiseLinear.from_schedule(ns.schedules.vp_dilated(d), 5)

    def loss(logits, checkpoints, method):
        x = ns.solve(model, interp, PiecewiseLinear(logits), x0, steps=11, solver="heun",
                     method=method, checkpoints=checkpoints).x
        return jnp.mean(jnp.tanh(x))

    ref = jax.value_and_grad(loss)(base.logits, 11, "scan")  # every state kept
    for checkpoints, method in [(None, "scan"), (4, "scan"), (3, "diffrax")]:
        value, grad = jax.value_and_grad(loss)(base.logits, checkpoints, method)
        assert float(value) == pytest.approx(float(ref[0]), rel=1e-13)
        np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-14)


def _gradient_temp_bytes(steps, checkpoints):
    d, n = 256, 64
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("vp", "linear", d)
    x0 = jnp.ones((n, d), jnp.float32)

    def loss(logits):
        x = ns.solve(model, interp, PiecewiseLinear(logits), x0, steps=steps, method="scan",
                     checkpoints=checkpoints).x
        return jnp.mean(x)

    compiled = jax.jit(jax.grad(loss)).lower(jnp.zeros(4, jnp.float32)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow  # four compilations of gradients through 2^k steps
def test_memory_of_a_gradient_is_sublinear_in_the_number_of_steps():
    """XLA's own buffer accounting: with ⌈√N⌉ blocks, 16× the steps costs about 4× the memory
    (measured 54 → 200 states for N = 256 → 4096); keeping every state costs 16×."""
    state = 256 * 64 * 4
    blocked = _gradient_temp_bytes(4096, None) / _gradient_temp_bytes(256, None)
    every = _gradient_temp_bytes(4096, 4096) / _gradient_temp_bytes(256, 256)
    assert every > 12
    assert blocked < 5
    assert _gradient_temp_bytes(4096, None) < 300 * state


# ----------------------------------------------------------------------------- fit loop
def _small_problem(pieces=8):
    d = 50
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("ve", "linear", d)
    return model, interp, NoiseRatioKnots.uniform(interp, pieces)


def _small_fit(fn=combined_loss, *, callback=None, pieces=8, **options):
    model, interp, init = _small_problem(pieces)
    loss = SampleLoss(fn, model, interp, 4)
    return fit_schedule(loss, init, jax.random.PRNGKey(3),
                        FitOptions(**{"batch": 32, "iterations": 8, **options}),
                        callback=callback)


def _stored_iteration(path):
    """The iteration of a checkpoint's arrays: the first array of the file."""
    with open(path, "rb") as f:
        return int(np.load(f))


def _same_fit(a, b):
    assert a.history == b.history and a.smoothed == b.smoothed
    assert a.iterations == b.iterations and a.stopped_early == b.stopped_early
    for x, y in zip(jax.tree.leaves(a.schedule), jax.tree.leaves(b.schedule), strict=True):
        np.testing.assert_array_equal(x, y)


def _interrupt_at(stop):
    def callback(it, loss, schedule):
        if it == stop:
            raise KeyboardInterrupt

    return callback


def test_an_interrupted_fit_resumes_with_identical_results(tmp_path):
    whole = _small_fit(checkpoint=tmp_path / "a.eqx", checkpoint_every=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eqx", "a.json"]
    assert ns.learning.checkpoint_files(tmp_path / "a.eqx") == (tmp_path / "a.eqx",
                                                                 tmp_path / "a.json")
    path = tmp_path / "b.eqx"
    with pytest.raises(KeyboardInterrupt):
        _small_fit(checkpoint=path, checkpoint_every=2, callback=_interrupt_at(4))
    # the last checkpoint before the interruption, in both files
    assert _stored_iteration(path) == 4
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["iteration"] == 4 and record["history"] == whole.history[:4]
    resumed = _small_fit(checkpoint=path, checkpoint_every=2)
    _same_fit(resumed, whole)
    assert resumed.iterations == 8
    assert _stored_iteration(path) == 8
    with pytest.raises(ValueError, match="belongs to another run"):
        _small_fit(checkpoint=path, fingerprint="other")


@pytest.mark.parametrize("killed_at", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_a_fit_killed_between_the_two_checkpoint_files_is_repaired_on_load(
        tmp_path, monkeypatch, killed_at):
    """The history is written first: a process killed before the arrays of the same iteration
    (here: at the write of the arrays of the 1st or the 3rd checkpoint, after its history)
    leaves a longer history, which the next fit cuts back to the arrays' iteration; it then
    gives exactly the numbers of an uninterrupted fit."""
    whole = _small_fit()
    path = tmp_path / "c.eqx"
    serialise, writes = eqx.tree_serialise_leaves, []

    def killed(*args, **kwargs):
        writes.append(1)
        if len(writes) == killed_at:
            raise KeyboardInterrupt  # as a kill: atomic_write leaves no partial file
        return serialise(*args, **kwargs)

    monkeypatch.setattr(eqx, "tree_serialise_leaves", killed)
    with pytest.raises(KeyboardInterrupt):
        _small_fit(checkpoint=path, checkpoint_every=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["c.eqx"] if killed_at > 1 else []
                                                          ) + ["c.json"]
    assert json.loads((tmp_path / "c.json").read_text())["iteration"] == 2 * killed_at
    kept = 2 * (killed_at - 1)  # the iteration of the arrays on disk
    if killed_at > 1:
        assert _stored_iteration(path) == kept
    first = []

    def check_repaired(it, loss, schedule):
        if not first:  # the history on disk was cut back to the arrays when loaded
            first.append(it)
            record = json.loads((tmp_path / "c.json").read_text())
            assert record["iteration"] == kept and record["history"] == whole.history[:kept]

    resumed = _small_fit(checkpoint=path, checkpoint_every=2, callback=check_repaired)
    assert first == [kept]
    _same_fit(resumed, whole)


def test_a_checkpoint_of_another_schedule_or_without_its_history_is_refused(tmp_path):
    path = tmp_path / "d.eqx"
    _small_fit(checkpoint=path, iterations=2)
    with pytest.raises(ValueError, match="does not fit these parameters and optimiser"):
        _small_fit(checkpoint=path, pieces=6)
    with pytest.raises(ValueError, match="does not fit these parameters and optimiser"):
        model, interp, init = _small_problem()
        fit_schedule(SampleLoss(combined_loss, model, interp, 4), init, jax.random.PRNGKey(3),
                     FitOptions(batch=32, iterations=8, checkpoint=path),
                     optimizer=ns.learning.make_optimizer("sgd"))
    (tmp_path / "d.json").write_text("{")
    with pytest.raises(ValueError, match="is not a readable checkpoint history"):
        _small_fit(checkpoint=path)
    (tmp_path / "d.json").unlink()
    with pytest.raises(ValueError, match="has no loss history"):
        _small_fit(checkpoint=path)


def test_the_stopping_point_is_replayed_from_the_checkpoint(tmp_path):
    """The moving average and the best iteration come back from the stored history: a fit that
    stopped early stays stopped, and one interrupted before its stop stops at the same
    iteration."""
    options = dict(fn=lambda m, x: 0.0 * jnp.mean(x), iterations=200, patience=5,
                   checkpoint_every=2)
    whole = _small_fit(**options)
    with pytest.raises(KeyboardInterrupt):
        _small_fit(checkpoint=tmp_path / "e.eqx", callback=_interrupt_at(5), **options)
    resumed = _small_fit(checkpoint=tmp_path / "e.eqx", **options)
    _same_fit(resumed, whole)
    again = _small_fit(checkpoint=tmp_path / "e.eqx", **options)
    _same_fit(again, whole)


def test_common_random_numbers_reuse_the_same_prior_draw():
    seen = []
    _small_fit(iterations=3, common_random_numbers=True,
               callback=lambda it, loss, s: seen.append(loss))
    fresh = _small_fit(iterations=3).history
    assert len(seen) == 3 and seen != fresh  # fresh noise changes the path


def test_early_stopping_stops_a_flat_loss():
    result = _small_fit(lambda m, x: 0.0 * jnp.mean(x), iterations=200, patience=5)
    assert result.stopped_early and result.iterations == 6  # best at 0, then 5 without gain


def _user_loss(model, x):
    return (soft_mode_fraction(model, x) - 0.7) ** 2 + 0.01 * jnp.mean(x**2)


@pytest.mark.parametrize("name", ["user", "combined", "mode", "low"])
def test_sample_loss_is_the_function_of_the_solved_samples(name, x64):
    from noisesched.learning import low_level_loss, mode_asymmetry_loss

    fn = {"user": _user_loss, "combined": combined_loss, "mode": mode_asymmetry_loss,
          "low": low_level_loss}[name]
    model, interp, sched = _small_problem()
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(4), 16, dtype=jnp.float64)
    loss = SampleLoss(fn, model, interp, 5, solver="heun", checkpoints=2)
    x = ns.solve(model, interp, sched, x0, steps=5, solver="heun", method="scan").x
    assert float(loss(sched, x0)) == float(fn(model, x))
    assert loss.needs_prior and loss.interpolant is interp
    with pytest.raises(ValueError, match="SampleLoss needs the prior batch x0"):
        loss(sched)


def test_a_fit_of_a_sample_loss_equals_the_loop_it_replaces():
    """``SampleLoss`` with a user function: the same prior draws (``fold_in(key, i)``), solves,
    losses and Adam steps as the loop ``fit_schedule(model, interp, …, loss=fn)`` ran before
    the loss protocol, written out here."""
    import optax

    model, interp, init = _small_problem()
    key, steps, batch, iterations = jax.random.PRNGKey(3), 4, 32, 6
    result = fit_schedule(SampleLoss(_user_loss, model, interp, steps), init, key,
                          FitOptions(batch=batch, iterations=iterations))
    optimizer = ns.learning.make_optimizer()
    params, static = eqx.partition(init, eqx.is_inexact_array)
    state = optimizer.init(params)

    @eqx.filter_jit
    def update(p, state, model, x0):
        def objective(p):
            x = ns.solve(model, interp, eqx.combine(p, static), x0, steps=steps, solver="euler",
                         method="scan").x
            return _user_loss(model, x)

        value, grads = jax.value_and_grad(objective)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    history = []
    for it in range(iterations):
        x0 = ns.sample_prior(interp, jax.random.fold_in(key, it), batch)
        params, state, value = update(params, state, model, x0)
        history.append(float(value))
    assert result.history == history
    for a, b in zip(jax.tree.leaves(result.schedule), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.history[-1] < result.history[0]


def test_progress_writes_plain_lines_when_stderr_is_not_a_terminal(capsys):
    _small_fit(iterations=3, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("fit: 0/3") and lines[-1].startswith("fit: 3/3 (100 %)")
    assert "loss " in lines[-1] and "(avg " in lines[-1]
    _small_fit(iterations=3)
    assert capsys.readouterr().err == ""


def test_the_progress_meter_redraws_on_a_terminal_and_writes_lines_elsewhere():
    from noisesched._progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (io.StringIO(), Terminal()):
        bar = progress_bar(4, desc="work", initial=1, stream=stream)
        for i in range(3):
            bar.set_postfix_str(f"step {i}", refresh=False)
            bar.update(1)
        bar.close()
        text = stream.getvalue()
        assert "4/4" in text and "step 2" in text
        if isinstance(stream, Terminal):
            assert "\r" in text  # redrawn in place
        else:
            lines = text.splitlines()
            assert "\r" not in text and lines[0].startswith("work: 1/4")
            assert lines[-1].startswith("work: 4/4 (100 %)") and len(lines) == 2


def test_exact_loss_is_differentiable_and_matches_the_oracle(x64):
    """The implicit derivative of the threshold against central differences of the oracle at
    d = 100. (At d = 10³, 10⁴ the final overlap jumps from −|μ| to |μ| within 10⁻¹⁰ of the
    threshold and the two differ by 1 % and 3 %: see ExactLoss.)"""
    from noisesched.learning import ExactLoss

    d = 100
    interp = ns.Interpolant("vp", "linear", d)
    red = ns.theory.TwoModeReduction.two_modes(d)
    loss = ExactLoss.of(red, interp, 10)
    sched = NoiseRatioKnots.uniform(interp, 20)
    parts = loss.parts(sched)
    exact = ns.theory.gm_oracle(red, interp, sched, 10)
    assert float(parts["mode_weight"]) == float(exact["mode_weight"])
    grad, fd = _gradient_and_central_differences(
        lambda s: ns.theory.gm_oracle(red, interp, s, 10)["threshold"], sched, 1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert float(jnp.max(jnp.abs(grad))) > 1e-2


def test_exact_loss_learns_vp_from_the_constant_schedule(x64):
    """d = 10⁴, N = 10 Euler: the constant schedule gives p̂ = 1 − 10⁻¹¹; the probit-scale exact
    loss still has a gradient and brings p̂ to p."""
    from noisesched.learning import ExactLoss, make_optimizer

    d = 10_000
    interp = ns.Interpolant("vp", "linear", d)
    red = ns.theory.TwoModeReduction.two_modes(d)
    loss = ExactLoss.of(red, interp, 10)
    init = NoiseRatioKnots.from_schedule(ns.schedules.constant(), interp, 20)
    assert float(loss.parts(init)["mode_weight"]) > 0.999
    assert not loss.needs_prior and loss.interpolant is interp
    assert float(loss(init)) == float(loss(init, None))
    result = fit_schedule(loss, init, jax.random.PRNGKey(0), FitOptions(iterations=300),
                          optimizer=make_optimizer("adam", 0.1, lr_schedule="cosine",
                                                   iterations=300))
    parts = loss.parts(result.schedule)
    assert abs(float(parts["mode_weight"]) - 0.8) < 0.01
    assert abs(float(parts["within_mode_var"]) / 0.25 - 1) < 0.05


def test_save_and_load_every_family(tmp_path, x64):
    from noisesched.learning import load_schedule, save_schedule

    interp = ns.Interpolant("vp", "linear", 1000)
    t = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
    for sched in _families(interp):
        path = save_schedule(sched, tmp_path / "s.json", interpolant=interp, steps=10)
        back = load_schedule(path)
        np.testing.assert_array_equal(jax.vmap(back)(t), jax.vmap(sched)(t))
    moved = load_schedule(path, ns.Interpolant("vp", "linear", 10**5))
    assert moved.interpolant.d == 10**5
    with pytest.raises(ValueError, match="learnable families"):
        save_schedule(ns.schedules.constant(), tmp_path / "c.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a readable schedule file"):
        load_schedule(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- threshold loss
def test_threshold_loss_finds_the_oracle_threshold_on_every_row(x64):
    from noisesched.learning import ThresholdLoss

    d, steps = 300, 6
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("vp", "linear", d)
    sched = NoiseRatioKnots.uniform(interp, 12)
    loss = ThresholdLoss(model, interp, steps, bisections=40)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 16, dtype=jnp.float64)
    parts = loss.parts(sched, x0)
    exact = ns.theory.gm_oracle(model, interp, sched, steps)
    np.testing.assert_allclose(parts["thresholds"], float(exact["threshold"]), atol=1e-8)
    assert float(parts["mode_weight"]) == pytest.approx(float(exact["mode_weight"]), abs=1e-9)


@pytest.mark.parametrize("which", ["gm", "cw"])
def test_threshold_loss_gradient_matches_finite_differences(which, x64):
    from noisesched.learning import ThresholdLoss

    d, steps = 60, 5
    model = (ns.GaussianMixture.two_modes(d=d) if which == "gm"
             else ns.CurieWeiss(d=d, beta=2.0, h=0.5 * math.log(4)))
    interp = ns.Interpolant("vp", "linear", d)
    sched = NoiseRatioKnots.uniform(interp, 8)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(1), 8, dtype=jnp.float64)
    loss = ThresholdLoss(model, interp, steps, bisections=50, weight_low=0.0)
    grad, fd = _gradient_and_central_differences(lambda s: loss(s, x0), sched, 1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7)
    assert float(jnp.max(jnp.abs(grad))) > 1e-3


def test_threshold_loss_is_the_fraction_of_final_samples_in_the_positive_mode(x64):
    """Curie–Weiss: each row's final phase is + exactly when its initial coordinate along e is
    above the row's threshold (the monotonicity the estimator assumes), and the estimate agrees
    with the fraction of final samples (3 standard errors)."""
    from noisesched.learning import ThresholdLoss

    d, steps, n = 100, 8, 1500
    model = ns.CurieWeiss(d=d, beta=2.0, h=0.5 * math.log(4))
    interp = ns.Interpolant("vp", "linear", d)
    sched = NoiseRatioKnots.uniform(interp, 16)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(2), n, dtype=jnp.float64)
    loss = ThresholdLoss(model, interp, steps, bisections=40)
    parts = loss.parts(sched, x0)
    u = x0 @ jnp.full((d,), 1.0 / math.sqrt(d)) / interp.alpha0
    x1 = ns.solve(model, interp, sched, x0, steps=steps, method="scan").x
    positive = jnp.mean(x1, axis=-1) > 0
    np.testing.assert_array_equal(positive, u > parts["thresholds"])
    hard = float(jnp.mean(positive))
    assert abs(float(parts["mode_weight"]) - hard) < 3 * math.sqrt(hard * (1 - hard) / n)


# ----------------------------------------------------------------------------- teacher loss
def _teacher_problem(kind="vp", n=16, d=20, seed=0):
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant(kind, "linear", d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(seed), n, dtype=jnp.float64)
    return model, interp, x0


def test_the_flow_map_does_not_depend_on_the_schedule(x64):
    """The exact PF-ODE map x0 ↦ X_1 is the same for every schedule (TeacherLoss's target):
    Heun on the constant and the VP-dilated (k = 3) schedule, d = 20. The gap between the two
    end points is the difference of two Heun errors, O(N⁻²): it shrinks 16-fold from N = 128 to
    512 (measured 15.5) and is below 10⁻⁴ at N = 512 (measured 1.7·10⁻⁵). Adaptive Tsit5 solves
    at rtol = atol = 10⁻¹⁰ agree to 10⁻⁹ (measured 3·10⁻¹¹) and with Heun at N = 512 to 10⁻⁴
    (measured 2·10⁻⁵ and 4·10⁻⁵)."""
    model, interp, x0 = _teacher_problem()
    schedules = (ns.schedules.constant(), ns.schedules.vp_dilated(20, 3.0))

    def heun(s, steps):
        return ns.solve(model, interp, s, x0, steps=steps, solver="heun", method="scan").x

    def adaptive(s):
        return ns.solve(model, interp, s, x0, steps=1, solver="tsit5", adaptive=True,
                        rtol=1e-10, atol=1e-10).x

    gaps = {n: float(jnp.max(jnp.abs(heun(schedules[0], n) - heun(schedules[1], n))))
            for n in (128, 512)}
    assert gaps[512] < 1e-4
    assert 10 < gaps[128] / gaps[512] < 22
    exact = [adaptive(s) for s in schedules]
    assert float(jnp.max(jnp.abs(exact[0] - exact[1]))) < 1e-9
    for s in schedules:
        assert float(jnp.max(jnp.abs(heun(s, 512) - exact[0]))) < 1e-4
    assert float(jnp.max(jnp.abs(exact[0] - x0))) > 1.0  # the map does move the states


def test_teacher_loss_is_the_distance_to_the_teachers_end_points(x64):
    from noisesched.learning import TeacherLoss

    model, interp, x0 = _teacher_problem("ve")
    sched = ns.schedules.constant()
    loss = TeacherLoss(model, interp, 6, teacher_steps=256)
    student = ns.solve(model, interp, sched, x0, steps=6, method="scan").x
    target = ns.solve(model, interp, sched, x0, steps=256, solver="heun", method="scan").x
    np.testing.assert_allclose(loss.teacher(x0, sched), target, rtol=1e-12, atol=1e-12)
    expected = jnp.mean(jnp.sum((student - target) ** 2, axis=-1)) / 20
    assert float(loss(sched, x0)) == pytest.approx(float(expected), rel=1e-12)
    # another reference (fixed), and an adaptive teacher (in a fit: test_fit_cli): the same
    # map, so the same loss to the teachers' errors
    dilated = TeacherLoss(model, interp, 6, teacher_steps=256,
                          reference=ns.schedules.ve_dilated(20, 3.0))
    adaptive = TeacherLoss(model, interp, 6, teacher_adaptive=True, teacher_solver="tsit5")
    for other in (dilated, adaptive):
        assert float(other(sched, x0)) == pytest.approx(float(loss(sched, x0)), rel=1e-3)


@pytest.mark.parametrize("solver,order", [("euler", 1.0), ("heun", 2.0)])
def test_teacher_loss_vanishes_at_the_order_of_the_solver(solver, order, x64):
    """VE, constant schedule, d = 20: the loss falls monotonically over N = 4, 16, 64 as
    N^(−2·order) (it is a squared error). The error of an order-q solver is C/N^q + O(N^(−q−1)),
    so the order read from N and 4N is q + O(1/N): measured 1.06, 0.95 (Euler) and 1.91, 1.86
    (Heun); the Heun teacher with 512 steps adds < 2 % to the error at N = 64. Tolerance 0.15
    on the last pair (asymptotic), 0.25 on the first."""
    from noisesched.learning import TeacherLoss

    model, interp, x0 = _teacher_problem("ve", n=32)
    sched = ns.schedules.constant()
    steps = (4, 16, 64)
    values = [float(TeacherLoss(model, interp, n, solver=solver)(sched, x0)) for n in steps]
    assert values[0] > values[1] > values[2] > 0
    orders = [0.5 * math.log(values[i] / values[i + 1]) / math.log(4) for i in range(2)]
    assert abs(orders[0] - order) < 0.25, orders
    assert abs(orders[1] - order) < 0.15, orders


def test_teacher_loss_gradient_reaches_the_schedule_only_through_the_student(x64):
    """jax.grad over a learnable family against a central difference along a random direction
    (float64, ε = 10⁻⁶: truncation ~ε², rounding ~10⁻¹⁶/ε relative, so rtol 10⁻⁶). The
    difference is taken with the teacher's reference fixed at the base schedule: with
    ``reference = None`` (the learned schedule, under stop_gradient) the gradient is the same."""
    from noisesched.learning import TeacherLoss

    model, interp, x0 = _teacher_problem("ve", n=8)
    base = PiecewiseLinear(0.3 * jax.random.normal(jax.random.PRNGKey(5), (8,)))
    moving = TeacherLoss(model, interp, 8, teacher_steps=128)
    fixed = TeacherLoss(model, interp, 8, teacher_steps=128, reference=base)
    grad = jax.grad(lambda logits: moving(PiecewiseLinear(logits), x0))(base.logits)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 1e-4
    np.testing.assert_allclose(
        jax.grad(lambda logits: fixed(PiecewiseLinear(logits), x0))(base.logits), grad,
        rtol=1e-12, atol=1e-15)
    v = jax.random.normal(jax.random.PRNGKey(6), (8,))
    eps = 1e-6
    fd = (fixed(PiecewiseLinear(base.logits + eps * v), x0)
          - fixed(PiecewiseLinear(base.logits - eps * v), x0)) / (2 * eps)
    assert float(grad @ v) == pytest.approx(float(fd), rel=1e-6)


def test_teacher_loss_rejects_bad_arguments_naming_them(unchecked_types):
    from noisesched.learning import TeacherLoss

    model = ns.GaussianMixture.two_modes(d=20)
    interp = ns.Interpolant("vp", "linear", 20)
    cases = [
        (dict(steps=0), "steps must be an integer >= 1; got 0"),
        (dict(steps=8, teacher_steps=8), "teacher_steps must exceed steps = 8"),
        (dict(teacher_steps=0), "teacher_steps must be an integer >= 1; got 0"),
        (dict(solver="tsit5"),
         "solver must be one of 'euler', 'heun', 'sigma_euler', 'dpmpp_2m'; got 'tsit5'"),
        (dict(method="loop"), "method must be one of 'diffrax', 'scan'"),
        (dict(teacher_solver="rk4"), "teacher_solver must be one of"),
        (dict(teacher_adaptive=True), "teacher_solver (teacher_adaptive) must be one of "
                                      "'bosh3', 'tsit5', 'dopri5'; got 'heun'"),
        (dict(teacher_adaptive=1), "teacher_adaptive must be True or False"),
        (dict(teacher_adaptive=True, teacher_solver="tsit5", teacher_rtol=0.0),
         "teacher_rtol must be in (0, inf)"),
        (dict(checkpoints=0), "checkpoints must be an integer >= 1; got 0"),
        (dict(reference="constant"), "reference must be a schedule"),
        (dict(model=model.means), "model must be a denoiser (noisesched.AbstractDenoiser)"),
        (dict(interpolant=ns.Interpolant("vp", "linear", 30)),
         "interpolant d = 30 must equal the model's d = 20"),
    ]
    for change, message in cases:
        args = {"model": model, "interpolant": interp, "steps": 4, **change}
        with pytest.raises(ValueError, match=re.escape(message)):
            TeacherLoss(**args)
    loss = TeacherLoss(model, interp, 4)
    with pytest.raises(ValueError, match="reference is None"):
        loss.teacher(jnp.zeros((2, 20)))
    with pytest.raises(ValueError, match="TeacherLoss needs the prior batch x0"):
        loss(ns.schedules.constant())
