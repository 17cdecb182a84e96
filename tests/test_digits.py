"""ns.Digits: the empirical law of scikit-learn's 8×8 digits, against direct float64 NumPy
computations, binomial and Monte-Carlo error bars, and an end-to-end streamed summary."""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

pytest.importorskip("sklearn")

import noisesched as ns  # noqa: E402
from noisesched.experiments import config as cfg  # noqa: E402
from noisesched.models.digits import frechet_distance, sample_grid  # noqa: E402

N_EXACT = 20_000  # exact samples for the Monte-Carlo checks (about half a second)


@pytest.fixture(scope="module")
def law():
    return ns.Digits()


@pytest.fixture(scope="module")
def exact(law):
    """N_EXACT exact samples, their summary and their row statistics."""
    x = law.sample(jax.random.PRNGKey(7), N_EXACT)
    rows = ns.metrics.row_statistics(law, x)
    return x, rows, ns.metrics.summary_from_rows(law, rows)


def _coefficients(alpha, beta, dtype):
    a, b = jnp.asarray(alpha, dtype), jnp.asarray(beta, dtype)
    return ns.Coefficients(alpha=a, beta=b, dbeta=jnp.ones_like(b), alpha_sq=a * a,
                           alpha_dalpha=-a)


def _posterior_mean_numpy(points, log_prior, alpha, beta, x):
    """E[x1 | α z + β x1 = x] by Bayes' rule over every support point: log-sum-exp of
    log π_i − |x − β x_i|²/(2α²), with the squared distances formed directly (float64)."""
    sq = np.sum((x[..., None, :] - beta * points) ** 2, axis=-1)
    logits = log_prior - sq / (2 * alpha**2)
    weights = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    return weights @ points


def _law_arrays(law):
    return np.asarray(law.points, np.float64), np.asarray(law.log_prior, np.float64)


def test_denoiser_is_the_posterior_mean_of_the_empirical_law(x64):
    law = ns.Digits()
    points, log_prior = _law_arrays(law)
    rng = np.random.default_rng(0)
    # noisy training images (the posterior spread over a few points) and plain noise
    j = rng.integers(0, points.shape[0], size=6)
    for alpha, beta in [(1.0, 0.0), (1.0, 0.3), (0.8, 0.6), (0.3, 1.0), (0.05, 1.0),
                        (1e-3, 0.9)]:
        x = np.concatenate([beta * points[j] + alpha * rng.standard_normal((6, 64)),
                            rng.standard_normal((2, 64))])
        want = _posterior_mean_numpy(points, log_prior, alpha, beta, x)
        got = law.denoise(_coefficients(alpha, beta, jnp.float64), jnp.asarray(x))
        # small α: the logits are O(1/α²), their rounding ~1e-16·|x|²/α²
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-9 / alpha**2)
    # any batch shape (..., d)
    x = rng.standard_normal((2, 3, 64))
    got = law.denoise(_coefficients(0.4, 0.7, jnp.float64), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got),
                               _posterior_mean_numpy(points, log_prior, 0.4, 0.7, x), atol=1e-12)


def test_denoiser_in_float32():
    law = ns.Digits()
    points, log_prior = _law_arrays(law)
    x = 0.6 * points[:5] + 0.5 * np.random.default_rng(1).standard_normal((5, 64))
    got = law.denoise(_coefficients(0.5, 0.6, jnp.float32), jnp.asarray(x, jnp.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), _posterior_mean_numpy(points, log_prior, 0.5,
                                                                      0.6, x), atol=1e-4)


def test_denoiser_tends_to_the_nearest_support_point(x64):
    law = ns.Digits()
    points, _ = _law_arrays(law)
    rng = np.random.default_rng(2)
    beta = 0.9
    x = beta * points[rng.integers(0, points.shape[0], size=8)] + 0.3 * rng.standard_normal(
        (8, 64))
    nearest = points[np.argmin(np.sum((x[:, None, :] - beta * points) ** 2, axis=-1), axis=-1)]
    for alpha in (1e-4, 1e-8, 0.0):
        got = law.denoise(_coefficients(alpha, beta, jnp.float64), jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(got), nearest, rtol=0, atol=1e-12)
    assert ns.Digits.singular_at_data


