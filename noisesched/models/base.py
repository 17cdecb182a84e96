"""The two contracts of a model.

* ``AbstractDenoiser``: all a sampler needs, the denoiser η(c, x) = E[x1 | x_t = x] given the
  interpolant's coefficients at t (and optionally the statistics form that the fused loop
  carries). Exact models, trained networks and a user's own ``eqx.Module`` implement it.
* ``AbstractDataLaw``: all the metrics need, the law of the data with its features and their
  exact targets: exact samples (where available), per-row statistics for streamed summaries and
  the summary from them, the mode split and low-level loss used by schedule learning, a
  Monte-Carlo-free value of a discretisation (where an oracle exists), and the figure of its own
  features.

``AbstractModel`` is both: a data law with an exact denoiser. ``x`` is always a batch of shape
(..., d) and every method acts row-wise.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree

from .._typing import IntLike
from .._validation import check_int
from ..interpolants import Coefficients, Interpolant
from ..schedules import AbstractSchedule

if TYPE_CHECKING:
    from ..theory import TwoModeReduction

Batch = Float[Array, "*batch d"]
Samples = Float[Array | np.ndarray, "n d"]  # JAX or NumPy

__all__ = ["AbstractDenoiser", "AbstractDataLaw", "AbstractModel", "Feature", "ModeSplit",
           "velocity_from_denoiser", "sample_rows", "check_data_law", "check_samples",
           "mean_standard_error", "binomial_standard_error"]


# ----------------------------------------------------------------------------- the denoiser
class AbstractDenoiser(eqx.Module):
    """A denoiser η(c, x) = E[x1 | x_t = x] on R^d: all that the samplers need.

    Subclasses implement ``denoise(c, x)``, where ``c`` holds the interpolant's coefficients at
    t (``noisesched.Coefficients``: α, β, β̇, α², α α̇), and declare ``d``. They may add the
    statistics form (``statistics`` and ``velocity_from_statistics``) that the fused loop
    carries, and override ``velocity`` with a closed form stabler than the generic one.
    """

    #: True when the drift is unbounded as t → 1 (α → 0) away from the data's support, as for
    #: discrete data. Fixed-grid solvers then take their last step with Euler, which never
    #: evaluates the drift at t = 1.
    singular_at_data: ClassVar[bool] = False

    d: eqx.AbstractVar[int]

    @abc.abstractmethod
    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        """η = E[x1 | x_t = x] given the coefficients at t."""

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        """b = E[α̇ z + β̇ x1 | x_t = x] = α α̇ (x − β η)/α² + β̇ η."""
        stats = self.statistics(c, x)
        if stats is not None:
            return self.velocity_from_statistics(c, x, stats)
        return velocity_from_denoiser(c, x, self.denoise(c, x))

    def work_per_entry(self) -> float:
        """The work of one drift evaluation per coordinate of a sample, in units of the
        mixture's (a few arithmetic operations): what sizes an automatic CPU chunk so that it
        ends within seconds (``noisesched.streaming.auto_chunk_size``). 1 by default."""
        return 1.0

    def check_resolution(self, interp: Interpolant, dtype: Any) -> None:
        """Raise ``ValueError``, naming the parameter and its smallest allowed value, where a
        solve along ``interp`` whose states are of ``dtype`` could not resolve the model (a
        scale of the data that float rounding of the states would swamp). The samplers call it
        before any work; nothing is checked by default."""

    def statistics(self, c: Coefficients, x: Batch) -> Float[Array, "*batch q"] | None:
        """The sums over coordinates that the drift needs, shape (..., q), or None.

        A model whose drift at x is an elementwise function of x and of a few sums over its
        coordinates (GM: μ_k·x; CW: the phase logit) returns them here and implements
        ``velocity_from_statistics``. The fused sampler then computes the sums of step i + 1
        in the same pass over the state as the update of step i, so an Euler step reads and
        writes the state once. None (the default): no such form.
        """
        return None

    def statistics_for_blocks(self, c: Coefficients, x: Batch) -> PyTree:
        """The statistics that a solve keeping its block of rows in cache or on chip carries
        (row-blocked solves, the Pallas kernel): ``statistics(c, x)`` (the default), or those
        sums together with elementwise arrays of x's shape that are free to keep there and that
        ``velocity_from_statistics`` would otherwise recompute (Curie–Weiss: tanh(γ x))."""
        return self.statistics(c, x)

    def velocity_statistics(self, c: Coefficients, stats: PyTree) -> PyTree | None:
        """For statistics that are linear in x and do not depend on t (the mixture's μ_k·x):
        the statistics of the drift at a state whose statistics are ``stats``, so that a step
        x' = x + Σ_s h_s v_s gives S(x') = S(x) + Σ_s h_s S(v_s) without a pass over x. None
        (the default): the statistics must be computed from the state."""
        return None

    def velocity_in_span(self, c: Coefficients, stats: PyTree
                         ) -> tuple[Float[Array, "*batch 1"] | Float[Array, ""], Array] | None:
        """For a drift a(t)·x + Σ_k g_k u_k, with K fixed vectors u_k and weights g that depend
        on x only through linear statistics (``velocity_statistics``; the exact mixture with
        isotropic components, u_k = μ_k): (a, g) given ``stats = statistics(c, x)``, g of shape
        (..., K). A fixed-grid solve then keeps x in span{x_0, u_1 … u_K} and carries only its
        coefficients (``combine_in_span`` makes the state). None (the default): no such form."""
        return None

    def combine_in_span(self, coefficients: Array) -> Batch:
        """Σ_k q_k u_k of shape (..., d) for coefficients q of shape (..., K) (see
        ``velocity_in_span``)."""
        raise NotImplementedError(f"{type(self).__name__} has no span form")

    def velocity_from_statistics(self, c: Coefficients, x: Batch, stats: PyTree) -> Batch:
        """The drift given ``stats = self.statistics(c, x)`` or
        ``self.statistics_for_blocks(c, x)`` (elementwise in x)."""
        raise NotImplementedError(f"{type(self).__name__} has no statistics form")

    def denoiser(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
                 ) -> Batch:
        """E[x1 | x_t = x] at time ``t`` (scalar) for a batch ``x`` of shape (..., d)."""
        return self.denoise(interp.coefficients(schedule, t), x)

    def drift(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
              ) -> Batch:
        """The probability-flow drift b(t, x) of shape (..., d)."""
        return self.velocity(interp.coefficients(schedule, t), x)

    def score(self, interp: Interpolant, schedule: AbstractSchedule, t: ArrayLike, x: Batch
              ) -> Batch:
        """∇ log ρ_t(x) = (β η − x)/α² (undefined at t = 1)."""
        c = interp.coefficients(schedule, t)
        return (c.beta * self.denoise(c, x) - x) / c.alpha_sq


def velocity_from_denoiser(c: Coefficients, x: Batch, eta: Batch) -> Batch:
    """b = α α̇ (x − β η)/α² + β̇ η from the denoiser's output η."""
    return c.alpha_dalpha * (x - c.beta * eta) / c.alpha_sq + c.dbeta * eta


