"""Schedule methods that pick their levels out of a fine grid by dynamic programming (GITS, OSS)
and their teacher, against independent computations: the teacher against the closed-form flow of
a Gaussian, GITS's path against brute force over every path of its summed one-step costs, OSS
against brute force of the final error (exact with one interior point) and against its
recursion written out in numpy, and both against EDM's levels on fresh samples of a two-mode
mixture. Every student step here is k-diffusion's loop in y = x/β written in numpy."""

import importlib
import itertools
import math

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched import methods
from noisesched.methods import _teacher

gits_module = importlib.import_module("noisesched.methods.gits")
oss_module = importlib.import_module("noisesched.methods.oss")


# --------------------------------------------------------- numpy, independent of noisesched
def beta_linear(sigma, alpha0=1.0):
    """β = τ where α/β = σ for the linear shape α = α0 (1 − τ): τ = α0/(α0 + σ)."""
    return alpha0 / (alpha0 + np.asarray(sigma, np.float64))


def gm_denoiser_y(y, sigma, means, weights, s):
    """D(y; σ) = E[x1 | x1 + σ z = y] of a mixture of N(μ_k, s² I)."""
    v = s**2 + sigma**2
    logits = np.log(weights)[None, :] - ((y[:, None, :] - means[None]) ** 2).sum(-1) / (2 * v)
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return (post[:, :, None] * (s**2 * y[:, None, :] + sigma**2 * means[None]) / v).sum(axis=1)


def step_y(y, den, s0, s1, previous=None):
    """σ-space Euler y' = D + (s1/s0)(y − D), or DPM-Solver++(2M) given the previous level's
    (D_prev, s_prev): D ← (1 + 1/(2r)) D − D_prev/(2r), r = log(s_prev/s0)/log(s0/s1)."""
    target = den
    if previous is not None and math.isfinite(previous[1]):
        r = math.log(previous[1] / s0) / math.log(s0 / s1)
        target = (1 + 1 / (2 * r)) * den - previous[0] / (2 * r)
    return target + s1 / s0 * (y - target)


def run_path(y0, levels, denoiser, solver):
    """The student's own solve in y along ``levels`` from y0 at levels[0]."""
    y, previous = y0, None
    for a, b in zip(levels[:-1], levels[1:], strict=True):
        den = denoiser(y, a)
        y = step_y(y, den, a, b, previous if solver == "dpmpp_2m" else None)
        previous = (den, a)
    return y


def all_paths(points, steps):
    """Every N-point path 0 < … < M − 1 through a grid of M points."""
    for inner in itertools.combinations(range(1, points - 1), steps - 2):
        yield (0, *inner, points - 1)


def indices(levels, grid, rtol=0.0):
    """The grid indices of ``levels`` (each must be a grid point, to within ``rtol``)."""
    found = [int(np.argmin(np.abs(np.log(grid) - np.log(v)))) if math.isfinite(v) else 0
             for v in levels]
    np.testing.assert_allclose(grid[found], levels, rtol=rtol)
    return tuple(found)


# ------------------------------------------------------------------ a small K = 3 mixture
D, M, N_TRAJ, SIGMA_MIN, SIGMA_MAX = 5, 9, 16, 0.01, 20.0
OPTIONS = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, points=M, n=N_TRAJ)


@pytest.fixture
def mixture(x64):
    """(model, interp, grid, teacher states in y, denoiser in y) of a K = 3 mixture in d = 5."""
    rng = np.random.default_rng(0)
    means, weights, s = rng.normal(size=(3, D)), np.array([0.5, 0.3, 0.2]), 0.3
    model = ns.GaussianMixture(weights=weights, means=means, sigma=s)
    interp = ns.Interpolant("vp", "linear", D)
    grid = _teacher.teacher_levels(SIGMA_MIN, SIGMA_MAX, M)
    x0 = _teacher.prior_states(interp, grid, N_TRAJ, 0)
    teacher = np.asarray(_teacher.teacher_trajectory(model, interp, grid, x0))
    y = teacher / beta_linear(grid)[:, None, None]
    return model, interp, grid, y, lambda v, sigma: gm_denoiser_y(v, sigma, means, weights, s)


