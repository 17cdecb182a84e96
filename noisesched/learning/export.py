"""A schedule as arrays for other samplers: times, τ, α, β and the noise levels σ_i = α/β."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._atomic import atomic_write
from .._validation import check_int
from ..interpolants import Interpolant
from ..schedules import AbstractSchedule


def schedule_arrays(schedule: AbstractSchedule, interp: Interpolant, steps: int
                    ) -> dict[str, np.ndarray]:
    """On the grid t_i = i/N (N + 1 points): ``times``, ``tau``, ``alpha``, ``beta`` and the
    decreasing noise levels ``sigma`` = α/β of EDM/k-diffusion-style samplers (σ_0 = ∞ at t = 0,
    σ_N = 0 at t = 1), as float64 NumPy arrays."""
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
    """Write :func:`schedule_arrays` to ``path`` (``.json`` or ``.npz``), atomically. In JSON the
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
