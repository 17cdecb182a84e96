import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import noisesched as ns
from noisesched import schedules

H = 0.5 * math.log(4)


def gm_setup(d=64, kind="vp", shape="linear", name=None):
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = schedules.make(name or f"{kind}_dilated", interp, k=3.0)
    return model, interp, sched


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("family", ["gm-vp-linear", "gm-ve-trig", "cw-vp-linear"])
def test_scan_and_diffrax_agree(solver, family, x64):
    fam, kind, shape = family.split("-")
    d = 32
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = schedules.constant() if shape == "trig" else schedules.make(f"{kind}_dilated", interp)
    model = ns.GaussianMixture.two_modes(d=d) if fam == "gm" else ns.CurieWeiss(d, 2.0, H)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 16, dtype=jnp.float64)
    a = ns.solve(model, interp, sched, x0, steps=40, solver=solver, observe="overlap")
    b = ns.solve(model, interp, sched, x0, steps=40, solver=solver, method="scan",
                 observe="overlap")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.observables, b.observables, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a.ts, b.ts)
    assert int(a.num_steps) == int(b.num_steps) == 40


def test_scan_and_diffrax_agree_in_float32():
    model, interp, sched = gm_setup(d=256)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 64)
    for solver in ("euler", "heun"):
        a = ns.solve(model, interp, sched, x0, steps=100, solver=solver).x
        b = ns.solve(model, interp, sched, x0, steps=100, solver=solver, method="scan").x
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["diffrax", "scan"])
def test_same_key_same_samples(method):
    model, interp, sched = gm_setup()
    a = ns.sample(model, interp, sched, jax.random.PRNGKey(7), 32, steps=20, method=method)
    b = ns.sample(model, interp, sched, jax.random.PRNGKey(7), 32, steps=20, method=method)
    c = ns.sample(model, interp, sched, jax.random.PRNGKey(8), 32, steps=20, method=method)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rows_do_not_depend_on_batch_size():
    """Row i of the prior depends on fold_in(key, i) only: a smaller batch is a prefix."""
    interp = ns.Interpolant(kind="vp", shape="linear", d=10)
    big = ns.sample_prior(interp, jax.random.PRNGKey(1), 50)
    small = ns.sample_prior(interp, jax.random.PRNGKey(1), 20)
    np.testing.assert_array_equal(big[:20], small)
    np.testing.assert_array_equal(big[20:35], ns.sample_prior(interp, jax.random.PRNGKey(1), 15,
                                                              start=20))


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_many_steps_reproduce_the_data_law(kind):
    """d = 10^3, Heun with 100 steps: mode weight within 3 standard errors of p and within-mode
    variance within 3 % of σ²."""
    d, n = 1000, 2000
    model, interp, sched = gm_setup(d=d, kind=kind)
    x = ns.sample(model, interp, sched, jax.random.PRNGKey(0), n, steps=100, solver="heun")
    se = math.sqrt(0.8 * 0.2 / n)
    assert abs(float(ns.metrics.mode_weight(model, x)) - 0.8) < 3 * se
    assert abs(float(ns.metrics.within_mode_variance(model, x)) / 0.25 - 1) < 0.03


def test_many_steps_reproduce_the_curie_weiss_law():
    d, n = 1000, 2000
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    x = ns.sample(cw, interp, schedules.vp_dilated(d), jax.random.PRNGKey(0), n, steps=100,
                  solver="heun")
    w = float(cw.positive_phase_weight)
    se = math.sqrt(w * (1 - w) / n)
    assert abs(float(ns.metrics.positive_phase_fraction(cw, x)) - w) < 3 * se
    assert abs(float(ns.metrics.mean_square(cw, x)) - 1.0) < 0.01


def _final_error(model, interp, sched, x0, solver, steps, reference):
    x = ns.solve(model, interp, sched, x0, steps=steps, solver=solver).x
    return float(jnp.max(jnp.abs(x - reference)))


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("midpoint", 2),
                                          ("ralston", 2), ("bosh3", 3)])
def test_convergence_order(solver, order, x64):
    """Regress log error on log step: the slope is each method's order."""
    model, interp, sched = gm_setup(d=8, kind="vp", shape="trig", name="constant")
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(3), 32, dtype=jnp.float64)
    reference = ns.solve(model, interp, sched, x0, steps=4096, solver="tsit5").x
    steps = np.array([16, 32, 64, 128])
    errors = [_final_error(model, interp, sched, x0, solver, int(s), reference) for s in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (solver, slope, errors)


def test_adaptive_matches_fine_fixed_grid(x64):
    model, interp, sched = gm_setup(d=16)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(2), 8, dtype=jnp.float64)
    fine = ns.solve(model, interp, sched, x0, steps=2048, solver="tsit5").x
    sol = ns.solve(model, interp, sched, x0, solver="tsit5", adaptive=True, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(sol.x, fine, atol=1e-6)
    assert 0 < int(sol.num_steps) < 2048


def test_adaptive_on_a_singular_model_ends_with_euler():
    d = 50
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 8)
    sol = ns.solve(cw, interp, schedules.vp_dilated(d), x0, steps=10, solver="dopri5",
                   adaptive=True, observe="overlap")
    assert bool(jnp.all(jnp.isfinite(sol.x)))
    assert sol.ts.shape == (12,) and float(sol.ts[-2]) == pytest.approx(1 - 1e-3)
    assert sol.observables.shape == (12, 8, 1)


