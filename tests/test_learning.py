import math

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched.learning import NoiseRatioKnots, PiecewiseLinear, SigmoidSum


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
    from noisesched.learning import fit_schedule

    d = 400
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant(kind="ve", shape="linear", d=d)
    init = PiecewiseLinear.from_schedule(ns.schedules.constant(), 6)
    result = fit_schedule(model, interp, init, jax.random.PRNGKey(0), steps=6, batch=128,
                          iterations=60)
    sched, history = result.schedule, result.history
    assert len(history) == 60 and history[-1] < 0.5 * history[0]
    key = jax.random.PRNGKey(99)
    before = ns.metrics.within_mode_variance(
        model, ns.sample(model, interp, init, key, 2000, steps=6))
    after = ns.metrics.within_mode_variance(
        model, ns.sample(model, interp, sched, key, 2000, steps=6))
    assert float(after) > 2 * float(before)
    assert abs(float(after) / 0.25 - 1) < abs(float(before) / 0.25 - 1)


def test_fit_rejects_bad_input():
    from noisesched.learning import fit_schedule

    model = ns.GaussianMixture.two_modes(d=20)
    interp = ns.Interpolant(kind="vp", shape="linear", d=20)
    with pytest.raises(ValueError, match="no trainable array leaves"):
        fit_schedule(model, interp, ns.schedules.constant(), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1; got 0"):
        fit_schedule(model, interp, PiecewiseLinear(jnp.zeros(3)), jax.random.PRNGKey(0),
                     iterations=0)


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
    for checkpoints, method in [(None, "scan"), (1, "scan"), (4, "scan"), (3, "diffrax")]:
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
def _small_fit(**options):
    from noisesched.learning import fit_schedule

    d = 50
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("ve", "linear", d)
    init = NoiseRatioKnots.uniform(interp, 8)
    defaults = dict(steps=4, batch=32, iterations=8)
    return fit_schedule(model, interp, init, jax.random.PRNGKey(3), **{**defaults, **options})


def test_an_interrupted_fit_resumes_with_identical_results(tmp_path):
    whole = _small_fit(checkpoint=tmp_path / "a.npz", checkpoint_every=1)

    def interrupt(it, loss, schedule):
        if it == 4:
            raise KeyboardInterrupt

    path = tmp_path / "b.npz"
    with pytest.raises(KeyboardInterrupt):
        _small_fit(checkpoint=path, checkpoint_every=2, callback=interrupt)
    with np.load(path) as data:
        assert int(data["iteration"]) == 4  # the last checkpoint before the interruption
    resumed = _small_fit(checkpoint=path, checkpoint_every=2)
    assert resumed.history == whole.history and resumed.iterations == 8
    for a, b in zip(jax.tree.leaves(resumed.schedule), jax.tree.leaves(whole.schedule),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="belongs to another fit"):
        _small_fit(checkpoint=path, fingerprint="other")


def test_common_random_numbers_reuse_the_same_prior_draw():
    seen = []
    _small_fit(iterations=3, common_random_numbers=True,
               callback=lambda it, loss, s: seen.append(loss))
    fresh = _small_fit(iterations=3).history
    assert len(seen) == 3 and seen != fresh  # fresh noise changes the path


def test_early_stopping_stops_a_flat_loss():
    result = _small_fit(iterations=200, loss=lambda m, x: 0.0 * jnp.mean(x), patience=5)
    assert result.stopped_early and result.iterations == 6  # best at 0, then 5 without gain


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
    from noisesched.learning import ExactLoss, fit_schedule, make_optimizer

    d = 10_000
    interp = ns.Interpolant("vp", "linear", d)
    red = ns.theory.TwoModeReduction.two_modes(d)
    loss = ExactLoss.of(red, interp, 10)
    init = NoiseRatioKnots.from_schedule(ns.schedules.constant(), interp, 20)
    assert float(loss.parts(init)["mode_weight"]) > 0.999
    result = fit_schedule(None, interp, init, jax.random.PRNGKey(0), steps=10, iterations=300,
                          loss=loss, optimizer=make_optimizer("adam", 0.1, lr_schedule="cosine",
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
