"""The methods that equalise a cost per step along the noise level (entropic time, score-optimal,
Lipschitz-guided), each against its cost written out here in closed form for a Gaussian law
N(0, diag s²), independently of the package: D(y; σ) = s²/(s² + σ²) y per coordinate."""

import math
from itertools import pairwise

import numpy as np
import pytest
from scipy.integrate import quad

import noisesched as ns
from noisesched import methods
from noisesched.methods.entropic import mmse_profile
from noisesched.methods.lipschitz import lipschitz_profile
from noisesched.methods.score_optimal import score_rate_profile

SCALES = np.array([0.3, 1.0, 3.0])
SIGMA_MIN, SIGMA_MAX, STEPS = 0.01, 80.0, 8


def sigmas_of(schedule, interp):
    """σ_0 … σ_{N−1} of a KnotSchedule (the trailing 0 dropped)."""
    t = np.arange(schedule.steps + 1) / schedule.steps
    return np.asarray(interp.noise_ratio(schedule, t), np.float64)[:-1]


def relative_spread(parts):
    parts = np.asarray(parts)
    return float(np.max(np.abs(parts / parts.mean() - 1.0)))


# ----------------------------------------------------------------------------- closed forms
def gaussian_mmse(sigma):
    """Σ_i s_i² σ²/(s_i² + σ²)."""
    s2 = SCALES[:, None] ** 2
    return np.sum(s2 * sigma**2 / (s2 + sigma**2), axis=0)


def entropy_drop(a, b):
    """H(x1 | y_a) − H(x1 | y_b) = ½ Σ_i log(v_a/v_b), v = s²σ²/(s² + σ²) the posterior variance."""
    s2 = SCALES**2
    return 0.5 * np.sum(np.log(a**2 * (s2 + b**2) / (b**2 * (s2 + a**2))))


def score_rate(sigma):
    """δ(σ) = E|∂_σ ∇_y log p_σ|² = Σ_i 4σ²/(s_i² + σ²)³ (∇_y log p_σ = −y/(s² + σ²))."""
    s2 = SCALES[:, None] ** 2
    return np.sum(4 * sigma**2 / (s2 + sigma**2) ** 3, axis=0)


def log_beta_rate(interp, sigma):
    """β'/β with β(σ) written out for each shape: linear β = α0/(α0 + σ), trig
    β = α0/√(α0² + σ²)."""
    a0 = interp.alpha0
    return -1.0 / (a0 + sigma) if interp.shape == "linear" else -sigma / (a0**2 + sigma**2)


def gaussian_lipschitz(interp, sigma):
    """The largest |eigenvalue| of the σ-derivative of the flow of x = β y: the field is
    v_i = (β'/β + σ/(s_i² + σ²)) x_i, diagonal."""
    sigma = np.atleast_1d(np.asarray(sigma, np.float64))
    s2 = SCALES[:, None] ** 2
    return np.max(np.abs(log_beta_rate(interp, sigma) + sigma / (s2 + sigma**2)), axis=0)


def integral(f, a, b):
    return quad(f, a, b, limit=200, epsabs=0.0, epsrel=1e-10)[0]