def gits_cost(path, grid, y, denoiser, solver):
    """Σ over the path's steps of the mean square, in y, of one student step from the teacher's
    state (for 2M: with the denoiser at the teacher's state of the previous level) minus the
    teacher's state where it lands."""
    total = 0.0
    for k in range(len(path) - 1):
        i, j = path[k], path[k + 1]
        previous = None
        if solver == "dpmpp_2m" and k > 0:
            h = path[k - 1]
            previous = (denoiser(y[h], grid[h]), grid[h])
        landed = step_y(y[i], denoiser(y[i], grid[i]), grid[i], grid[j], previous)
        total += np.mean((landed - y[j]) ** 2)
    return total


# ------------------------------------------------------------------ the teacher
@pytest.mark.parametrize("solver,order", [("dpmpp_2m", 2), ("sigma_euler", 1)])
def test_teacher_converges_to_the_gaussian_flow(solver, order, x64):
    """On N(0, diag s²) the flow in y is y(σ) = y_0 √((s² + σ²)/(s² + σ_max²)): the teacher's
    largest error over the fine grid falls as refine^−order, and it is the same in y for the
    linear and trig shapes (σ-space steps do not see the interpolant)."""
    scales = np.array([0.3, 1.0, 2.5])
    model = ns.Gaussian(scales)
    grid = _teacher.teacher_levels(0.002, 80.0, 8)
    found = {}
    for shape, refines in (("linear", (4, 8, 16)), ("trig", (8,))):
        interp = ns.Interpolant("vp", shape, 3)
        x0 = _teacher.prior_states(interp, grid, 4, 0)
        beta = np.asarray(ns.methods._levels.level_coefficients(interp, grid).beta)
        y0 = np.asarray(x0) / beta[0]
        exact = y0[None] * np.sqrt((scales**2 + grid[:, None, None] ** 2)
                                   / (scales**2 + grid[0] ** 2))
        found[shape] = [np.max(np.abs(np.asarray(_teacher.teacher_trajectory(
            model, interp, grid, x0, refine=r, solver=solver)) / beta[:, None, None] - exact))
            for r in refines]
    slopes = np.diff(np.log(found["linear"])) / np.log(2.0)
    assert np.all(np.abs(slopes + order) < 0.1), (found["linear"], slopes)
    np.testing.assert_allclose(found["trig"][0], found["linear"][1], rtol=1e-9)


def test_prior_states_are_the_samplers_start(x64):
    """The teacher starts where ``solve`` starts a schedule through the fine grid: the rows of
    ``sample_prior`` scaled to α(σ_max), for a finite σ_max and from pure noise."""
    interp = ns.Interpolant("vp", "trig", 3)
    for top in (30.0, math.inf):
        grid = _teacher.teacher_levels(0.01, top, 6)
        sched = ns.methods._levels.through_levels(interp, grid)
        np.testing.assert_allclose(
            _teacher.prior_states(interp, grid, 5, 2),
            ns.sample_prior(interp, jax.random.key(2), 5, schedule=sched), rtol=1e-12)


# ------------------------------------------------------------------ GITS
@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
def test_gits_costs_and_path_are_brute_force_optima(mixture, solver):
    """Defining property: on M = 9 fine points the GITS path is the one of least summed
    one-step cost among all C(7, N − 2) paths, the costs written out here in numpy (for 2M from
    the teacher's state with the denoiser at the teacher's state of the previous level). Each
    optimum is unique by a margin far above rounding."""
    model, interp, grid, y, denoiser = mixture
    c, c3 = gits_module.step_costs(model, interp, grid, _teacher_x(mixture), solver)
    for i, j in itertools.combinations(range(M), 2):
        np.testing.assert_allclose(c[i, j], gits_cost((i, j), grid, y, denoiser, solver),
                                   rtol=1e-9)
    if solver == "dpmpp_2m":
        for h, i, j in itertools.combinations(range(M), 3):
            pair = gits_cost((h, i, j), grid, y, denoiser, solver)
            np.testing.assert_allclose(c3[h, i, j], pair - gits_cost((h, i), grid, y, denoiser,
                                                                     solver), rtol=1e-8)
    for steps in (3, 4, 5):
        costs = {p: gits_cost(p, grid, y, denoiser, solver) for p in all_paths(M, steps)}
        ranked = sorted(costs, key=costs.get)
        assert costs[ranked[1]] - costs[ranked[0]] > 1e-6 * costs[ranked[0]]
        levels = gits_module.gits_levels(model, interp, steps, solver=solver, **OPTIONS)
        assert indices(levels, grid) == ranked[0], (steps, levels)


