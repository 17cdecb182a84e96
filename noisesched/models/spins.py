"""What every law of Curie–Weiss spins s ∈ {−1, +1}^d shares: its features (spec §3).

High level: the phase, the sign of the magnetisation mean_i sign(x_i) (target: the weight of the
positive phase). Low level: the spins' magnitude, mean x_i² (target 1: spins sit at ±1), and the
law of the magnetisation (its Kolmogorov–Smirnov distance to the law's own exact one).
``CurieWeiss`` (two-phase form) and ``CurieWeissExact`` (finite d) each give their own phase
weight and magnetisation law.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .base import (
    AbstractModel,
    Batch,
    Feature,
    ModeSplit,
    Samples,
    binomial_standard_error,
    check_samples,
    mean_standard_error,
)

__all__ = ["AbstractSpinLaw", "log_binomial", "magnetization", "positive_phase_fraction",
           "positive_phase_target", "mean_square", "mean_abs_magnetization", "magnetization_law",
           "magnetization_ks"]


def log_binomial(d: int) -> np.ndarray:
    """log C(d, u) for u = 0 … d in float64 (NumPy): terms of order d log 2 cancel in the laws
    built on it, which float32 could not resolve at large d."""
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    u = np.arange(d + 1, dtype=np.float64)
    return lgamma(d + 1.0) - lgamma(u + 1.0) - lgamma(d - u + 1.0)


class AbstractSpinLaw(AbstractModel):
    """A law of spins on {−1, +1}^d: an exact model whose drift is unbounded at t = 1 off the
    spins (so fixed-grid solves end with an Euler step), with the features of spin samples."""

    singular_at_data: ClassVar[bool] = True
    overlap_label: ClassVar[str] = "magnetisation $M_t$"

    d: eqx.AbstractVar[int]
    #: the mean-field magnetisation m = tanh(β m), for reference
    m: eqx.AbstractVar[Float[Array, ""]]

    @property
    @abc.abstractmethod
    def positive_phase_weight(self) -> Float[Array, ""]:
        """The probability of a positive magnetisation (ties at 0 counted half)."""

    @abc.abstractmethod
    def magnetization_law(self) -> tuple[Float[Array, " d_plus_1"], Float[Array, " d_plus_1"]]:
        """Exact law of mean_i s_i: levels (2u − d)/d, u = 0 … d up spins, and probabilities."""

    features = (
        Feature("mode_weight", "positive fraction", "high", "mode_weight_target",
                se="mode_weight_se"),
        Feature("mean_sq", "mean x²", "low", "mean_sq_target", se="mean_sq_se"),
        Feature("mean_abs_magnetization", "|magnetisation|", "low", "m",
                se="mean_abs_magnetization_se"),
        # a KS distance between distributions: no mean over samples, no standard error
        Feature("magnetization_ks", "KS of the magnetisation", "low"),
    )

    def overlap(self, x: Batch) -> Float[Array, "*batch 1"]:
        """Magnetisation per spin, mean_i x_i, as a trailing axis of size 1."""
        return jnp.mean(x, axis=-1, keepdims=True)

    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        """``magnetization`` (mean_i sign(x_i)), ``sum_sq`` (Σ_i x_i²) and ``values`` (the
        entries x at the pooled positions)."""
        mags, sum_sq, values = _spin_rows(x, rows, cols)
        return {"magnetization": mags, "sum_sq": sum_sq, "values": values}

    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        mags = rows["magnetization"].astype(np.float64)
        levels, probs = map(np.asarray, self.magnetization_law())
        empirical = np.searchsorted(np.sort(mags), levels + 1.0 / self.d, side="right")
        positive = float(np.mean(mags > 0))
        out = {
            "mode_weight": positive,
            "mode_weight_target": float(self.positive_phase_weight),
            "mode_weight_se": binomial_standard_error(positive, mags.size),
            "mean_sq": np.sum(rows["sum_sq"], dtype=np.float64) / (mags.size * self.d),
            "mean_sq_target": 1.0,
            "mean_sq_se": mean_standard_error(rows["sum_sq"].astype(np.float64) / self.d),
            "mean_abs_magnetization": np.mean(np.abs(mags)),
            "mean_abs_magnetization_se": mean_standard_error(np.abs(mags)),
            "m": float(self.m),
            "magnetization_ks": np.max(np.abs(empirical / mags.size - np.cumsum(probs))),
        }
        return {key: float(value) for key, value in out.items()}

    def mode_split(self) -> ModeSplit:
        """e = (1, …, 1)/√d: the sign of the magnetisation; weight of the positive phase."""
        dtype = jnp.result_type(float)
        return ModeSplit(jnp.full((self.d,), 1.0 / math.sqrt(self.d), dtype),
                         self.positive_phase_weight)

    def low_level_loss(self, x: Float[Array, "n d"]) -> Float[Array, ""]:
        """(mean x_i² − 1)²."""
        return (jnp.mean(x * x) - 1.0) ** 2

    def noise_levels(self) -> dict[str, float]:
        return {"speciation: α/β = √d": math.sqrt(self.d)}

    def feature_figure(self, rows: dict[str, np.ndarray], title: str, bins: int = 80):
        """The final magnetisation against the law's exact one, and the spin values."""
        from .._plotting import pyplot

        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        mags = rows["magnetization"]
        levels, probs = map(np.asarray, self.magnetization_law())
        width = 2.0 / self.d
        step = max(1, int(round(0.02 / width)))  # pool levels into bins of width ≈ 0.02
        edges = np.append(levels[::step] - width / 2, levels[-1] + width / 2)
        counts, _ = np.histogram(mags, bins=edges)
        exact = np.add.reduceat(probs, np.arange(0, len(probs), step))
        axes[0].stairs(counts / len(mags), edges, fill=True, alpha=0.5, label="samples")
        axes[0].stairs(exact, edges, color="k", label="exact")
        axes[0].set(xlabel="magnetisation mean$_i$ sign$(x_i)$", ylabel="probability",
                    title="final magnetisation", yscale="log", ylim=(1e-5, 1.5))
        axes[0].legend(fontsize=8)
        vals = rows["values"]
        vc, ve = np.histogram(vals, bins=bins)
        axes[1].stairs(vc / vals.size, ve, fill=True, alpha=0.5)
        axes[1].set(xlabel="$x_i$", ylabel="fraction", title="spin values (exact: ±1)")
        fig.suptitle(title)
        fig.tight_layout()
        return fig, {"mag_edges": edges, "mag_freq": counts / len(mags), "mag_exact": exact,
                     "spin_counts": vc, "spin_edges": ve}


