"""The Gaussian N(0, diag(s²)) with any spectrum s (spec §7), and its features.

Each coordinate is denoised on its own: given x_t = α z + β x1, η_i = s_i² β x_i / D_i with
D_i = α² + s_i² β², and the drift is b_i = (α α̇ + s_i² β β̇) x_i / D_i, finite at both ends. The
law has no modes: its features are the per-coordinate variances (target s_i²). A fixed-grid
solve is linear and diagonal, X_1 = diag(g) X_0, so its exact per-coordinate variances are those
of one solve from X_0 = α0 (1, …, 1): an exact oracle for any solver and any d.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._typing import ArrayOrSequence, IntLike
from .._validation import check_int, check_positive
from ..interpolants import Coefficients, Interpolant
from ..schedules import AbstractSchedule
from .base import AbstractModel, Batch, Feature, ks_normal, mean_standard_error


class Gaussian(AbstractModel):
    """N(0, diag(scales²)) on R^d.

    Args:
        scales: the standard deviations s_i > 0 of the coordinates, shape (d,).

    Features (``summary_from_rows``): ``variance_ratio`` = mean over samples and coordinates of
    x_i²/s_i² (target 1; standard error ``variance_ratio_se``); ``log_spectrum_error`` =
    mean_i log²(v̂_i/s_i²) of the sample variances v̂_i, less its expected value under exact
    samples (target 0; an unbiased estimate of mean_i log²(v_i/s_i²) for the law's variances
    v_i); ``coordinate_ks``: the standardised coordinates x_i/s_i against N(0, 1).
    """

    scales: Float[Array, " d"]

    def __init__(self, scales: ArrayOrSequence):
        s = np.asarray(scales, dtype=float)
        if s.ndim != 1 or s.size < 1:
            raise ValueError(f"scales must be a 1-D array of d >= 1 entries; got shape {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("scales must be positive and finite")
        self.scales = jnp.asarray(s)

    @classmethod
    def power_law(cls, d: int, exponent: float = 1.0, scale: float = 1.0) -> Gaussian:
        """s_i = scale · i^(−exponent), i = 1 … d: the spectrum of natural images has
        exponent ≈ 1."""
        check_int("d", d, lo=1)
        check_positive("scale", scale)
        if not (isinstance(exponent, int | float) and math.isfinite(exponent)
                and not isinstance(exponent, bool)):
            raise ValueError(f"exponent must be a finite real number; got {exponent!r}")
        i = np.arange(1, d + 1, dtype=float)
        return cls(scale * i ** (-float(exponent)))

    @property  # type: ignore[misc]
    def d(self) -> int:  # type: ignore[override]  # implements the AbstractVar of the protocols
        return self.scales.shape[0]

    # ------------------------------------------------------------------ the denoiser
    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        var = self.scales.astype(x.dtype) ** 2
        return var * c.beta * x / (c.alpha_sq + var * c.beta**2)

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        """b_i = (α α̇ + s_i² β β̇) x_i / (α² + s_i² β²)."""
        var = self.scales.astype(x.dtype) ** 2
        return (c.alpha_dalpha + var * c.beta * c.dbeta) * x / (c.alpha_sq + var * c.beta**2)

    # ------------------------------------------------------------------ the data law
    overlap_label = "$x_1/s_1$"
    chunk_sums = ("coordinate_sq",)

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        return self.scales * jax.random.normal(key, (self.d,), dtype=self.scales.dtype)

    def overlap(self, x: Batch) -> Float[Array, "*batch 1"]:
        """The first coordinate in units of its scale, x_1/s_1."""
        return (x[..., :1] / self.scales[0]).astype(x.dtype)

    features = (
        Feature("variance_ratio", "mean x²/s²", "low", "variance_ratio_target",
                "variance_ratio_exact", "variance_ratio_se"),
        # a function of the d per-coordinate sample variances, not a mean over samples: no
        # per-sample quantity to take the spread of, no standard error
        Feature("log_spectrum_error", "log-spectrum error", "low", "log_spectrum_error_target",
                "log_spectrum_error_exact"),
        # a KS distance between distributions: no standard error
        Feature("coordinate_ks", "KS of x/s", "low"),
    )

    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        """``scaled_sq`` (Σ_i x_i²/s_i² per row), ``coordinate_sq`` (Σ over the block's rows
        of x_i², shape (1, d)) and ``values`` (x_i/s_i at the pooled positions)."""
        return _gaussian_rows(self.scales, x, valid, rows, cols)

    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        n = rows["scaled_sq"].shape[0]
        var = np.asarray(self.scales, np.float64) ** 2
        sample_var = np.sum(rows["coordinate_sq"], axis=0, dtype=np.float64) / n
        with np.errstate(divide="ignore"):
            log_ratio = np.log(sample_var / var)
        # log(v̂/v) ~ log(χ²_n/n): mean ψ(n/2) − log(n/2), variance ψ'(n/2)
        bias, spread = _log_chi2_moments(n)
        out = {
            "variance_ratio": np.sum(rows["scaled_sq"], dtype=np.float64) / (n * self.d),
            "variance_ratio_target": 1.0,
            "variance_ratio_se": mean_standard_error(rows["scaled_sq"].astype(np.float64)
                                                     / self.d),
            "log_spectrum_error": np.mean((log_ratio - bias) ** 2) - spread,
            "log_spectrum_error_target": 0.0,
            "coordinate_ks": ks_normal(rows["values"]),
        }
        return {key: float(value) for key, value in out.items()}

    def low_level_loss(self, x: Float[Array, "n d"]) -> Float[Array, ""]:
        """mean_i log²(v̂_i/s_i²), v̂_i = mean over samples of x_i²."""
        var = self.scales.astype(x.dtype) ** 2
        return jnp.mean(jnp.log(jnp.mean(x * x, axis=0) / var) ** 2)

    def exact_metrics(self, interp: Interpolant, schedule: AbstractSchedule, steps: IntLike,
                      solver: str = "euler") -> dict[str, float]:
        """The exact ``variance_ratio`` and n → ∞ log-spectrum error of the N-step solve, from
        one solve from X_0 = α(0) (1, …, 1) (the solve is linear and diagonal)."""
        from ..sampling import solve

        ones = jnp.full((1, self.d), interp.prior_scale(schedule), dtype=jnp.result_type(float))
        final = solve(self, interp, schedule, ones, steps=steps, solver=solver).x[0]
        ratio = np.asarray(final, np.float64) ** 2 / np.asarray(self.scales, np.float64) ** 2
        return {"variance_ratio_exact": float(np.mean(ratio)),
                "log_spectrum_error_exact": float(np.mean(np.log(ratio) ** 2))}

    def noise_levels(self) -> dict[str, float]:
        s = np.asarray(self.scales, np.float64)
        return {"largest scale: α/β = max s": float(s.max()),
                "smallest scale: α/β = min s": float(s.min())}

    def feature_figure(self, rows: dict[str, np.ndarray], title: str, bins: int = 80):
        """The sample variance of each coordinate against s_i², and the standardised
        coordinates against N(0, 1)."""
        from .._plotting import histogram_against_normal, pyplot

        plt = pyplot()
        n = rows["scaled_sq"].shape[0]
        var = np.asarray(self.scales, np.float64) ** 2
        sample_var = np.sum(rows["coordinate_sq"], axis=0, dtype=np.float64) / n
        index = np.arange(1, self.d + 1)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        axes[0].loglog(index, sample_var, ".", ms=2, alpha=0.5, label="samples")
        axes[0].loglog(index, var, "k", lw=1, label="exact $s_i^2$")
        axes[0].set(xlabel="coordinate i", ylabel="variance", title="spectrum")
        values = histogram_against_normal(axes[1], rows["values"], bins=bins)
        axes[1].set(xlabel="$x_i/s_i$", title="standardised coordinates")
        for ax in axes:
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        return fig, {"index": index, "sample_variance": sample_var, "variance": var,
                     **{f"value_{k}": v for k, v in values.items()}}


@jax.jit
def _gaussian_rows(scales, x, valid, rows, cols):
    scales = scales.astype(x.dtype)
    standard = x / scales
    kept = jnp.where(valid[:, None], x, 0.0)
    return {"scaled_sq": jnp.sum(standard * standard, axis=-1),
            "coordinate_sq": jnp.sum(kept * kept, axis=0, keepdims=True),
            "values": standard[rows, cols]}


def _log_chi2_moments(n: int) -> tuple[float, float]:
    """Mean and variance of log(χ²_n / n)."""
    from scipy.special import digamma, polygamma

    return float(digamma(n / 2) - math.log(n / 2)), float(polygamma(1, n / 2))
