"""Data models with exact samplers, denoisers, drifts and scores."""

from .base import AbstractModel
from .curie_weiss import CurieWeiss, mean_field_magnetization
from .curie_weiss_exact import CurieWeissExact
from .gaussian_mixture import GaussianMixture

__all__ = [
    "AbstractModel",
    "CurieWeiss",
    "CurieWeissExact",
    "GaussianMixture",
    "mean_field_magnetization",
]
