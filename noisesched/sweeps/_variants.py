"""Named variants of a sweep: ``[sweep.variants.LABEL]`` tables, one more axis of the grid.

A variant is a set of config overrides under a label, section by section, e.g. a schedule with
its parameters (as ``[compare.variants.LABEL]`` of ``noisesched compare``) and, where needed,
other sections::

    [sweep.variants.constant]
    schedule = {name = "constant"}

    [sweep.variants.dilated]
    schedule = {name = "vp_dilated", k = 3.0}
    solver = {steps = 50}

In the library: ``grid = {"variants": {"constant": {"schedule": {"name": "constant"}}, ...},
"model.p": [...]}``. Each variant applies to the base config as ``--set`` would (a schedule
of another name starts from that schedule's defaults, keeping the base's options it takes),
then the point's axis values apply on top. The variants are the grid's first axis (rows of one
variant are consecutive), whatever the position of the ``variants`` entry, and each row of the
table gets the label in a ``variant`` column. The label names rows of one grid: it is not part
of a row's key (two labels of one configuration are refused as the same configuration).
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..experiments.config import (
    SECTIONS,
    ConfigError,
    ConfigWarning,
    RunConfig,
    all_keys,
    from_mapping,
    suggest,
)

__all__ = ["Variant", "VARIANTS", "VARIANT", "NO_RESULT"]

#: Config entries that change no row's numbers (a section, or ``section.key``): out of a row's
#: key and parameters, and refused as sweep axes and in variants.
NO_RESULT = ("name", "output", "sample.chunk_size", "sample.devices")

#: The grid key of the variants (``[sweep.variants.LABEL]``).
VARIANTS = "variants"
#: The column (and point key) of a row's variant label.
VARIANT = "variant"


@dataclasses.dataclass(frozen=True)
class Variant:
    """Config overrides under a label: ``{section: {key: value}}``."""

    label: str
    overrides: Mapping[str, Mapping[str, Any]]

    @property
    def keys(self) -> tuple[str, ...]:
        """The ``section.key`` s it sets."""
        return tuple(f"{section}.{key}" for section, table in self.overrides.items()
                     for key in table)

    def apply(self, base: RunConfig) -> RunConfig:
        """``base`` with the overrides, validated; ``ConfigError`` naming the variant, also for
        a key that does not apply to its model or schedule."""
        where = f"sweep.variants.{self.label}: "
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConfigWarning)
            try:
                return from_mapping({s: dict(t) for s, t in self.overrides.items()}, base=base)
            except ConfigWarning as warning:
                raise ConfigError(f"{where}{str(warning).removesuffix('; ignored')}") from None
            except ConfigError as err:
                raise ConfigError(f"{where}{err}") from None


def _known_keys() -> list[str]:
    return [k for k in all_keys() if "." in k and not k.startswith(NO_RESULT)]


def _variant(label: Any, table: Any) -> Variant:
    if not isinstance(label, str) or not label or "." in label:
        raise ConfigError(f"sweep.variants labels must be non-empty strings without '.'; got "
                          f"{label!r}")
    where = f"sweep.variants.{label}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of config sections (e.g. schedule = "
                          f"{{name = \"constant\"}}); got {table!r}")
    if not table:
        raise ConfigError(f"{where} is empty: give the config sections it overrides (e.g. "
                          "schedule = {name = \"constant\"})")
    known = _known_keys()
    overrides: dict[str, Mapping[str, Any]] = {}
    for section, values in table.items():
        if section == "output":
            raise ConfigError(f"{where} sets [output], which changes no result: set it in the "
                              "config's [output] instead")
        if section not in SECTIONS:
            raise ConfigError(f"unknown key {section!r} in {where}: a variant holds config "
                              f"sections ({', '.join(s for s in SECTIONS if s != 'output')}) "
                              "as tables" + suggest(str(section), SECTIONS))
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"{where}.{section} must be a non-empty table of "
                              f"{section}.key = value; got {values!r}")
        for key in values:
            dotted = f"{section}.{key}"
            if dotted.startswith(NO_RESULT):
                raise ConfigError(f"{where} sets {dotted}, which changes no result: set it in "
                                  f"[{section}] instead")
            if dotted not in known:
                raise ConfigError(f"unknown key {dotted!r} in {where}" + suggest(dotted, known))
        overrides[section] = types.MappingProxyType(dict(values))
    return Variant(label, types.MappingProxyType(overrides))


def _nested(table: Mapping[str, Any]) -> dict[str, Any]:
    """``variants`` entries given flat (``--set sweep.variants.LABEL.section.key=value``:
    ``{"variants.LABEL.section.key": value}``) merged into the nested table."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == VARIANTS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"sweep.variants must be tables [sweep.variants.LABEL] of "
                                  f"config overrides; got {value!r}")
            for label, sections in value.items():
                out[label] = ({s: dict(t) if isinstance(t, Mapping) else t
                               for s, t in sections.items()}
                              if isinstance(sections, Mapping) else sections)
            continue
        parts = key.split(".")
        if len(parts) != 4:
            raise ConfigError(f"sweep key {key!r}: a variant's entry is "
                              "variants.LABEL.section.key")
        _, label, section, sub = parts
        entry = out.setdefault(label, {})
        if not isinstance(entry, dict) or not isinstance(entry.setdefault(section, {}), dict):
            raise ConfigError(f"sweep key {key!r}: sweep.variants.{label} is not a table")
        entry[section][sub] = value
    return out


def variants_of(entries: Mapping[str, Any]) -> tuple[Variant, ...]:
    """The variants of a grid's ``variants`` entry and its flat ``variants.…`` keys, in the
    order given; ``ConfigError`` for an empty or malformed table or an unknown key."""
    table = _nested(entries)
    if not table:
        raise ConfigError("sweep.variants is empty: give at least one [sweep.variants.LABEL] "
                          "table of config overrides (e.g. schedule = {name = \"constant\"})")
    return tuple(_variant(label, value) for label, value in table.items())


def check_axes(variants: Sequence[Variant], axes: Sequence[str]) -> None:
    """A key set by a variant must not be an axis too: ``ConfigError`` naming both."""
    for variant in variants:
        for key in variant.keys:
            if key in axes:
                axis = "seeds" if key == "sample.seed" else key
                raise ConfigError(f"sweep.variants.{variant.label} sets {key} and the sweep has "
                                  f"the axis sweep.{axis}: give {key} in one place")


def grid_rows(rows: Mapping[str, dict[str, Any]], keys: Sequence[str],
              points: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the rows of ``keys`` that are finished, in grid order; the table's metadata): where
    the points have variants, each row with its point's label in a ``variant`` column (after
    ``key``), and ``variant`` first among the metadata's parameter columns."""
    ordered = [(rows[key], point) for key, point in zip(keys, points, strict=True)
               if key in rows]
    if not any(VARIANT in point for point in points):
        return [row for row, _ in ordered], dict(metadata)
    labelled = [{"key": row["key"], VARIANT: point[VARIANT],
                 **{k: v for k, v in row.items() if k not in ("key", VARIANT)}}
                for row, point in ordered]
    columns = dict(metadata.get("columns", {}))
    columns["parameters"] = [VARIANT, *(c for c in columns.get("parameters", []) if c != VARIANT)]
    return labelled, {**metadata, "columns": columns}
