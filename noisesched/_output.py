"""Output folders: one command at a time in each, holding exactly the last result's files.

A command's result files are made in a hidden staging folder beside ``OUT`` and moved into
``OUT`` when the command succeeds. ``OUT/.noisesched-files.json`` lists what was moved in; the
next result published into ``OUT`` removes the files of that list it does not write again, so
a folder never holds one run's figures beside another run's ``results.json``. A folder that
holds files no command of this package wrote is refused before any work (they might be a
user's). Sub-folders (another run's folder, a command's own store) are left alone.

``OUT`` is locked while a command works in it (``fcntl.flock`` on ``.OUT.lock`` beside it,
released by the kernel if the process dies): a second command into the same folder is refused
with the holder's process id, host and command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._atomic import atomic_write, default_mode
from ._interrupt import raise_if_pending

__all__ = ["FolderInUse", "MANIFEST", "check_output_folder", "locked", "publish", "real_folder",
           "staged"]

#: The list of the files of the result published last into a folder.
MANIFEST = ".noisesched-files.json"
#: Result files of earlier versions, which had no manifest: the ``results.json`` of ``run``,
#: whose ``files`` lists the rest, or of ``demo``, beside its one figure.
_LEGACY_RESULT = "results.json"
_LEGACY_DEMO_FIGURE = "demo.png"


class FolderInUse(ValueError):
    """Another process works in the output folder."""


def real_folder(out: str | os.PathLike) -> Path:
    """The folder ``out`` names, absolute and with links followed: what locks and staging are
    keyed on, so that ``.``, a relative path and a link to the folder all name one folder (and
    staging lies on the folder's own file system)."""
    real = Path(os.path.realpath(out))
    if not real.name:
        raise ValueError(f"--out {str(out)!r} is the root folder; choose a folder below it")
    return real


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def locked(out: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold ``OUT`` for this process while the block runs.

    Raises:
        FolderInUse: another live process holds it (named in the message).
    """
    shown, out = str(out), real_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(out)
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUse(f"--out {shown!r} is in use by {holder}; wait for it to "
                              "finish or choose another folder") from None
        # the lock is on the open file: if the path was replaced or removed meanwhile (a
        # holder releasing it), lock the file now at the path instead
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} "
                     f"(noisesched {command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        _remove_stale_stages(out)
        yield Path(shown)
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def _stage_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def _remove_stale_stages(out: Path) -> None:
    """Staging folders of ``OUT`` left by a killed process (only the lock holder may)."""
    for stage in out.parent.glob(f"{_stage_prefix(out)}*"):
        shutil.rmtree(stage, ignore_errors=True)


def _published(out: Path) -> set[str] | None:
    """The files of the result last published into ``out`` (None: no record)."""
    manifest = out / MANIFEST
    try:
        if manifest.is_file():
            return set(json.loads(manifest.read_text())["files"])
        legacy = out / _LEGACY_RESULT
        if legacy.is_file():
            result = json.loads(legacy.read_text())
            # only a result this package wrote: it records the package's version
            if "noisesched" not in result.get("environment", {}):
                return None
            files = result.get("files", [_LEGACY_DEMO_FIGURE])
            return {_LEGACY_RESULT, *(f for f in files if isinstance(f, str) and "/" not in f)}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, OSError):
        return None
    return None


def foreign_files(out: str | os.PathLike, keep: Iterable[str] = ()) -> list[str]:
    """The files in ``out`` that no published result lists and that are not ``keep`` (a
    command's own working files) or hidden; sub-folders are never counted."""
    out = Path(out)
    if not out.is_dir():
        return []
    known = (_published(out) or set()) | set(keep) | {MANIFEST}
    return sorted(p.name for p in out.iterdir()
                  if not p.is_dir() and p.name not in known and not p.name.startswith("."))


def check_output_folder(out: str | os.PathLike, keep: Iterable[str] = ()) -> Path:
    """Refuse ``out`` if it is a file, or a folder holding files of no result of this package
    (see ``foreign_files``), before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    foreign = foreign_files(out, keep)
    if foreign:
        listed = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise ValueError(f"--out {str(out)!r} holds files that no noisesched command wrote "
                         f"({listed}); choose a new or empty folder, or remove them")
    return out


@contextlib.contextmanager
def staged(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder of ``out`` for a result's files, published into ``out``
    (``publish``) when the block succeeds and removed in any case."""
    real = real_folder(out)
    real.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=real.parent, prefix=_stage_prefix(real)))
    os.chmod(stage, default_mode(directory=True))
    try:
        yield stage
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: str | os.PathLike, out: str | os.PathLike) -> list[str]:
    """Move the files of ``stage`` into ``out`` (each by an atomic rename, any ``*.json``
    result last) and remove the files of the previous result there that were not written
    again; record the new list. Returns the names moved in."""
    stage, out = Path(stage), Path(out)
    raise_if_pending()  # an interrupted command publishes nothing, even if the signal was lost
    if not out.exists():  # a folder that exists keeps the permissions its owner gave it
        out.mkdir(parents=True)
        os.chmod(out, default_mode(directory=True))
    previous = _published(out) or set()
    names = sorted((p.name for p in stage.iterdir() if p.is_file()),
                   key=lambda name: (name.endswith(".json"), name))
    for name in names:
        os.replace(stage / name, out / name)
    for name in previous - set(names):
        if name != MANIFEST and "/" not in name and not name.startswith("."):
            (out / name).unlink(missing_ok=True)
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(
        json.dumps({"files": names}, indent=1) + "\n"))
    return names
