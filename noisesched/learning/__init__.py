"""Schedule learning: learnable families, losses, an optax fit loop, saving and export."""

from .export import export_schedule, load_schedule, save_schedule, schedule_arrays
from .families import FAMILIES, NoiseRatioKnots, PiecewiseLinear, SigmoidSum
from .fit import LR_SCHEDULES, OPTIMIZERS, FitResult, fit_schedule, make_optimizer
from .losses import (
    AbstractPriorLoss,
    AbstractScheduleLoss,
    ExactLoss,
    ThresholdLoss,
    combined_loss,
    low_level_loss,
    mode_asymmetry_loss,
    soft_mode_fraction,
)

__all__ = [
    "FAMILIES",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "AbstractPriorLoss",
    "AbstractScheduleLoss",
    "ExactLoss",
    "FitResult",
    "NoiseRatioKnots",
    "PiecewiseLinear",
    "SigmoidSum",
    "ThresholdLoss",
    "combined_loss",
    "export_schedule",
    "fit_schedule",
    "load_schedule",
    "low_level_loss",
    "make_optimizer",
    "mode_asymmetry_loss",
    "save_schedule",
    "schedule_arrays",
    "soft_mode_fraction",
]
