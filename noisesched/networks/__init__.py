"""Networks as denoisers: EDM-preconditioned networks (``NetworkDenoiser``), an MLP and a
convolutional net, training (``train_denoiser``), saving and loading (``save_denoiser``,
``load_denoiser``), and the denoising error against an exact denoiser."""

from .conv import ConvNet
from .denoiser import LearnedModel, NetworkDenoiser
from .evaluation import denoising_error, sigma_coefficients
from .io import (
    NETWORKS,
    build_law,
    learned,
    load_denoiser,
    read_record,
    record_digest,
    save_denoiser,
)
from .mlp import MLP
from .preconditioning import regression_target, scalings, sigma_scalings
from .training import (
    NOISE_LAWS,
    ArrayData,
    LogNormalNoise,
    LogUniformNoise,
    TrainOptions,
    TrainResult,
    data_scale,
    train_denoiser,
)

__all__ = [
    "ArrayData",
    "ConvNet",
    "LearnedModel",
    "LogNormalNoise",
    "LogUniformNoise",
    "MLP",
    "NETWORKS",
    "NOISE_LAWS",
    "NetworkDenoiser",
    "TrainOptions",
    "TrainResult",
    "build_law",
    "data_scale",
    "denoising_error",
    "learned",
    "load_denoiser",
    "read_record",
    "record_digest",
    "regression_target",
    "save_denoiser",
    "scalings",
    "sigma_coefficients",
    "sigma_scalings",
    "train_denoiser",
]
