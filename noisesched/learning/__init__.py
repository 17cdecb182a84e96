"""Schedule learning: learnable families, losses on final samples, an optax fit loop."""

from .export import export_schedule, schedule_arrays
from .families import PiecewiseLinear
from .fit import fit_schedule
from .losses import combined_loss, low_level_loss, mode_asymmetry_loss, soft_mode_fraction

__all__ = [
    "PiecewiseLinear",
    "combined_loss",
    "export_schedule",
    "fit_schedule",
    "low_level_loss",
    "mode_asymmetry_loss",
    "schedule_arrays",
    "soft_mode_fraction",
]