@jax.jit
def _spin_rows(x, rows, cols):
    return magnetization(x), jnp.sum(x * x, axis=-1), x[rows, cols]


# ----------------------------------------------------------------------------- features
def magnetization(x: Samples) -> Float[Array, " n"]:
    """Per-sample magnetisation mean_i sign(x_i)."""
    return jnp.mean(jnp.sign(x), axis=-1)


def positive_phase_fraction(model: AbstractSpinLaw, x: Samples) -> Float[Array, ""]:
    """Fraction of samples with positive magnetisation (target: the positive phase's weight)."""
    x = check_samples(model, x)
    return jnp.mean((magnetization(x) > 0).astype(x.dtype))


def positive_phase_target(model: AbstractSpinLaw) -> Float[Array, ""]:
    return model.positive_phase_weight


def mean_square(model: AbstractSpinLaw, x: Samples) -> Float[Array, ""]:
    """mean over samples and spins of x_i² (target 1: spins sit at ±1)."""
    x = check_samples(model, x)
    return jnp.mean(x * x)


def mean_abs_magnetization(model: AbstractSpinLaw, x: Samples) -> Float[Array, ""]:
    """mean over samples of |mean_i sign(x_i)| (target m in the large-d law)."""
    x = check_samples(model, x)
    return jnp.mean(jnp.abs(magnetization(x)))


def magnetization_law(model: AbstractSpinLaw
                      ) -> tuple[Float[Array, " d_plus_1"], Float[Array, " d_plus_1"]]:
    """Exact law of the magnetisation mean_i s_i: (levels, probabilities), each (d + 1,)."""
    return model.magnetization_law()


def magnetization_ks(model: AbstractSpinLaw, x: Samples) -> Float[Array, ""]:
    """Kolmogorov–Smirnov distance between the samples' mean_i sign(x_i) and its exact law."""
    x = check_samples(model, x)
    levels, probs = magnetization_law(model)
    mags = magnetization(x)
    # empirical CDF at each level; half a level of slack absorbs rounding of (2u − d)/d
    half = 1.0 / model.d
    empirical = jnp.mean(mags[None, :] <= levels[:, None] + half, axis=1)
    return jnp.max(jnp.abs(empirical - jnp.cumsum(probs)))
