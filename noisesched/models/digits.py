"""Handwritten digits (scikit-learn's 8×8 images) as a data law: a real image data set with
its exact (memorising) denoiser and features measured by a classifier trained here.

The law is the empirical one of a training part of the images of a few digit classes: class k
with probability ``weights[k]``, then a uniform training image of that class. Its denoiser is
exact (``AbstractEmpiricalModel``), so a learned network can be compared with the denoiser that
memorises the training set. The features are measured with a small MLP classifier trained on the
same training images (high level: the class proportions; low level: the class-conditional pixel
means and variances, and a Fréchet distance on the classifier's features against held-out
images).

scikit-learn is an optional dependency (``pip install "noisesched[digits]"``), imported only
when a ``Digits`` is made.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._validation import check_int, check_real
from .base import Feature, binomial_standard_error
from .empirical import AbstractEmpiricalModel

__all__ = ["Digits", "DigitClassifier", "frechet_distance", "sample_grid"]

_INSTALL = 'pip install "noisesched[digits]"'

#: The classifier's widths: 64 pixels → 128 → 64 (its feature map) → one logit per class.
_HIDDEN = (128, 64)
#: Full-batch Adam steps and learning rate of the classifier (about half a second on a CPU).
_STEPS = 300
_LEARNING_RATE = 3e-3
#: Seed-sequence tag of the classifier's initialisation (the tags 0…9 split the digit classes).
_CLASSIFIER_TAG = 10


class Digits(AbstractEmpiricalModel):
    """The empirical law of the training images of some digit classes, with the given class
    weights, on R^64.

    Pixels 0…16 are mapped to x = pixel/8 − 1 ∈ [−1, 1]; a row is an image in row-major order
    (``image_shape = (8, 8)``). The images of each class are split at random (from ``seed``,
    the same split of a class whatever the other classes) into a training part, the support of
    the law, and a held-out part, for the classifier's accuracy and as the Fréchet reference.

    Args:
        classes: distinct digits in 0…9.
        weights: the probability of each class, positive, summing to 1.
        holdout: the fraction of each class's images held out, in (0, 1) (at least one image is
            held out and at least one kept).
        seed: the split and the classifier's initialisation.

    Features (``summary_from_rows``), the samples labelled by the classifier
    (``DigitClassifier``, trained on the training images: ``classifier_accuracy`` is its
    accuracy on the held-out images):

    * ``class_<k>_fraction``: the fraction of samples labelled k (target ``weights``; standard
      error ``class_<k>_fraction_se``, binomial);
      ``class_weight_error``: the total-variation distance between these fractions and the
      weights (target 0).
    * ``pixel_mean_sq_error``: for each class, mean over pixels of (m̂ − m)² between the sample
      mean m̂ of the samples labelled k and the law's mean m of its training images labelled k,
      less the sampling noise of m̂ (its estimate mean_p v̂_p/n_k from the samples' variances),
      averaged over the classes with the class weights. An unbiased estimate of the squared
      error of the class means, so exact samples give 0 on average (the plain squared error
      would be v/n_k for them); ``sqrt(max(0, ·))`` is the RMS error beyond the sampling noise.
    * ``pixel_variance_ratio``: for each class, the sum over pixels of the samples' variances
      (unbiased) over the law's, averaged over the classes with the class weights (target 1).
    * ``frechet_distance``: the Fréchet distance between the Gaussians fitted to the
      classifier's features of the samples and of the held-out images (both weighted as the
      law's classes). Its target ``frechet_distance_target`` is the distance between the law
      itself (its training images, weighted as the law) and the held-out images: the value that
      exact samples reach as n → ∞ (above it by O(1/n) at finite n).

    Classes with fewer than two samples are left out of the low-level averages (the weights of
    the others renormalised; nan when none is left). The classifier labels every training image
    correctly for the default classes, so exact samples are labelled exactly.
    """

    labels: Int[Array, " N"]
    classes: tuple[int, ...] = eqx.field(static=True)
    weights: tuple[float, ...] = eqx.field(static=True)
    holdout: float = eqx.field(static=True)
    seed: int = eqx.field(static=True)

    #: (height, width) of an image: a sample of shape (..., 64) reshapes to (..., 8, 8).
    image_shape: ClassVar[tuple[int, int]] = (8, 8)
    overlap_label = "mean pixel"

    def __init__(self, classes: Sequence[int] = (0, 1, 2, 3),
                 weights: Sequence[float] = (0.4, 0.3, 0.2, 0.1), holdout: float = 0.25,
                 seed: int = 0):
        chosen = _check_classes(classes)
        w = _check_weights(weights, len(chosen))
        check_real("holdout", holdout, 0.0, 1.0)
        check_int("seed", seed, lo=0)
        split = _split(chosen, float(holdout), int(seed))
        index = _class_index(chosen, split.train_labels)
        counts = np.bincount(index, minlength=len(chosen))
        prior = np.asarray(w)[index] / counts[index]
        self.points = jnp.asarray(split.train_images)
        self.log_prior = jnp.asarray(np.log(prior))
        self.labels = jnp.asarray(split.train_labels, dtype=jnp.int32)
        self.classes = chosen
        self.weights = w
        self.holdout = float(holdout)
        self.seed = int(seed)

    # ------------------------------------------------------------------ data
    def training_images(self) -> Float[Array, "N d"]:
        """The training images (the law's support), shape (N, 64), grouped by class."""
        return self.points

    def training_labels(self) -> Int[Array, " N"]:
        """The digit of each training image."""
        return self.labels

    def heldout_images(self) -> Float[Array, "M d"]:
        """The held-out images, shape (M, 64), grouped by class."""
        return jnp.asarray(self._split().heldout_images)

    def heldout_labels(self) -> Int[Array, " M"]:
        """The digit of each held-out image."""
        return jnp.asarray(self._split().heldout_labels, dtype=jnp.int32)

    def _split(self) -> _Split:
        return _split(self.classes, self.holdout, self.seed)

    # ------------------------------------------------------------------ the classifier
    @property
    def classifier(self) -> DigitClassifier:
        """The classifier of the chosen classes, trained on the training images (memoised:
        trained once per classes, holdout and seed)."""
        return _classifier(self.classes, self.holdout, self.seed)

    @property
    def classifier_accuracy(self) -> float:
        """The classifier's accuracy on the held-out images."""
        return self._reference().heldout_accuracy

    @property
    def classifier_training_accuracy(self) -> float:
        """The classifier's accuracy on the training images (1 for the default classes)."""
        return self._reference().train_accuracy

    def _reference(self) -> _Reference:
        return _reference(self.classes, self.weights, self.holdout, self.seed)

    # ------------------------------------------------------------------ features
    @property
    def features(self) -> tuple[Feature, ...]:
        out = [Feature(f"class_{k}_fraction", f"class {k} fraction", "high",
                       f"class_{k}_fraction_target", se=f"class_{k}_fraction_se")
               for k in self.classes]
        # the others are not means over samples (a total-variation distance, functions of the
        # per-class pixel moments, a Fréchet distance between fitted Gaussians): no standard
        # error
        out += [
            Feature("class_weight_error", "TV of the class weights", "high",
                    "class_weight_error_target"),
            Feature("pixel_mean_sq_error", "class-mean pixel MSE (debiased)", "low",
                    "pixel_mean_sq_error_target"),
            Feature("pixel_variance_ratio", "class pixel variance ratio", "low",
                    "pixel_variance_ratio_target"),
            Feature("frechet_distance", "Fréchet distance", "low", "frechet_distance_target"),
        ]
        return tuple(out)

    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        """Per row: ``class_index`` (the classifier's label, an index into ``classes``),
        ``pixels`` (the sample itself, shape (n, 64)) and ``features`` (the classifier's 64
        features); and ``values``, the pixels at the pooled positions."""
        return _digits_rows(self.classifier, x, rows, cols)

    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        ref = self._reference()
        index = np.asarray(rows["class_index"])
        pixels = np.asarray(rows["pixels"], dtype=np.float64)
        features = np.asarray(rows["features"], dtype=np.float64)
        n = index.size
        w = np.asarray(self.weights)
        counts = np.bincount(index, minlength=len(self.classes))
        fractions = counts / n
        out: dict[str, Any] = {}
        for k, digit in enumerate(self.classes):
            out[f"class_{digit}_fraction"] = fractions[k]
            out[f"class_{digit}_fraction_target"] = w[k]
            out[f"class_{digit}_fraction_se"] = binomial_standard_error(fractions[k], n)
        out["class_weight_error"] = 0.5 * np.sum(np.abs(fractions - w))
        out["class_weight_error_target"] = 0.0
        sq_errors, ratios, kept = [], [], []
        for k in range(len(self.classes)):
            if counts[k] < 2:
                continue
            own = pixels[index == k]
            mean = own.mean(axis=0)
            var = own.var(axis=0, ddof=1)
            sq_errors.append(np.mean((mean - ref.class_means[k]) ** 2) - np.mean(var) / counts[k])
            ratios.append(np.sum(var) / np.sum(ref.class_variances[k]))
            kept.append(w[k])
        out["pixel_mean_sq_error"] = _weighted_average(sq_errors, kept)
        out["pixel_mean_sq_error_target"] = 0.0
        out["pixel_variance_ratio"] = _weighted_average(ratios, kept)
        out["pixel_variance_ratio_target"] = 1.0
        if n >= 2:
            out["frechet_distance"] = frechet_distance(
                features.mean(axis=0), np.cov(features, rowvar=False), ref.heldout_mean,
                ref.heldout_cov)
        else:
            out["frechet_distance"] = math.nan
        out["frechet_distance_target"] = ref.frechet_target
        return {key: float(value) for key, value in out.items()}

    # mode_split: the base's None (more than two classes, no split by a hyperplane)

    def feature_figure(self, rows: dict[str, np.ndarray], title: str, shown: int = 64):
        """The first ``shown`` samples as images, sorted by the classifier's label, and the
        labelled class fractions against the weights."""
        from .._plotting import pyplot

        plt = pyplot()
        index = np.asarray(rows["class_index"])
        pixels = np.asarray(rows["pixels"])
        digits = np.asarray(self.classes)
        first = min(shown, index.size)
        order = np.argsort(index[:first], kind="stable")
        images, image_digits = pixels[:first][order], digits[index[:first][order]]
        fractions = np.bincount(index, minlength=len(self.classes)) / index.size
        weights = np.asarray(self.weights)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.6),
                                 gridspec_kw={"width_ratios": [1.1, 1.0]})
        draw_images(axes[0], images, self.image_shape, image_digits)
        axes[0].set_title(f"first {first} samples by label")
        positions = np.arange(len(self.classes))
        axes[1].bar(positions - 0.2, fractions, 0.4, label="samples (classifier's labels)")
        axes[1].bar(positions + 0.2, weights, 0.4, label="law's weights")
        axes[1].set_xticks(positions, [str(k) for k in self.classes])
        axes[1].set(xlabel="digit", ylabel="fraction", title="class fractions")
        axes[1].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        return fig, {"images": images, "labels": image_digits, "fractions": fractions,
                     "weights": weights}


