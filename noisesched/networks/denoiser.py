"""A network as a denoiser (``NetworkDenoiser``), and a trained denoiser with the data law it
learned (``LearnedModel``), so every command can sample it and measure its samples."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from .._validation import check_int, check_positive, check_real
from ..interpolants import Coefficients, Interpolant
from ..models.base import (
    AbstractDataLaw,
    AbstractDenoiser,
    AbstractModel,
    Batch,
    Feature,
    ModeSplit,
    check_data_law,
)
from .preconditioning import Scalings, default_range, scalings

__all__ = ["NetworkDenoiser", "LearnedModel", "apply_network"]


class NetworkDenoiser(AbstractDenoiser):
    """η(c, x) = c_skip y + c_out F(c_in y, c_noise) for a network F (EDM preconditioning, see
    ``noisesched.networks.preconditioning``): valid for every interpolant and schedule, finite
    at t = 0 and t = 1.

    Args:
        network: any ``eqx.Module`` called on one sample as ``network(x, noise) -> F``, x and F
            of shape (d,), noise a scalar; ``noisesched.MLP`` and ``noisesched.ConvNet`` are
            two.
        d: the dimension.
        sigma_data: the data's scale σ_d (the root mean square of its coordinates).
        sigma_range: (σ_min, σ_max), the noise levels the network was trained on: its noise
            input is clipped to them (default σ_d·[10⁻⁶, 10⁶]). ``train_denoiser`` sets the
            noise law's range.

    The drift is written in closed form from F (no cancellation of x − β η as α → 0). A
    network's drift need not vanish at the data as an exact one does, so
    ``singular_at_data``: fixed-grid solvers take their last step with Euler (never evaluating
    t = 1, where the trig shape's α̇ is infinite).
    """

    singular_at_data = True

    network: Any
    d: int = eqx.field(static=True)
    sigma_data: float = eqx.field(static=True)
    sigma_range: tuple[float, float] = eqx.field(static=True)

    def __init__(self, network: Any, d: int, sigma_data: float,
                 sigma_range: tuple[float, float] | None = None):
        self.network, self.d, self.sigma_data = network, d, sigma_data
        check_positive("sigma_data", sigma_data)
        if sigma_range is None:
            sigma_range = default_range(sigma_data)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def __check_init__(self):
        check_int("d", self.d, lo=1)
        check_positive("sigma_range[0]", self.sigma_range[0])
        check_real("sigma_range[1]", self.sigma_range[1], lo=self.sigma_range[0])
        if not callable(self.network):
            raise ValueError(f"network must be callable as network(x, noise); got "
                             f"{type(self.network).__name__}")

    def _parts(self, c: Coefficients, x: Batch) -> tuple[Scalings, Batch]:
        s = scalings(c.alpha, c.beta, self.sigma_data, self.sigma_range)
        return s, apply_network(self.network, x * s.inp.astype(x.dtype), s.noise)

    def work_per_entry(self) -> float:
        """A multiply-add per parameter per sample, shared by its d coordinates (a mixture entry
        is about four operations)."""
        size = sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(self.network, eqx.is_array)))
        return max(1.0, 2.0 * size / self.d / 4.0)

    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        s, f = self._parts(c, x)
        return s.skip * x + s.out * f

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        """b = α α̇ x/q − α̇ β σ_d F/√q + β̇ η, q = α² + σ_d² β² (from η = (σ_d² β/q) x +
        (α σ_d/√q) F in b = α α̇ (x − β η)/α² + β̇ η), without the cancellation of x − β η as
        α → 0. nan at α = 0 (t = 1), where α̇ is not known from the coefficients (and is
        infinite for the trig shape); the solvers never evaluate there."""
        s, f = self._parts(c, x)
        eta = s.skip * x + s.out * f
        positive = c.alpha > 0
        dalpha = jnp.where(positive, c.alpha_dalpha / jnp.where(positive, c.alpha, 1.0),
                           jnp.nan)
        q = c.alpha_sq + self.sigma_data**2 * c.beta**2
        return (c.alpha_dalpha * x / q - dalpha * c.beta * self.sigma_data * s.inp * f
                + c.dbeta * eta)


def apply_network(network: Any, x_in: Batch, noise: Float[Array, "*rows"]) -> Batch:
    """F = network(x_in, noise) row by row, for x_in of shape (..., d) and one noise input (a
    scalar) or one per row (shape (...)); F in x_in's dtype."""
    d = x_in.shape[-1]
    rows = x_in.reshape(-1, d)
    noise = jnp.broadcast_to(noise.astype(x_in.dtype), x_in.shape[:-1]).reshape(-1)
    return jax.vmap(network)(rows, noise).astype(x_in.dtype).reshape(x_in.shape)


class LearnedModel(AbstractModel):
    """A trained denoiser with the data law it was trained on: sampled by ``trained``,
    measured against ``law``'s features and exact targets.

    The law's exact oracles (``two_mode_reduction``, ``exact_metrics``) describe its exact
    drift, not the network's: they are not passed on (a learned model has none).
    """

    trained: AbstractDenoiser
    law: AbstractDataLaw

    def __init__(self, trained: AbstractDenoiser, law: AbstractDataLaw):
        self.trained, self.law = trained, law

    def __check_init__(self):
        if not isinstance(self.trained, AbstractDenoiser):
            raise ValueError(f"trained must be a noisesched.AbstractDenoiser; got "
                             f"{type(self.trained).__name__}")
        check_data_law(self.law, "a LearnedModel")
        if self.trained.d != self.law.d:
            raise ValueError(f"the trained denoiser's d = {self.trained.d} must equal the data "
                             f"law's d = {self.law.d}")

    @property  # type: ignore[misc]
    def d(self) -> int:  # type: ignore[override]
        return self.trained.d

    @property
    def singular_at_data(self) -> bool:  # type: ignore[override]
        return self.trained.singular_at_data

    # the denoiser
    def denoise(self, c: Coefficients, x: Batch) -> Batch:
        return self.trained.denoise(c, x)

    def velocity(self, c: Coefficients, x: Batch) -> Batch:
        return self.trained.velocity(c, x)

    def statistics(self, c: Coefficients, x: Batch) -> Array | None:
        return self.trained.statistics(c, x)

    def work_per_entry(self) -> float:
        return self.trained.work_per_entry()

    def check_resolution(self, interp: Interpolant, dtype: Any) -> None:
        self.trained.check_resolution(interp, dtype)

    def statistics_for_blocks(self, c: Coefficients, x: Batch) -> PyTree:
        return self.trained.statistics_for_blocks(c, x)

    def velocity_from_statistics(self, c: Coefficients, x: Batch, stats: PyTree) -> Batch:
        return self.trained.velocity_from_statistics(c, x, stats)

    # the data law
    @property
    def chunk_sums(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.law.chunk_sums

    @property
    def overlap_label(self) -> str:  # type: ignore[override]
        return self.law.overlap_label

    @property
    def features(self) -> tuple[Feature, ...]:
        return tuple(f._replace(exact=None) for f in self.law.features)

    def row_statistics(self, x: Float[Array, "n d"], valid: Bool[Array, " n"],
                       rows: Int[Array, " P"], cols: Int[Array, " P"]) -> dict[str, Array]:
        return self.law.row_statistics(x, valid, rows, cols)

    def summary_from_rows(self, rows: dict[str, np.ndarray]) -> dict[str, float]:
        return self.law.summary_from_rows(rows)

    def data_law(self) -> AbstractDataLaw:
        return self.law.data_law()

    def sample_one(self, key: PRNGKeyArray) -> Float[Array, " d"]:
        return self.law.sample_one(key)

    def overlap(self, x: Batch) -> Array:
        return self.law.overlap(x)

    def mode_split(self) -> ModeSplit | None:
        return self.law.mode_split()

    def low_level_loss(self, x: Float[Array, "n d"]) -> Float[Array, ""]:
        return self.law.low_level_loss(x)

    def noise_levels(self) -> dict[str, float]:
        return self.law.noise_levels()

    def feature_figure(self, rows: dict[str, np.ndarray], title: str):
        return self.law.feature_figure(rows, title)
