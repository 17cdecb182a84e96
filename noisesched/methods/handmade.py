"""Hand-made laws of noise levels, as N-point lists (see ``_levels``): EDM's ρ-schedule, levels
uniform in log-SNR, and the arctangent ("KL-optimal") law. Each spaces σ_0 … σ_{N−1} equally in
a function g(σ) and appends σ_N = 0: g = σ^(1/ρ), log σ, atan σ. Where ``sigma_max`` is ∞, the
law runs from ``finite_top`` and σ_0 is then set to ∞ (the first step from pure noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import check_positive
from ..models.base import AbstractDenoiser
from ..schedules import InterpolantLike, KnotSchedule
from ._levels import SIGMA_MAX, SIGMA_MIN, check_range, finite_top, through_levels


def _equal_steps(steps: int, sigma_min: float, sigma_max: float,
                 forward: Callable[[Any], Any],
                 inverse: Callable[[Any], Any]) -> np.ndarray:
    top = finite_top(sigma_max, sigma_min)
    u = np.arange(steps) / (steps - 1)
    levels = inverse((1.0 - u) * forward(np.float64(top)) + u * forward(np.float64(sigma_min)))
    levels[0], levels[-1] = sigma_max, sigma_min  # exact ends (∞ for pure noise)
    return levels


def edm_levels(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
               rho: float = 7.0) -> np.ndarray:
    """σ_i = (σ_max^(1/ρ) + i/(N − 1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, i < N (Karras et al.
    2022, eq. 5)."""
    check_range(steps, sigma_min, sigma_max)
    check_positive("rho", rho)
    return _equal_steps(steps, sigma_min, sigma_max, lambda s: s ** (1.0 / rho),
                        lambda g: g**rho)


def edm(model: AbstractDenoiser | None, interp: InterpolantLike, steps: int, *,
        sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0
        ) -> KnotSchedule:
    """EDM's ρ-schedule (Karras et al. 2022): equal steps in σ^(1/ρ), ρ = 7."""
    return through_levels(interp, edm_levels(steps, sigma_min, sigma_max, rho))


def log_snr(model: AbstractDenoiser | None, interp: InterpolantLike, steps: int, *,
            sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> KnotSchedule:
    """Levels uniform in log-SNR λ = −2 log σ, DPM-Solver's default (Lu et al. 2022)."""
    check_range(steps, sigma_min, sigma_max)
    return through_levels(interp, _equal_steps(steps, sigma_min, sigma_max, np.log, np.exp))


def arctan(model: AbstractDenoiser | None, interp: InterpolantLike, steps: int, *,
           sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> KnotSchedule:
    """The "KL-optimal" arctangent law σ(u) = tan((1 − u) atan σ_max + u atan σ_min), equal steps
    in the angle atan σ between the noise and data directions (the law that is optimal for a
    single Gaussian scale; spec §7)."""
    check_range(steps, sigma_min, sigma_max)
    top = math.atan(sigma_max) if math.isinf(sigma_max) else None
    levels = _equal_steps(steps, sigma_min, sigma_max if top is None else math.inf,
                          np.arctan, np.tan)
    if top is not None:  # atan ∞ = π/2 exactly: the law itself reaches pure noise
        u = np.arange(steps) / (steps - 1)
        levels[1:-1] = np.tan((1.0 - u[1:-1]) * top + u[1:-1] * math.atan(sigma_min))
    return through_levels(interp, levels)
