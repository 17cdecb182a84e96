"""Files written atomically (a temporary file in the same folder, then ``os.replace``), and
folders that keep the finished work of an interrupted command."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it: set, then restore at once
    os.umask(mask)
    return mask


def default_mode(*, directory: bool = False) -> int:
    """The permissions ``open`` and ``mkdir`` would give under the process's umask
    (``tempfile`` makes its files 0600 and folders 0700, private to their owner)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; no partial file is ever visible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def claim_folder(folder: str | os.PathLike, fingerprint: Any) -> Path:
    """Create ``folder`` for the work identified by ``fingerprint`` (a JSON value), keeping
    what it holds if it was made for the same fingerprint and emptying it otherwise, so that
    finished work of another configuration is never mixed in."""
    folder = Path(folder)
    record = json.dumps(fingerprint, sort_keys=True, default=str)
    stamp = folder / "fingerprint.json"
    if folder.exists() and (not stamp.is_file() or stamp.read_text() != record):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        atomic_write(stamp, lambda tmp: Path(tmp).write_text(record))
    return folder
