"""Annotation aliases shared by the package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxtyping import ArrayLike, Real

#: A real scalar: a Python or NumPy number, or a 0-d array (possibly traced, so that a parameter
#: can be differentiated).
RealLike = Real[ArrayLike, ""]

#: An array, or nested lists of numbers (turned into an array by the callee).
ArrayOrSequence = ArrayLike | Sequence[Any]