def test_exact_samples_are_training_images_in_the_class_weights(law, exact):
    x, _, _ = exact
    images = np.asarray(law.training_images())
    x = np.asarray(x)
    # the index of the training image each sample equals (squared distance exactly 0)
    sq = (np.sum(x**2, axis=1)[:, None] - 2 * x @ images.T + np.sum(images**2, axis=1))
    match = np.argmin(sq, axis=1)
    np.testing.assert_array_equal(x, images[match])
    digits = np.asarray(law.training_labels())[match]
    for digit, weight in zip(law.classes, law.weights, strict=True):
        fraction = np.mean(digits == digit)
        se = math.sqrt(weight * (1 - weight) / N_EXACT)
        assert abs(fraction - weight) < 4 * se, (digit, fraction, weight)
    # within a class, every training image alike: the counts of the images of the rarest
    # class, against the uniform law on them (chi-square, 1 % level ≈ mean + 2.33 sd)
    rare = np.flatnonzero(np.asarray(law.training_labels()) == law.classes[-1])
    counts = np.bincount(match, minlength=images.shape[0])[rare]
    expected = counts.sum() / rare.size
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = rare.size - 1
    assert chi2 < dof + 2.33 * math.sqrt(2 * dof)


def test_split_is_per_class_and_deterministic(law):
    held = np.asarray(law.heldout_labels())
    train = np.asarray(law.training_labels())
    for digit in law.classes:
        n_train, n_held = np.sum(train == digit), np.sum(held == digit)
        assert n_held == round(0.25 * (n_train + n_held))
    # the same split of a class whatever the other classes
    other = ns.Digits(classes=(3, 8), weights=(0.5, 0.5))
    three = np.asarray(other.training_images())[np.asarray(other.training_labels()) == 3]
    np.testing.assert_array_equal(three, np.asarray(law.training_images())[train == 3])
    # no held-out image among the training images of its class, pixels in [−1, 1] on the
    # grid pixel/8 − 1
    images = np.asarray(law.training_images())
    assert images.shape[1] == 64 == law.d and law.image_shape == (8, 8)
    assert np.all(np.abs(images) <= 1) and np.all((images + 1) * 8 == np.round((images + 1) * 8))


