"""A sweep split into shards, on the command line or over the processes of ``jax.distributed``,
gives the table of one run: the same rows, values and order (every column but ``seconds``, a
wall time), once the shards' tables are merged."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import noisesched as ns
from noisesched import sweeps
from noisesched.cli import main
from noisesched.experiments.config import ConfigError

BASE = {"name": "shards", "model": {"name": "gm", "d": 32},
        "solver": {"steps": 4, "method": "scan"}, "sample": {"n": 16}}
# two groups (two schedule classes) of the same weight: two shards hold one whole group each
GRID = {"schedule.name": ["constant", "vp_dilated"], "model.p": [0.6, 0.7, 0.8]}
CONFIG = ('name = "shards"\n[model]\nname = "gm"\nd = 32\n[solver]\nsteps = 4\nmethod = "scan"\n'
          '[sample]\nn = 16\n[sweep]\nschedule.name = ["constant", "vp_dilated"]\n'
          'model.p = [0.6, 0.7, 0.8]\n')


def quiet(*_):
    pass


def _table(folder):
    """(column names, rows without ``seconds``) of a folder's results.parquet."""
    table = pq.read_table(Path(folder) / sweeps.RESULTS)
    return table.column_names, table.drop(["seconds"]).to_pylist()


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The sweep in one run: its folder."""
    out = tmp_path_factory.mktemp("whole")
    ns.sweep(BASE, GRID, out=out, progress=False, log=quiet)
    return out


def test_two_shards_merged_are_the_one_run_table(whole, tmp_path):
    folders = []
    for i in range(2):
        folders.append(tmp_path / f"shard{i}")
        result = ns.sweep(BASE, GRID, out=folders[-1], shard=(i, 2), progress=False, log=quiet)
        (group,) = result.groups  # a whole group each
        assert group.configs == group.solved == 3 and len(result.rows) == 3
        record = pq.read_table(folders[-1] / sweeps.RESULTS).schema.metadata[b"noisesched"]
        assert f'"shard": [{i}, 2]'.encode() in record and b'"size": 6' in record
    merged = sweeps.merge(folders, tmp_path / "merged")
    assert merged.missing == [] and len(merged.rows) == 6
    assert _table(tmp_path / "merged") == _table(whole)  # exactly: the same calls
    # a rerun into the merged folder solves nothing: its parts hold every row
    assert ns.sweep(BASE, GRID, out=tmp_path / "merged", progress=False, log=quiet).solved == 0


def test_shards_of_a_sweep_with_variants_merge_to_the_one_run_table(tmp_path):
    grid = {"variants": {"flat": {"schedule": {"name": "constant"}},
                         "dilated": {"schedule": {"name": "vp_dilated"}}},
            "model.p": [0.6, 0.8]}
    ns.sweep(BASE, grid, out=tmp_path / "whole", progress=False, log=quiet)
    for i in range(2):
        ns.sweep(BASE, grid, out=tmp_path / f"shard{i}", shard=(i, 2), progress=False, log=quiet)
    merged = sweeps.merge([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    assert [row["variant"] for row in merged.rows] == ["flat", "flat", "dilated", "dilated"]
    assert _table(tmp_path / "merged") == _table(tmp_path / "whole")


def test_the_command_line_shards_and_merge(whole, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG)
    for i in range(2):
        assert main(["sweep", str(config), "--shard", f"{i}/2", "--out", str(tmp_path / str(i)),
                     "--no-progress"]) == 0
        assert f"3 rows (shard {i}/2 of a grid of 6), 3 solved now" in (
            capsys.readouterr().out)
    assert main(["sweep", "merge", str(tmp_path / "0"), str(tmp_path / "1"), "--out",
                 str(tmp_path / "merged")]) == 0
    assert "6 of the 6 rows of the grid" in capsys.readouterr().out
    assert _table(tmp_path / "merged") == _table(whole)
    # shards in one folder: its table is the last shard's, until a merge of the folder itself
    shared = str(tmp_path / "shared")
    for i in range(2):
        assert main(["sweep", str(config), "--shard", f"{i}/2", "--out", shared]) == 0
    assert len(_table(shared)[1]) == 3
    assert main(["sweep", "merge", shared, "--out", shared]) == 0
    assert _table(shared) == _table(whole)


@pytest.mark.parametrize("groups, weights, count, expected", [
    ([[0, 1, 2], [3, 4, 5]], [1] * 6, 2, [[0, 1, 2], [3, 4, 5]]),  # whole groups
    ([[0, 1, 2, 3], [4, 5], [6, 7]], [1] * 8, 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    # a border within a quarter of a shard's weight of the even cut: whole groups, 3 + 5
    ([[0, 1, 2], [3, 4], [5, 6, 7]], [1] * 8, 2, [[0, 1, 2], [3, 4, 5, 6, 7]]),
    ([[0, 1, 2, 3, 4, 5], [6, 7]], [1] * 8, 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),  # farther: 4 + 4
    ([[0, 1, 2, 3, 4, 5]], [1] * 6, 3, [[0, 1], [2, 3], [4, 5]]),  # a group in pieces
    ([[0, 1], [2, 3]], [1, 1, 10, 10], 2, [[0, 1, 2], [3]]),  # by weight, not count
    ([[0, 2, 4], [1, 3, 5]], [1] * 6, 2, [[0, 2, 4], [1, 3, 5]]),  # groups, not grid order
    ([[0, 1, 2]], [1] * 3, 5, [[0], [], [1], [], [2]]),  # more shards than configurations
])
def test_the_shard_rule(groups, weights, count, expected):
    assert sweeps.plan(groups, weights, count) == expected


def test_shards_are_disjoint_and_cover_the_grid():
    import random

    rng = random.Random(0)
    for _ in range(200):
        sizes = [rng.randint(1, 9) for _ in range(rng.randint(1, 6))]
        order = list(range(sum(sizes)))
        rng.shuffle(order)
        groups, start = [], 0
        for size in sizes:
            groups.append(sorted(order[start:start + size]))
            start += size
        weights = [rng.choice([1, 2, 64, 1000]) for _ in order]
        count = rng.randint(1, 12)
        shards = sweeps.plan(groups, weights, count)
        assert shards == sweeps.plan(groups, weights, count) and len(shards) == count
        assert sorted(i for shard in shards for i in shard) == sorted(order)
        assert all(shard == sorted(shard) for shard in shards)


@pytest.mark.parametrize("value", ["2/2", "x", "1/0", "1/2/3", "0.5/2", "/2"])
def test_bad_shards_are_one_line_errors_with_status_2(value, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG)
    assert main(["sweep", str(config), "--shard", value, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"noisesched: error: --shard must be I/N with integers N >= 1 and 0 <= I < N "
                   f"(e.g. --shard 0/4: the first of 4 shards); got {value!r}\n")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"shard must be \(i, n\) with integers n >= 1"):
        ns.sweep(BASE, GRID, shard=(2, 2))
    with pytest.raises(ConfigError, match="shard must be"):
        sweeps.Shard(True, 2)


@pytest.mark.parametrize("options, message", [
    (["--coordinator", "127.0.0.1"], "--coordinator must be HOST:PORT"),
    (["--num-processes", "0"], "--num-processes must be an integer >= 1; got 0"),
    (["--num-processes", "2", "--process-id", "2"], "--process-id must be in [0, "
                                                     "--num-processes) = [0, 2); got 2"),
])
def test_bad_distributed_options_are_one_line_errors_with_status_2(options, message, tmp_path,
                                                                    capsys):
    assert main(["sweep", str(tmp_path / "sweep.toml"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("noisesched: error: ") and message in err and err.count("\n") == 1


def test_merge_counts_missing_rows_and_refuses_other_grids_and_unequal_copies(whole, tmp_path,
                                                                               capsys):
    shard = tmp_path / "shard0"
    ns.sweep(BASE, GRID, out=shard, shard=(0, 2), progress=False, log=quiet)
    merged = sweeps.merge([shard], tmp_path / "merged")
    assert len(merged.rows) == 3 and len(merged.missing) == 3
    assert "3 of the 6 rows of the grid; 3 missing" in merged.summary()
    # the missing rows: solved by a run of the whole grid into the merged folder
    rerun = ns.sweep(BASE, GRID, out=tmp_path / "merged", progress=False, log=quiet)
    assert (rerun.solved, rerun.kept) == (3, 3)

    # a sweep of another grid (one schedule): refused, or joined with allow_different_grids
    other = tmp_path / "other"
    ns.sweep(BASE, {**GRID, "schedule.name": ["constant"]}, out=other, progress=False,
             log=quiet)
    with pytest.raises(ConfigError, match="hold different grids .*allow-different-grids"):
        sweeps.merge([whole, other], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    joined = sweeps.merge([whole, other], tmp_path / "joined", allow_different_grids=True)
    assert joined.missing == [] and _table(tmp_path / "joined") == _table(whole)
    assert main(["sweep", "merge", str(whole), str(other), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "hold different grids" in err and err.count("\n") == 1

    # a row that differs between two copies
    altered = tmp_path / "altered"
    shutil.copytree(whole, altered)
    key = pq.read_table(altered / sweeps.RESULTS).column("key")[4].as_py()
    for path in [altered / sweeps.RESULTS, *(altered / sweeps.PARTS).glob("*.parquet")]:
        table = pq.read_table(path)
        values = [v * 1.5 if k == key else v for k, v in zip(
            table.column("key").to_pylist(), table.column("within_mode_var").to_pylist(),
            strict=True)]
        column = table.schema.get_field_index("within_mode_var")
        pq.write_table(table.set_column(column, table.schema.field(column),
                                        pa.array(values)), path)
    with pytest.raises(ConfigError, match=f"row {key} differs between .* in column "
                                          "'within_mode_var'"):
        sweeps.merge([whole, altered], tmp_path / "conflict")
    assert not (tmp_path / "conflict").exists()
    with pytest.raises(ConfigError, match="has no results.parquet"):
        sweeps.merge([tmp_path / "nothing"], tmp_path / "y")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(command, tmp_path):
    """Run ``noisesched <command> --coordinator ... --process-id i`` in two CPU processes on
    this machine (a coordinator on 127.0.0.1); their outputs, after both exit with 0."""
    root = str(Path(ns.__file__).parent.parent)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    address = f"127.0.0.1:{_free_port()}"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "noisesched.cli", "--no-compile-cache", *command,
         "--coordinator", address, "--num-processes", "2", "--process-id", str(i)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(2)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            process.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs
    return outputs


def test_two_processes_under_jax_distributed_write_the_table_of_one(whole, tmp_path):
    """One sweep in two processes: each solves one group, process 0 writes the table, equal to
    the one-process table."""
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG)
    outputs = _two_processes(["sweep", str(config), "--out", str(tmp_path / "out"),
                              "--no-progress"], tmp_path)
    assert "wrote" in outputs[0] and "6 rows, 3 solved now by process 0 of 2" in outputs[0]
    assert "process 1 of 2: 3 rows solved now" in outputs[1]
    assert len(list((tmp_path / "out" / sweeps.PARTS).glob("*.parquet"))) == 2
    assert _table(tmp_path / "out") == _table(whole)  # exactly: each group in one call


@pytest.mark.slow  # ~15 s: two processes again (the sweep's two-process test runs by default)
def test_a_run_in_two_processes_has_the_metrics_of_one(tmp_path):
    """``noisesched run`` under jax.distributed: the batch sharded over both processes' devices,
    the metrics of a one-process run (float32 rounding aside)."""
    config = tmp_path / "run.toml"
    config.write_text("[model]\nd = 100\n[sample]\nn = 64\n[solver]\nsteps = 8\n"
                      "[output]\nfigures = false\n")
    _two_processes(["run", str(config), "--out", str(tmp_path / "two")], tmp_path)
    assert main(["run", str(config), "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / f / "results.json").read_text())["metrics"]
                for f in ("two", "one"))
    assert two.keys() == one.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
