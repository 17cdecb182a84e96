"""noisesched: noise schedules of diffusion and flow generative models in high dimension.

Conventions (see README): t = 0 is noise, t = 1 is data; x_t = α(t) z + β(t) x1 with β = τ(t).
"""

from . import cards, learning, methods, metrics, networks, schedules, streaming, sweeps, theory
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
from .networks import (
    MLP,
    ArrayData,
    ConvNet,
    LearnedModel,
    LogNormalNoise,
    LogUniformNoise,
    NetworkDenoiser,
    TrainOptions,
    denoising_error,
    load_denoiser,
    save_denoiser,
    train_denoiser,
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
from .sweeps import sweep

__version__ = "0.1.0"

__all__ = [
    "ADAPTIVE_SOLVERS",
    "AbstractDataLaw",
    "AbstractDenoiser",
    "AbstractModel",
    "ArrayData",
    "ChunkStore",
    "Coefficients",
    "ConvNet",
    "CurieWeiss",
    "CurieWeissExact",
    "Digits",
    "Feature",
    "Gaussian",
    "GaussianMixture",
    "Interpolant",
    "LearnedModel",
    "LogNormalNoise",
    "LogUniformNoise",
    "MLP",
    "MaxStepsReached",
    "ModeSplit",
    "NetworkDenoiser",
    "SOLVERS",
    "Solution",
    "TrainOptions",
    "cards",
    "denoising_error",
    "first_nonfinite",
    "learning",
    "load_denoiser",
    "mean_field_magnetization",
    "methods",
    "metrics",
    "networks",
    "sample",
    "sample_chunks",
    "sample_prior",
    "sample_summary",
    "save_denoiser",
    "schedules",
    "solve",
    "streaming",
    "sweep",
    "sweeps",
    "theory",
    "train_denoiser",
]
