"""The grid of a sweep: values for ``section.key``s of a run config, each a list or a range,
combined as a Cartesian product.

As a mapping (the ``[sweep]`` table of a config, or the ``grid`` of ``noisesched.sweep``):

* ``"section.key" = [v1, v2, ...]``: the values of that key (numbers, strings, ...: any value
  the key takes);
* ``"section.key" = {start, stop, num}``, or with ``log = true``: ``num`` values evenly spaced
  from ``start`` to ``stop`` (both included), in log scale with ``log = true``; each value is
  rounded to 12 significant digits, so that steps of 0.05 read as 0.55, 0.6, ..., and an integer
  key (``model.d``) gets integers;
* ``seeds = [...]``: the values of ``sample.seed``;
* a nested table ``[sweep.model]`` with ``p = [...]`` (what TOML makes of ``model.p = [...]``
  under ``[sweep]``) is the same as ``"model.p"``;
* ``variants = {LABEL: {section: {key: value}}}`` (``[sweep.variants.LABEL]`` tables): named
  sets of config overrides, one more axis (``noisesched.sweeps._variants``).

The points are the product of the axes in the order they are given, the last axis varying
fastest; the variants, when given, are the first axis.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import check_bool, check_int, check_real
from ..experiments.config import ConfigError, suggest
from ._variants import VARIANT, VARIANTS, Variant, check_axes, variants_of

__all__ = ["Range", "Grid", "SEEDS"]

#: The grid key of ``sample.seed``.
SEEDS = "seeds"
_RANGE_FIELDS = ("start", "stop", "num", "log")


@dataclasses.dataclass(frozen=True)
class Range:
    """``num`` values from ``start`` to ``stop`` (both included): evenly spaced, or evenly
    spaced in log scale (``log=True``, start and stop > 0); each rounded to 12 significant
    digits."""

    start: float
    stop: float
    num: int
    log: bool = False

    def __post_init__(self):
        check_real("start", self.start)
        check_real("stop", self.stop)
        check_int("num", self.num, lo=1)
        check_bool("log", self.log)
        if self.log and (self.start <= 0 or self.stop <= 0):
            raise ValueError(f"log = true needs start > 0 and stop > 0; got start = "
                             f"{self.start!r}, stop = {self.stop!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> Range:
        """A range from ``{start, stop, num[, log]}``."""
        unknown = [k for k in table if k not in _RANGE_FIELDS]
        if unknown:
            raise ValueError(f"unknown range key {unknown[0]!r}"
                             + suggest(unknown[0], _RANGE_FIELDS)
                             + "; a range is {start, stop, num} or {start, stop, num, log}")
        missing = [k for k in _RANGE_FIELDS[:3] if k not in table]
        if missing:
            raise ValueError(f"a range needs start, stop and num; {missing[0]} is missing")
        return cls(**table)

    def values(self) -> tuple[float, ...]:
        if self.num == 1:
            return (float(self.start),)
        spaced = (np.geomspace if self.log else np.linspace)(self.start, self.stop, self.num)
        return tuple(float(f"{v:.12g}") for v in spaced)


def _is_range(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in value for k in _RANGE_FIELDS)


def _values(where: str, value: Any) -> tuple[Any, ...]:
    """The values of one axis, from a list, a ``Range`` or a range table."""
    try:
        if isinstance(value, Range):
            return value.values()
        if isinstance(value, Mapping):
            return Range.from_mapping(value).values()
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{where} must be a list of values or a range {{start, stop, num}} "
                          f"(with log = true for a log scale); got {value!r}")
    values = tuple(value)
    if not values:
        raise ConfigError(f"{where} is an empty list: give at least one value")
    for i, v in enumerate(values):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where} holds {v!r}: values must be finite")
        if any(v == w and type(v) is type(w) for w in values[:i]):
            raise ConfigError(f"{where} lists {v!r} twice")
    return values


@dataclasses.dataclass(frozen=True)
class Grid:
    """Axes ``(section.key, values)`` and named ``variants``; the points are their Cartesian
    product, the variants first, the last axis varying fastest."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    variants: tuple[Variant, ...] = ()

    @classmethod
    def of(cls, table: Mapping[str, Any] | Grid) -> Grid:
        """The grid of a mapping (see the module's docstring); ``ConfigError`` naming the key
        for a malformed entry."""
        if isinstance(table, Grid):
            return table
        if not isinstance(table, Mapping):
            raise ConfigError(f"a sweep grid must be a table of section.key = values; got "
                              f"{table!r}")
        axes: list[tuple[str, tuple[Any, ...]]] = []
        variant_entries = {key: value for key, value in table.items() if isinstance(key, str)
                           and (key == VARIANTS or key.startswith(f"{VARIANTS}."))}
        variants = variants_of(variant_entries) if variant_entries else ()
        for key, value in table.items():
            if not isinstance(key, str):
                raise ConfigError(f"sweep keys must be strings; got {key!r}")
            if key in variant_entries:
                continue
            if "." not in key and key != SEEDS and suggest(key, [VARIANTS]):  # not [sweep.model]
                raise ConfigError(f"unknown sweep key {key!r}" + suggest(key, [VARIANTS]))
            if key == SEEDS:
                axes.append(("sample.seed", _values(f"sweep.{SEEDS}", value)))
            elif "." in key:
                axes.append((key, _values(f"sweep.{key}", value)))
            elif isinstance(value, Mapping) and not _is_range(value):  # [sweep.model] p = ...
                if not value:
                    raise ConfigError(f"sweep.{key} is an empty table")
                axes += [(f"{key}.{sub}", _values(f"sweep.{key}.{sub}", v))
                         for sub, v in value.items()]
            else:
                raise ConfigError(f"unknown sweep key {key!r}: sweep keys are section.key "
                                  f"(e.g. 'model.p') or {SEEDS!r}"
                                  + suggest(key, [SEEDS, VARIANTS, "configs_per_call",
                                                  "vmap_width"]))
        if not axes and not variants:
            raise ConfigError("a sweep needs at least one axis (section.key = [values], "
                              f"{SEEDS} = [...], or [sweep.{VARIANTS}.LABEL] tables)")
        seen: dict[str, int] = {}
        for i, (key, _) in enumerate(axes):
            if key in seen:
                given = "seeds and sample.seed" if key == "sample.seed" else f"{key!r} twice"
                raise ConfigError(f"the sweep gives {given}: give each key once")
            seen[key] = i
        check_axes(variants, list(seen))
        return cls(tuple(axes), variants)

    @property
    def keys(self) -> tuple[str, ...]:
        """The ``section.key`` of each axis (the variants not included)."""
        return tuple(key for key, _ in self.axes)

    def __len__(self) -> int:
        return max(1, len(self.variants)) * math.prod(len(values) for _, values in self.axes)

    def points(self) -> list[dict[str, Any]]:
        """Every point, ``{section.key: value}`` (with ``"variant": label`` first where the grid
        has variants), in product order."""
        keys = self.keys
        combos = [dict(zip(keys, combo, strict=True))
                  for combo in itertools.product(*(values for _, values in self.axes))]
        if not self.variants:
            return combos
        return [{VARIANT: variant.label, **combo} for variant in self.variants
                for combo in combos]