# ----------------------------------------------------------------------------- the classifier
class DigitClassifier(eqx.Module):
    """An MLP 64 → 128 → 64 → K with ReLU activations; the 64 units of the last hidden layer
    are its feature map (the Fréchet distance is measured on them)."""

    layers: tuple[eqx.nn.Linear, ...]

    def __init__(self, n_classes: int, key: PRNGKeyArray, d: int = 64):
        widths = (d, *_HIDDEN, n_classes)
        keys = jax.random.split(key, len(widths) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k, dtype=jnp.float32)
                            for a, b, k in zip(widths[:-1], widths[1:], keys, strict=True))

    def __call__(self, x: Float[Array, "*batch d"]
                 ) -> tuple[Float[Array, "*batch K"], Float[Array, "*batch f"]]:
        """(logits, features) of a batch of images."""
        h = x
        for layer in self.layers[:-1]:
            h = jax.nn.relu(_affine(layer, h))
        return _affine(self.layers[-1], h), h


def _affine(layer: eqx.nn.Linear, x: Array) -> Array:
    """``layer`` applied to a batch (..., in)."""
    assert layer.bias is not None  # every layer is made with a bias
    return x @ layer.weight.T + layer.bias


def _fit_classifier(model: DigitClassifier, x: Array, y: Array) -> DigitClassifier:
    """Full-batch Adam on the cross-entropy, ``_STEPS`` steps."""
    import optax

    optimiser = optax.adam(_LEARNING_RATE)

    def loss(model):
        logits, _ = model(x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    @eqx.filter_jit
    def train(model, state):
        params, static = eqx.partition(model, eqx.is_array)

        def step(carry, _):
            params, state = carry
            grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
            updates, state = optimiser.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, state), None, length=_STEPS)
        return eqx.combine(params, static)

    return train(model, optimiser.init(eqx.filter(model, eqx.is_array)))


