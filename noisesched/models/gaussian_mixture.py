"""Gaussian mixture ρ1 = Σ_k π_k N(μ_k, σ² I_d) with a shared σ (spec §2), with its features:
the mode weights (high level) and the spread within a mode (low level), each beside its exact
target, and the exact two-mode reduction of the sampler (``noisesched.theory``)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._typing import ArrayOrSequence, IntLike, RealLike, RealScalar
from .._validation import (
    as_int,
    check_at_run_time,
    check_int,
    check_real,
    is_traced,
)
from ..interpolants import Coefficients, Interpolant
from ..schedules import AbstractSchedule, check_schedule
from ..theory import ORACLE_SOLVERS, TwoModeReduction, gm_oracle
from .base import (
    AbstractModel,
    Batch,
    Feature,
    ModeSplit,
    Samples,
    binomial_standard_error,
    check_samples,
    ks_normal,
    mean_standard_error,
)
from .means import (
    AbstractMeans,
    ConstantMeans,
    DenseMeans,
    SeededMeans,
    combine,
    means_from_array,
    project,
)

#: The largest σ and mean level m: σ², m²·d and their products with the interpolant's
#: coefficients stay finite in float32 (up to 3.4·10^38) for d up to 10^8.
LARGEST_SCALE = 1e15

#: The smallest spread samples resolve, in float spacings ε·s at the states' size s. Rounding a
#: state to ε·s at each step adds a variance of order (ε s)² to the samples (0.02 to 18 (ε s)²
#: measured in float32, vp and ve, constant and dilated schedules): at σ ≥ 30 ε s, a few
#: per cent of σ² at worst. A measured within-mode variance below (30 ε s)² (a sampler may
#: shrink the spread far below σ²) is reported as one that rounding may dominate.
RESOLVED_SPREAD_ULPS = 30.0


class GaussianMixture(AbstractModel):
    """K Gaussian components with weights π (K,), means μ (K, d) and a shared scale σ.

    Given component k, x_t ~ N(β μ_k, D I) with D = α² + σ²β², so the posterior weights are a
    softmax of log π_k + (β μ_k·x − β²|μ_k|²/2)/D (O(K d) per sample, never a product of
    densities) and the drift has the closed form

        b = (α α̇ + σ² β β̇)/D · x + (β̇ α² − α α̇ β)/D · Σ_k w_k μ_k,

    finite at t = 1 for every σ > 0.

    Weights, means and σ may be traced (a mixture built inside ``jit`` or ``grad``, to
    differentiate in its parameters): their values are then checked when the program runs
    (``eqx.error_if``), with the messages of the concrete checks. Traced means are stored as
    ``DenseMeans``.
    """

    weights: Float[Array, " K"]
    component_means: AbstractMeans
    sigma: RealScalar

    def __init__(self, weights: ArrayOrSequence, means: ArrayOrSequence | AbstractMeans,
                 sigma: RealLike):
        w = _checked_weights(weights)
        k = w.shape[0]
        if isinstance(means, AbstractMeans):
            if means.K != k:
                raise ValueError(f"means must hold K = {k} means to match weights; got "
                                 f"{means.K}")
            component_means = means
        else:
            component_means = _checked_means(means, k)
        self.weights = w
        self.component_means = component_means
        scale: Any = check_real("sigma", sigma, 0.0, LARGEST_SCALE, hi_open=False)
        self.sigma = scale if is_traced(scale) else float(scale)

    @classmethod
    def two_modes(cls, d: IntLike, p: RealLike = 0.8, m: RealLike = 1.0,
                  sigma: RealLike = 0.5) -> GaussianMixture:
        """The paper's case: weights (p, 1 − p) on means ±m·(1, …, 1), so |μ|² = m² d. The
        means are ``ConstantMeans``: nothing of length d is stored or read per step. ``p``,
        ``m`` and ``sigma`` may be traced (see the class)."""
        check_int("d", d, lo=1)
        weight: Any = check_real("p", p, 0.0, 1.0)
        level: Any = _check_level(m)
        sigma = check_real("sigma", sigma, 0.0, LARGEST_SCALE, hi_open=False)
        levels = jnp.asarray([level, -level], dtype=jnp.result_type(float))
        return cls(weights=[weight, 1.0 - weight], means=ConstantMeans(levels, int(d)),
                   sigma=sigma)

    @classmethod
    def random_means(cls, d: IntLike, weights: ArrayOrSequence, m: RealLike = 1.0,
                     sigma: RealLike = 0.5, seed: IntLike = 0) -> GaussianMixture:
        """K = len(weights) components with means m·g_k, g_k ~ N(0, I_d) drawn from ``seed``
        (so |μ_k| ≈ m√d and the means are nearly orthogonal); ``SeededMeans``: drawn on the
        device where they are used."""
        check_int("d", d, lo=1)
        m = _check_level(m)
        check_int("seed", seed, lo=0)
        k = (jnp.asarray(weights) if is_traced(weights) else np.asarray(weights, dtype=float)).size
        return cls(weights=weights, means=SeededMeans(seed, m, k, d), sigma=sigma)

    @property
    def means(self) -> Float[Array, "K d"]:
        """The means as a (K, d) array (built on demand for structured means)."""
        return self.component_means.dense()

    @property  # type: ignore[misc]
    def d(self) -> int:  # type: ignore[override]  # implements the AbstractVar of AbstractModel
        return self.component_means.d

    @property
    def K(self) -> int:  # noqa: N802 - the mixture's conventional name
        return self.component_means.K

    def states_size(self, interp: Interpolant | None = None) -> float | None:
        """The size of the states' coordinates that float rounds: the largest of the noise
        scale α0 of ``interp`` (1 without one; √d for ``ve``) and max_k |μ_k|/√d. None where
        the means are traced."""
        scale = self.component_means.coordinate_scale()
        if scale is None:
            return None
        return max(1.0 if interp is None else float(interp.alpha0), scale)

    def check_resolution(self, interp: Interpolant, dtype: Any) -> None:
        """σ must be at least ``RESOLVED_SPREAD_ULPS`` float spacings at ``states_size``: a
        smaller spread would be float rounding, not the law's (at m = 10^6 and σ = 0.5 in
        float32 the within-mode variance came out 20 standard errors above the exact value).
        A level that ``dtype`` rounds to 0 is refused too."""
        size = self.states_size(interp)
        if size is None:
            return
        name = jnp.dtype(dtype).name
        scale = self.component_means.coordinate_scale()
        tiny = float(jnp.finfo(dtype).tiny)
        if scale is not None and scale < tiny:
            raise ValueError(f"means must have coordinates of at least {tiny:.3g} (the smallest "
                             f"normal {name}) for samples in {name}; got a largest mean of "
                             f"root-mean-square coordinate {scale:.3g}, which rounds to 0 and "
                             "merges the modes")
        smallest = RESOLVED_SPREAD_ULPS * float(jnp.finfo(dtype).eps) * size
        if is_traced(self.sigma) or self.sigma >= smallest:
            return
        raise ValueError(
            f"sigma must be at least {smallest:.3g} for samples in {name} "
            f"({RESOLVED_SPREAD_ULPS:g} float spacings at the states' size {size:g}: the "
            f"noise scale α0 of the {interp.kind} interpolant and the means' coordinates); got "
            f"{self.sigma:g}, which rounding would swamp. Sample in float64 (a config's "
            "[sample] dtype = \"float64\"), or take a larger sigma or smaller means")

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights))
        noise = jax.random.normal(k_noise, (self.d,), dtype=self.means.dtype)
        return self.means[comp] + self.sigma * noise

    def statistics(self, c: Coefficients, x: Batch) -> Float[Array, "*batch S"]:
        """The drift's only sums over coordinates, shape (..., S): those that determine every
        μ_k·x (``AbstractMeans.sums``: Σ_i x_i for constant means, S = 1; else μ_k·x, S = K)."""
        return self.component_means.sums(x)

    def _posterior_weights(self, c: Coefficients, sums: Array, dtype):
        var = c.alpha_sq + self.sigma**2 * c.beta**2  # D
        norms = self.component_means.norms_sq(dtype)
        dots = self.component_means.projections_from_sums(sums)
        # |μ_k|² is O(d): subtract its smallest value before it meets the O(√d) term μ_k·x, so
        # float32 keeps the digits of μ_k·x (the shift cancels in the softmax).
        logits = (
            jnp.log(self.weights).astype(dtype)
            + (c.beta / var) * dots
            - (0.5 * c.beta**2 / var) * (norms - jnp.min(norms))
        )
        if self.K == 2:  # one exponential per row, not a softmax's two and a division
            first = jax.nn.sigmoid(logits[..., :1] - logits[..., 1:])
            return jnp.concatenate([first, 1.0 - first], axis=-1), var
        return jax.nn.softmax(logits, axis=-1), var

    def _posterior_mean_and_variance(self, c: Coefficients, sums: Array, dtype):
        w, var = self._posterior_weights(c, sums, dtype)
        return self.component_means.combine(w), var

    def _drift_factors(self, c: Coefficients, var):
        """(a, b) of the drift a x + b Σ_k w_k μ_k."""
        a = (c.alpha_dalpha + self.sigma**2 * c.beta * c.dbeta) / var
        b = (c.dbeta * c.alpha_sq - c.alpha_dalpha * c.beta) / var
        return a, b

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        mean, var = self._posterior_mean_and_variance(c, self.statistics(c, x), x.dtype)
        return (self.sigma**2 * c.beta / var) * x + (c.alpha_sq / var) * mean

    def velocity_from_statistics(self, c: Coefficients, x: Batch,
                                 stats: Float[Array, "*batch S"]) -> Batch:
        mean, var = self._posterior_mean_and_variance(c, stats, x.dtype)
        a, b = self._drift_factors(c, var)
        return a * x + b * mean

    def velocity_statistics(self, c: Coefficients, stats: Float[Array, "*batch S"]
                            ) -> Float[Array, "*batch S"]:
        """The statistics of the drift, a·stats + b·sums(Σ_k w_k μ_k), from those of the state
        and the (K, K) Gram matrix of the means (``sums_of_combination``), so that a step
        updates them without reading the state again (one pass per Euler step)."""
        w, var = self._posterior_weights(c, stats, stats.dtype)
        a, b = self._drift_factors(c, var)
        return a * stats + b * self.component_means.sums_of_combination(w)

    def velocity_in_span(self, c: Coefficients, stats: Float[Array, "*batch S"]
                         ) -> tuple[Float[Array, ""], Float[Array, "*batch K"]]:
        """(a, b·w): the drift is a·x + Σ_k b w_k μ_k, with the weights w from the
        projections, so a fixed-grid solve keeps x in span{x_0, μ_1 … μ_K}."""
        w, var = self._posterior_weights(c, stats, stats.dtype)
        a, b = self._drift_factors(c, var)
        return a, b * w

    def combine_in_span(self, coefficients: Float[Array, "*batch K"]) -> Batch:
        return self.component_means.combine(coefficients)

    def log_density(self, c: Coefficients, x: Float[Array, " d"]) -> Float[Array, ""]:
        """log ρ_t(x) in closed form (for one point x of shape (d,))."""
        var = c.alpha_sq + self.sigma**2 * c.beta**2
        sq = jnp.sum((x - c.beta * self.means) ** 2, axis=-1)
        log_comp = -0.5 * sq / var - 0.5 * self.d * jnp.log(2 * math.pi * var)
        return jax.nn.logsumexp(jnp.log(self.weights) + log_comp)

    # ------------------------------------------------------------------ the data law
    overlap_label = "overlap $M_t$"

    @property
    def features(self) -> tuple[Feature, ...]:
        out = [Feature("mode_weight", "mode weight", "high", "mode_weight_target",
                       "mode_weight_exact", "mode_weight_se")]
        if self.K > 2:
            # a total-variation distance is not a mean over samples (and is biased near 0):
            # no standard error
            out.append(Feature("mode_weights_tv", "TV of the mode weights", "high"))
        out += [Feature("within_mode_var", "within-mode variance", "low", "within_mode_var_target",
                        "within_mode_var_exact", "within_mode_var_se", "within_mode_var_floor"),
                # a KS distance between distributions: no mean over samples, no standard error
                Feature("coordinate_ks", "KS of the within-mode coordinates", "low")]
        return tuple(out)

    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        """``mode`` (the assigned component), ``within_sq`` (|P⊥ x|²), ``overlap_z``
        ((μ_k·x/|μ_k| − |μ_k|)/σ along the assigned mean) and ``values`` (residuals x − μ_k(x)
        at the pooled positions)."""
        basis, _ = _orthonormal_basis_of_means(self, x.dtype)  # on the host, float64
        k, within, z, resid = _gm_rows(self, basis, x, rows, cols)
        return {"mode": k, "within_sq": within, "overlap_z": z, "values": resid}

    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        n = rows["mode"].shape[0]
        weights = np.bincount(rows["mode"], minlength=self.K) / n
        target = np.asarray(self.weights, dtype=np.float64)
        _, rank = _orthonormal_basis_of_means(self, jnp.float32)
        # the within-mode variance is the mean over samples of |P⊥ x|²/(d − r)
        within = rows["within_sq"].astype(np.float64) / (self.d - rank)
        out = {
            "mode_weight": weights[0],
            "mode_weight_target": target[0],
            "mode_weight_se": binomial_standard_error(weights[0], n),
            "mode_weights_tv": 0.5 * np.sum(np.abs(weights - target)),
            "within_mode_var": np.sum(rows["within_sq"], dtype=np.float64) / (n * (self.d - rank)),
            "within_mode_var_target": within_mode_variance_target(self),
            "within_mode_var_se": mean_standard_error(within),
            "coordinate_ks": ks_normal(rows["values"] / self.sigma),
        }
        floor = _rounding_floor(self, rows["values"].dtype)
        if floor is not None:
            out["within_mode_var_floor"] = floor
            _warn_if_unresolved(out["within_mode_var"], floor, rows["values"].dtype)
        return {key: float(value) for key, value in out.items()}

    def overlap(self, x: Batch) -> Float[Array, "*batch K"]:
        """M_k = μ_k·x / |μ_k|² for each component (zero means give 0)."""
        norms = self.component_means.norms_sq(x.dtype)
        return self.component_means.project(x) / jnp.where(norms > 0, norms, 1.0)

    def two_mode_reduction(self) -> TwoModeReduction | None:
        """The 2-D system equivalent to the sampler for two components with means ±μ; None for
        any other mixture."""
        if self.K != 2:
            return None
        if isinstance(self.component_means, ConstantMeans):
            if not isinstance(self.component_means.levels, jax.core.Tracer):
                a = np.asarray(self.component_means.levels)
                if a[1] != -a[0]:
                    return None
        elif not isinstance(self.means, jax.core.Tracer):
            means = np.asarray(self.means)
            if not np.allclose(means[1], -means[0], rtol=0, atol=1e-6 * np.abs(means).max()):
                return None
        h = 0.5 * (jnp.log(self.weights[0]) - jnp.log(self.weights[1]))
        return TwoModeReduction(mu_sq=self.component_means.norms_sq()[0], h=h, sigma=self.sigma)

    def mode_split(self) -> ModeSplit | None:
        """For means ±μ: e = μ/|μ|, weight π_0 (None for any other mixture)."""
        if self.two_mode_reduction() is None:
            return None
        mu = self.means[0]
        return ModeSplit(mu / jnp.linalg.norm(mu), self.weights[0])

    def low_level_loss(self, x: Float[Array, "n d"]) -> Float[Array, ""]:
        """(within-mode variance/σ² − 1)², the variance off the span of the means."""
        return (within_mode_variance(self, x) / self.sigma**2 - 1.0) ** 2

    def exact_metrics(self, interp: Interpolant, schedule: AbstractSchedule, steps: IntLike,
                      solver: str = "euler") -> dict[str, float]:
        """The exact mode weight and within-mode variance of the N-step solve
        (``noisesched.theory.gm_oracle``) for means ±μ and a solver of ``ORACLE_SOLVERS``."""
        check_schedule(schedule)
        steps = as_int("steps", steps, lo=1)
        reduction = self.two_mode_reduction()
        if reduction is None or solver not in ORACLE_SOLVERS:
            return {}
        if interp.kind == "vp":  # α0 = 1 whatever d: one compiled oracle serves every d
            interp = Interpolant("vp", interp.shape, 1)
        exact = _compiled_oracle(reduction, interp, schedule, jnp.asarray(steps), solver)
        return {"mode_weight_exact": float(exact["mode_weight"]),
                "within_mode_var_exact": float(exact["within_mode_var"])}

    def noise_levels(self) -> dict[str, float]:
        norms_sq = np.asarray(self.component_means.norms_sq(), np.float64)
        size = float(np.mean(np.sqrt(norms_sq)))
        return {"speciation: α/β = |μ|": size, "within-mode spread: α/β = σ": float(self.sigma)}

    def feature_figure(self, rows: dict[str, np.ndarray], title: str, bins: int = 80):
        """The standardised overlap along the assigned mean against N(0, 1), with the mode
        weights, and the within-mode coordinates against N(0, σ²)."""
        from .._plotting import histogram_against_normal, pyplot

        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        resid = rows["values"]
        # standardised overlap along the assigned mean: (μ_k·x/|μ_k| − |μ_k|)/σ ~ N(0, 1)
        z = rows["overlap_z"]
        weights = np.bincount(rows["mode"], minlength=self.K) / rows["mode"].size
        target = np.asarray(self.weights)
        text = ", ".join(f"{w:.3f}" for w in weights) + " (target " + ", ".join(
            f"{w:.3f}" for w in target) + ")"
        overlap = histogram_against_normal(axes[0], z, bins=bins,
                                           label=f"samples; mode weights {text}")
        axes[0].set(xlabel="$(μ_k·x/|μ_k| - |μ_k|)/σ$", title="overlap along the assigned mean")
        within = histogram_against_normal(axes[1], resid, scale=float(self.sigma), bins=bins,
                                          exact_label=f"N(0, σ² = {self.sigma**2:g})")
        axes[1].set(xlabel="$x_i - μ_{k,i}$", title="within-mode coordinates")
        for ax in axes:
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        data = {f"overlap_{k}": v for k, v in overlap.items()}
        data.update({f"resid_{k}": v for k, v in within.items()})
        return fig, {**data, "mode_weights": weights, "mode_weight_targets": target}




def _checked_weights(weights: ArrayOrSequence) -> Float[Array, " K"]:
    """The weights, checked (positive, summing to 1 within 10⁻⁶) and normalised: on the host in
    float64 when concrete, at run time when traced."""
    traced = is_traced(weights)
    w = jnp.asarray(weights, dtype=jnp.result_type(float)) if traced else np.asarray(
        weights, dtype=float)
    if w.ndim != 1 or w.size < 1:
        raise ValueError(f"weights must be a 1-D array of K >= 1 entries; got shape {w.shape}")
    if traced:
        total = jnp.sum(w)
        w = check_at_run_time(w, ~jnp.all(jnp.isfinite(w) & (w > 0)),
                              "weights must each be in (0, 1]; got traced values that are not")
        w = check_at_run_time(w, ~(jnp.abs(total - 1.0) <= 1e-6),
                              "weights must sum to 1; got traced values that do not")
        return w / jnp.sum(w)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must each be in (0, 1]; got {w.tolist()}")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1; got sum {w.sum():.8g}")
    return jnp.asarray(w / w.sum())


def _check_means_shape(shape: tuple[int, ...], k: int) -> None:
    if len(shape) != 2 or shape[0] != k:
        raise ValueError(f"means must have shape (K, d) = ({k}, d) to match weights; got "
                         f"{shape}")
    check_int("d", shape[1], lo=1)


def _checked_means(means: ArrayOrSequence, k: int) -> AbstractMeans:
    """K means given as a (K, d) array, checked (shape, finite): ``means_from_array`` when
    concrete, ``DenseMeans`` checked at run time when traced."""
    if is_traced(means):
        traced = jnp.asarray(means, dtype=jnp.result_type(float))
        _check_means_shape(traced.shape, k)
        return DenseMeans(check_at_run_time(traced, ~jnp.all(jnp.isfinite(traced)),
                                            "means must be finite; got nan or inf entries"))
    mu = np.asarray(means, dtype=float)
    _check_means_shape(mu.shape, k)
    if not np.all(np.isfinite(mu)):
        raise ValueError("means must be finite; got nan or inf entries")
    return means_from_array(mu)


# ----------------------------------------------------------------------------- features
def assign_modes(model: GaussianMixture, x: Samples) -> Array:
    """Index of the nearest mean for each sample, shape (n,). For ±μ this is sign(μ·x)."""
    x = check_samples(model, x)
    means = model.means.astype(x.dtype)
    score = project(x, means) - 0.5 * jnp.sum(means * means, axis=-1)
    return jnp.argmax(score, axis=-1)


def mode_weights(model: GaussianMixture, x: Samples) -> Float[Array, " K"]:
    """Fraction of samples assigned to each component (target: ``model.weights``)."""
    k = assign_modes(model, x)
    return jnp.mean(jax.nn.one_hot(k, model.K, dtype=jnp.asarray(x).dtype), axis=0)


def mode_weight(model: GaussianMixture, x: Samples) -> Float[Array, ""]:
    """p̂: the fraction of samples in component 0 (for ``two_modes``, the mode +μ of weight p)."""
    return mode_weights(model, x)[0]


def mode_weight_target(model: GaussianMixture) -> Float[Array, ""]:
    """The exact weight of component 0."""
    return model.weights[0]


def _orthonormal_basis_of_means(model: GaussianMixture, dtype) -> tuple[Array, int | Array]:
    """An orthonormal basis (d, K) of the span of the means (columns beyond the rank r are
    zero) and r; r is a Python int when the means are concrete."""
    if isinstance(model.means, jax.core.Tracer):
        q, r = jnp.linalg.qr(model.means.astype(dtype).T)
        # the rank tolerance of numpy.linalg.matrix_rank: rounding leaves |r_kk| ~ eps·d·max
        tol = max(1e-6, jnp.finfo(dtype).eps * max(model.means.shape))
        keep = jnp.abs(jnp.diagonal(r)) > tol * jnp.max(jnp.abs(r))
        return q * keep, jnp.sum(keep)
    means = np.asarray(model.means, dtype=np.float64)
    q64, r64 = np.linalg.qr(means.T)  # float64 on the host: the rank decides nothing traced
    kept = np.abs(np.diagonal(r64)) > 1e-6 * np.max(np.abs(r64))
    return jnp.asarray(q64 * kept, dtype=dtype), int(kept.sum())


def within_mode_sum_of_squares(model: GaussianMixture, x: Samples
                               ) -> tuple[Float[Array, ""], int | Array]:
    """(Σ over samples of |P⊥ x|², d − r): the additive part of ``within_mode_variance``,
    for metrics accumulated over chunks of samples."""
    x = check_samples(model, x)
    basis, rank = _orthonormal_basis_of_means(model, x.dtype)
    if isinstance(rank, int) and model.d <= rank:
        raise ValueError(f"within_mode_variance needs d > rank of the means = {rank}")
    spread = x - model.means.astype(x.dtype)[assign_modes(model, x)]  # as in _gm_rows
    resid = spread - (spread @ basis) @ basis.T  # explicit residual: no cancellation
    return jnp.sum(resid * resid), model.d - rank


def within_mode_variance(model: GaussianMixture, x: Samples) -> Float[Array, ""]:
    """mean over samples of |P⊥ x|² / (d − r), P⊥ the projection off the span of the r ≤ K means.

    Under the data law P⊥ x = σ P⊥ ξ for every component, so the exact target is σ² whatever the
    mode assignment.
    """
    total, dof = within_mode_sum_of_squares(model, x)
    return total / (jnp.asarray(x).shape[0] * dof)


def within_mode_variance_target(model: GaussianMixture) -> RealScalar:
    return model.sigma**2


def coordinate_ks(model: GaussianMixture, x: Samples, max_values: int = 200_000
                  ) -> Float[Array, ""]:
    """Kolmogorov–Smirnov distance between the residual coordinates x − μ_k(x) and N(0, σ²).

    The residuals of the nearest mean are pooled over samples and coordinates; at most
    ``max_values`` of them (every ⌈n·d / max_values⌉-th) are sorted.
    """
    x = check_samples(model, x)
    k = assign_modes(model, x)
    resid = (x - model.means.astype(x.dtype)[k]).reshape(-1)
    stride = max(1, -(-(x.shape[0] * model.d) // max_values))
    vals = jnp.sort(resid[::stride]) / model.sigma
    n = vals.shape[0]
    cdf = jax.scipy.stats.norm.cdf(vals)
    upper = jnp.arange(1, n + 1, dtype=vals.dtype) / n
    lower = jnp.arange(0, n, dtype=vals.dtype) / n
    return jnp.maximum(jnp.max(upper - cdf), jnp.max(cdf - lower))


#: The smallest mean level of the exact oracle, which works in float64: m² is a normal number.
SMALLEST_LEVEL_FLOAT64 = math.sqrt(float(np.finfo(np.float64).tiny))


def _check_level(m: RealLike) -> Any:
    """The mean level m, in (0, LARGEST_SCALE] and a normal number of the default float dtype
    (where it would round to 0, or lose its digits, and merge the modes silently), with m² a
    normal float64 (the exact oracle's |μ|²)."""
    level: Any = check_real("m", m, 0.0, LARGEST_SCALE, hi_open=False)
    if not is_traced(level):
        dtype = jnp.dtype(jnp.result_type(float))
        smallest = max(float(np.finfo(dtype).tiny), SMALLEST_LEVEL_FLOAT64)
        if float(level) < smallest:
            why = ("m² must be a normal float64, for the exact oracle" if dtype == np.float64
                   else f"the smallest normal {dtype.name}; a smaller m rounds to 0 and the "
                   f"modes merge; float64 accepts m down to {SMALLEST_LEVEL_FLOAT64:.3g}")
            raise ValueError(f"m must be at least {smallest:.3g} ({why}); got {float(level):g}")
    return level


def _rounding_floor(model: GaussianMixture, dtype) -> float | None:
    """(``RESOLVED_SPREAD_ULPS`` float spacings)² at the data's size: below it, rounding may
    dominate a within-mode variance (None where the means are traced)."""
    size = model.states_size()
    return None if size is None else (RESOLVED_SPREAD_ULPS * float(np.finfo(dtype).eps)
                                      * size) ** 2


def _warn_if_unresolved(variance: float, floor: float, dtype) -> None:
    """Warn where the samples' within-mode variance is below ``floor``: a sampler may shrink
    the spread far below σ² (a constant schedule leaves O(σ⁴)), and what is left may then be
    float rounding, not comparable with its exact value."""
    if variance < floor:
        spacing = math.sqrt(floor) / RESOLVED_SPREAD_ULPS
        warnings.warn(
            f"the within-mode variance {variance:.3g} is below {floor:.3g}, "
            f"({RESOLVED_SPREAD_ULPS:g} float spacings)² at the size of the "
            f"{np.dtype(dtype).name} samples: the rounding of each step (about {spacing:.2g} "
            "per coordinate) may dominate it; sample in float64 to compare it with its exact "
            "value", RuntimeWarning, stacklevel=3)


@jax.jit
def _gm_rows(model: GaussianMixture, basis, x, rows, cols):
    k = assign_modes(model, x)
    means = model.means.astype(x.dtype)
    # the spread about the assigned mean (P⊥ μ_k = 0): sums over coordinates of numbers of
    # size σ, not of |μ_k|, so float keeps their digits when |μ_k|/√d ≫ σ.
    # Sums of products, not matrix products: each row's sums then do not depend on the block
    spread = x - means[k]
    resid = spread - combine(project(spread, basis.T), basis.T)
    total = jnp.sum(resid * resid, axis=-1)
    norm = jnp.sqrt(jnp.sum(means**2, axis=-1))[k]
    z = (jnp.sum(x * means[k], axis=-1) / norm - norm) / model.sigma
    resid = x[rows, cols] - means[k[rows], cols]
    return k, total, z, resid


#: The oracle compiled once per schedule structure and solver: N is traced (a while loop), so
#: every step count and every parameter value of the schedule reuse one program.
_compiled_oracle = eqx.filter_jit(gm_oracle)
