"""Row-blocked fixed-grid solves (``solve(..., row_block=)``), the structured means of the
mixture and the Curie–Weiss drift with one exponential: the same numbers as the unblocked, dense and
three-tanh forms."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules
from noisesched._solve.row_blocks import auto_row_block, by_row_blocks, cache_bytes
from noisesched.models.means import ConstantMeans, DenseMeans, SeededMeans

D, N_ROWS, STEPS = 120, 37, 12


class Isotropic(ns.AbstractDenoiser):
    """A user's denoiser with no statistics form: data N(0, s² I), η = s²β x/(α² + s²β²)."""

    d: int = eqx.field(static=True)
    scale: float

    def denoise(self, c, x):
        v = self.scale**2
        return v * c.beta * x / (c.alpha_sq + v * c.beta**2)

    def velocity(self, c, x):  # the closed form, finite at t = 1 where α = 0
        v = self.scale**2
        return (c.alpha_dalpha + v * c.beta * c.dbeta) / (c.alpha_sq + v * c.beta**2) * x


def _models():
    return {
        "gm2": ns.GaussianMixture.two_modes(D, p=0.7),
        "gm4-seeded": ns.GaussianMixture.random_means(D, [0.4, 0.3, 0.2, 0.1], seed=3),
        "cw": ns.CurieWeiss(D, beta=2.0, h=0.5 * math.log(4)),
        "gaussian": ns.Gaussian(jnp.linspace(0.5, 1.5, D)),
        "user": Isotropic(D, 0.5),
    }


@pytest.fixture(scope="module")
def prior():
    interp = ns.Interpolant("vp", "linear", D)
    return interp, ns.sample_prior(interp, jax.random.PRNGKey(0), N_ROWS)


# every model on the default path; each path and solver on the statistics forms (by default
# one model of each form and the scan path; the others on demand, -m slow)
_SLOW = pytest.mark.slow
CASES = ([("gm2", "diffrax", "euler"), ("cw", "diffrax", "euler"), ("user", "diffrax", "euler"),
          ("gm2", "scan", "euler")]
         + [pytest.param(*case, marks=_SLOW) for case in [
             ("gm4-seeded", "diffrax", "euler"), ("gaussian", "diffrax", "euler"),
             ("cw", "scan", "heun"), ("gm2", "diffrax", "heun"),
             ("gm2", "diffrax", "sigma_euler")]])


@pytest.mark.parametrize("name,method,solver", CASES)
def test_row_blocks_give_the_numbers_of_one_pass(prior, name, method, solver):
    interp, x0 = prior
    model = _models()[name]
    sched = schedules.vp_dilated(D)

    def run(x, block):
        return np.asarray(ns.solve(model, interp, sched, x, steps=STEPS, method=method,
                                   solver=solver, row_block=block).x, np.float64)

    one = run(x0, None)
    with jax.enable_x64(True):  # the same solve in float64: the truth for both
        exact = run(x0.astype(jnp.float64), None)
    # float32 rounding of one pass, amplified where the drift is steep (Curie–Weiss near t = 1:
    # a spin still near 0 at the last steps; seen 0.8e-4 in one pass and 1.7e-4 in blocks, whose
    # compiled arithmetic rounds differently); a block solved wrongly is off by O(1)
    tol = 4.0 * np.abs(one - exact).max() + 1e-6 * np.abs(exact).max()
    # 37 rows in blocks of 5 (eight blocks, three padded rows); blocks of one row on one path
    for block in (5, 1) if (method, solver) == ("scan", "euler") else (5,):
        blocked = run(x0, block)
        assert blocked.shape == one.shape
        # per row the same arithmetic up to the order of sums over coordinates: as close to
        # the float64 solve as the unblocked float32 solve is, within its rounding
        assert np.abs(blocked - exact).max() <= tol, (np.abs(blocked - exact).max(), tol)


