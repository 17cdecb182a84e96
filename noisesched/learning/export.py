"""A schedule as arrays for other samplers (times, τ, α, β and the noise levels σ_i = α/β), and
learned schedules saved to and read from JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._atomic import atomic_write
from .._validation import check_file, check_int
from ..interpolants import Interpolant
from ..schedules import AbstractSchedule, check_schedule


def schedule_arrays(schedule: AbstractSchedule, interp: Interpolant, steps: int
                    ) -> dict[str, np.ndarray]:
    """On the grid t_i = i/N (N + 1 points): ``times``, ``tau``, ``alpha``, ``beta`` and the
    decreasing noise levels ``sigma`` = α/β of EDM/k-diffusion-style samplers (σ_0 = ∞ for a
    schedule from pure noise, σ_N = 0 at t = 1), as float64 NumPy arrays (``noisesched.cards``
    writes them in the formats samplers read)."""
    check_schedule(schedule)
    check_int("steps", steps, lo=1)
    with jax.enable_x64(True):
        t = jnp.linspace(0.0, 1.0, steps + 1, dtype=jnp.float64)
        tau = jax.vmap(schedule)(t)
        alpha = jax.vmap(lambda s: interp.alpha(schedule(s), schedule.complement(s)))(t)
        with np.errstate(divide="ignore"):
            sigma = np.where(np.asarray(tau) > 0, np.asarray(alpha) / np.asarray(tau), np.inf)
        return {"times": np.asarray(t), "tau": np.asarray(tau), "alpha": np.asarray(alpha),
                "beta": np.asarray(tau), "sigma": sigma}


def export_schedule(schedule: AbstractSchedule, interp: Interpolant, steps: int,
                    path: str | os.PathLike) -> Path:
    """Write ``schedule_arrays`` to ``path`` (``.json`` or ``.npz``), atomically. In JSON the
    infinite σ_0 is written as null."""
    path = Path(path)
    if path.suffix not in (".json", ".npz"):
        raise ValueError(f"path must end in .json or .npz; got {str(path)!r}")
    arrays = schedule_arrays(schedule, interp, steps)
    meta = {"kind": interp.kind, "shape": interp.shape, "d": interp.d, "steps": steps,
            "schedule": type(schedule).__name__}
    if path.suffix == ".npz":
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, meta=json.dumps(meta))
    else:
        data = {**meta, **{k: [None if not np.isfinite(v) else float(v) for v in a]
                           for k, a in arrays.items()}}

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
    return atomic_write(path, write)


_FORMAT = "noisesched-schedule"
#: The version of the schedule files this release writes and reads.
_VERSION = 1


def save_schedule(schedule: AbstractSchedule, path: str | os.PathLike, *,
                  interpolant: Interpolant | None = None, steps: int | None = None,
                  metadata: dict | None = None) -> Path:
    """Write a learnable schedule to a JSON file that ``load_schedule`` (and
    ``noisesched run --set schedule.name=@path``) reads back exactly, atomically.

    With ``interpolant`` and ``steps``, the file also holds ``schedule_arrays`` on that grid
    (for other samplers); ``metadata`` (JSON-serialisable) is stored as given.
    """
    from .families import FAMILIES

    names = {cls: name for name, cls in FAMILIES.items()}
    if type(schedule) not in names:
        raise ValueError(f"schedule must be one of the learnable families "
                         f"({', '.join(FAMILIES)}); got {type(schedule).__name__}")
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"path must end in .json; got {str(path)!r}")
    fields = {}
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        if isinstance(value, Interpolant):
            value = {"kind": value.kind, "shape": value.shape, "d": value.d}
        elif isinstance(value, jax.Array | np.ndarray):
            value = np.asarray(value, np.float64).tolist()
        fields[f.name] = value
    data = {"format": _FORMAT, "version": _VERSION, "family": names[type(schedule)],
            "fields": fields, "metadata": metadata or {}}
    if interpolant is not None and steps is not None:
        arrays = schedule_arrays(schedule, interpolant, steps)
        data["arrays"] = {k: [None if not np.isfinite(v) else float(v) for v in a]
                          for k, a in arrays.items()}

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")

    return atomic_write(path, write)


def read_schedule_file(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(family, fields) of a file written by ``save_schedule``, its format and version
    checked."""
    from .families import FAMILIES

    path = check_file("schedule file", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} file (format = {data.get('format')!r})")
        if data.get("version") != _VERSION:
            raise ValueError(f"version {data.get('version')!r}, while this release of "
                             f"noisesched reads version {_VERSION}")
        family = data["family"]
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
        fields = dict(data["fields"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError,
            ValueError) as err:
        raise ValueError(f"{path}: not a readable schedule file ({err})") from None
    return family, fields


def load_schedule(path: str | os.PathLike, interpolant: Interpolant | None = None
                  ) -> AbstractSchedule:
    """Read a schedule written by ``save_schedule``.

    A ``NoiseRatioKnots`` schedule is placed on ``interpolant`` when one is given (its
    dimension-free knots carried to that d, kind and shape); the other families are functions
    of t alone and ignore it.
    """
    from .families import FAMILIES

    family, fields = read_schedule_file(path)
    try:
        if "interpolant" in fields:
            fields["interpolant"] = Interpolant(**fields["interpolant"])
        schedule = FAMILIES[family](**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable schedule file ({err})") from None
    if interpolant is not None and hasattr(schedule, "at"):
        schedule = schedule.at(interpolant)
    return schedule
