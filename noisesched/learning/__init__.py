"""Schedule learning: learnable families, losses, an optax fit loop, saving and export."""

from .._checkpoint import checkpoint_files
from .export import export_schedule, load_schedule, save_schedule, schedule_arrays
from .families import FAMILIES, NoiseRatioKnots, PiecewiseLinear, SigmoidSum
from .fit import LR_SCHEDULES, OPTIMIZERS, FitOptions, FitResult, fit_schedule, make_optimizer
from .losses import (
    AbstractLoss,
    ExactLoss,
    SampleLoss,
    TeacherLoss,
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
    "AbstractLoss",
    "ExactLoss",
    "FitOptions",
    "FitResult",
    "NoiseRatioKnots",
    "PiecewiseLinear",
    "SampleLoss",
    "SigmoidSum",
    "TeacherLoss",
    "ThresholdLoss",
    "checkpoint_files",
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
