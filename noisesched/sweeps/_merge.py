"""``noisesched.sweeps.merge``: the tables of several folders of one sweep (its shards) joined
into one.

Each folder's rows are those of its parts (``parts/part-*.parquet``) and of its
``results.parquet`` whose key is in its grid (the metadata of ``results.parquet`` lists every
row key of the sweep's grid, in grid order), so shards that shared one folder, and shards
interrupted after some calls, give every row they finished. The merged table has

* the rows in grid order: the grid keys of the first folder, then those of the others that it
  lacks (one grid when the folders are shards of one sweep);
* one row per key: a key found in several folders must have the same values there (all but
  ``seconds``, a wall time), or the merge stops naming the key, the column and the folders;
* the count of grid rows that no folder has (``MergeResult.missing``): they are left out, and
  ``noisesched sweep CONFIG --out MERGED`` solves only them (the merged folder's parts hold
  every merged row).

Folders of different grids (other axes, values, base config or backend) are refused unless
``allow_different_grids`` is set: shards of one sweep always share the grid, so a different one
is most often a folder given by mistake.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..experiments.config import ConfigError
from ._sweep import grid_record
from ._table import ResultStore, merge_metadata, normal_row, read_metadata
from ._variants import VARIANT

__all__ = ["merge", "MergeResult"]

#: Columns that may differ between two copies of one row.
#: Columns that may differ between two copies of a row: a measurement, and the label a grid
#: gives a configuration (a rerun may relabel it).
_MEASURED = ("seconds", VARIANT)


@dataclasses.dataclass(frozen=True)
class MergeResult:
    """What ``noisesched.sweeps.merge`` returns.

    Attributes:
        rows: the merged rows, in grid order.
        missing: the grid keys that no folder has a row for, in grid order.
        path: the merged ``results.parquet``.
        metadata: its JSON record (``grid``, and ``merged``: each folder with its shard and
            the rows it gave).
    """

    rows: list[dict[str, Any]]
    missing: list[str]
    path: Path
    metadata: dict[str, Any]

    def summary(self) -> str:
        """One line: rows written and missing."""
        size = self.metadata["grid"]["size"]
        line = f"wrote {self.path}: {len(self.rows)} of the {size} rows of the grid"
        if self.missing:
            line += (f"; {len(self.missing)} missing (rerun their shards, or the sweep's config "
                     f"with --out {self.path.parent}, which solves only those)")
        return line


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the metadata of a folder's ``results.parquet``, its grid's rows by key)."""
    import pyarrow.parquet as pq

    store = ResultStore(folder)
    path = store.results_path
    if not path.is_file():
        raise ConfigError(f"sweep merge: {str(folder)!r} has no {path.name} (not a sweep's "
                          "folder, or its sweep has not finished a group yet)")
    table = pq.read_table(path)
    record = read_metadata(table)
    if "grid" not in record:
        raise ConfigError(f"sweep merge: {str(path)!r} does not record its grid (written by an "
                          "older version): run its sweep again with the same --out, which "
                          "keeps its rows and rewrites the table")
    keys = set(record["grid"]["keys"])
    rows: dict[str, dict[str, Any]] = {}
    found, _ = store.finished(keys)
    for row in [*table.to_pylist(), *found.values()]:
        if row["key"] in keys:
            _add(rows, normal_row(row), {}, str(folder))
    return record, rows


def _add(rows: dict[str, dict[str, Any]], row: dict[str, Any], sources: dict[str, str],
         source: str) -> None:
    """Put ``row`` into ``rows`` (by key); a key already there must hold the same values."""
    key = row["key"]
    known = rows.get(key)
    if known is None:
        rows[key] = row
        sources[key] = source
        return
    for column in dict.fromkeys([*known, *row]):
        if column in _MEASURED:
            continue
        a, b = known.get(column), row.get(column)
        if a != b and not (a != a and b != b):  # nan equals nan here
            raise ConfigError(f"sweep merge: row {key} differs between "
                              f"{sources.get(key, source)!r} and {source!r} in column "
                              f"{column!r} ({a!r} and {b!r}); a row is solved once, so two "
                              "copies must be equal (same backend and version)")


def merge(folders: Sequence[str | os.PathLike], out: str | os.PathLike, *,
          allow_different_grids: bool = False) -> MergeResult:
    """Join the sweep tables of ``folders`` (shards of one sweep, written by
    ``noisesched.sweep(..., out=FOLDER, shard=(i, N))``) into ``out``: ``results.parquet``
    with the rows in grid order, and one part with the rows that ``out``'s parts lack (see
    ``noisesched.sweeps._merge`` for the rules).

    Args:
        folders: the sweeps' folders (at least one).
        out: the merged folder (may be one of ``folders``).
        allow_different_grids: join folders of different grids (in the order of the grids
            given); by default a ``ConfigError``.

    Returns:
        the merged rows, the keys missing from the grid, the path and the metadata. Written
        atomically; nothing is written when the merge stops with an error.
    """
    if isinstance(folders, str | os.PathLike) or not folders:
        raise ConfigError("sweep merge takes a list of at least one folder; got "
                          f"{folders!r}")
    paths = list(dict.fromkeys(Path(folder) for folder in folders))
    records: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    grid_keys: list[str] = []
    given = []
    for folder in paths:
        record, found = _read(folder)
        if records and record["grid"]["digest"] != records[0]["grid"]["digest"] and (
                not allow_different_grids):
            first = records[0]["grid"]
            raise ConfigError(
                f"sweep merge: {str(paths[0])!r} and {str(folder)!r} hold different grids "
                f"({first['size']} rows, digest {first['digest']}; {record['grid']['size']} "
                f"rows, digest {record['grid']['digest']}): shards of one sweep share their "
                "grid; pass --allow-different-grids (allow_different_grids=True) to join them")
        records.append(record)
        grid_keys += record["grid"]["keys"]
        for row in found.values():
            _add(rows, row, sources, str(folder))
        given.append({"folder": str(folder), "shard": record.get("shard"), "rows": len(found)})
    keys = list(dict.fromkeys(grid_keys))
    store = ResultStore(out)
    present, _ = store.finished(keys)
    for row in present.values():
        _add(rows, row, sources, str(store.folder))
    ordered = [rows[k] for k in keys if k in rows]
    metadata = merge_metadata(records)
    metadata.pop("shard", None)
    metadata.update(grid=grid_record(keys), merged=given)
    new = [row for row in ordered if row["key"] not in present]
    if new:
        part: Mapping[str, Any] = {k: v for k, v in metadata.items() if k != "grid"}
        store.write_part(new, part)
    path = store.write_results(ordered, metadata)
    return MergeResult(ordered, [k for k in keys if k not in rows], path, metadata)
