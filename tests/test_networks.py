"""Networks as denoisers: the EDM preconditioning against its textbook form, a network that
computes the exact mixture's F reproduces the mixture's denoiser and drift on every
interpolant, training (a Gaussian learned to its exact MMSE, resume bit for bit), saving and
loading, the denoising error against closed forms."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched.networks import (
    ArrayData,
    LogUniformNoise,
    TrainOptions,
    data_scale,
    regression_target,
    scalings,
    sigma_coefficients,
)
from noisesched.networks.preconditioning import NOISE_CLIP


# ----------------------------------------------------------------------------- preconditioning
@pytest.mark.parametrize("sigma", [1e-3, 0.3, 1.0, 7.0, 300.0])
def test_scalings_equal_edm_in_y_space(sigma):
    """In x = β y: skip·x = c_skip y, out = c_out, inp·x = c_in y, noise = ¼ log(σ/σ_d), with
    EDM's c_skip = σ_d²/(σ² + σ_d²), c_out = σ σ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²)."""
    sd, beta = 0.7, 0.37
    alpha = sigma * beta
    with jax.enable_x64(True):
        s = scalings(jnp.float64(alpha), jnp.float64(beta), sd)
        y = 1.3
        x = beta * y
        np.testing.assert_allclose(float(s.skip) * x, sd**2 / (sigma**2 + sd**2) * y, rtol=1e-12)
        np.testing.assert_allclose(float(s.out), sigma * sd / math.sqrt(sigma**2 + sd**2),
                                   rtol=1e-12)
        np.testing.assert_allclose(float(s.inp) * x, y / math.sqrt(sigma**2 + sd**2),
                                   rtol=1e-12)
        np.testing.assert_allclose(float(s.noise), 0.25 * math.log(sigma / sd), rtol=1e-12)


def test_scalings_finite_at_both_ends_with_finite_gradients():
    sd = 1.1
    for alpha, beta in [(1.0, 0.0), (0.0, 1.0), (31.6, 0.0), (0.0, 0.5)]:
        s = scalings(jnp.float32(alpha), jnp.float32(beta), sd)
        assert all(np.isfinite(float(v)) for v in s)
        grads = jax.grad(lambda a, b: sum(scalings(a, b, sd)), argnums=(0, 1))(
            jnp.float32(alpha), jnp.float32(beta))
        assert all(np.isfinite(float(g)) for g in grads)
    # t = 0 (β = 0): D = σ_d F(x/α, +clip); t = 1 (α = 0): D = x (c_skip y = y)
    s0 = scalings(jnp.float32(2.0), jnp.float32(0.0), sd)
    assert float(s0.skip) == 0 and float(s0.out) == pytest.approx(sd)
    assert float(s0.noise) == pytest.approx(0.25 * NOISE_CLIP)
    s1 = scalings(jnp.float32(0.0), jnp.float32(0.5), sd)
    assert float(s1.skip) * 0.5 == pytest.approx(1.0) and float(s1.out) == 0
    assert float(s1.noise) == pytest.approx(-0.25 * NOISE_CLIP)


