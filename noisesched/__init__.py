"""noisesched: noise schedules of diffusion and flow generative models in high dimension.

Conventions (see README): t = 0 is noise, t = 1 is data; x_t = α(t) z + β(t) x1 with β = τ(t).
"""

from . import learning, metrics, schedules, streaming, theory
from .interpolants import Coefficients, Interpolant
from .models import (
    AbstractDataLaw,
    AbstractDenoiser,
    AbstractModel,
    CurieWeiss,
    CurieWeissExact,
    Digits,
    Feature,
    Gaussian,
    GaussianMixture,
    ModeSplit,
    mean_field_magnetization,
)
from .sampling import (
    ADAPTIVE_SOLVERS,
    SOLVERS,
    MaxStepsReached,
    Solution,
    first_nonfinite,
    sample,
    sample_prior,
    solve,
)
from .streaming import ChunkStore, sample_chunks, sample_summary

__version__ = "0.1.0"

__all__ = [
    "ADAPTIVE_SOLVERS",
    "AbstractDataLaw",
    "AbstractDenoiser",
    "AbstractModel",
    "ChunkStore",
    "Coefficients",
    "CurieWeiss",
    "CurieWeissExact",
    "Digits",
    "Feature",
    "Gaussian",
    "GaussianMixture",
    "Interpolant",
    "MaxStepsReached",
    "ModeSplit",
    "SOLVERS",
    "Solution",
    "first_nonfinite",
    "mean_field_magnetization",
    "learning",
    "metrics",
    "sample",
    "sample_chunks",
    "sample_prior",
    "sample_summary",
    "schedules",
    "solve",
    "streaming",
    "theory",
]