def _teacher_x(mixture):
    _, _, grid, y, _ = mixture
    return jax.numpy.asarray(y * beta_linear(grid)[:, None, None])


# ------------------------------------------------------------------ OSS
def final_errors(mixture, steps, solver):
    """The final error (mean square in y at σ_min against the teacher) of the student's own
    solve along every path, from the teacher's prior states."""
    _, _, grid, y, denoiser = mixture
    return {p: np.mean((run_path(y[0], grid[list(p)], denoiser, solver) - y[-1]) ** 2)
            for p in all_paths(M, steps)}


def oss_recursion(mixture, steps, solver):
    """OSS's programme written out: for k = 1 … N − 1 and each j keep the path of k steps
    ending at j, extended from the kept (k − 1)-step paths, whose own solve is closest to the
    teacher at j; the kept path at (N − 1, M − 1)."""
    _, _, grid, y, denoiser = mixture
    kept = {0: (0,)}
    for _ in range(steps - 1):
        new = {}
        for j in range(1, M):
            options = [kept[i] + (j,) for i in sorted(kept) if i < j]
            if options:
                new[j] = min(options, key=lambda p: np.mean(
                    (run_path(y[0], grid[list(p)], denoiser, solver) - y[p[-1]]) ** 2))
        kept = new
    return kept[M - 1]


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
def test_oss_is_the_brute_force_optimum_with_one_interior_point(mixture, solver):
    """With N = 3 levels (two steps inside the grid) the programme is exact: OSS's interior
    point minimises the final error of the student's own solve over all seven."""
    model, interp, grid, _, _ = mixture
    errors = final_errors(mixture, 3, solver)
    ranked = sorted(errors, key=errors.get)
    assert errors[ranked[1]] - errors[ranked[0]] > 1e-6 * errors[ranked[0]]
    levels = oss_module.oss_levels(model, interp, 3, solver=solver, **OPTIONS)
    assert indices(levels, grid) == ranked[0]


@pytest.mark.parametrize("solver", ["sigma_euler", "dpmpp_2m"])
@pytest.mark.parametrize("steps", [4, 5])
def test_oss_follows_its_recursion_and_what_that_guarantees(mixture, solver, steps):
    """Defining property for N ≥ 4: OSS's path is the one its recursion keeps (written out in
    numpy above), and its final error is the one of its own solve along that path. What that
    guarantees against brute force over all C(7, N − 2) paths: no path that extends one of the
    kept (N − 2)-step paths ends closer to the teacher. It does not guarantee the least final
    error overall, nor beating GITS: in this case with N = 5 and DPM-Solver++(2M) OSS's path is
    second of 35 (final error 4.6e-3) and GITS's first (2.0e-3); the numbers are printed."""
    model, interp, grid, y, denoiser = mixture
    teacher = _teacher_x(mixture)
    found, preds, errs = oss_module.oss_search(model, interp, grid, teacher[0], teacher, steps,
                                               solver)
    path = tuple(int(i) for i in found)
    levels = oss_module.oss_levels(model, interp, steps, solver=solver, **OPTIONS)
    assert indices(levels, grid) == path == oss_recursion(mixture, steps, solver)
    errors = final_errors(mixture, steps, solver)
    np.testing.assert_allclose(errs[-1, M - 1], errors[path], rtol=1e-9)
    extended = []  # the kept (N − 2)-step path at each j, then the step to M − 1
    for j in np.flatnonzero(preds[steps - 3, :-1] >= 0):
        kept = [int(j)]
        for k in range(steps - 3, -1, -1):
            kept.append(int(preds[k, kept[-1]]))
        extended.append((*kept[::-1], M - 1))
    assert len(extended) == M - steps + 1
    assert errors[path] == min(errors[p] for p in extended)
    ranked = sorted(errors, key=errors.get)
    gits_path = indices(gits_module.gits_levels(model, interp, steps, solver=solver, **OPTIONS),
                        grid)
    uniform = tuple(int(round(v)) for v in np.linspace(0, M - 1, steps))
    print(f"{solver} N={steps}: OSS {path} rank {ranked.index(path) + 1}/"
          f"{len(ranked)} error {errors[path]:.3g}; GITS {gits_path} "
          f"{errors[gits_path]:.3g}; uniform {uniform} {errors[uniform]:.3g}; best "
          f"{ranked[0]} {errors[ranked[0]]:.3g}")
    assert errors[path] >= errors[ranked[0]]