@functools.lru_cache(maxsize=16)
def _trained_leaves(classes: tuple[int, ...], holdout: float, seed: int
                    ) -> tuple[np.ndarray, ...]:
    """The arrays of the classifier trained on the training images of ``classes``, as
    read-only host arrays.

    Memoised because a config builds its model several times (validated when the config is
    made, then run, then built again in float64 for the exact metrics) and configs of a sweep
    share the classes, while training is deterministic in these arguments and takes about a
    second. Host arrays (not a module of device arrays) so that one cached value serves float32
    and float64 runs and every device, and read-only so that no caller can change it. Trained in
    float32 whatever the caller's x64 mode, so the weights do not depend on it.
    """
    split = _split(classes, holdout, seed)
    state = np.random.SeedSequence([seed, _CLASSIFIER_TAG]).generate_state(1)[0]
    with jax.enable_x64(False):
        model = DigitClassifier(len(classes), jax.random.PRNGKey(int(state)))
        x = jnp.asarray(split.train_images, dtype=jnp.float32)
        y = jnp.asarray(_class_index(classes, split.train_labels), dtype=jnp.int32)
        model = _fit_classifier(model, x, y)
        leaves = [np.array(leaf) for leaf in jax.tree.leaves(model)]
    for leaf in leaves:
        leaf.setflags(write=False)
    return tuple(leaves)