def test_classifier_and_the_features_of_exact_samples(law, exact):
    x, rows, s = exact
    assert law.classifier_accuracy >= 0.9
    assert law.classifier_training_accuracy == 1.0  # so exact samples are labelled exactly
    # class fractions: binomial, each within 4 standard errors, and the total variation at most
    # half the sum of those bounds
    w = np.asarray(law.weights)
    se = np.sqrt(w * (1 - w) / N_EXACT)
    for digit, weight, err in zip(law.classes, w, se, strict=True):
        assert s[f"class_{digit}_fraction_target"] == weight
        assert abs(s[f"class_{digit}_fraction"] - weight) < 4 * err
    assert s["class_weight_error_target"] == 0.0
    assert s["class_weight_error"] < 0.5 * np.sum(4 * se)

    # per class: law moments from the training images (independently of the model's cache)
    images = np.asarray(law.training_images(), np.float64)
    train = np.asarray(law.training_labels())
    labels = np.asarray(rows["class_index"])
    pixels = np.asarray(x, np.float64)
    ratio_se, mse_se = 0.0, 0.0
    for k, digit in enumerate(law.classes):
        own, mine = images[train == digit], pixels[labels == k]
        cov = np.cov(own, rowvar=False, bias=True)
        n_k = mine.shape[0]
        # the ratio Σ v̂/Σ v: the sd of |x − m|² over rows, over √n_k Σ v
        spread = np.sum((mine - own.mean(axis=0)) ** 2, axis=1)
        ratio_se += w[k] * np.std(spread) / math.sqrt(n_k) / np.trace(cov)
        # the debiased mean error: mean_p (m̂ − m)² less its mean; sd √(2 tr C²)/(d n_k)
        # (m̂ − m Gaussian with covariance C/n_k)
        mse_se += w[k] * math.sqrt(2 * np.trace(cov @ cov)) / (64 * n_k)
    assert s["pixel_variance_ratio_target"] == 1.0
    assert abs(s["pixel_variance_ratio"] - 1.0) < 4 * ratio_se
    assert s["pixel_mean_sq_error_target"] == 0.0
    assert abs(s["pixel_mean_sq_error"]) < 4 * mse_se

    # Fréchet target: the law's features (training images weighted π_i) against the held-out
    # images weighted as the law's classes, recomputed here with an eigendecomposition
    def features(images):
        return np.asarray(law.classifier(jnp.asarray(images, jnp.float32))[1], np.float64)

    prior = np.exp(np.asarray(law.log_prior, np.float64))
    held_labels = np.asarray(law.heldout_labels())
    held_w = np.array([w[law.classes.index(d)] / np.sum(held_labels == d)
                       for d in held_labels])
    moments = [_moments(features(np.asarray(law.training_images())), prior),
               _moments(features(np.asarray(law.heldout_images())), held_w)]
    target = _frechet_by_eigh(*moments[0], *moments[1])
    assert s["frechet_distance_target"] == pytest.approx(target, rel=1e-6, abs=1e-9)
    # exact samples reach the target up to their own noise: FD_n − target is, to first order,
    # 2 (μ − μ_h)·(μ̂ − μ) (sd σ_lin below), plus |μ̂ − μ|² and the covariance's estimation
    # noise, which are positive with mean about tr C/n (χ²-like: below 8 tr C/n at the 1 %
    # level even when one direction dominates; the covariance part is smaller still)
    mean, cov = moments[0]
    delta = mean - moments[1][0]
    sigma_lin = 2 * math.sqrt(delta @ cov @ delta / N_EXACT)
    excess = s["frechet_distance"] - s["frechet_distance_target"]
    assert -4 * sigma_lin < excess < 4 * sigma_lin + 8 * np.trace(cov) / N_EXACT


def _moments(features, weights):
    p = weights / weights.sum()
    mean = p @ features
    centred = features - mean
    return mean, (centred * p[:, None]).T @ centred


