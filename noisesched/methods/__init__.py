"""Schedule methods of the literature: functions ``(model, interpolant, steps, **options) ->
schedule`` that turn a denoiser (or nothing, for the hand-made laws) into the N-step schedule a
sampler runs on t_i = i/N.

An N-point method returns the ``noisesched.schedules.KnotSchedule`` through its noise levels
σ_0 > … > σ_{N−1} > σ_N = 0 (``_levels``). Each lives in its own module with its objective
restated in the conventions of this package (t = 0 noise, t = 1 data, σ = α/β, y = x/β,
D(y; σ) = η) and its paper cited. ``METHODS`` finds them by name; ``make`` checks the options
against the method's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._validation import check_choice
from ..models.base import AbstractDenoiser
from ..schedules import AbstractSchedule, InterpolantLike
from ._levels import SIGMA_MAX, SIGMA_MIN, dimension_aware_sigma_max, equidistributed
from .ays import ays
from .entropic import entropic
from .gits import gits
from .handmade import arctan, edm, edm_levels, log_snr
from .ld3 import ld3
from .lipschitz import lipschitz
from .oss import oss
from .score_optimal import score_optimal

__all__ = ["METHODS", "make", "edm", "log_snr", "arctan", "edm_levels", "equidistributed",
           "dimension_aware_sigma_max", "SIGMA_MIN", "SIGMA_MAX", "ays", "gits", "oss", "ld3",
           "score_optimal", "lipschitz", "entropic"]

#: Schedule methods by name.
METHODS: dict[str, Callable[..., AbstractSchedule]] = {
    "edm": edm,
    "log_snr": log_snr,
    "arctan": arctan,
    "ays": ays,
    "gits": gits,
    "oss": oss,
    "ld3": ld3,
    "score_optimal": score_optimal,
    "lipschitz": lipschitz,
    "entropic": entropic,
}


def options_of(name: str) -> tuple[str, ...]:
    """The keyword options of method ``name``."""
    params = inspect.signature(METHODS[name]).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def make(name: str, model: AbstractDenoiser | None, interp: InterpolantLike, steps: int,
         **options: Any) -> AbstractSchedule:
    """The schedule of method ``name`` for ``model`` under ``interp`` with ``steps`` steps."""
    check_choice("method", name, tuple(METHODS))
    allowed = options_of(name)
    for key in options:
        if key not in allowed:
            raise ValueError(f"option {key!r} is not used by method {name!r}; allowed: "
                             f"{', '.join(allowed) or 'none'}")
    return METHODS[name](model, interp, steps, **options)