def test_blocks_hold_the_rows_in_order():
    x = jnp.arange(23 * 3, dtype=jnp.float32).reshape(23, 3)
    seen = []

    def solve_rows(block):
        seen.append(block.shape)
        return block * 2.0 + jnp.arange(3.0)

    np.testing.assert_array_equal(by_row_blocks(solve_rows, x, 6), x * 2.0 + jnp.arange(3.0))
    assert seen == [(6, 3)]  # traced once: four blocks of six rows (one padded)


def test_gradient_through_row_blocks_equals_the_unblocked_gradient(prior):
    interp, x0 = prior
    model = ns.GaussianMixture.two_modes(D)

    def loss(k, x, block):
        x = ns.solve(model, interp, schedules.vp_dilated(D, k), x, steps=STEPS, method="scan",
                     row_block=block).x
        return jnp.mean(x**2)

    one = float(jax.grad(loss)(3.0, x0, None))
    blocked = float(jax.grad(loss)(3.0, x0, 4))
    with jax.enable_x64(True):
        exact = float(jax.grad(loss)(jnp.float64(3.0), x0.astype(jnp.float64), None))
    assert abs(exact) > 1e-3
    # float32 rounding of sums of n·d = 4440 terms, through 12 steps and back (a block
    # solved in the wrong order or dropped would be off by percents)
    for grad in (one, blocked):
        assert grad == pytest.approx(exact, rel=1e-4), (blocked, one, exact)


def test_row_blocks_under_vmap_and_jit(prior):
    interp, x0 = prior
    models = [ns.GaussianMixture.two_modes(D, p=p) for p in (0.6, 0.8)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *models)

    @jax.jit
    def solve(model):
        return ns.solve(model, interp, schedules.vp_dilated(D), x0, steps=STEPS,
                        row_block=8).x

    out = jax.vmap(solve)(stacked)
    for i, model in enumerate(models):
        one = ns.solve(model, interp, schedules.vp_dilated(D), x0, steps=STEPS,
                       row_block=None).x
        np.testing.assert_allclose(out[i], one, rtol=2e-6, atol=2e-6 * float(jnp.abs(one).max()))


def test_automatic_blocks_per_platform():
    assert cache_bytes() >= 1 << 16
    rows = auto_row_block(10**6, 1000, jnp.float32, "cpu")
    assert rows is not None and rows >= 1
    assert rows * 1000 * 4 <= cache_bytes() * (__import__("os").cpu_count() or 1)
    # one block holds every row
    assert auto_row_block(4, 10, jnp.float32, "cpu") == 4
    assert auto_row_block(10**6, 1000, jnp.float32, "gpu") is None
    # a row longer than the cache: blocks of one row per core
    assert auto_row_block(64, 10**8, jnp.float32, "cpu") == (__import__("os").cpu_count() or 1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(row_block=0), "row_block must be an int >= 1, 'auto' or None; got 0"),
    (dict(row_block="fast"), "row_block must be an int >= 1, 'auto' or None; got 'fast'"),
    (dict(row_block=True), "row_block must be an int >= 1"),
    (dict(row_block=4, adaptive=True, solver="tsit5"), "row_block applies to fixed-grid"),
    (dict(row_block=4, observe="overlap"), "row_block applies to fixed-grid"),
])
def test_bad_row_blocks_are_refused(prior, kwargs, match):
    interp, x0 = prior
    with pytest.raises(ValueError, match=match):
        ns.solve(ns.GaussianMixture.two_modes(D), interp, schedules.constant(), x0, steps=4,
                 **kwargs)


