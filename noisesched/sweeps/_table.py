"""The results table of a sweep, in Parquet (pyarrow; readable by pandas, polars, DuckDB).

A sweep's folder holds

* ``parts/part-<hash>.parquet``: the rows of one compiled call, written atomically when the call
  has finished (``<hash>``: of the rows' keys, so that no two calls share a file);
* ``results.parquet``: the rows of the sweep's grid that are finished, in grid order, rewritten
  atomically after each group (and at the end).

A row is one configuration, keyed by ``key`` (a hash of its resolved configuration and the JAX
backend). A rerun reads the keys of every part and solves only the configurations whose row is
missing, so an interrupted sweep loses at most the call in flight; parts of other grids in the
folder are kept and reused by any sweep that has their configurations.

Each file carries, under the schema metadata key ``noisesched``, a JSON record: the package
version, the features of each data law (``noisesched.Feature`` fields, by model name) and the
column families (``parameters``, ``metrics``, ``run``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_write

__all__ = ["ResultStore", "to_table", "normal_row", "RESULTS", "PARTS", "RUN_COLUMNS"]

RESULTS = "results.parquet"
PARTS = "parts"
#: The columns of how a row was solved: every row has them, last and in this order.
RUN_COLUMNS = ("num_steps", "error", "seconds", "group", "backend", "config")
#: The schema metadata key of the JSON record.
METADATA_KEY = b"noisesched"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ImportError("a sweep's table is written with pyarrow: pip install pyarrow") from None
    return pa, pq


def to_table(rows: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any] | None = None):
    """A ``pyarrow.Table`` of ``rows`` (dicts): one column per key met in any row, in order of
    first appearance and the ``RUN_COLUMNS`` last, null where a row lacks it; ``metadata`` as
    JSON under ``noisesched``."""
    pa, _ = _pyarrow()
    met = dict.fromkeys(key for row in rows for key in row)
    columns = [key for key in met if key not in RUN_COLUMNS] + [
        key for key in RUN_COLUMNS if key in met]
    table = pa.table({key: _column(pa, [row.get(key) for row in rows]) for key in columns})
    if metadata is not None:
        table = table.replace_schema_metadata(
            {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    return table


def _column(pa, values: list[Any]):
    """One Arrow column; values of several kinds (``solver.span`` = "auto", true, false) are
    written as their JSON text, since a column has one type."""
    kinds = {"number" if isinstance(v, int | float) and not isinstance(v, bool) else type(v)
             for v in values if v is not None}
    if len(kinds) > 1:
        values = [None if v is None else json.dumps(v) for v in values]
    return pa.array(values)


def normal_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a sweep keeps it, whether solved now or read from a table: without its null
    values (a column of another group's parameters or metrics), except in the
    ``RUN_COLUMNS``. Tables of the same rows in the same order are then the same, column
    order included."""
    return {k: v for k, v in row.items() if v is not None or k in RUN_COLUMNS}


def read_metadata(table) -> dict[str, Any]:
    """The JSON record of a table written here (``{}`` if it has none)."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def merge_metadata(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One record from several: features and column families joined, the last version kept."""
    out: dict[str, Any] = {"features": {}, "columns": {}}
    for record in records:
        out["features"].update(record.get("features", {}))
        for family, names in record.get("columns", {}).items():
            known = out["columns"].setdefault(family, [])
            known += [name for name in names if name not in known]
        for key, value in record.items():
            if key not in ("features", "columns"):
                out[key] = value
    return out


class ResultStore:
    """The Parquet files of a sweep in ``folder`` (see the module's docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"--out {str(self.folder)!r} exists and is not a folder")

    @property
    def results_path(self) -> Path:
        return self.folder / RESULTS

    def part_paths(self) -> list[Path]:
        parts = self.folder / PARTS
        return sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []

    def finished(self, keys: Iterable[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """(the rows of the parts whose key is among ``keys``, by key (``normal_row``); the
        parts' merged metadata)."""
        _, pq = _pyarrow()
        wanted = set(keys)
        rows: dict[str, dict[str, Any]] = {}
        records = []
        for path in self.part_paths():
            table = pq.read_table(path)
            records.append(read_metadata(table))
            for row in table.to_pylist():
                if row.get("key") in wanted:
                    rows.setdefault(row["key"], normal_row(row))
        return rows, merge_metadata(records)

    def write_part(self, rows: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]
                   ) -> Path:
        """One compiled call's rows, as a new part file (atomically)."""
        digest = hashlib.sha256("\n".join(str(r["key"]) for r in rows).encode()).hexdigest()
        return self._write(self.folder / PARTS / f"part-{digest[:20]}.parquet",
                           to_table(rows, metadata))

    def write_results(self, rows: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]
                      ) -> Path:
        """``results.parquet``: ``rows`` (the grid's finished rows, in grid order)."""
        return self._write(self.results_path, to_table(rows, metadata))

    @staticmethod
    def _write(path: Path, table) -> Path:
        _, pq = _pyarrow()
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp))