def edm_list(steps, lo, hi, rho=7.0):
    i = np.arange(steps)
    return (hi ** (1 / rho) + i / (steps - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho


# ----------------------------------------------------------------------------- entropic time
def test_mmse_of_the_monte_carlo_is_the_gaussian_closed_form(x64):
    model, interp = ns.Gaussian(SCALES), ns.Interpolant("vp", "linear", 3)
    sigmas = np.geomspace(100.0, 0.003, 40)
    mmse, error = mmse_profile(model, interp, sigmas, n=4000, seed=1)
    gap = np.abs(mmse - gaussian_mmse(sigmas)) / error
    assert np.all(gap < 4.0), gap.max()  # within four standard errors at every level


def test_entropic_levels_have_equal_entropy_drops(x64):
    """n = 20 000 draws: the Monte Carlo mmse has a relative standard error of about
    √(2/n) = 1% per coordinate, so the drops of the closed-form entropy between the levels may
    differ by up to about 2% (two standard errors; the trapezoidal rule on 256 levels adds
    ~10⁻⁴)."""
    model, interp = ns.Gaussian(SCALES), ns.Interpolant("vp", "linear", 3)
    sched = methods.entropic(model, interp, STEPS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                             n=20_000, grid=256)
    levels = sigmas_of(sched, interp)
    np.testing.assert_allclose(levels[[0, -1]], [SIGMA_MAX, SIGMA_MIN], rtol=1e-12)
    drops = [entropy_drop(a, b) for a, b in pairwise(levels)]
    assert relative_spread(drops) < 0.02, drops
    # and they are not log-SNR's: the entropy density s²/(s² + σ²) per log σ is far from flat
    geometric = np.geomspace(SIGMA_MAX, SIGMA_MIN, STEPS)
    assert relative_spread([entropy_drop(a, b) for a, b in
                            pairwise(geometric)]) > 0.5


# ----------------------------------------------------------------------------- score-optimal
def test_score_rate_of_the_monte_carlo_is_the_gaussian_closed_form(x64):
    model, interp = ns.Gaussian(SCALES), ns.Interpolant("ve", "trig", 3)
    sigmas = np.geomspace(100.0, 0.003, 40)
    delta, error = score_rate_profile(model, interp, sigmas, n=4000, seed=2)
    gap = np.abs(delta - score_rate(sigmas)) / error
    assert np.all(gap < 4.0), gap.max()


def test_score_optimal_levels_have_equal_cost(x64):
    """Equal ∫ √δ dσ per step in the closed-form δ. n = 20 000 draws: δ has a relative standard
    error of about √(2/n) = 1% per coordinate (√δ half that), so the step costs may differ by up
    to about 2%."""
    model, interp = ns.Gaussian(SCALES), ns.Interpolant("vp", "linear", 3)
    sched = methods.score_optimal(model, interp, STEPS, sigma_min=SIGMA_MIN,
                                  sigma_max=SIGMA_MAX, n=20_000, grid=256)
    levels = sigmas_of(sched, interp)
    costs = [integral(lambda s: math.sqrt(score_rate(s)[0]), b, a)
             for a, b in pairwise(levels)]
    assert relative_spread(costs) < 0.02, costs
    edm = edm_list(STEPS, SIGMA_MIN, SIGMA_MAX)
    assert relative_spread([integral(lambda s: math.sqrt(score_rate(s)[0]), b, a)
                            for a, b in pairwise(edm)]) > 0.5


def test_score_optimal_levels_do_not_depend_on_the_interpolant(x64):
    """The cost is taken in y = x/β: VP and VE, linear and trig, give the same levels."""
    model = ns.Gaussian(SCALES)
    lists = [sigmas_of(methods.score_optimal(model, interp, 6, n=64, grid=64), interp)
             for interp in (ns.Interpolant("vp", "linear", 3), ns.Interpolant("ve", "trig", 3))]
    np.testing.assert_allclose(lists[0], lists[1], rtol=1e-9)


# ----------------------------------------------------------------------------- Lipschitz
@pytest.mark.parametrize("kind,shape", [("vp", "linear"), ("ve", "trig")])
def test_lipschitz_profile_is_the_largest_eigenvalue(kind, shape, x64):
    """For a Gaussian the field is linear, so the average over x is exact, and three Lanczos
    steps span R³: the estimate is the largest |eigenvalue|."""
    model, interp = ns.Gaussian(SCALES), ns.Interpolant(kind, shape, 3)
    sigmas = np.geomspace(1e4, 0.003, 200)
    lip, _ = lipschitz_profile(model, interp, sigmas, n=2, seed=0, iters=3)
    np.testing.assert_allclose(lip, gaussian_lipschitz(interp, sigmas), rtol=1e-6)


def test_lipschitz_profile_of_the_two_mode_mixture(x64):
    """Two modes ±μ, within-mode scale s: J_D = (s²/v) I + (σ²/v²) sech²(h + μ·y/v) μμᵀ,
    v = s² + σ², so ∇_x v has the eigenvalue e = g/σ − s²/(σ v) on μ⊥ (d − 1 times) and
    e − (σ/v²)|μ|² sech² on μ. Two Lanczos steps (the default four here) against the RMS over
    the same draws of the larger |eigenvalue|, for VP linear (g = 1/(1 + σ))."""
    from noisesched.methods._densities import exact_draws

    d, p, s = 200, 0.8, 0.5
    model = ns.GaussianMixture.two_modes(d=d, p=p, m=1.0, sigma=s)
    interp = ns.Interpolant("vp", "linear", d)
    sigmas = np.geomspace(3e3, 0.01, 64)
    lip, _ = lipschitz_profile(model, interp, sigmas, n=16, seed=3)
    x1, z, _ = exact_draws(model, 16, 3, "test")
    x1, z = np.asarray(x1), np.asarray(z)
    h = 0.5 * math.log(p / (1 - p))
    expected = []
    for sigma in sigmas:
        v = s**2 + sigma**2
        y = x1 + sigma * z
        sech2 = 1.0 / np.cosh(np.clip(h + y.sum(axis=1) / v, -300, 300)) ** 2
        bulk = 1.0 / (sigma * (1.0 + sigma)) - s**2 / (sigma * v)
        along = bulk - sigma * d / v**2 * sech2
        expected.append(np.sqrt(np.mean(np.maximum(abs(bulk), np.abs(along)) ** 2)))
    np.testing.assert_allclose(lip, expected, rtol=1e-6)


def test_lipschitz_levels_equalise_the_integral_and_minimise_the_objective(x64):
    """Equal ∫ L dσ per step, L the largest |eigenvalue| in closed form, to the accuracy of the
    trapezoidal rule on 1024 levels; so the objective Σ_i (∫_step L dσ)² is its least value
    Λ²/(N − 1), below EDM's and log-SNR's lists of the same N and range."""
    model, interp = ns.Gaussian(SCALES), ns.Interpolant("vp", "linear", 3)
    sched = methods.lipschitz(model, interp, STEPS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                              n=2, grid=1024)
    levels = sigmas_of(sched, interp)

    def parts(lst):
        return np.array([integral(lambda s: gaussian_lipschitz(interp, s)[0], b, a)
                         for a, b in pairwise(lst)])

    ours = parts(levels)
    assert relative_spread(ours) < 1e-3, ours
    total = integral(lambda s: gaussian_lipschitz(interp, s)[0], SIGMA_MIN, SIGMA_MAX)
    objective = np.sum(ours**2)
    assert objective <= total**2 / (STEPS - 1) * (1 + 1e-5)
    for other in (edm_list(STEPS, SIGMA_MIN, SIGMA_MAX),
                  np.geomspace(SIGMA_MAX, SIGMA_MIN, STEPS)):
        assert objective < 0.9 * np.sum(parts(other) ** 2)


# ----------------------------------------------------------------------------- all three
OPTIONS = dict(n=32, grid=32)


@pytest.mark.parametrize("name", ["entropic", "score_optimal", "lipschitz"])
def test_pure_noise_start_and_determinism(name, x64):
    """σ_max = ∞ gives σ_0 = ∞ and the levels of the law from ``finite_top``; a seed gives one
    schedule; another seed moves the Monte Carlo levels of a non-Gaussian law."""
    model = ns.GaussianMixture.two_modes(d=8, p=0.7, m=1.0, sigma=0.5)
    interp = ns.Interpolant("vp", "linear", 8)
    method = methods.METHODS[name]
    inf = sigmas_of(method(model, interp, 6, sigma_max=math.inf, **OPTIONS), interp)
    top = 1e6  # finite_top for sigma_min < 1
    finite = sigmas_of(method(model, interp, 6, sigma_max=top, **OPTIONS), interp)
    assert inf[0] == math.inf and np.all(np.diff(inf) < 0)
    np.testing.assert_allclose(inf[1:], finite[1:], rtol=1e-9)
    again = sigmas_of(method(model, interp, 6, sigma_max=top, **OPTIONS), interp)
    np.testing.assert_array_equal(again, finite)
    other = sigmas_of(method(model, interp, 6, sigma_max=top, n=32, grid=32, seed=5), interp)
    assert not np.allclose(other[1:-1], finite[1:-1], rtol=1e-6)


@pytest.mark.parametrize("name", ["entropic", "score_optimal", "lipschitz"])
def test_registry_makes_them_and_checks_their_options(name):
    model = ns.Gaussian([0.5, 2.0])
    interp = ns.Interpolant("ve", "linear", 2)
    sched = methods.make(name, model, interp, 5, n=8, grid=16)
    assert sched.steps == 5
    with pytest.raises(ValueError, match="option 'rho' is not used"):
        methods.make(name, model, interp, 5, rho=7.0)


BAD = [({"steps": 1}, "steps"), ({"sigma_min": 0.0}, "sigma_min"),
       ({"sigma_max": 0.001}, "sigma_max"), ({"n": 1}, "n must"), ({"grid": 4}, "grid"),
       ({"seed": -1}, "seed"), ({"n": 2.5}, "n must"), ({"sigma_max": "big"}, "sigma_max")]


@pytest.mark.parametrize("name", ["entropic", "score_optimal", "lipschitz"])
@pytest.mark.parametrize("bad,word", BAD)
def test_bad_options_are_named(name, bad, word, unchecked_types):
    model, interp = ns.Gaussian([1.0]), ns.Interpolant("vp", "linear", 1)
    args = {"steps": 4, **bad}
    steps = args.pop("steps")
    with pytest.raises(ValueError, match=word):
        methods.METHODS[name](model, interp, steps, **args)


@pytest.mark.parametrize("iters", [1, 33])
def test_lipschitz_iterations_are_checked(iters):
    model, interp = ns.Gaussian([1.0]), ns.Interpolant("vp", "linear", 1)
    with pytest.raises(ValueError, match=r"iters must be an integer in \[2, 32\]"):
        methods.lipschitz(model, interp, 4, iters=iters)


class Shrink(ns.AbstractDenoiser):
    """A denoiser with no data law."""

    d: int = 2

    def denoise(self, c, x):
        return c.beta * x / (c.alpha_sq + c.beta**2)


class Unsampled(ns.Gaussian):
    """A data law without an exact sampler."""

    def sample_one(self, key):
        return ns.AbstractDataLaw.sample_one(self, key)


@pytest.mark.parametrize("name", ["entropic", "score_optimal", "lipschitz"])
def test_a_model_without_exact_samples_is_refused(name):
    interp = ns.Interpolant("vp", "linear", 2)
    method = methods.METHODS[name]
    with pytest.raises(ValueError, match="needs exact samples of the data: model must name"):
        method(Shrink(), interp, 4, **OPTIONS)
    with pytest.raises(ValueError, match="Unsampled has no exact sampler"):
        method(Unsampled([1.0, 2.0]), interp, 4, **OPTIONS)
    with pytest.raises(ValueError, match="grid"):  # options are checked before the model
        method(Shrink(), interp, 4, grid=2)

