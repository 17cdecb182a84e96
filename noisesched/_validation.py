"""Argument checks shared by every public constructor and entry point.

Each check raises ``ValueError`` naming the parameter, its allowed range and the value received,
before any array work. Values that are JAX tracers (a schedule built inside ``jit`` or ``grad``)
cannot be inspected and pass through unchecked.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import jax
import numpy as np


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def _as_float(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number; got {value!r}") from None
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got an array of shape {arr.shape}")
    out = float(arr)
    if math.isnan(out):
        raise ValueError(f"{name} must be a real number; got nan")
    return out


def check_real(name: str, value, lo: float = -math.inf, hi: float = math.inf, *,
               lo_open: bool = True, hi_open: bool = True) -> None:
    """Check ``value`` is a real scalar in the interval (lo, hi), ends open or closed."""
    if _is_traced(value):
        return
    x = _as_float(name, value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite; got {value!r}")
    below = x <= lo if lo_open else x < lo
    above = x >= hi if hi_open else x > hi
    if below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {left}{_fmt(lo)}, {_fmt(hi)}{right}; got {value!r}")


def check_positive(name: str, value) -> None:
    check_real(name, value, 0.0, math.inf)


#: The largest integer any check accepts: beyond it no array library holds the value.
INT64_MAX = 2**63 - 1


def check_int(name: str, value, lo: int = 1, hi: int | None = None) -> None:
    """Check ``value`` is an integer with lo <= value (<= hi, and always <= 2^63 − 1)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    if value < lo or value > (INT64_MAX if hi is None else hi):
        rng = (f">= {lo}" if value < lo else f"in [{lo}, 2^63 - 1]") if hi is None \
            else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}; got {value!r}")


def check_bool(name: str, value) -> None:
    """Check ``value`` is True or False (not merely truthy)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r}")


def check_choice(name: str, value, choices: Iterable[str]) -> None:
    """Check ``value`` is one of ``choices``; suggest the nearest on a miss."""
    choices = list(choices)
    if value in choices:
        return
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}{hint}")


def check_key(name: str, key) -> None:
    """Check ``key`` is a JAX PRNG key: ``jax.random.key(seed)`` (typed) or
    ``jax.random.PRNGKey(seed)`` (raw uint32 of shape (2,))."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if getattr(key, "shape", None) == ():
            return
    elif dtype is not None and getattr(key, "shape", None) == (2,) and dtype == np.uint32:
        return
    got = (f"an array of shape {tuple(key.shape)} and dtype {dtype}"
           if dtype is not None and hasattr(key, "shape") else f"{key!r}")
    raise ValueError(f"{name} must be one PRNG key, jax.random.key(seed) or "
                     f"jax.random.PRNGKey(seed); got {got}")


def check_floating(name: str, x) -> None:
    """Check the array ``x`` has a floating dtype."""
    if not jax.dtypes.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must have a floating dtype (float32 or float64); "
                         f"got {x.dtype}")


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"
