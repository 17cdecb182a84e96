"""Annotation aliases shared by the package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

#: A real scalar: a Python or NumPy number, or a 0-d array (possibly traced, so that a parameter
#: can be differentiated).
RealLike = Real[ArrayLike, ""]

#: A real parameter kept in a module: a Python float, or a 0-d array where the module was built
#: from a traced value (inside ``jit`` or ``grad``).
RealScalar = float | Float[Array, ""]

#: An array, or nested lists of numbers (turned into an array by the callee).
ArrayOrSequence = ArrayLike | Sequence[Any]

#: An integer: a Python or NumPy integer (a count such as ``steps``, turned into a Python int by
#: ``noisesched._validation.as_int``).
IntLike = int | np.integer