# ----------------------------------------------------------------------------- the data law
class Feature(NamedTuple):
    """One feature of a data law, as it appears in a summary (``summary_from_rows``).

    Attributes:
        key: the summary key of the measured value.
        label: its name in tables and summary lines.
        level: ``"high"`` (how samples split between modes or phases) or ``"low"`` (the spread
            within a mode, the size of the coordinates).
        target: the summary key of its exact target under the data law, or None.
        exact: the key of its Monte-Carlo-free value for the discretisation in
            ``AbstractDataLaw.exact_metrics``, or None.
        se: the summary key of the Monte Carlo standard error of the measured value over the
            n samples (the standard deviation of the estimate, estimated from the same
            samples), or None where the law gives none (a distance between distributions, a
            nonlinear function of several sample moments).
        floor: the summary key of the smallest value the samples' float type resolves
            (below it rounding may dominate the measured value), or None.
    """

    key: str
    label: str
    level: str
    target: str | None = None
    exact: str | None = None
    se: str | None = None
    floor: str | None = None


class ModeSplit(NamedTuple):
    """A high-level feature that is a two-way split by a hyperplane: the sample x is in the
    + mode (or phase) when e·x > 0.

    Attributes:
        direction: the unit vector e, shape (d,).
        weight: the exact probability of the + side under the data law.
    """

    direction: Float[Array, " d"]
    weight: Float[Array, ""]


