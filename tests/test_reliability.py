"""No lost work and no silent garbage: failed solves say where and why, interrupted runs resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import noisesched as ns
from noisesched.experiments import config as cfg
from noisesched.experiments import scaling as scaling_mod
from noisesched.experiments.io import resume_folder
from noisesched.experiments.run import run_experiment
from noisesched.streaming import ChunkStore

D = 64


def _gm(d=D, m=1.0):
    model = ns.GaussianMixture.two_modes(d=d, m=m)
    interp = ns.Interpolant(kind="vp", shape="linear", d=d)
    return model, interp, ns.schedules.vp_dilated(d=d, k=2.0)


def test_adaptive_solve_out_of_steps_says_so():
    model, interp, sched = _gm()
    options = dict(adaptive=True, solver="tsit5", max_steps=3)
    with pytest.raises(ns.MaxStepsReached, match="max_steps = 3 .* raise max_steps"):
        ns.sample(model, interp, sched, jax.random.PRNGKey(0), 4, **options)
    with pytest.raises(ns.MaxStepsReached, match="max_steps = 3"):
        ns.sample_summary(model, interp, sched, jax.random.PRNGKey(0), 4, **options)
    # inside jit the flag tells the same, and enough steps reach the end
    sol = jax.jit(lambda x: ns.solve(model, interp, sched, x, **options))(
        ns.sample_prior(interp, jax.random.PRNGKey(0), 4))
    assert not bool(sol.reached_end)
    assert bool(ns.solve(model, interp, sched, ns.sample_prior(interp, jax.random.PRNGKey(0), 4),
                         adaptive=True, solver="tsit5").reached_end)


def test_overflow_is_reported_with_sample_step_and_time():
    """Means of level 1e20 (given as an array: ``two_modes`` bounds m at 1e15) overflow float32
    in the first step's statistics (μ·x ~ 1e21 · √d, squared); σ = 10^15 is a spread float32
    resolves beside them."""
    _, interp, sched = _gm()
    model = ns.GaussianMixture([0.8, 0.2], np.stack([np.full(D, 1e20), np.full(D, -1e20)]), 1e15)
    x0 = ns.sample_prior(interp, jax.random.PRNGKey(0), 4)
    assert ns.first_nonfinite(model, interp, sched, x0, steps=10) == (1, pytest.approx(0.1), 0)
    with pytest.raises(FloatingPointError, match=r"first in sample 0, at step 1 of 10 \(t = 0.1\)"):
        ns.sample(model, interp, sched, jax.random.PRNGKey(0), 4, steps=10)
    with pytest.raises(FloatingPointError, match="first in sample 0, at step 1 of 10"):
        ns.sample_summary(model, interp, sched, jax.random.PRNGKey(0), 4, steps=10)
    # the check can be switched off, and is skipped under jit (nothing to raise from)
    x = ns.solve(model, interp, sched, x0, steps=10, check_finite=False).x
    assert not np.isfinite(np.asarray(x)).all()


def _chunks_solved(monkeypatch):
    """Count the chunks sample_summary actually solves."""
    import noisesched.streaming as streaming

    solved = []
    original = streaming._solve_rows

    def counting(model, interp, schedule, key, start, *args):
        solved.append(int(start))
        return original(model, interp, schedule, key, start, *args)

    monkeypatch.setattr(streaming, "_solve_rows", counting)
    return solved


def _interrupt_after(monkeypatch, saves: int):
    """Make the ``saves + 1``-th chunk save raise KeyboardInterrupt, as Ctrl-C would."""
    original = ChunkStore.save
    count = []

    def save(self, *args):
        if len(count) == saves:
            raise KeyboardInterrupt
        count.append(1)
        return original(self, *args)

    monkeypatch.setattr(ChunkStore, "save", save)


def test_sample_summary_resumes_from_its_store(tmp_path, monkeypatch):
    model, interp, sched = _gm()
    args = (model, interp, sched, jax.random.PRNGKey(3), 100)
    whole = ns.sample_summary(*args, steps=8, chunk_size=32)
    store = ChunkStore(tmp_path / "store", {"run": 1})
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            ns.sample_summary(*args, steps=8, chunk_size=32, store=store)
    assert store.starts() == [0, 32]
    solved = _chunks_solved(monkeypatch)
    resumed = ns.sample_summary(*args, steps=8, store=store)  # chunk size from the store
    assert solved == [64, 96]
    assert resumed.metrics == whole.metrics
    assert all(np.array_equal(resumed.rows[k], whole.rows[k]) for k in whole.rows)
    # another fingerprint empties the folder instead of mixing its chunks in
    other = ChunkStore(tmp_path / "store", {"run": 2})
    assert other.starts() == []


def test_interrupted_run_leaves_no_result_and_resumes(tmp_path, monkeypatch):
    config = cfg.from_mapping({"model": {"d": 200}, "sample": {"n": 96, "chunk_size": 32},
                               "solver": {"steps": 6}, "output": {"figures": False}})
    fresh = run_experiment(config, tmp_path / "fresh", log=lambda *_: None)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, out, log=lambda *_: None)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.resume", "fresh"]
    solved = _chunks_solved(monkeypatch)
    logs = []
    result = run_experiment(config, out, log=logs.append)
    assert solved == [32, 64]
    assert "resuming, 1 finished chunk(s)" in logs[0]
    assert result["metrics"] == fresh["metrics"]
    assert result["scale"]["chunks_resumed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]


def test_interrupted_scaling_resumes_with_the_points_it_had(tmp_path, monkeypatch):
    config = scaling_mod.ScalingConfig(dims=(100, 1000), cases=("vp:constant", "vp:vp_dilated"))
    fresh = run_scaling_quietly(config, tmp_path / "fresh")
    original = scaling_mod.steps_needed
    calls = []

    def interrupted(config, kind, schedule, d):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append((kind, schedule, d))
        return original(config, kind, schedule, d)

    monkeypatch.setattr(scaling_mod, "steps_needed", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_scaling_quietly(config, out)
    assert not out.exists() or not (out / "scaling.json").exists()
    calls.clear()
    monkeypatch.setattr(scaling_mod, "steps_needed", original)
    computed = []
    monkeypatch.setattr(scaling_mod, "steps_needed",
                        lambda *a: computed.append(a[1:]) or original(*a))
    result = run_scaling_quietly(config, out)
    assert computed == [("vp", "vp_dilated", 1000)]  # the three finished points are kept
    assert result["rows"] == fresh["rows"] and result["slopes"] == fresh["slopes"]
    assert not resume_folder(out).exists()


def run_scaling_quietly(config, out):
    return scaling_mod.run_scaling(config, out, log=lambda *_: None)


def test_sigterm_stops_a_run_cleanly_and_the_rerun_resumes(tmp_path):
    """A real SIGTERM to `noisesched run`: exit status 143, one line, no result; the rerun
    solves only the chunks that had not finished."""
    config = tmp_path / "c.toml"
    config.write_text("name = 'c'\n[model]\nd = 2000\n[sample]\nn = 4096\nchunk_size = 256\n"
                      "[solver]\nsteps = 40\n[output]\nfigures = false\n")
    out = tmp_path / "out"
    env = dict(os.environ, NOISESCHED_NO_COMPILE_CACHE="1", JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "noisesched.cli", "run", str(config), "--out", str(out)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    store = resume_folder(out)
    deadline = time.monotonic() + 120
    while not list(store.glob("rows-*.npz")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().startswith("noisesched: terminated: no partial result was written")
    assert "\n" not in err.strip()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    finished = len(list(store.glob("rows-*.npz")))
    assert 1 <= finished < 16
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming, {finished} finished chunk(s)" in rerun.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["scale"]["chunks_resumed"] == finished
    assert not store.exists()


def test_reproduce_skips_the_parts_already_finished(tmp_path, monkeypatch):
    from noisesched.experiments import reproduce

    out = tmp_path / "out"
    quick = cfg.from_mapping({"name": "a", "model": {"d": 100}, "sample": {"n": 16},
                              "solver": {"steps": 4}, "output": {"figures": False}})
    run_experiment(quick, out / "runs" / "a", log=lambda *_: None)
    path = out / "runs" / "a" / "results.json"
    assert reproduce._finished(path, "config", quick.to_dict()) is not None
    # the resolved dict (what results.json records) is a config of its own
    assert cfg.from_mapping(quick.to_dict()).to_dict() == quick.to_dict()
    changed = cfg.from_mapping(cfg.merge(quick.to_dict(), {"solver": {"steps": 5}}))
    assert changed.solver.steps == 5
    assert reproduce._finished(path, "config", changed.to_dict()) is None
    params = {"dims": [50], "n": 16, "steps": 4}
    first = reproduce.k_mode_sweep(out, log=lambda *_: None, dims=(50,), n=16, steps=4)
    monkeypatch.setattr(reproduce, "sample", lambda *a, **k: pytest.fail("solved again"))
    again = reproduce.k_mode_sweep(out, log=lambda *_: None, dims=(50,), n=16, steps=4)
    assert json.loads(json.dumps(first)) == again and again["params"] == params


def test_same_key_and_config_give_identical_results_files(tmp_path):
    config = cfg.from_mapping({"model": {"name": "cw", "d": 150, "beta": 2.0},
                               "sample": {"n": 40}, "solver": {"steps": 5},
                               "output": {"figures": False}})
    a = run_experiment(config, tmp_path / "a", log=lambda *_: None)
    b = run_experiment(cfg.load(tmp_path / "a" / "results.json"), tmp_path / "b",
                       log=lambda *_: None)
    assert a["metrics"] == b["metrics"] and a["config"] == b["config"]
    env = a["environment"]
    assert {"jax", "jaxlib", "diffrax", "equinox", "optax", "noisesched", "backend",
            "devices"} <= set(env)
    assert a["config"]["sample"]["seed"] == 0


def test_cli_run_accepts_config_option_and_reruns_results(tmp_path, capsys):
    from noisesched.cli import main

    config = tmp_path / "c.toml"
    config.write_text("name = 'c'\n[model]\nd = 100\n[sample]\nn = 16\n[solver]\nsteps = 4\n"
                      "[output]\nfigures = false\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert main(["run", "--config", str(tmp_path / "a" / "results.json"),
                 "--out", str(tmp_path / "b")]) == 0
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert first["metrics"] == second["metrics"]
    capsys.readouterr()
    assert main(["run", str(config), "--config", str(config)]) == 2
    assert "run takes one config path (CONFIG or --config CONFIG); got both" in \
        capsys.readouterr().err
    assert main(["run"]) == 2
    assert "got none" in capsys.readouterr().err


def test_unwritable_output_is_one_line_status_1(tmp_path, capsys):
    from noisesched.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = tmp_path / "c.toml"
    config.write_text("[model]\nd = 100\n[sample]\nn = 8\n[solver]\nsteps = 2\n"
                      "[output]\nfigures = false\n")
    assert main(["run", str(config), "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisesched: error: cannot write or read") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "file"]


def test_results_file_is_never_half_written(tmp_path, monkeypatch):
    """A write interrupted midway leaves the old file (or none), never a truncated one."""
    from noisesched.experiments import io

    path = tmp_path / "r.json"
    io.write_json(path, {"a": 1})

    def failing_dump(data, f, **kwargs):
        f.write('{"a": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(io.json, "dump", failing_dump)
    with pytest.raises(KeyboardInterrupt):
        io.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in Path(tmp_path).iterdir()] == ["r.json"]


def test_out_of_memory_is_one_line_status_1_and_keeps_finished_chunks(tmp_path, monkeypatch,
                                                                        capsys):
    """What XLA raises when a device runs out of memory, in the middle of a run: the chunks
    finished before it are kept for the rerun."""
    import noisesched.streaming as streaming
    from noisesched.cli import main

    original = streaming._solve_rows
    calls = []

    def exhausted(model, interp, schedule, key, start, *args):
        calls.append(int(start))
        if len(calls) == 2:
            raise jax.errors.JaxRuntimeError(
                "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4294967296 bytes.")
        return original(model, interp, schedule, key, start, *args)

    monkeypatch.setattr(streaming, "_solve_rows", exhausted)
    config = tmp_path / "c.toml"
    config.write_text("[model]\nd = 100\n[sample]\nn = 64\nchunk_size = 32\n[solver]\nsteps = 2\n"
                      "[output]\nfigures = false\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("noisesched: error: out of memory; use fewer samples per solve (run: "
                   "--set sample.chunk_size=…, and a rerun resumes from the finished chunks; "
                   "demo: --n; fit and train: their batch) or a smaller d")
    assert cfg.load(config, ["sample.chunk_size=16"]).sample.chunk_size == 16  # as advised
    assert not (tmp_path / "out").exists()
    assert [p.name for p in resume_folder(tmp_path / "out").glob("rows-*")] == [
        "rows-000000000000.npz"]


def _run_failing_at(stage: str, error: BaseException, tmp_path, monkeypatch, capsys) -> str:
    """Run a tiny config whose ``noisesched.experiments.run.<stage>`` raises ``error``; the
    command's status must be 1. Returns what it printed on stderr."""
    import noisesched.experiments.run as run_mod
    from noisesched.cli import main

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(run_mod, stage, fails)
    config = tmp_path / "c.toml"
    config.write_text("[model]\nd = 20\n[sample]\nn = 8\n[solver]\nsteps = 2\n"
                      "[output]\nfigures = false\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()  # nothing published
    return capsys.readouterr().err


def test_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    """Seen in a hostile test: ENOSPC while writing results printed a traceback (its OSError
    names no file)."""
    import errno

    err = _run_failing_at("write_json", OSError(errno.ENOSPC, "No space left on device"),
                          tmp_path, monkeypatch, capsys)
    assert err.startswith("noisesched: error: no space left for the output")


@pytest.mark.parametrize("error", [
    jax.errors.JaxRuntimeError("INTERNAL: Failed to allocate 8589934592 bytes: out of memory"),
    MemoryError()])
def test_memory_failures_of_every_kind_are_one_line(tmp_path, monkeypatch, capsys, error):
    """Seen in a hostile test: an allocation failing inside an XLA runtime call (INTERNAL, not
    RESOURCE_EXHAUSTED) and NumPy's MemoryError printed tracebacks."""
    err = _run_failing_at("sample_summary", error, tmp_path, monkeypatch, capsys)
    assert err.startswith("noisesched: error: out of memory; use fewer")


def test_the_final_step_the_nan_message_advises_is_a_config_key(tmp_path):
    """Seen in a hostile test: a run whose solve left the finite numbers was told to try
    final_step='euler', which no config could set."""
    from noisesched.experiments import config as cfg
    from noisesched.sampling import NOISE_LEVEL_SOLVERS

    path = tmp_path / "c.toml"
    path.write_text("[model]\nd = 20\n[solver]\nname = \"heun\"\nfinal_step = \"euler\"\n")
    assert cfg.load(path).solver.options()["final_step"] == "euler"
    assert cfg.load(path, ["solver.final_step=solver"]).solver.options()["final_step"] == "solver"
    with pytest.raises(ValueError, match="solver.final_step = 'euler' does not apply"):
        cfg.load(path, [f"solver.name={sorted(NOISE_LEVEL_SOLVERS)[0]}"])