# ------------------------------------------------------------------ against EDM's levels
@pytest.mark.parametrize("method,solver", [("gits", "sigma_euler"), ("oss", "sigma_euler"),
                                           ("oss", "dpmpp_2m")])
def test_closer_to_the_flow_than_edm_on_fresh_samples(method, solver, x64):
    """Two-mode mixture, d = 10, N = 6, σ_max = 80: on 500 fresh prior samples (not those the
    method saw) the final mean square error in y against a 3000-step DPM-Solver++(2M) reference
    falls below EDM's by more than 4 standard errors of the paired difference. Numbers (edm →
    method ± s.e.): GITS σ-Euler 0.223 → 0.095 (Δ 0.128 ± 0.015); OSS σ-Euler 0.223 → 0.124
    (Δ 0.099 ± 0.010); OSS 2M 0.167 → 0.083 (Δ 0.084 ± 0.009). (GITS with 2M: 0.167 → 0.143,
    Δ 0.024 ± 0.016, not significant; not asserted.)"""
    d, steps, sigma_max = 10, 6, 80.0
    model = ns.GaussianMixture.two_modes(d=d, p=0.8, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", d)
    means, weights = np.asarray(model.means), np.asarray(model.weights)

    def denoiser(v, sigma):
        return gm_denoiser_y(v, sigma, means, weights, 0.5)

    y0 = sigma_max * np.random.default_rng(1).normal(size=(500, d))
    reference = run_path(y0, np.geomspace(sigma_max, 0.002, 3000), denoiser, "dpmpp_2m")
    find = {"gits": gits_module.gits_levels, "oss": oss_module.oss_levels}[method]
    chosen = find(model, interp, steps, sigma_max=sigma_max, solver=solver)
    edm = methods.edm_levels(steps, 0.002, sigma_max)

    def per_sample(levels):
        return np.mean((run_path(y0, levels, denoiser, solver) - reference) ** 2, axis=1)

    gain = per_sample(edm) - per_sample(chosen)
    assert gain.mean() > 4.0 * gain.std() / math.sqrt(gain.size), (gain.mean(), chosen)


# ------------------------------------------------------------------ registry, range, bad input
@pytest.mark.parametrize("name", ["gits", "oss"])
def test_made_by_name_from_pure_noise(name, x64):
    """From σ_max = ∞ the schedule starts from pure noise (τ_0 = 0) and runs through N fine
    points to σ_min; ``make`` passes the options."""
    d = 4
    model = ns.GaussianMixture.two_modes(d=d)
    interp = ns.Interpolant("ve", "linear", d)
    sched = methods.make(name, model, interp, 5, sigma_max=math.inf, points=12, n=8, seed=3,
                         solver="dpmpp_2m")
    assert sched.steps == 5 and float(sched.tau[0]) == 0.0
    sigma = np.asarray(interp.noise_ratio(sched, np.arange(6) / 5))
    grid = _teacher.teacher_levels(0.002, math.inf, 12)
    assert math.isinf(sigma[0]) and sigma[-1] == 0.0
    found = indices(sigma[:-1], grid, rtol=1e-12)  # σ read back from τ
    assert found[-1] == 11 and list(found) == sorted(set(found))


@pytest.mark.parametrize("name", ["gits", "oss"])
@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=9, points=9), "points"),
    (dict(steps=4, points=2), "points"),
    (dict(solver="heun"), "solver"),
    (dict(n=0), "n must"),
    (dict(seed=-1), "seed"),
    (dict(refine=0), "refine"),
    (dict(sigma_min=5.0, sigma_max=1.0), "sigma_max"),
    (dict(steps=1), "steps"),
])
def test_bad_input(name, kwargs, match):
    model = ns.GaussianMixture.two_modes(d=3)
    interp = ns.Interpolant("vp", "linear", 3)
    options = dict(kwargs)
    steps = options.pop("steps", 4)
    with pytest.raises(ValueError, match=match):
        methods.METHODS[name](model, interp, steps, **options)


@pytest.mark.parametrize("name", ["gits", "oss"])
def test_needs_a_denoiser_of_the_interpolants_dimension(name, unchecked_types):
    interp = ns.Interpolant("vp", "linear", 3)
    with pytest.raises(ValueError, match="needs a model"):
        methods.METHODS[name](None, interp, 4)
    with pytest.raises(ValueError, match="dimension"):
        methods.METHODS[name](ns.GaussianMixture.two_modes(d=4), interp, 4)