def _classifier(classes: tuple[int, ...], holdout: float, seed: int) -> DigitClassifier:
    template = eqx.filter_eval_shape(DigitClassifier, len(classes), jax.random.PRNGKey(0))
    leaves = [jnp.asarray(leaf) for leaf in _trained_leaves(classes, holdout, seed)]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


@eqx.filter_jit
def _digits_rows(classifier, x, rows, cols):
    logits, features = classifier(x)
    return {"class_index": jnp.argmax(logits, axis=-1).astype(jnp.int32), "pixels": x,
            "features": features, "values": x[rows, cols]}


# ----------------------------------------------------------------------------- data and split
@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as x = pixel/8 − 1 (float64, (1797, 64)) and their digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(f"noisesched.Digits needs scikit-learn: {_INSTALL}") from err
    data = load_digits()
    images = np.asarray(data.data, dtype=np.float64) / 8.0 - 1.0
    labels = np.asarray(data.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


class _Split(NamedTuple):
    train_images: np.ndarray
    train_labels: np.ndarray
    heldout_images: np.ndarray
    heldout_labels: np.ndarray


@functools.lru_cache(maxsize=32)
def _split(classes: tuple[int, ...], holdout: float, seed: int) -> _Split:
    """Each class's images in a random order drawn from (seed, digit): the first
    round(holdout · count) (at least 1, at most count − 1) held out, the rest for training;
    both parts in the data set's order, grouped by class in the order of ``classes``."""
    images, labels = _load_digits()
    train, held = [], []
    for digit in classes:
        index = np.flatnonzero(labels == digit)
        order = np.random.default_rng([seed, digit]).permutation(index.size)
        n_held = min(max(1, round(holdout * index.size)), index.size - 1)
        held.append(np.sort(index[order[:n_held]]))
        train.append(np.sort(index[order[n_held:]]))
    tr, ho = np.concatenate(train), np.concatenate(held)
    return _Split(images[tr], labels[tr], images[ho], labels[ho])


def _class_index(classes: tuple[int, ...], digits: np.ndarray) -> np.ndarray:
    """The position in ``classes`` of each digit."""
    lookup = np.full(10, -1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    return lookup[np.asarray(digits)]


class _Reference(NamedTuple):
    """What the features compare the samples with, from the law and the held-out images."""

    train_accuracy: float
    heldout_accuracy: float
    class_means: np.ndarray  # (K, d): the law's mean of its images labelled k
    class_variances: np.ndarray  # (K, d): and their variances
    heldout_mean: np.ndarray  # (f,): features of the held-out images, weighted as the law
    heldout_cov: np.ndarray  # (f, f)
    frechet_target: float


@functools.lru_cache(maxsize=16)
def _reference(classes: tuple[int, ...], weights: tuple[float, ...], holdout: float, seed: int
               ) -> _Reference:
    """The law's class-conditional pixel moments (its images grouped by the classifier's
    labels, as samples are), the held-out features' moments and the Fréchet target, in float64
    on the host."""
    split = _split(classes, holdout, seed)
    classifier = _classifier(classes, holdout, seed)
    w = np.asarray(weights)
    k_train = _class_index(classes, split.train_labels)
    k_held = _class_index(classes, split.heldout_labels)
    logits, f_train = (np.asarray(a, np.float64)
                       for a in classifier(jnp.asarray(split.train_images, jnp.float32)))
    pred_train = np.argmax(logits, axis=-1)
    logits, f_held = (np.asarray(a, np.float64)
                      for a in classifier(jnp.asarray(split.heldout_images, jnp.float32)))
    pred_held = np.argmax(logits, axis=-1)
    prior = w[k_train] / np.bincount(k_train, minlength=len(classes))[k_train]
    means = np.full((len(classes), split.train_images.shape[1]), np.nan)
    variances = np.full_like(means, np.nan)
    for k in range(len(classes)):
        mine = pred_train == k
        if np.any(mine):
            means[k], variances[k] = _weighted_moments(split.train_images[mine], prior[mine])
    law_mean, law_cov = _weighted_moments(f_train, prior, covariance=True)
    held_weight = w[k_held] / np.bincount(k_held, minlength=len(classes))[k_held]
    held_mean, held_cov = _weighted_moments(f_held, held_weight, covariance=True)
    return _Reference(
        train_accuracy=float(np.mean(pred_train == k_train)),
        heldout_accuracy=float(np.mean(pred_held == k_held)),
        class_means=means, class_variances=variances, heldout_mean=held_mean,
        heldout_cov=held_cov,
        frechet_target=frechet_distance(law_mean, law_cov, held_mean, held_cov))


def _weighted_moments(x: np.ndarray, weights: np.ndarray, covariance: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variances (or covariance) of the rows of ``x`` with probabilities ∝
    ``weights``."""
    p = weights / np.sum(weights)
    mean = p @ x
    centred = x - mean
    if covariance:
        return mean, (centred * p[:, None]).T @ centred
    return mean, p @ (centred * centred)


def _weighted_average(values: list[float], weights: list[float]) -> float:
    if not values:
        return math.nan
    return float(np.average(values, weights=weights))


# ----------------------------------------------------------------------------- validation
def _check_classes(classes: Any) -> tuple[int, ...]:
    message = f"classes must be a non-empty list of distinct digits in [0, 9]; got {classes!r}"
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence | np.ndarray):
        raise ValueError(message)
    items = list(classes)
    if not items or not all(isinstance(c, int | np.integer) and not isinstance(c, bool)
                            and 0 <= c <= 9 for c in items):
        raise ValueError(message)
    if len(set(items)) != len(items):
        raise ValueError(f"classes must be distinct; got {classes!r}")
    return tuple(int(c) for c in items)


def _check_weights(weights: Any, k: int) -> tuple[float, ...]:
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights must be a list of {k} probabilities, one per class; got "
                         f"{weights!r}") from None
    if w.ndim != 1 or w.size != k:
        raise ValueError(f"weights must have one entry per class ({k}, as classes); got "
                         f"{weights!r}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must each be positive and finite; got {weights!r}")
    if abs(float(np.sum(w)) - 1.0) > 1e-9:
        raise ValueError(f"weights must sum to 1 (within 1e-9); got sum {np.sum(w):.12g}")
    return tuple(float(v) for v in w)


# ----------------------------------------------------------------------------- Fréchet distance
def frechet_distance(mean_a: ArrayLike, cov_a: ArrayLike, mean_b: ArrayLike, cov_b: ArrayLike
                     ) -> float:
    """|m_a − m_b|² + tr(C_a + C_b − 2 (C_a C_b)^½): the Fréchet (2-Wasserstein) distance
    between N(m_a, C_a) and N(m_b, C_b), in float64 on the host (``scipy.linalg.sqrtm``).

    Coordinates of zero variance in both laws (dead units of a feature map) are dropped from
    the covariances first: their rows and columns are zero and add nothing, and without them
    the product is far better conditioned. A tiny ridge is added to both covariances if the
    square root of their product is still not finite."""
    from scipy.linalg import sqrtm

    ma, mb = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    ca, cb = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    live = (np.diagonal(ca) > 0) | (np.diagonal(cb) > 0)
    ca, cb = ca[np.ix_(live, live)], cb[np.ix_(live, live)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular product: the ridge below
        root = sqrtm(ca @ cb)
        if not np.all(np.isfinite(root)):
            ridge = 1e-10 * max(np.trace(ca), np.trace(cb), 1e-300) * np.eye(ca.shape[0])
            root = sqrtm((ca + ridge) @ (cb + ridge))
    diff = ma - mb
    return float(diff @ diff + np.trace(ca) + np.trace(cb) - 2.0 * np.trace(root).real)


# ----------------------------------------------------------------------------- figures
def draw_images(ax, images: ArrayLike, image_shape: tuple[int, int],
                labels: ArrayLike | None = None) -> np.ndarray:
    """Tile ``images`` (n, h·w) or (n, h, w), values in [−1, 1] (−1 white, 1 black), on
    ``ax`` in a near-square grid, each with its label (if any) in its corner; returns the
    tiled array (nan between tiles)."""
    h, w = _check_image_shape(image_shape)
    x = np.asarray(images, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[0] < 1 or math.prod(x.shape[1:]) != h * w:
        raise ValueError(f"images must have shape (n, {h * w}) or (n, {h}, {w}) for "
                         f"image_shape {tuple(image_shape)}, n >= 1; got {x.shape}")
    x = x.reshape(-1, h, w)
    n = x.shape[0]
    if labels is not None and np.asarray(labels).shape != (n,):
        raise ValueError(f"labels must have one entry per image ({n}); got shape "
                         f"{np.asarray(labels).shape}")
    cols = math.ceil(math.sqrt(n))
    grid_rows = math.ceil(n / cols)
    canvas = np.full((grid_rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = x[i]
    from .._plotting import pyplot

    cmap = pyplot().get_cmap("gray_r").with_extremes(bad="0.8")
    ax.imshow(canvas, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    if labels is not None:
        for i, label in enumerate(np.asarray(labels)):
            r, c = divmod(i, cols)
            ax.text(c * (w + 1) - 0.4, r * (h + 1) - 0.4, str(label), color="tab:red",
                    fontsize=6, ha="left", va="top")
    ax.set_axis_off()
    return canvas


def sample_grid(images: ArrayLike, image_shape: tuple[int, int],
                labels: ArrayLike | None = None, title: str = ""):
    """A figure of ``images`` (n, h·w) or (n, h, w) with values in [−1, 1] tiled in a
    near-square grid (``draw_images``), each with its label if given."""
    from .._plotting import pyplot

    h, w = _check_image_shape(image_shape)
    n = max(1, np.asarray(images).shape[0] if np.ndim(images) else 1)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    side = 0.6 * max(h, w) / 8
    fig, ax = pyplot().subplots(figsize=(max(3.0, cols * side), max(3.0, rows * side) + 0.4))
    draw_images(ax, images, (h, w), labels)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _check_image_shape(image_shape: Any) -> tuple[int, int]:
    if (not isinstance(image_shape, Sequence) or len(image_shape) != 2
            or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1
                       for s in image_shape)):
        raise ValueError(f"image_shape must be (height, width), two positive integers; got "
                         f"{image_shape!r}")
    return int(image_shape[0]), int(image_shape[1])