class AbstractDataLaw(eqx.Module):
    """The law ρ1 of the data on R^d with its features and their exact targets: all that the
    metrics, losses and figures need.

    Subclasses declare ``d`` and implement:

    * ``features``: the ``Feature``s of ``summary_from_rows``, high- and low-level;
    * ``row_statistics(x, valid, rows, cols)``: O(1) numbers per sample of a block of rows (and
      sums over the block, see ``chunk_sums``), jittable or not;
    * ``summary_from_rows(rows)``: every metric with its exact target, as Python floats.

    and may implement ``sample_one`` (exact samples), ``overlap`` (the summary plotted along
    trajectories), ``mode_split`` and ``low_level_loss`` (schedule learning),
    ``two_mode_reduction`` and ``exact_metrics`` (an exact oracle), ``noise_levels`` and
    ``feature_figure`` (figures).
    """

    d: eqx.AbstractVar[int]

    #: Keys of ``row_statistics`` that are sums over the block's valid rows, with a leading axis
    #: of size 1: over the blocks of a batch they are stacked, and ``summary_from_rows`` adds
    #: them up. Every other key except ``values`` holds one entry per row.
    chunk_sums: ClassVar[tuple[str, ...]] = ()

    #: The name of ``overlap`` on figures.
    overlap_label: ClassVar[str] = "mean coordinate"

    @property
    @abc.abstractmethod
    def features(self) -> tuple[Feature, ...]:
        """The features reported by ``summary_from_rows``."""

    @abc.abstractmethod
    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        """Per-sample statistics of a block of ``n`` samples, of which ``valid`` marks the
        rows of the batch (the others pad the last block and are dropped by the caller). Each
        entry has one value per row (leading axis n), except ``values``: the pooled entries
        (any elementwise function of the samples, e.g. residuals) at ``x[rows, cols]``, and the
        keys named in ``chunk_sums``."""

    @abc.abstractmethod
    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        """Every metric with its exact target from ``row_statistics`` of a whole batch
        (per-row entries concatenated, ``chunk_sums`` stacked), as Python floats."""

    def data_law(self) -> AbstractDataLaw:
        """The law whose exact denoiser and features this model stands for: itself, or for a
        trained network (``noisesched.LearnedModel``) the law it was trained on."""
        return self

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        """One exact sample of ρ1."""
        raise NotImplementedError(f"{type(self).__name__} has no exact sampler")

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        """``n`` exact samples. Row i depends only on ``fold_in(key, i)``, so any slice of rows
        can be regenerated alone (chunking gives the same rows)."""
        check_int("n", n, lo=1)
        return sample_rows(self.sample_one, key, 0, n)

    def overlap(self, x: Batch) -> Float[Array, "*batch q"]:
        """Low-dimensional summary tracked along trajectories (default: the mean coordinate,
        as a trailing axis of size 1)."""
        return jnp.mean(x, axis=-1, keepdims=True)

    def mode_split(self) -> ModeSplit | None:
        """The two-way split of the high-level feature, where there is one (None otherwise):
        the mode loss and ``ThresholdLoss`` use it."""
        return None

    def low_level_loss(self, x: Float[Array, "n d"]) -> Float[Array, ""]:
        """A differentiable loss of the low-level feature of the samples ``x``, 0 at the
        target."""
        raise NotImplementedError(f"{type(self).__name__} defines no low-level loss")

    def two_mode_reduction(self) -> TwoModeReduction | None:
        """The exact two-mode reduction of the sampler (``noisesched.theory``), where the law
        has one."""
        return None

    def exact_metrics(self, interp: Interpolant, schedule: AbstractSchedule, steps: IntLike,
                      solver: str = "euler") -> dict[str, float]:
        """Monte-Carlo-free values of the features for an N-step fixed-grid solve (keys:
        ``Feature.exact``), where the law has an oracle for ``solver``; else ``{}``."""
        return {}

    def noise_levels(self) -> dict[str, float]:
        """Noise-to-signal ratios α/β at which the features are decided, by name (marked on
        schedule figures)."""
        return {}

    def feature_figure(self, rows: dict[str, np.ndarray], title: str
                       ) -> tuple[Any, dict[str, np.ndarray]] | None:
        """(figure, plotted data) of the final features from ``row_statistics``, or None."""
        return None

    def describe(self, metrics: dict[str, float]) -> str:
        """One line: each feature ± its standard error, with its target (and exact value of the
        discretisation)."""
        parts = []
        for f in self.features:
            if f.key not in metrics:
                continue
            text = f"{f.label} {_number(metrics[f.key])}"
            if f.se is not None and f.se in metrics:
                text += f" ± {_number(metrics[f.se])}"
            if f.target is not None and f.target in metrics:
                text += f" (target {_number(metrics[f.target])})"
            if f.exact is not None and f.exact in metrics:
                text += f" [exact {_number(metrics[f.exact])}]"
            if f.floor is not None and metrics.get(f.floor, 0.0) > metrics[f.key]:
                text += f" (below the rounding floor {_number(metrics[f.floor])})"
            parts.append(text)
        return ", ".join(parts)


