"""Checkpoints of an optimisation (a schedule's fit, a network's training), in two files written
atomically (``noisesched._atomic``):

* ``PATH`` (e.g. ``checkpoint.eqx``): ``(iteration, params, opt_state)`` serialised by
  ``equinox.tree_serialise_leaves``;
* ``PATH`` with the suffix ``.json`` (``checkpoint.json``): the fingerprint of the run and the
  loss at every iteration run.

The history is written first, so a process killed between the two writes leaves a history at
least as long as the iteration of the arrays; ``load_checkpoint`` cuts it back to that iteration
(the loss history is a prefix of the history that follows) and rewrites it, and ``fit_schedule``
replays the moving average and the best iteration from it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np
from jaxtyping import PyTree

from ._atomic import atomic_write

FORMAT = "noisesched fit checkpoint"
VERSION = 1


def check_checkpoint_option(path: object) -> None:
    """A checkpoint option: None, or a path not ending in .json (the history's suffix)."""
    if path is None:
        return
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"checkpoint must be a path or None; got {path!r}")
    if Path(path).suffix == ".json":
        raise ValueError(f"checkpoint must not end in .json (its loss history is written beside "
                         f"it as NAME.json); got {str(path)!r}")


def check_not_folder(path: str | os.PathLike | None) -> None:
    """At the start of a run: the checkpoint must not be an existing folder."""
    if path is not None and Path(path).is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a folder; give a file such as "
                         "FOLDER/checkpoint.eqx")


def checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The two files of the checkpoint ``path``: the arrays (``path`` itself) and the loss
    history beside it (``path`` with the suffix ``.json``)."""
    path = Path(path)
    return path, path.with_suffix(".json")


def save_checkpoint(path: str | os.PathLike, params: PyTree, opt_state: PyTree,
                    history: list[float], fingerprint: str, *, stopped_early: bool = False
                    ) -> None:
    """Write the history, then ``(len(history), params, opt_state)``."""
    arrays, record = checkpoint_files(path)
    _write_history(record, history, fingerprint, stopped_early)
    like = (np.asarray(len(history), np.int64), params, opt_state)

    def write(tmp):
        with open(tmp, "wb") as f:
            eqx.tree_serialise_leaves(f, like)

    atomic_write(arrays, write)


def load_checkpoint(path: str | os.PathLike, params: PyTree, opt_state: PyTree,
                    fingerprint: str) -> tuple[PyTree, PyTree, list[float]] | None:
    """``(params, opt_state, history)`` of the checkpoint ``path`` (``params`` and
    ``opt_state`` give the structure, shapes and dtypes), or None if there is none.

    Raises:
        ValueError: the checkpoint belongs to a run with another ``fingerprint``, does not fit
            ``params`` and ``opt_state``, or is not readable.
    """
    arrays, record = checkpoint_files(path)
    if not record.is_file():
        if arrays.is_file():
            raise ValueError(f"checkpoint {str(arrays)!r} has no loss history {str(record)!r} "
                             "beside it; remove the checkpoint or use another path")
        return None
    stored, history = _read_history(record)
    if stored != fingerprint:
        raise ValueError(f"checkpoint {str(arrays)!r} belongs to another run (fingerprint "
                         f"{stored!r}, expected {fingerprint!r}); remove it and {record.name} or "
                         "use another path")
    iteration = 0  # killed during the first write: only the history is there
    if arrays.is_file():
        iteration, params, opt_state = _read_arrays(arrays, params, opt_state)
    if iteration > len(history):
        raise ValueError(f"checkpoint {str(arrays)!r} is at iteration {iteration} but its loss "
                         f"history {str(record)!r} stops at {len(history)}; remove both files "
                         "or use another path")
    if iteration < len(history):  # killed between the two writes: keep what the arrays saw
        history = history[:iteration]
        _write_history(record, history, fingerprint, False)
    return params, opt_state, history


def _write_history(path: Path, history: list[float], fingerprint: str, stopped_early: bool):
    text = json.dumps({"format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
                       "iteration": len(history), "stopped_early": stopped_early,
                       "history": history})
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _read_history(path: Path) -> tuple[str, list[float]]:
    try:
        data = json.loads(path.read_text())
        if data["format"] != FORMAT or data["version"] != VERSION:
            raise ValueError(f"format {data['format']!r} version {data['version']!r}")
        fingerprint, history = data["fingerprint"], data["history"]
        if not isinstance(fingerprint, str) or not isinstance(history, list):
            raise ValueError("fingerprint or history of the wrong type")
        values = [float(v) for v in history]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a loss that is not finite")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError) as err:
        raise ValueError(f"{str(path)!r} is not a readable checkpoint history ({err}); "
                         "remove it or use another path") from None
    return fingerprint, values


def _read_arrays(path: Path, params: PyTree, opt_state: PyTree) -> tuple[int, Any, Any]:
    like = (np.zeros((), np.int64), params, opt_state)
    try:
        with open(path, "rb") as f:
            iteration, params, opt_state = eqx.tree_deserialise_leaves(f, like)
            extra = f.read(1)
    except Exception as err:  # equinox and NumPy raise several kinds
        reason = f"{err}: {err.__cause__}" if err.__cause__ is not None else str(err)
        raise ValueError(f"checkpoint {str(path)!r} does not fit these parameters and optimiser "
                         f"({reason}); remove it or use another path") from None
    if extra:
        raise ValueError(f"checkpoint {str(path)!r} does not fit these parameters and optimiser "
                         "(it holds more arrays); remove it or use another path")
    return int(iteration), params, opt_state
