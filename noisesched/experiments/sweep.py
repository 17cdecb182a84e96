"""``noisesched sweep CONFIG``: a run config with a ``[sweep]`` table.

The run config's sections are the base of every configuration; ``[sweep]`` gives the axes of
the grid (``noisesched.sweeps.Grid``: lists or ``{start, stop, num[, log]}`` ranges for any
``section.key``, and ``seeds``) and, optionally, ``configs_per_call`` (0: as many as fit) and
``vmap_width`` (0: a few side by side on a CPU, all of a call elsewhere):

```toml
[model]
name = "gm"
d = 1000

[solver]
steps = 100
method = "scan"

[sweep]
model.p = {start = 0.55, stop = 0.95, num = 64}
schedule.k = [2.0, 3.0, 4.0]
seeds = [0, 1]
```

Named variants, ``[sweep.variants.LABEL]`` tables of config overrides (e.g. ``schedule =
{name = "constant"}``), are one more axis (``noisesched.sweeps._variants``).
``--set sweep.model.p=[0.6,0.8]`` replaces an axis, ``--set model.d=2000`` the base,
``--set sweep.variants.LABEL.schedule.k=4`` a variant's entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from ..schedules import ScheduleKindWarning
from ..sweeps import RESULTS, SEEDS, Grid
from .config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    coerce,
    from_mapping,
    merge,
    parse_overrides,
    read_file,
)

__all__ = ["check_sweep_folder", "load_sweep", "flat_axes", "SETTINGS", "SweepSettings"]

class SweepSettings(TypedDict):
    """Entries of ``[sweep]`` that are keyword arguments of ``noisesched.sweep``, not axes (0:
    automatic)."""

    configs_per_call: int
    vmap_width: int


#: The keys of ``SweepSettings``.
SETTINGS = tuple(SweepSettings.__annotations__)


def flat_axes(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[sweep]`` with nested section tables (``model.p = ...`` in TOML) as dotted keys
    (``"model.p"``); ranges and other entries as they are."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        nested = (key in SECTIONS and isinstance(value, Mapping)
                  and not any(k in value for k in ("start", "stop", "num", "log")))
        if nested:
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def check_sweep_folder(out: str | Path) -> None:
    """Refuse an output folder that holds files other than a sweep's (``results.parquet``;
    its sub-folders ``parts/`` and ``figures/`` are its own): a sweep's table never lands beside
    another command's result or a user's files. Sweeps resume and merge in place, so a
    folder of an earlier sweep is the sweep's to continue."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder")
    if not folder.is_dir():
        return
    others = sorted(p.name for p in folder.iterdir()
                    if not p.is_dir() and p.name != RESULTS and not p.name.startswith("."))
    if others:
        listed = ", ".join(others[:5]) + (", …" if len(others) > 5 else "")
        raise ValueError(f"--out {str(out)!r} holds files that are not a sweep's ({listed}); "
                         "a sweep's folder holds only results.parquet, parts/ and figures/: "
                         "choose a new or empty folder")


def load_sweep(path: str | Path, overrides: Sequence[str] = ()
               ) -> tuple[RunConfig, Grid, SweepSettings]:
    """(base config, grid, settings) of a sweep config, ``section.key=value`` overrides
    applied (``sweep.KEY=...`` to the ``[sweep]`` table); every entry checked. The settings are
    the keyword arguments of ``noisesched.sweep`` given in ``[sweep]`` (``configs_per_call``,
    ``vmap_width``; 0: automatic)."""
    data = read_file(path)
    table = data.pop("sweep", None)
    if table is None:
        raise ConfigError(f"{path}: a sweep config needs a [sweep] table (e.g. model.p = "
                          "[0.6, 0.8], or a range {start, stop, num})")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: sweep must be a table [sweep]; got {table!r}")
    updates = parse_overrides(overrides, (*SECTIONS, "sweep"))
    axes = flat_axes(table)
    axes.update(flat_axes(updates.pop("sweep", {})))

    def setting(key: str) -> int:
        value = coerce(f"sweep.{key}", axes.pop(key, 0), int)
        if value < 0:
            raise ConfigError(f"sweep.{key} must be an integer >= 0 (0: automatic); got "
                              f"{value}")
        return value

    settings = SweepSettings(configs_per_call=setting("configs_per_call"),
                             vmap_width=setting("vmap_width"))
    if SEEDS in axes and "sample.seed" in axes:
        raise ConfigError("the sweep gives seeds and sample.seed: give one of them")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = from_mapping(merge(data, updates), where=f"{path}: ")
    for warning in caught:  # a schedule made for the other kind: said by the sweep, once
        if not issubclass(warning.category, ScheduleKindWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
    return base, Grid.of(axes), settings