def test_regression_target_makes_the_denoiser_exact():
    """With F = F*, c_skip y + c_out F* = x1 (float64)."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(0)
        x1, z = jax.random.normal(key, (2, 5, 3), jnp.float64)
        sigma = jnp.array([1e-4, 0.1, 1.0, 10.0, 1e4])[:, None]
        sd = 0.8
        s = ns.networks.sigma_scalings(sigma, sd)
        y = x1 + sigma * z
        d = s.skip * y + s.out * regression_target(x1, z, sigma, sd)
        np.testing.assert_allclose(np.asarray(d), np.asarray(x1), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- an oracle network
class _ExactF(eqx.Module):
    """The F that makes the preconditioned denoiser exact for a law with an exact denoiser:
    F = (η(y; σ) − c_skip y)/c_out with σ = σ_d exp(4 noise), y = x_in √(σ² + σ_d²)."""

    model: ns.AbstractModel
    sigma_data: float

    def __call__(self, x, noise):
        sd = self.sigma_data
        sigma = sd * jnp.exp(4.0 * noise)
        y = x * jnp.sqrt(sigma**2 + sd**2)
        s = ns.networks.sigma_scalings(sigma, sd)
        eta = self.model.denoise(sigma_coefficients(sigma), y[None])[0]
        return (eta - s.skip * y) / s.out


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("vp", "trig"), ("ve", "linear"),
                                        ("ve", "trig")])
def test_exact_network_reproduces_the_mixture(kind, shape):
    """The network denoiser's η and closed-form drift equal the mixture's own (float64), for
    one network on every interpolant: the network sees only σ and c_in y."""
    with jax.enable_x64(True):
        d = 12
        gm = ns.GaussianMixture.two_modes(d=d, p=0.7, m=1.0, sigma=0.5)
        sd = 1.1
        net = ns.NetworkDenoiser(network=_ExactF(gm, sd), d=d, sigma_data=sd)
        interp = ns.Interpolant(kind, shape, d)
        sched = ns.schedules.Constant()
        x = jax.random.normal(jax.random.PRNGKey(1), (6, d), jnp.float64) * interp.alpha0
        for t in (0.05, 0.3, 0.6, 0.9, 0.99):
            c = interp.coefficients(sched, jnp.float64(t))
            xt = 0.5 * c.alpha * x / interp.alpha0 + c.beta * gm.sample(jax.random.PRNGKey(2), 6)
            np.testing.assert_allclose(net.denoise(c, xt), gm.denoise(c, xt), rtol=1e-8,
                                       atol=1e-10)
            np.testing.assert_allclose(net.velocity(c, xt), gm.velocity(c, xt), rtol=1e-7,
                                       atol=1e-9)
        # at t = 1 the drift needs α̇, which α α̇ = 0 no longer tells: nan, never a wrong value
        c1 = interp.coefficients(sched, jnp.float64(1.0))
        assert np.all(np.isnan(np.asarray(net.velocity(c1, x))))


def test_networks_start_at_c_skip_and_take_any_module():
    d = 16
    for network in (ns.MLP(d, width=8, depth=1, embed=8, key=jax.random.PRNGKey(0)),
                    ns.ConvNet((4, 4), channels=8, blocks=1, embed=8, groups=4,
                               key=jax.random.PRNGKey(0))):
        den = ns.NetworkDenoiser(network=network, d=d, sigma_data=1.0)
        c = sigma_coefficients(jnp.float32(0.5))
        x = jnp.ones((3, d))
        np.testing.assert_allclose(den.denoise(c, x), x / 1.25, rtol=1e-6)  # c_skip y
    with pytest.raises(ValueError, match="network must be callable"):
        ns.NetworkDenoiser(network=3, d=d, sigma_data=1.0)
    with pytest.raises(ValueError, match="sigma_data"):
        ns.NetworkDenoiser(network=lambda x, n: x, d=d, sigma_data=0.0)


# ----------------------------------------------------------------------------- denoising error
def test_denoising_error_matches_closed_form():
    """A Gaussian denoiser of the wrong scale s' on N(0, s²): excess = (a' − a)² (s² + σ²) per
    coordinate with a = s²/(s² + σ²); the exact one has excess 0 and MMSE a σ²."""
    d, s, s_wrong = 8, 1.0, 1.5
    law = ns.Gaussian(np.full(d, s))
    wrong = ns.Gaussian(np.full(d, s_wrong))
    sigmas = np.array([0.3, 1.0, 3.0])
    n = 20_000
    err = ns.denoising_error(wrong, law, sigmas, jax.random.PRNGKey(0), n=n)
    a = s**2 / (s**2 + sigmas**2)
    a_wrong = s_wrong**2 / (s_wrong**2 + sigmas**2)
    excess = (a_wrong - a) ** 2 * (s**2 + sigmas**2)
    assert np.all(np.abs(err["excess"] - excess) < 4 * err["excess_se"])
    assert np.all(np.abs(err["mmse"] - a * sigmas**2) < 4 * err["mmse_se"])
    same = ns.denoising_error(law, law, sigmas, jax.random.PRNGKey(0), n=1000)
    np.testing.assert_allclose(same["excess"], 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- training
def _gaussian_training(tmp_path=None, steps=300, callback=None):
    law = ns.Gaussian(np.array([0.5, 1.0, 2.0, 1.0]))
    net = ns.MLP(4, width=32, depth=1, embed=16, key=jax.random.PRNGKey(1))
    checkpoint = None if tmp_path is None else tmp_path / "checkpoint.eqx"
    options = TrainOptions(steps=steps, batch=128, ema_decay=0.99, checkpoint=checkpoint,
                           checkpoint_every=10)
    return law, ns.train_denoiser(net, law, jax.random.PRNGKey(0),
                                  noise=LogUniformNoise(0.05, 20.0), options=options,
                                  callback=callback)


def test_training_learns_a_gaussian_to_its_mmse():
    """The ideal F of a Gaussian is linear in x (the network's gate): after 300 steps the EMA
    denoiser's excess error is a few per cent of the exact MMSE at every level trained."""
    law, result = _gaussian_training()
    assert result.history[-1] < result.history[0]
    err = ns.denoising_error(result.denoiser, law, [0.1, 0.5, 2.0, 8.0], jax.random.PRNGKey(3),
                             n=4000)
    assert np.all(err["ratio"] < 0.05), err["ratio"]


def test_training_resumes_to_the_same_weights(tmp_path):
    _, whole = _gaussian_training(steps=40)

    class Stop(Exception):
        pass

    def stop(step, loss):
        if step == 24:
            raise Stop

    with pytest.raises(Stop):
        _gaussian_training(tmp_path, steps=40, callback=stop)
    _, resumed = _gaussian_training(tmp_path, steps=40)
    assert resumed.history == whole.history
    for a, b in zip(jax.tree.leaves(eqx.filter(resumed.denoiser, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(whole.denoiser, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_array_data_and_data_scale():
    x = np.arange(12.0).reshape(6, 2)
    data = ArrayData(x)
    assert data.d == 2
    assert data_scale(data, jax.random.PRNGKey(0)) == pytest.approx(np.sqrt(np.mean(x**2)))
    rows = np.asarray(data.sample(jax.random.PRNGKey(0), 50))
    assert all(any(np.array_equal(r, p) for p in x) for r in rows)
    for bad in (np.ones(3), np.ones((0, 2)), np.array([[np.nan, 1.0]])):
        with pytest.raises(ValueError, match="data must"):
            ArrayData(bad)


def test_train_rejects_bad_arguments(unchecked_types):
    law = ns.Gaussian(np.ones(4))
    net = ns.MLP(3, width=4, depth=0, embed=4, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"must take x of shape \(d,\) = \(4,\)"):
        ns.train_denoiser(net, law, jax.random.PRNGKey(0), options=TrainOptions(steps=1))
    with pytest.raises(ValueError, match="steps"):
        TrainOptions(steps=0)
    with pytest.raises(ValueError, match="data must be a data law"):
        ns.train_denoiser(net, "x.npz", jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"data must be an array of shape \(n, d\)"):
        ns.train_denoiser(net, np.ones(3), jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------- saving
def test_save_load_round_trip_and_bad_files(tmp_path):
    d = 6
    gm_spec = {"name": "gm", "d": d, "p": 0.8, "m": 1.0, "sigma": 0.5}
    net = ns.MLP(d, width=8, depth=1, embed=8, key=jax.random.PRNGKey(0))
    net = jax.tree.map(lambda a: a + 0.01 if eqx.is_inexact_array(a) else a, net)
    den = ns.NetworkDenoiser(network=net, d=d, sigma_data=1.1)
    ns.save_denoiser(tmp_path / "m", den, law=gm_spec)
    loaded = ns.load_denoiser(tmp_path / "m")
    assert isinstance(loaded, ns.LearnedModel)
    assert loaded.law.d == d and [f.exact for f in loaded.features] == [None] * 3
    assert loaded.data_law() is loaded.law and loaded.law.data_law() is loaded.law
    c = sigma_coefficients(jnp.float32(0.7))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, d))
    np.testing.assert_array_equal(loaded.denoise(c, x), den.denoise(c, x))
    bare = ns.load_denoiser(tmp_path / "m", law=None)
    assert isinstance(bare, ns.LearnedModel)  # the record names its law
    with pytest.raises(ValueError, match="trained for d = 6"):
        ns.load_denoiser(tmp_path / "m", d=7)
    with pytest.raises(ValueError, match="no trained denoiser"):
        ns.load_denoiser(tmp_path / "nothing")
    arrays = tmp_path / "m" / "denoiser.eqx"
    arrays.write_bytes(arrays.read_bytes()[:-8])
    with pytest.raises(ValueError, match="corrupt"):
        ns.load_denoiser(tmp_path / "m")
    (tmp_path / "m" / "denoiser.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable denoiser record"):
        ns.load_denoiser(tmp_path / "m")
    with pytest.raises(ValueError, match="hyperparameters"):
        ns.save_denoiser(tmp_path / "u", ns.NetworkDenoiser(network=lambda x, n: x, d=d,
                                                              sigma_data=1.0))


def test_noise_input_is_held_at_the_trained_range():
    """Beyond the levels a network was trained on, its noise input stays at the edge: at t = 0
    (σ = ∞) the network sees the largest trained level, not an extrapolated one."""
    sd = 2.0
    den = ns.NetworkDenoiser(network=lambda x, noise: noise * jnp.ones_like(x), d=3,
                             sigma_data=sd, sigma_range=(0.1, 10.0))
    x = jnp.zeros((1, 3))
    for alpha, beta, sigma in [(1.0, 0.0, 10.0), (1e4, 1.0, 10.0), (1e-5, 1.0, 0.1),
                               (3.0, 1.0, 3.0)]:
        c = sigma_coefficients(jnp.float32(alpha))._replace(beta=jnp.float32(beta))
        out = float(ns.networks.scalings(c.alpha, c.beta, sd).out)
        noise = np.asarray(den.denoise(c, x)) / out  # D = c_skip·0 + c_out·noise
        np.testing.assert_allclose(noise, 0.25 * math.log(sigma / sd), rtol=1e-5)
    _, result = _gaussian_training(steps=2)
    assert result.denoiser.sigma_range == (0.05, 20.0)


def test_a_checkpoint_of_another_training_is_refused(tmp_path):
    law = ns.Gaussian(np.ones(3))
    net = ns.MLP(3, width=4, depth=0, embed=4, key=jax.random.PRNGKey(0))
    options = TrainOptions(steps=3, batch=8, checkpoint=tmp_path / "c.eqx", checkpoint_every=1)
    ns.train_denoiser(net, law, jax.random.PRNGKey(0), options=options)
    for change in ({"noise": LogUniformNoise(0.1, 1.0)}, {"sigma_data": 3.0}):
        with pytest.raises(ValueError, match="belongs to another run"):
            ns.train_denoiser(net, law, jax.random.PRNGKey(0), options=options, **change)
    with pytest.raises(ValueError, match="belongs to another run"):
        ns.train_denoiser(net, law, jax.random.PRNGKey(9), options=options)
    one = ns.train_denoiser(net, law, jax.random.PRNGKey(0), options=TrainOptions(steps=1))
    assert len(one.history) == 1


def test_a_failed_save_keeps_the_model_saved_before(tmp_path):
    net = ns.MLP(3, width=4, depth=0, embed=4, key=jax.random.PRNGKey(0))
    den = ns.NetworkDenoiser(network=net, d=3, sigma_data=1.0)
    ns.save_denoiser(tmp_path, den)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        ns.save_denoiser(tmp_path, den, info={"x": object()})
    assert isinstance(ns.load_denoiser(tmp_path), ns.NetworkDenoiser)


@pytest.mark.parametrize("field,value,message", [
    ("sigma_range", [1.0], "sigma_range"),
    ("network", {"name": 5}, "network"),
    ("law", [1], "law"),
    ("d", 4.7, "d must be an integer"),
    ("d", 5, "is not valid"),
    ("law", {"name": "gm", "d": 3, "bogus": 1}, "cannot be made"),
    ("network", {"name": "mlp", "d": 3, "width": -1}, "cannot rebuild"),
])
def test_malformed_records_are_refused(tmp_path, field, value, message):
    import json

    net = ns.MLP(3, width=4, depth=0, embed=4, key=jax.random.PRNGKey(0))
    record = ns.save_denoiser(tmp_path, ns.NetworkDenoiser(network=net, d=3, sigma_data=1.0))
    data = json.loads(record.read_text())
    data[field] = value
    record.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        ns.load_denoiser(tmp_path)