SETUPS = [("gm", "vp", "trig"), ("gm", "ve", "linear"), ("cw", "vp", "linear"),
          ("cw", "ve", "trig")]


def _model(family, d):
    return ns.GaussianMixture.two_modes(d=d) if family == "gm" else ns.CurieWeiss(d, 2.0, H)


@pytest.mark.filterwarnings("ignore::noisesched.schedules.ScheduleKindWarning")  # every pair
@pytest.mark.parametrize("name", schedules.NAMES)
@pytest.mark.parametrize("family,kind,shape", SETUPS)
def test_drift_is_finite_wherever_a_solver_evaluates_it(family, kind, shape, name):
    """t = 0 and every t < 1; t = 1 itself for models that are regular at the data (GM)."""
    d = 400
    model = _model(family, d)
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = schedules.make(name, interp, k=3.0)
    ts = jnp.concatenate([jnp.linspace(0.0, 0.99, 100), jnp.array([1.0 - 1e-3, 1.0])])
    if model.singular_at_data:
        ts = ts[:-1]
    x = ns.sample_prior(interp, jax.random.PRNGKey(0), 3)
    data = model.sample(jax.random.PRNGKey(1), 3)

    def drift_at(t):
        c = interp.coefficients(sched, t)
        return model.drift(interp, sched, t, c.alpha / interp.alpha0 * x + c.beta * data)

    assert bool(jnp.all(jnp.isfinite(jax.jit(jax.vmap(drift_at))(ts))))


@pytest.mark.parametrize("solver", sorted(ns.SOLVERS))
def test_no_nan_in_the_last_step(solver):
    d = 400
    for family, kind, shape in [("gm", "vp", "trig"), ("cw", "ve", "trig")]:
        model = _model(family, d)
        interp = ns.Interpolant(kind=kind, shape=shape, d=d)
        sched = schedules.cosine(interp)
        x = ns.sample(model, interp, sched, jax.random.PRNGKey(0), 4, steps=5, solver=solver)
        assert bool(jnp.all(jnp.isfinite(x))), (family, kind, shape)


def test_final_euler_step_is_the_denoiser_for_linear_shapes(x64):
    """From t_{N−1} with α linear in t, one Euler step to t = 1 lands on η(t_{N−1}, x)."""
    d = 20
    cw = ns.CurieWeiss(d=d, beta=2.0, h=H)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    sched = schedules.constant()
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 5, dtype=jnp.float64)
    before = ns.solve(cw, interp, sched, x0, steps=9, final_step="solver").x  # to t = 0.9
    sol = ns.solve(cw, interp, sched, x0, steps=10)
    # the first 9 steps of the 10-step grid run to t = 0.9; compare the last step from there
    mid = ns.solve(cw, interp, schedules.constant(), x0, steps=10, observe=lambda x: x)
    x_prev = mid.observables[-2]
    np.testing.assert_allclose(sol.x, cw.denoiser(interp, sched, 0.9, x_prev), atol=1e-12)
    assert before.shape == sol.x.shape


def test_observables_are_saved_on_the_grid():
    model, interp, sched = gm_setup(d=64)
    sol = ns.solve(model, interp, sched, ns.sample_prior(interp, jax.random.PRNGKey(0), 10),
                   steps=25, observe="overlap")
    assert sol.ts.shape == (26,) and sol.observables.shape == (26, 10, 2)
    np.testing.assert_allclose(sol.observables[-1], model.overlap(sol.x), rtol=1e-6)
    assert ns.solve(model, interp, sched, sol.x, steps=5).ts is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(steps=0), r"steps must be an integer >= 1; got 0"),
        (dict(steps=2.5), r"steps must be an integer"),
        (dict(solver="rk45"), "solver must be one of"),
        (dict(solver="eulr"), "did you mean 'euler'"),
        (dict(method="scan", solver="tsit5"), r"solver \(method='scan'\) must be one of"),
        (dict(method="fused"), "method must be one of"),
        (dict(adaptive=True, solver="euler"), "solver \\(adaptive\\) must be one of"),
        (dict(adaptive=True, solver="tsit5", rtol=0.0), r"rtol must be in \(0, inf\)"),
        (dict(final_step="last"), "final_step must be one of"),
        (dict(observe="magnetisation"), "observe must be one of"),
    ],
)
def test_bad_solver_arguments(kwargs, match, unchecked_types):
    model, interp, sched = gm_setup(d=16)
    x0 = jnp.zeros((2, 16))
    with pytest.raises(ValueError, match=match):
        ns.solve(model, interp, sched, x0, **kwargs)


