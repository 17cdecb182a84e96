"""Data models: denoisers and data laws, one file each, found by name in ``REGISTRY``.

A model is a denoiser (``AbstractDenoiser``: what the samplers need), a data law
(``AbstractDataLaw``: what the metrics need), or both (``AbstractModel``: a law with its exact
denoiser). ``REGISTRY`` maps the names that configs use to each model's constructor.
"""

from collections.abc import Callable
from typing import Any

from .base import (
    AbstractDataLaw,
    AbstractDenoiser,
    AbstractModel,
    Feature,
    ModeSplit,
)
from .curie_weiss import CurieWeiss, mean_field_magnetization
from .curie_weiss_exact import CurieWeissExact
from .digits import Digits
from .gaussian import Gaussian
from .gaussian_mixture import GaussianMixture
from .means import AbstractMeans, ConstantMeans, DenseMeans, SeededMeans
from .spins import AbstractSpinLaw

#: Models by the name configs use (``[model] name = "gm"``): each entry is a constructor whose
#: keyword arguments are the section's other keys.
REGISTRY: dict[str, Callable[..., Any]] = {
    "gm": GaussianMixture.two_modes,
    "gm_random": GaussianMixture.random_means,
    "cw": CurieWeiss,
    "cw_exact": CurieWeissExact,
    "gaussian": Gaussian.power_law,
    "digits": Digits,
}

__all__ = [
    "AbstractDataLaw",
    "AbstractDenoiser",
    "AbstractMeans",
    "AbstractModel",
    "AbstractSpinLaw",
    "ConstantMeans",
    "CurieWeiss",
    "CurieWeissExact",
    "DenseMeans",
    "Digits",
    "Feature",
    "Gaussian",
    "GaussianMixture",
    "ModeSplit",
    "REGISTRY",
    "SeededMeans",
    "mean_field_magnetization",
]
