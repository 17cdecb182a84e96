import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TEST_FUNCTIONS, velocity_orthogonality

import noisesched as ns
from noisesched import schedules


def three_modes(d=5):
    key = jax.random.PRNGKey(3)
    means = 1.5 * jax.random.normal(key, (3, d))
    return ns.GaussianMixture(weights=[0.5, 0.3, 0.2], means=means, sigma=0.7)


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("vp", "trig"), ("ve", "linear")])
@pytest.mark.parametrize("t", [0.05, 0.3, 0.5, 0.8, 0.97])
def test_score_is_grad_of_exact_log_density(kind, shape, t, x64):
    model = three_modes()
    interp = ns.Interpolant(kind=kind, shape=shape, d=model.d)
    sched = schedules.vp_dilated(model.d, 1.0)
    x = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (7, model.d))
    c = interp.coefficients(sched, t)
    expected = jax.vmap(jax.grad(lambda y: model.log_density(c, y)))(x)
    np.testing.assert_allclose(model.score(interp, sched, t, x), expected, rtol=1e-9, atol=1e-10)


def test_denoiser_against_importance_weighted_monte_carlo(x64):
    """E[x1 | x_t = x] = Σ_j x1_j N(x; β x1_j, α²) / Σ_j N(x; β x1_j, α²) over data samples x1_j."""
    model = ns.GaussianMixture.two_modes(d=2, p=0.7, m=1.0, sigma=0.6)
    interp = ns.Interpolant(kind="vp", shape="linear", d=2)
    sched = schedules.constant()
    t = 0.6
    c = interp.coefficients(sched, t)
    x1 = model.sample(jax.random.PRNGKey(0), 400_000)
    points = jnp.array([[0.3, -0.1], [-0.5, -0.4], [0.05, 0.02]])
    for x in points:
        logw = -jnp.sum((x - c.beta * x1) ** 2, axis=-1) / (2 * c.alpha_sq)
        w = jax.nn.softmax(logw)
        est = jnp.sum(w[:, None] * x1, axis=0)
        ess = 1.0 / jnp.sum(w**2)
        spread = jnp.sqrt(jnp.sum(w[:, None] * (x1 - est) ** 2, axis=0))
        err = spread / jnp.sqrt(ess)
        got = model.denoiser(interp, sched, t, x)
        assert bool(jnp.all(jnp.abs(got - est) < 4 * err)), (got, est, err)


@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("vp", "trig"), ("ve", "linear")])
@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_drift_is_conditional_velocity(kind, shape, t, x64):
    model = three_modes(d=3)
    interp = ns.Interpolant(kind=kind, shape=shape, d=3)
    sched = schedules.vp_dilated(3, 1.0)
    means, errs = velocity_orthogonality(
        model, interp, sched, t, jax.random.PRNGKey(11), 200_000, TEST_FUNCTIONS
    )
    assert np.all(np.abs(means) < 4 * errs + 1e-12), (means, errs)


def test_velocity_check_has_power(x64):
    """The orthogonality check rejects a drift missing its mode term."""

    class Wrong(ns.GaussianMixture):
        def velocity(self, c, x):
            return (c.alpha_dalpha + self.sigma**2 * c.beta * c.dbeta) / (
                c.alpha_sq + self.sigma**2 * c.beta**2
            ) * x

    good = three_modes(d=3)
    wrong = Wrong(good.weights, good.means, good.sigma)
    interp = ns.Interpolant(kind="vp", shape="linear", d=3)
    means, errs = velocity_orthogonality(
        wrong, interp, schedules.constant(), 0.5, jax.random.PRNGKey(11), 200_000, TEST_FUNCTIONS
    )
    assert np.any(np.abs(means) > 10 * errs)


def test_drift_equals_generic_velocity_form(x64):
    model = three_modes()
    interp = ns.Interpolant(kind="vp", shape="trig", d=model.d)
    sched = schedules.constant()
    x = jax.random.normal(jax.random.PRNGKey(2), (4, model.d))
    for t in (0.1, 0.5, 0.9):
        c = interp.coefficients(sched, t)
        generic = ns.AbstractModel.velocity(model, c, x)
        np.testing.assert_allclose(model.drift(interp, sched, t, x), generic, rtol=1e-10)


