"""The solvers ``solve`` knows by name, and the diffrax solver each name stands for: the
Runge–Kutta methods of diffrax in t, and the samplers in noise level of ``noise_level``.

``solver`` is a name of ``SOLVERS`` or a diffrax solver instance. A default instance of a class
of ``SOLVERS`` (``diffrax.Tsit5()``) stands for its name, so it gives the name's numbers on every
path; any other instance is passed to diffrax as it is.
"""

from __future__ import annotations

import diffrax

from .noise_level import DPMSolverPP2M, SigmaEuler

SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "sigma_euler": SigmaEuler,
    "dpmpp_2m": DPMSolverPP2M,
}
#: Solvers with an embedded error estimate, usable with ``adaptive=True``.
ADAPTIVE_SOLVERS = ("bosh3", "tsit5", "dopri5")
#: Solvers of the fused ``method="scan"`` path.
SCAN_SOLVERS = ("euler", "heun", "sigma_euler", "dpmpp_2m")
#: Solvers that step in noise level (``noise_level``): they evaluate the denoiser at the grid
#: points before t = 1 only, so they take no final Euler step.
NOISE_LEVEL_SOLVERS = ("sigma_euler", "dpmpp_2m")

SolverLike = str | diffrax.AbstractSolver


def registry_name(solver: object) -> str | None:
    """The name of ``solver`` in ``SOLVERS``: the name itself, or that of the class of which
    ``solver`` is an instance (exactly, not a subclass); None for any other value."""
    if isinstance(solver, str):
        return solver
    for name, cls in SOLVERS.items():
        if type(solver) is cls:
            return name
    return None


def canonical(solver: SolverLike) -> SolverLike:
    """A name for a name, or for a default instance of a class of ``SOLVERS``; any other
    instance (a subclass, or one built with other settings) as it is."""
    name = registry_name(solver)
    if name is not None and not isinstance(solver, str) and solver == SOLVERS[name]():
        return name
    return solver


def as_diffrax(solver: SolverLike) -> diffrax.AbstractSolver:
    """The diffrax solver a name stands for; an instance as it is."""
    return SOLVERS[solver]() if isinstance(solver, str) else solver