def _frechet_by_eigh(ma, ca, mb, cb):
    """|Δm|² + tr ca + tr cb − 2 tr (ca^½ cb ca^½)^½ by symmetric eigendecompositions, on the
    coordinates of nonzero variance (the zero rows and columns of dead units add nothing)."""
    live = (np.diagonal(ca) > 0) | (np.diagonal(cb) > 0)
    ca, cb = ca[np.ix_(live, live)], cb[np.ix_(live, live)]
    lam, vec = np.linalg.eigh(ca)
    root = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    inner = np.linalg.eigvalsh(root @ cb @ root)
    return float(np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                 - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def test_frechet_distance_of_commuting_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    ma, mb = rng.standard_normal(5), rng.standard_normal(5)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # same eigenvectors: they commute
    want = np.sum((ma - mb) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(ma, (q * a) @ q.T, mb, (q * b) @ q.T)
    assert got == pytest.approx(want, rel=1e-10)
    # a singular covariance (as dead units give)
    a[0] = 0.0
    want = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(ma, np.diag(a), ma, np.diag(b)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": (0, 10), "weights": (0.5, 0.5)}, r"^classes must be .* digits in \[0, 9\]"),
    ({"classes": (-1, 2), "weights": (0.5, 0.5)}, r"^classes must be"),
    ({"classes": (2, 2), "weights": (0.5, 0.5)}, r"^classes must be distinct"),
    ({"classes": (), "weights": ()}, r"^classes must be a non-empty"),
    ({"weights": (0.4, 0.3, 0.2, 0.2)}, r"^weights must sum to 1"),
    ({"weights": (0.4, 0.3, 0.2, 0.1 + 1e-8)}, r"^weights must sum to 1"),
    ({"weights": (0.5, 0.5)}, r"^weights must have one entry per class \(4"),
    ({"weights": (0.6, 0.5, -0.1, 0.0)}, r"^weights must each be positive"),
    ({"holdout": 0.0}, r"^holdout must be in \(0, 1\)"),
    ({"holdout": 1.0}, r"^holdout must be in \(0, 1\)"),
    ({"seed": -1}, r"^seed must be an integer"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ns.Digits(**kwargs)


@pytest.mark.parametrize("classes", ["01", 3, None, [0.5, 1.0], [[0, 1]]])
def test_classes_of_the_wrong_type_name_the_parameter(unchecked_types, classes):
    with pytest.raises(ValueError, match=r"^classes must be a non-empty list"):
        ns.Digits(classes=classes, weights=(0.5, 0.5))


def test_sklearn_is_imported_only_by_digits():
    code = (
        "import sys\n"
        "import noisesched as ns\n"
        "assert 'sklearn' not in sys.modules\n"
        "sys.modules['sklearn'] = None\n"  # as if not installed
        "try:\n"
        "    ns.Digits()\n"
        "except ImportError as err:\n"
        "    assert 'pip install \"noisesched[digits]\"' in str(err), err\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_sample_summary_end_to_end_and_figures(law):
    interp = ns.Interpolant("vp", "linear", 64)
    out = ns.sample_summary(law, interp, ns.schedules.constant(), jax.random.PRNGKey(0), 96,
                            steps=4, chunk_size=64)
    keys = {k for f in law.features for k in (f.key, f.target, f.se) if k is not None}
    assert keys <= set(out.metrics)
    for k in law.classes:  # a fraction of 96 samples: binomial
        f = out.metrics[f"class_{k}_fraction"]
        assert out.metrics[f"class_{k}_fraction_se"] == pytest.approx((f * (1 - f) / 96) ** 0.5,
                                                                     rel=1e-12)
    assert all(math.isfinite(v) for v in out.metrics.values())
    assert out.rows["pixels"].shape == (96, 64) and out.rows["features"].shape == (96, 64)
    assert out.rows["class_index"].shape == (96,)
    assert law.mode_split() is None
    line = law.describe(out.metrics)
    assert "class 3 fraction" in line and "Fréchet distance" in line
    fig, data = law.feature_figure(out.rows, "test")
    assert data["images"].shape == (64, 64) and np.all(np.diff(
        [law.classes.index(d) for d in data["labels"]]) >= 0)
    grid = sample_grid(np.asarray(law.training_images()[:10]), (8, 8),
                       labels=np.asarray(law.training_labels()[:10]), title="digits")
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(grid)
    with pytest.raises(ValueError, match="images must have shape"):
        sample_grid(np.zeros((3, 10)), (8, 8))


def test_registry_and_config():
    assert ns.models.REGISTRY["digits"] is ns.Digits
    config = cfg.from_mapping({"model": {"name": "digits", "classes": [1, 7],
                                         "weights": [0.25, 0.75], "seed": 3},
                               "schedule": {"name": "constant"}})
    model, interp, _ = config.build()
    assert isinstance(model, ns.Digits) and model.classes == (1, 7) and model.seed == 3
    assert interp.d == 64
    with pytest.raises(cfg.ConfigError, match="model.classes"):
        cfg.from_mapping({"model": {"name": "digits", "classes": [1, 1],
                                    "weights": [0.5, 0.5]}})
