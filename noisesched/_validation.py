"""Argument checks shared by every public constructor and entry point.

Each check raises ``ValueError`` naming the parameter, its allowed range and the value received,
before any array work. A value that is a JAX tracer (a model or schedule built inside ``jit`` or
``grad``) cannot be inspected on the host: ``check_real`` and ``check_at_run_time`` return it
behind ``eqx.error_if``, which raises the same message when the compiled program runs, so a
constructor keeps the value they return.
"""

from __future__ import annotations

import difflib
import math
import operator
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

#: The dtypes of states and samples.
FLOAT_DTYPES = ("float32", "float64")


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` (a value, a list of values, a module) is a JAX tracer."""
    return any(_is_traced(leaf) for leaf in jax.tree.leaves(tree))


def check_at_run_time(value: Any, bad: Any, message: str) -> Any:
    """``value`` behind ``eqx.error_if(value, bad, message)``: the check of a traced value,
    which raises ``message`` when the compiled program runs and ``bad`` holds. Keep the returned
    value (a check whose result is unused is compiled away)."""
    return eqx.error_if(value, bad, message)


def describe(value: Any) -> str:
    """What was passed, in a few words for an error message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


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


def check_real(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *,
               lo_open: bool = True, hi_open: bool = True) -> Any:
    """Check ``value`` is a real scalar in the interval (lo, hi), ends open or closed, and
    return it. A traced scalar comes back behind ``check_at_run_time`` (same message, raised
    when the program runs): keep the returned value."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    interval = f"{left}{_fmt(lo)}, {_fmt(hi)}{right}"
    if _is_traced(value):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar; got an array of shape {value.shape}")
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
        bad = below | above | ~jnp.isfinite(value)  # nan fails every comparison
        message = (f"{name} must be a finite real number; got nan or inf (a traced value)"
                   if math.isinf(lo) and math.isinf(hi) else
                   f"{name} must be in {interval}; got a traced value outside it (or nan)")
        return check_at_run_time(value, bad, message)
    x = _as_float(name, value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite; got {value!r}")
    below = x <= lo if lo_open else x < lo
    above = x >= hi if hi_open else x > hi
    if below or above:
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return value


def check_positive(name: str, value: Any) -> Any:
    """``check_real`` on (0, ∞); returns the value (see ``check_real``)."""
    return check_real(name, value, 0.0, math.inf)


#: The largest integer any check accepts: beyond it no array library holds the value.
INT64_MAX = 2**63 - 1


def check_int(name: str, value, lo: int = 1, hi: int | None = None) -> None:
    """Check ``value`` is an integer (a Python or NumPy integer, not a bool) with
    lo <= value (<= hi, and always <= 2^63 − 1)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    if value < lo or value > (INT64_MAX if hi is None else hi):
        rng = (f">= {lo}" if value < lo else f"in [{lo}, 2^63 - 1]") if hi is None \
            else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}; got {value!r}")


def as_int(name: str, value, lo: int = 1, hi: int | None = None) -> int:
    """``check_int``, then the value as a Python int (``operator.index``): a NumPy integer
    such as ``np.int64(10)`` becomes the int that a static argument (a step count, a shape)
    needs."""
    check_int(name, value, lo, hi)
    return operator.index(value)


def as_dtype(name: str, dtype: Any):
    """The floating dtype of states and samples: ``None`` for JAX's default float, else one
    of ``FLOAT_DTYPES`` (a name or a NumPy/JAX dtype); float64 needs 64-bit mode."""
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    try:
        out = np.dtype(dtype)
    except TypeError:
        out = None
    if out is None or out.name not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, FLOAT_DTYPES))} (or None "
                         f"for JAX's default float); got {dtype!r}")
    if out == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise ValueError(f"{name} float64 needs JAX's 64-bit mode: call inside "
                         "`with jax.enable_x64(True):` or set JAX_ENABLE_X64=1 before importing "
                         "jax")
    return jnp.dtype(out)


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


def check_file(what: str, path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if it names a regular file that can be read: else a ValueError
    saying which of "does not exist", "is a folder" or "is not a regular file" (a device or a
    pipe, which reading could never finish) holds, as ``{what} 'PATH' …``."""
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{name} is a folder; give a file")
    if not path.exists():
        raise ValueError(f"{name} does not exist")
    if not path.is_file():
        raise ValueError(f"{name} is not a regular file (a device or a pipe); give a file")
    return path
