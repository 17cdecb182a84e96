"""Schedule learning: learnable families, losses on final samples, an optax fit loop."""

from .families import PiecewiseLinear
from .fit import fit_schedule
from .losses import combined_loss, low_level_loss, mode_asymmetry_loss, soft_mode_fraction

__all__ = [
    "PiecewiseLinear",
    "combined_loss",
    "fit_schedule",
    "low_level_loss",
    "mode_asymmetry_loss",
    "soft_mode_fraction",
]