def test_exact_samples_have_the_data_law():
    model = ns.GaussianMixture.two_modes(d=50, p=0.8, m=1.0, sigma=0.5)
    x = model.sample(jax.random.PRNGKey(0), 20_000)
    plus = np.asarray(x @ model.means[0] > 0)
    se = np.sqrt(0.8 * 0.2 / 20_000)
    assert abs(plus.mean() - 0.8) < 4 * se
    resid = np.where(plus[:, None], x - model.means[0], x - model.means[1])
    assert abs(resid.var() - 0.25) < 4 * 0.25 * np.sqrt(2 / resid.size)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.999, 1.0])
def test_float32_drift_at_a_million_dimensions(t):
    """No overflow or loss of precision in the O(d) sums at d = 10^6: the float32 drift agrees
    with float64 arithmetic on the same inputs and the same (float32) coefficients."""
    d = 1_000_000
    key = jax.random.PRNGKey(0)
    for kind in ("vp", "ve"):
        interp = ns.Interpolant(kind=kind, shape="linear", d=d)
        sched = schedules.make(f"{kind}_dilated", interp)
        model = ns.GaussianMixture.two_modes(d=d)
        c = interp.coefficients(sched, t)
        x = c.alpha * jax.random.normal(key, (3, d)) + c.beta * model.sample(key, 3)
        x = x.at[2].set(c.alpha * jax.random.normal(key, (d,)))  # undecided: pure noise
        b32 = model.velocity(c, x)
        assert bool(jnp.all(jnp.isfinite(b32)))
        with jax.enable_x64(True):
            model64 = ns.GaussianMixture.two_modes(d=d)
            c64 = ns.Coefficients(*(jnp.float64(np.float32(v)) for v in c))
            b64 = model64.velocity(c64, jnp.asarray(np.asarray(x), jnp.float64))
        for row in range(3):
            scale = float(jnp.max(jnp.abs(b64[row])))
            assert float(jnp.max(jnp.abs(b32[row] - b64[row]))) <= 1e-5 * scale


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: ns.GaussianMixture.two_modes(d=10, p=1.0), r"p must be in \(0, 1\); got 1.0"),
        (lambda: ns.GaussianMixture.two_modes(d=10, p=-0.2), r"p must be in \(0, 1\)"),
        (lambda: ns.GaussianMixture.two_modes(d=10, sigma=0.0), r"sigma must be in \(0, 1e\+15\]"),
        (lambda: ns.GaussianMixture.two_modes(d=0), r"d must be an integer >= 1; got 0"),
        (lambda: ns.GaussianMixture.two_modes(d=10, m=float("nan")), "m must be a real number"),
        (lambda: ns.GaussianMixture([0.5, 0.5], jnp.zeros((3, 4)), 1.0),
         r"means must have shape \(K, d\) = \(2, d\)"),
        (lambda: ns.GaussianMixture([0.5, 0.6], jnp.zeros((2, 4)), 1.0), "weights must sum to 1"),
        (lambda: ns.GaussianMixture([1.2, -0.2], jnp.zeros((2, 4)), 1.0), "weights must each"),
        (lambda: ns.GaussianMixture([0.5, 0.5], jnp.full((2, 4), jnp.nan), 1.0),
         "means must be finite"),
        (lambda: ns.GaussianMixture([0.5, 0.5], jnp.zeros((2, 4)), float("inf")),
         "sigma must be finite"),
    ],
)
def test_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("shape", [(1, 8, 400), (1, 64, 200), (2, 8, 400), (1, 400), (400,)])
@pytest.mark.parametrize("K", [2, 4])
def test_projection_under_jit_on_any_batch_shape(shape, K):
    """μ_k·x under jit against numpy for batches with a leading axis of size 1 (a vmap of one
    configuration), which XLA:CPU once reduced with the first mean for every k."""
    from noisesched.models.means import project

    means = jax.random.normal(jax.random.PRNGKey(K), (K, shape[-1]))
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    expected = np.asarray(x, np.float64) @ np.asarray(means, np.float64).T
    np.testing.assert_allclose(jax.jit(project)(x, means), expected, rtol=1e-4, atol=1e-3)