def test_bad_shapes_and_sizes():
    model, interp, sched = gm_setup(d=16)
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, d\) = \(n, 16\); got \(2, 9\)"):
        ns.solve(model, interp, sched, jnp.zeros((2, 9)))
    with pytest.raises(ValueError, match="n must be an integer >= 1; got 0"):
        ns.sample(model, interp, sched, jax.random.PRNGKey(0), 0)
    other = ns.Interpolant(kind="vp", shape="linear", d=9)
    with pytest.raises(ValueError, match="interpolant d = 9 must equal the model's d = 16"):
        ns.sample(model, other, sched, jax.random.PRNGKey(0), 4)


@pytest.mark.parametrize("family", ["gm-vp", "gm-ve", "cw-vp"])
def test_fused_paths_equal_plain_diffrax_euler_on_the_generic_drift(family, x64):
    """The fused loop and FusedEuler carry the drift's sums over coordinates between steps; they
    must give diffrax.Euler's numbers on the drift written from the denoiser."""
    import diffrax

    from noisesched.models.base import velocity_from_denoiser

    fam, kind = family.split("-")
    d = 48
    interp = ns.Interpolant(kind=kind, shape="linear", d=d)
    sched = schedules.make(f"{kind}_dilated", interp)
    model = ns.GaussianMixture.two_modes(d=d) if fam == "gm" else ns.CurieWeiss(d, 2.0, H)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(1), 8, dtype=jnp.float64)
    steps = 41  # odd: no grid point on the kink at t = 1/2
    last = steps - 1 if model.singular_at_data else steps

    def generic(t, y, args):
        c = interp.coefficients(sched, t)
        return velocity_from_denoiser(c, y, model.denoise(c, y))

    ts = jnp.linspace(0.0, 1.0, steps + 1)
    ref = diffrax.diffeqsolve(diffrax.ODETerm(generic), diffrax.Euler(), ts[0], ts[last], None,
                              x0, None, stepsize_controller=diffrax.StepTo(ts[: last + 1]),
                              max_steps=steps).ys[-1]
    if last < steps:  # the final Euler step of a model singular at the data
        ref = ref + (1.0 - ts[last]) * generic(ts[last], ref, None)
    for method in ("diffrax", "scan"):
        x = ns.solve(model, interp, sched, x0, steps=steps, method=method).x
        np.testing.assert_allclose(x, ref, rtol=1e-11, atol=1e-11)


def test_models_choose_the_fused_euler_step_by_their_statistics():
    from noisesched._solve.diffrax_path import fixed_grid_solver as _solver_instance
    from noisesched.sampling import FusedEuler

    x = jnp.zeros((2, 8))
    assert isinstance(_solver_instance("euler", ns.GaussianMixture.two_modes(8), x), FusedEuler)
    assert isinstance(_solver_instance("euler", ns.CurieWeiss(8, 2.0, H), x), FusedEuler)
    exact = ns.CurieWeissExact(8, 2.0, H)  # its posterior needs more than a few sums
    c = ns.Interpolant("vp", "linear", 8).coefficients(ns.schedules.constant(), 0.5)
    assert exact.statistics(c, x) is None
    assert type(_solver_instance("euler", exact, x)).__name__ == "Euler"
    assert type(_solver_instance("heun", ns.CurieWeiss(8, 2.0, H), x)).__name__ == "Heun"


@pytest.mark.parametrize("method,solver,adaptive", [
    ("diffrax", "euler", False), ("diffrax", "heun", False), ("diffrax", "midpoint", False),
    ("diffrax", "tsit5", False), ("diffrax", "dopri5", True), ("diffrax", "bosh3", True),
    ("scan", "euler", False), ("scan", "heun", False),
])
@pytest.mark.parametrize("family", ["gm", "cw"])
def test_a_solver_instance_gives_the_numbers_of_its_name(method, solver, adaptive, family):
    import diffrax

    d = 16
    model = _model(family, d)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    sched = schedules.vp_dilated(d)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(4), 6)
    options = dict(steps=8, method=method, adaptive=adaptive, observe="overlap")
    a = ns.solve(model, interp, sched, x0, solver=solver, **options)
    b = ns.solve(model, interp, sched, x0, solver=ns.SOLVERS[solver](), **options)
    assert isinstance(ns.SOLVERS[solver](), diffrax.AbstractSolver)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.observables, b.observables)
    assert int(a.num_steps) == int(b.num_steps)


