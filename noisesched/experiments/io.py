"""Result files written atomically: a temporary file in the same folder, then ``os.replace``."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from .._atomic import atomic_write
from .._output import real_folder


def write_json(path: str | os.PathLike, data) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")

    return atomic_write(path, write)


def save_figure(path: str | os.PathLike, fig) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight",
                                                      format=Path(path).suffix.lstrip(".")))


def resume_folder(out: str | os.PathLike) -> Path:
    """Where an unfinished command keeps its finished work until it succeeds: a hidden sibling
    of its output folder, ``.OUT.resume`` (beside the folder ``out`` names: ``.``, a relative
    path and a link to it share one)."""
    out = real_folder(out)
    return out.parent / f".{out.name}.resume"


def environment() -> dict:
    """Versions, backend and devices, recorded beside every result."""
    import diffrax
    import equinox
    import jax
    import jaxlib
    import optax

    from .. import __version__

    return {
        "noisesched": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": equinox.__version__,
        "diffrax": diffrax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.read("jax_enable_x64")),
        "platform": platform.platform(),
    }