# ----------------------------------------------------------------------------- the means
def test_structured_means_equal_their_dense_form():
    x = jax.random.normal(jax.random.PRNGKey(1), (5, D))
    w = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (5, 3)), axis=-1)
    for means in (ConstantMeans(jnp.asarray([1.5, -0.5, 0.25]), D),
                  SeededMeans(seed=4, scale=0.7, count=3, dimension=D)):
        dense = np.asarray(means.dense(), np.float64)
        assert dense.shape == (3, D) and (means.K, means.d) == (3, D)
        np.testing.assert_allclose(means.project(x), np.asarray(x, np.float64) @ dense.T,
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(means.combine(w), np.asarray(w, np.float64) @ dense,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(means.norms_sq(), np.sum(dense**2, axis=-1), rtol=1e-5)
        # the carried sums determine the projections, and those of Σ_k w_k μ_k come from the
        # Gram matrix alone
        np.testing.assert_allclose(means.projections_from_sums(means.sums(x)),
                                   np.asarray(x, np.float64) @ dense.T, rtol=1e-5, atol=1e-4)
        combined = np.asarray(w, np.float64) @ dense
        np.testing.assert_allclose(means.projections_from_sums(means.sums_of_combination(w)),
                                   combined @ dense.T, rtol=1e-5, atol=1e-4)


def test_constant_means_carry_one_sum_per_row_whatever_k():
    interp = ns.Interpolant("vp", "linear", D)
    c = interp.coefficients(schedules.vp_dilated(D), 0.4)
    x = jnp.ones((7, D))
    two = ns.GaussianMixture.two_modes(D)
    three = ns.GaussianMixture([0.2, 0.3, 0.5], np.stack([np.full(D, a) for a in (1, -1, 2)]), 0.5)
    dense = ns.GaussianMixture([0.5, 0.5], np.eye(2, D), 0.5)
    assert two.statistics(c, x).shape == three.statistics(c, x).shape == (7, 1)
    assert dense.statistics(c, x).shape == (7, 2)
    # a solve of the three-level mixture (one sum) equals that of its dense form (three sums)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(6), 8)
    as_dense = ns.GaussianMixture(three.weights, DenseMeans(three.means), 0.5)
    for model_solve in (three, as_dense):
        assert model_solve.velocity_statistics(c, model_solve.statistics(c, x0)) is not None
    np.testing.assert_allclose(
        ns.solve(three, interp, schedules.vp_dilated(D), x0, steps=12, method="scan").x,
        ns.solve(as_dense, interp, schedules.vp_dilated(D), x0, steps=12, method="scan").x,
        rtol=1e-4, atol=1e-4)


def test_mixtures_choose_their_means_form():
    assert isinstance(ns.GaussianMixture.two_modes(D).component_means, ConstantMeans)
    constant = ns.GaussianMixture([0.5, 0.5], np.stack([np.full(D, 2.0), np.full(D, -1.0)]), 0.5)
    assert isinstance(constant.component_means, ConstantMeans)
    np.testing.assert_array_equal(constant.means[1], np.full(D, -1.0))
    dense = ns.GaussianMixture([0.5, 0.5], np.eye(2, D), 0.5)
    assert isinstance(dense.component_means, DenseMeans)
    seeded = ns.GaussianMixture.random_means(D, [0.5, 0.5], m=0.7, seed=4)
    assert isinstance(seeded.component_means, SeededMeans)
    # the numbers random_means has always had: m·g, g ~ N(0, I) from PRNGKey(seed)
    np.testing.assert_array_equal(
        seeded.means, 0.7 * jax.random.normal(jax.random.PRNGKey(4), (2, D)))
    # the two-mode mixture holds nothing of length d
    assert all(np.size(leaf) < D for leaf in jax.tree.leaves(ns.GaussianMixture.two_modes(D)))
    with pytest.raises(ValueError, match="means must hold K = 3 means"):
        ns.GaussianMixture([0.2, 0.3, 0.5], ConstantMeans(jnp.asarray([1.0, -1.0]), D), 0.5)


def test_two_mode_drift_with_constant_means_equals_the_dense_drift():
    interp = ns.Interpolant("vp", "linear", D)
    structured = ns.GaussianMixture.two_modes(D, p=0.7, m=1.3)
    dense = ns.GaussianMixture(structured.weights, DenseMeans(structured.means), 0.5)
    x = ns.sample_prior(interp, jax.random.PRNGKey(5), 6)
    for t in (0.1, 0.5, 0.9, 1.0):
        np.testing.assert_allclose(structured.drift(interp, schedules.vp_dilated(D), t, x),
                                   dense.drift(interp, schedules.vp_dilated(D), t, x),
                                   rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- Curie–Weiss
def test_curie_weiss_denoiser_with_one_exp_equals_the_two_phase_formula():
    """η = W+ tanh(atanh m + γx) + W− tanh(−atanh m + γx), W+ = σ(L), in float64 with NumPy,
    against the one-exponential form in float32 (from ``statistics`` and
    ``statistics_for_blocks``)."""
    model = ns.CurieWeiss(D, beta=2.0, h=0.4)
    interp = ns.Interpolant("vp", "linear", D)
    x = np.asarray(ns.sample_prior(interp, jax.random.PRNGKey(6), 4), np.float64)
    m = float(model.m)
    for t in (0.05, 0.5, 0.8, 0.99):
        c = interp.coefficients(schedules.vp_dilated(D), t)
        gamma = float(c.beta / c.alpha_sq)
        logit = 2 * 0.4 * m + 2 * np.sum(np.arctanh(m * np.tanh(gamma * x)), -1, keepdims=True)
        w = 1 / (1 + np.exp(-logit))
        expected = (w * np.tanh(np.arctanh(m) + gamma * x)
                    + (1 - w) * np.tanh(-np.arctanh(m) + gamma * x))
        x32 = jnp.asarray(x, jnp.float32)
        np.testing.assert_allclose(model.denoise(c, x32), expected, rtol=2e-5, atol=2e-6)
        for stats in (model.statistics(c, x32), model.statistics_for_blocks(c, x32)):
            np.testing.assert_allclose(model.velocity_from_statistics(c, x32, stats),
                                       model.velocity(c, x32), rtol=1e-6, atol=1e-6)


def _elementwise_transcendentals(model, in_blocks: bool) -> dict[str, int]:
    """The transcendental primitives of one fused step applied to arrays of the state's shape."""
    interp = ns.Interpolant("vp", "linear", model.d)
    c = interp.coefficients(schedules.vp_dilated(model.d), 0.3)
    x = jnp.ones((3, model.d))
    stats = model.statistics_for_blocks if in_blocks else model.statistics

    def step(x, carried):
        x = x + 0.01 * model.velocity_from_statistics(c, x, carried)
        return x, stats(c, x)

    counts: dict[str, int] = {}
    for eqn in jax.make_jaxpr(step)(x, stats(c, x)).jaxpr.eqns:
        if eqn.outvars[0].aval.shape == x.shape and eqn.primitive.name in (
                "tanh", "atanh", "exp", "log", "log1p", "logistic"):
            counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1
    return counts


def test_a_curie_weiss_step_in_blocks_evaluates_one_exp_and_one_atanh_per_entry():
    model = ns.CurieWeiss(D, beta=2.0, h=0.3)
    assert _elementwise_transcendentals(model, in_blocks=True) == {"exp": 1, "atanh": 1}
    # one pass over the batch recomputes T for the drift
    assert _elementwise_transcendentals(model, in_blocks=False) == {"exp": 2, "atanh": 1}
    # the two-mode mixture's step has none
    assert _elementwise_transcendentals(ns.GaussianMixture.two_modes(D), True) == {}


# ----------------------------------------------------------------------------- from a config
def test_row_blocks_and_the_kernel_from_the_command_line(tmp_path, capsys):
    from pathlib import Path

    from noisesched.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "cw_vp_dilated.toml"
    base = ["model.d=40", "sample.n=24", "solver.steps=8", "output.figures=false"]
    metrics = {}
    for label, extra in {"auto": [], "blocks": ["solver.row_block=5"],
                         "kernel": ["solver.method=pallas", "solver.row_block=8"]}.items():
        out = tmp_path / label
        assert main(["run", str(config), "--set", *base, *extra, "--out", str(out)]) == 0
        result = json.loads((out / "results.json").read_text())
        metrics[label] = result["metrics"]
        assert result["config"]["solver"]["row_block"] == (0 if label == "auto" else
                                                           int(extra[-1].split("=")[1]))
    for label in ("blocks", "kernel"):
        for key in ("mode_weight", "mean_sq", "mean_abs_magnetization"):
            assert metrics[label][key] == pytest.approx(metrics["auto"][key], rel=1e-5), key
    capsys.readouterr()
    assert main(["run", str(config), "--set", *base, "solver.row_block=-1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "solver.row_block must be" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