def test_solver_instances_outside_the_registry(x64):
    """Any diffrax solver runs as given: Dopri8 (8th order, embedded) on the grid and adaptively,
    against a fine Tsit5 grid."""
    import diffrax

    model, interp, sched = gm_setup(d=8, kind="vp", shape="trig", name="constant")
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(5), 4, dtype=jnp.float64)
    fine = ns.solve(model, interp, sched, x0, steps=1024, solver="tsit5").x
    grid = ns.solve(model, interp, sched, x0, steps=64, solver=diffrax.Dopri8())
    np.testing.assert_allclose(grid.x, fine, atol=1e-9)
    adaptive = ns.solve(model, interp, sched, x0, solver=diffrax.Dopri8(), adaptive=True,
                        rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(adaptive.x, fine, atol=1e-7)
    assert 0 < int(adaptive.num_steps) < 1024


@pytest.mark.parametrize(
    "kwargs,solver,match",
    [
        (dict(adaptive=True), "Euler()", r"solver \(adaptive\) needs an embedded error "
         r"estimate: one of 'bosh3', 'tsit5', 'dopri5'.*got diffrax.Euler\(\)"),
        (dict(adaptive=True), "Heun()", r"solver \(adaptive\).*got diffrax.Heun"),
        (dict(adaptive=True), "LeapfrogMidpoint()",
         r"solver \(adaptive\).*AbstractAdaptiveSolver.*got diffrax.LeapfrogMidpoint\(\)"),
        (dict(method="scan"), "Tsit5()",
         r"solver \(method='scan'\) must be one of 'euler', 'heun'.*got diffrax.Tsit5\(\)"),
        (dict(method="scan"), "Dopri8()", r"solver \(method='scan'\)"),
        (dict(), "Tsit5", r"solver must be one of 'euler'.*did you mean diffrax.Tsit5\(\)\?"),
    ],
)
def test_bad_solver_instances(kwargs, solver, match, unchecked_types):
    """An instance that the method cannot use: a ValueError naming solver and what it needs."""
    import diffrax

    model, interp, sched = gm_setup(d=16)
    x0 = jnp.zeros((2, 16))
    cls = getattr(diffrax, solver.removesuffix("()"))
    with pytest.raises(ValueError, match=match):
        ns.solve(model, interp, sched, x0, solver=cls() if solver.endswith("()") else cls,
                 **kwargs)
    with pytest.raises(ValueError, match=r"solver must be one of 'euler', 'heun'"):
        ns.solve(model, interp, sched, x0, solver=3)


@pytest.mark.parametrize("family,kind,shape,steps", [
    ("gm", "vp", "linear", 2), ("gm", "vp", "linear", 8), ("cw", "vp", "linear", 1),
    ("cw", "vp", "linear", 2), ("cw", "vp", "linear", 8), ("gm", "ve", "trig", 1),
    ("gm", "ve", "trig", 2), ("gm", "ve", "trig", 7), ("gm", "ve", "trig", 8),
])
def test_scan_and_diffrax_euler_agree_bit_for_bit(family, kind, shape, steps, x64):
    """Where the fused loop and FusedEuler (diffrax) gave the same bits, they still do: kinks on
    the grid (N even), a single step, and every final-step rule. (Elsewhere the compiler may
    order a reduction differently on the two paths: equal to rounding, see above.)"""
    d = 12
    model = _model(family, d)
    interp = ns.Interpolant(kind=kind, shape=shape, d=d)
    sched = schedules.make(f"{kind}_dilated", interp)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 4, dtype=jnp.float64)
    for final_step in ("auto", "euler", "solver"):
        # both stepped (the mixture's default is its span form: tests/test_span.py)
        options = dict(steps=steps, final_step=final_step, check_finite=False, span=False)
        a = ns.solve(model, interp, sched, x0, **options).x
        b = ns.solve(model, interp, sched, x0, method="scan", **options).x
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("final_step", ["auto", "euler"])
def test_the_reduction_is_one_computation_for_any_step_count(solver, final_step, x64):
    """The reduction's loop, with the step kernel of the fused path, gives the same bits for a
    Python step count (a scan) and a traced one (a while loop), kinks on the grid included."""
    from noisesched import theory

    model, interp, sched = gm_setup(d=300, kind="vp")
    m0 = jnp.linspace(-2.0, 2.0, 7)
    for steps in (5, 8):
        a = theory.reduced_solve(model, interp, sched, m0, steps, solver, final_step)
        b = jax.jit(lambda n: theory.reduced_solve(model, interp, sched, m0, n, solver,
                                                   final_step))(jnp.asarray(steps))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
