"""How a solve integrates: everything ``noisesched.solve`` was asked besides the problem and
the initial states, checked there once."""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
from jaxtyping import Array, Float, PyTree

#: A function of the (n, d) state returning a pytree, saved on the grid.
Observe = Callable[[Float[Array, "n d"]], PyTree]


class Options(eqx.Module):
    """The settings of one solve (see ``noisesched.solve`` for each).

    The plain settings are static fields. ``solver``, ``rtol``, ``atol``, ``terminal_dt``,
    ``observe`` and ``adjoint`` are ordinary fields, which ``eqx.filter_jit`` splits as it splits
    any argument: Python values (a name, a float, a function) are static, arrays are traced.

    Attributes:
        steps: N, the intervals of the uniform grid (fixed-step), or of the save grid (adaptive).
        solver: a name of ``SOLVERS``, or a diffrax solver used as given. A default instance
            of a class of ``SOLVERS`` is given by its name (``solvers.canonical``).
        method: ``"diffrax"``, ``"scan"`` or ``"pallas"``.
        adaptive: PID step sizes (``rtol``, ``atol``, ``max_steps``).
        final_euler: the last interval is one Euler step (resolved from ``final_step``).
        terminal_dt: an adaptive solve with a final Euler step stops at ``1 − terminal_dt``.
        checkpoints: states stored for reverse mode (``None``: the default of each path).
        row_block: rows per block of a row-blocked fixed-grid solve (``row_blocks``), or None
            for one pass over the whole batch per step.
        span: a fixed-grid solve carries the coefficients of the state in span form
            (``span``), which then takes precedence over ``row_block``.
        observe: a function of the state saved on the grid, or None.
        adjoint: the diffrax adjoint of ``method="diffrax"``.
    """

    steps: int = eqx.field(static=True)
    solver: str | diffrax.AbstractSolver
    method: str = eqx.field(static=True)
    adaptive: bool = eqx.field(static=True)
    rtol: float
    atol: float
    max_steps: int = eqx.field(static=True)
    final_euler: bool = eqx.field(static=True)
    terminal_dt: float
    checkpoints: int | None = eqx.field(static=True)
    row_block: int | None = eqx.field(static=True)
    span: bool = eqx.field(static=True)
    observe: Observe | None
    adjoint: diffrax.AbstractAdjoint