class AbstractModel(AbstractDenoiser, AbstractDataLaw):
    """A data law with its exact denoiser (``GaussianMixture``, ``CurieWeiss``, ...)."""


# ----------------------------------------------------------------------------- helpers
def _number(value: float) -> str:
    """Four decimals, or four significant digits for a value that four decimals would show as
    0 (a within-mode variance of σ² = 1e-6 is not "0.0000")."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 or not math.isfinite(value) \
        else f"{value:.4g}"


def sample_rows(sample_one, key: PRNGKeyArray, start: int | Array, count: int) -> Array:
    """Rows ``start, …, start + count − 1`` of a batch whose row i is
    ``sample_one(fold_in(key, i))``; ``start`` may be traced (one compilation for every slice)."""
    rows = start + jnp.arange(count)
    return jax.vmap(lambda i: sample_one(jax.random.fold_in(key, i)))(rows)


def check_data_law(model, needed_by: str) -> AbstractDataLaw:
    """``model`` if it is a data law, else a ``ValueError`` saying what needs one."""
    if not isinstance(model, AbstractDataLaw):
        raise ValueError(f"model must be a data law (noisesched.AbstractDataLaw, e.g. "
                         f"GaussianMixture, CurieWeiss, Gaussian): {needed_by} needs its "
                         f"features; got {type(model).__name__}")
    return model


def check_samples(law: AbstractDataLaw, x: Samples) -> Array:
    """``x`` as a JAX array of shape (n, d), n ≥ 1, or a ``ValueError``."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != law.d:
        raise ValueError(f"x must have shape (n, d) = (n, {law.d}); got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one sample (n >= 1)")
    return x


def mean_standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (one per sample): their sample standard
    deviation (with n − 1 in the denominator) over √n, in float64; nan for n < 2. A summary that
    is the mean of a per-sample quantity reports this as its standard error."""
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if vals.size < 2:
        return math.nan
    return float(np.std(vals, ddof=1) / math.sqrt(vals.size))


def binomial_standard_error(fraction: float, n: int) -> float:
    """√(ŵ(1 − ŵ)/n): the standard error of a fraction ŵ of n independent samples; nan for
    n < 2, as ``mean_standard_error``."""
    if n < 2:
        return math.nan
    return math.sqrt(max(0.0, float(fraction) * (1.0 - float(fraction))) / n)


def ks_normal(values: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance between ``values`` and N(0, 1) (float64, on the host)."""
    from scipy.special import ndtr

    vals = np.sort(np.asarray(values, dtype=np.float64))
    n = vals.size
    cdf = ndtr(vals)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))
