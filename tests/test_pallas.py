"""``method="pallas"``: the fixed-grid solve as one Pallas kernel (run by Pallas' interpreter on
the CPU) against the fused loop, and its gradients against finite differences."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules

D, N_ROWS, STEPS = 48, 19, 10


@pytest.fixture(scope="module")
def prior():
    interp = ns.Interpolant("vp", "linear", D)
    return interp, ns.sample_prior(interp, jax.random.PRNGKey(0), N_ROWS)


MODELS = {
    "gm2": lambda: ns.GaussianMixture.two_modes(D, p=0.7),
    "gm3-dense": lambda: ns.GaussianMixture([0.5, 0.3, 0.2], np.eye(3, D) * 4.0, 0.5),
    "cw": lambda: ns.CurieWeiss(D, beta=2.0, h=0.5 * math.log(4)),
}


@pytest.mark.parametrize("name,solver", [("gm2", "euler"), ("gm2", "heun"),
                                         ("gm3-dense", "euler"), ("cw", "euler"),
                                         ("cw", "heun")])
def test_kernel_gives_the_numbers_of_the_fused_loop(prior, name, solver):
    interp, x0 = prior
    model = MODELS[name]()
    sched = schedules.vp_dilated(D)
    scan = ns.solve(model, interp, sched, x0, steps=STEPS, solver=solver, method="scan",
                    row_block=None).x
    # 19 rows in programs of 4 rows (five programs, one padded row)
    kernel = ns.solve(model, interp, sched, x0, steps=STEPS, solver=solver, method="pallas",
                      row_block=4).x
    assert kernel.shape == scan.shape
    np.testing.assert_allclose(kernel, scan, rtol=1e-5, atol=1e-5 * float(jnp.abs(scan).max()))


def test_kernel_gradient_matches_finite_differences(prior):
    """d/dk of a loss of the samples through the kernel (custom VJP by recomputation) against
    central differences of the kernel's own forward solves, in float64."""
    interp, x0 = prior
    model = ns.GaussianMixture.two_modes(D, p=0.7)
    with jax.enable_x64(True):
        x = x0.astype(jnp.float64)

        def loss(k, x):
            out = ns.solve(model, interp, schedules.vp_dilated(D, k), x, steps=STEPS,
                           method="pallas", row_block=8).x
            return jnp.mean(out**2) + jnp.mean(out[:, :3])

        k, h = 2.5, 1e-5
        grad_k, grad_x = jax.grad(loss, argnums=(0, 1))(jnp.float64(k), x)
        fd = (loss(k + h, x) - loss(k - h, x)) / (2 * h)
        assert abs(float(fd)) > 1e-4
        assert float(grad_k) == pytest.approx(float(fd), rel=1e-6)
        # a direction in the initial states
        v = jax.random.normal(jax.random.PRNGKey(3), x.shape, jnp.float64)
        fd_x = (loss(k, x + h * v) - loss(k, x - h * v)) / (2 * h)
        assert float(jnp.vdot(grad_x, v)) == pytest.approx(float(fd_x), rel=1e-6)


class Isotropic(ns.AbstractDenoiser):
    d: int = eqx.field(static=True)

    def denoise(self, c, x):
        return c.beta * x / (c.alpha_sq + c.beta**2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(solver="dpmpp_2m"), r"solver \(method='pallas'\) must be one of 'euler', 'heun'"),
    (dict(adaptive=True), "adaptive=True needs method='diffrax'; got "
                                          "method='pallas'"),
    (dict(observe="overlap"), "method='pallas' keeps only X_1"),
    (dict(model=Isotropic(D)), "method='pallas' needs a model with a statistics form"),
])
def test_kernel_refuses_what_it_cannot_run(prior, kwargs, match):
    interp, x0 = prior
    model = kwargs.pop("model", ns.GaussianMixture.two_modes(D))
    with pytest.raises(ValueError, match=match):
        ns.solve(model, interp, schedules.constant(), x0, steps=4, method="pallas", **kwargs)


def test_kernel_rows_fit_on_chip():
    from noisesched._solve.pallas_kernel import default_kernel_rows

    assert default_kernel_rows(10_000, jnp.float32, "gpu") == 1  # 40 kB rows
    assert default_kernel_rows(1_000, jnp.float32, "gpu") == 16
    assert default_kernel_rows(10**6, jnp.float32, "gpu") is None  # the fused loop instead
    assert default_kernel_rows(10**6, jnp.float32, "cpu") == 8  # the interpreter


def test_which_solves_the_gpu_lowering_takes():
    from noisesched._solve.pallas_kernel import kernel_lowers_on_gpu

    assert kernel_lowers_on_gpu(ns.GaussianMixture.two_modes(16_384), 16_384, 4)
    assert kernel_lowers_on_gpu(ns.CurieWeiss(1024, beta=2.0), 1024, 8)
    assert not kernel_lowers_on_gpu(ns.GaussianMixture.two_modes(10_000), 10_000, 4)
    dense = ns.GaussianMixture([0.5, 0.3, 0.2], np.eye(3, 1024), 0.5)  # (3, 1024) means
    assert not kernel_lowers_on_gpu(dense, 1024, 4)
