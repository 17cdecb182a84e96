import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched.learning import PiecewiseLinear


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
    sched, history = fit_schedule(model, interp, init, jax.random.PRNGKey(0), steps=6,
                                  batch=128, iterations=60)
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
