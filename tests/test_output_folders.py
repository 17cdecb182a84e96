"""Output folders hold exactly one result, one command at a time; what cannot run is refused
before any work, with one line and status 2."""

import json
import os
import signal
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import result_files

import noisesched as ns
from noisesched import streaming
from noisesched._interrupt import Terminated, handling_signals, raise_if_pending
from noisesched._output import MANIFEST, locked, publish, staged
from noisesched.cli import main
from noisesched.experiments import config as cfg
from noisesched.experiments import fit as fit_mod
from noisesched.experiments import run as run_mod
from noisesched.learning.export import read_schedule_file, save_schedule
from noisesched.learning.families import PiecewiseLinear

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GM, CW = str(CONFIGS / "gm_vp_constant.toml"), str(CONFIGS / "cw_vp_dilated.toml")
SMALL = ["--set", "model.d=40", "sample.n=64", "solver.steps=4", "output.trajectories=8"]


def _no_solve(monkeypatch):
    """Fail the test if a run gets as far as solving."""
    def refuse(*args, **kwargs):
        raise AssertionError("a solve started")

    monkeypatch.setattr(run_mod, "sample_summary", refuse)


# ----------------------------------------------------------------------------- one result
def test_a_reused_folder_holds_the_last_runs_files_only(tmp_path):
    out = tmp_path / "X"
    assert main(["run", GM, *SMALL, "--out", str(out)]) == 0
    assert result_files(out) == ["final.npz", "final.png", "results.json", "trajectories.npz",
                                 "trajectories.png"]
    assert main(["run", CW, *SMALL, "output.figures=false", "--out", str(out)]) == 0
    assert result_files(out) == ["results.json"]
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["model"]["name"] == "cw" and result["files"] == []
    assert json.loads((out / MANIFEST).read_text())["files"] == ["results.json"]
    # nothing else beside the folder: no staging folder, no lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]


def test_a_folder_with_other_files_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "X"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()  # a folder inside (another run's) is never counted
    _no_solve(monkeypatch)
    assert main(["run", GM, *SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds files that no noisesched command wrote (notes.txt)" in err
    assert "\n" not in err
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]
    # the same for the demo: checked before its four solves
    assert main(["demo", "--d", "40", "--n", "16", "--steps", "2", "--out", str(out)]) == 2
    assert "notes.txt" in capsys.readouterr().err


def test_a_results_file_of_no_noisesched_command_is_the_users(tmp_path, monkeypatch):
    """A results.json that this package did not write (no version recorded) names no files of
    a previous result: the folder is refused, nothing of it is removed, and a folder's own
    permissions are kept."""
    out = tmp_path / "U"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"files": ["thesis.tex"]}))
    (out / "thesis.tex").write_text("mine")
    _no_solve(monkeypatch)
    with pytest.raises(ValueError, match=r"holds files that no noisesched command wrote "
                                         r"\(results.json, thesis.tex\)"):
        run_mod.check_output_folder(out)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with staged(private) as stage:
        (stage / "results.json").write_text("{}")
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_publishing_replaces_the_previous_files_and_keeps_folders(tmp_path):
    out = tmp_path / "out"
    for names in (["a.png", "results.json"], ["b.png", "results.json"]):
        with staged(out) as stage:
            for name in names:
                (stage / name).write_text(name)
        (out / "inner").mkdir(exist_ok=True)
        assert result_files(out) == sorted([*names, "inner"])
    # a result of an earlier version, recorded in its results.json only
    os.remove(out / MANIFEST)
    (out / "results.json").write_text(json.dumps({"files": ["b.png"],
                                                  "environment": {"noisesched": "0.1.0"}}))
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "results.json").write_text("{}")
    assert publish(stage, out) == ["results.json"]
    assert result_files(out) == ["inner", "results.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_published_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        out = tmp_path / "out"
        with staged(out) as stage:
            (stage / "results.json").write_text("{}")
            ns.experiments.io.write_json(stage / "more.json", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for name in ("results.json", "more.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask


# ----------------------------------------------------------------------------- one command
def test_a_folder_in_use_is_refused_naming_its_holder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "X"
    _no_solve(monkeypatch)
    with locked(out, "run"):
        assert main(["run", GM, *SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(out)!r} is in use by process {os.getpid()} on " in err
    assert "(noisesched run, since" in err
    assert not (tmp_path / ".X.lock").exists()  # released


def test_a_link_or_a_relative_path_to_a_folder_in_use_is_refused(tmp_path, monkeypatch, capsys):
    """Seen in a hostile test: the lock was keyed on the path as written, so ``--out .`` from
    inside the folder, or a link to it, ran a second command into a folder in use."""
    out = tmp_path / "X"
    out.mkdir()
    (tmp_path / "link").symlink_to(out)
    _no_solve(monkeypatch)
    monkeypatch.chdir(out)
    with locked(out, "run"):
        for given in (".", str(tmp_path / "link"), "../X", str(out) + "/"):
            assert main(["run", GM, *SMALL, "--out", given]) == 2
            assert f"--out {given!r} is in use by process {os.getpid()}" in (
                capsys.readouterr().err)
    with pytest.raises(ValueError, match="is the root folder"), locked("/", "run"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "link"]


def test_staging_folders_of_a_killed_process_are_removed(tmp_path):
    stale = tmp_path / ".X.partial-abc123"
    stale.mkdir()
    (stale / "results.json").write_text("{}")
    other = tmp_path / ".Y.partial-abc123"  # another folder's: not this lock holder's to remove
    other.mkdir()
    with locked(tmp_path / "X", "run"):
        assert not stale.exists() and other.exists()


# ----------------------------------------------------------------------------- names, files
@pytest.mark.parametrize("name", ["../../escaped", "", ".hidden", "a/b", "-x", "x" * 129])
def test_a_config_name_must_be_a_plain_folder_name(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    _no_solve(monkeypatch)
    assert main(["run", GM, *SMALL, f"name={json.dumps(name)}"]) == 2
    assert "name must be a plain folder name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_config_files_that_cannot_be_read_say_why(tmp_path):
    with pytest.raises(cfg.ConfigError, match="is a folder; give a .toml config"):
        cfg.load(tmp_path)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbfname = 'bom'\n[model]\nd = 50\n")
    assert cfg.load(bom).name == "bom" and cfg.load(bom).d == 50
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"name = 'caf\xe9'\n")
    with pytest.raises(cfg.ConfigError, match="not UTF-8 text"):
        cfg.load(latin)
    demo = tmp_path / "results.json"
    demo.write_text(json.dumps({"config": {"d": 400, "n": 256}, "results": []}))
    with pytest.raises(cfg.ConfigError, match="result of noisesched demo, not of a run"):
        cfg.load(demo)
    demo.write_text(json.dumps({"command": "demo", "config": {"d": 400}}))
    with pytest.raises(cfg.ConfigError, match="result of noisesched demo"):
        cfg.load(demo)
    # a fit's history.json (as a fit writes it now, and before it recorded its command) ran
    # the base schedule silently; a scaling's and a training's record likewise
    config = {"model": {"name": "gm", "d": 50}}
    for record, command in [({"command": "fit", "config": config}, "fit"),
                            ({"config": config, "fit": {"family": "piecewise_linear"}}, "fit"),
                            ({"config": config, "slopes": {}}, "scaling"),
                            ({"config": config, "parameters": 10}, "train"),
                            ({"command": "compare", "config": config}, "compare")]:
        demo.write_text(json.dumps(record))
        with pytest.raises(cfg.ConfigError, match=f"result of noisesched {command}, not of a "):
            cfg.load(demo)
    demo.write_text(json.dumps({"command": "run", "config": config}))
    assert cfg.load(demo).d == 50
    for empty in ({}, [1, 2], {"model": {}}, {"name": "x"}):
        demo.write_text(json.dumps({"command": "run", "config": empty}))
        with pytest.raises(cfg.ConfigError, match="its 'config' must be a table of settings"):
            cfg.load(demo)


def test_a_schedule_file_of_another_version_is_refused(tmp_path):
    path = save_schedule(PiecewiseLinear([0.1, 0.2, 0.3]), tmp_path / "s.json")
    assert read_schedule_file(path)[0] == "piecewise_linear"
    data = json.loads(path.read_text())
    data["version"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version 2, while this release of noisesched reads "
                                         "version 1"):
        read_schedule_file(path)
    with pytest.raises(cfg.ConfigError, match="version 2"):
        cfg.load(CONFIGS / "gm_vp_constant.toml", [f"schedule.name=@{path}"])


@pytest.mark.parametrize("args, match", [
    (["run", GM, "--set", "model.d=100000000000000000000"],
     r"model.d must be an integer in \[1, 2\^63 - 1\]"),
    (["run", GM, "--set", "sample.seed=18446744073709551616"],
     r"sample.seed must be an integer in \[0, 9223372036854775807\]"),
    (["demo", "--d", "100000000000000000000", "--out", "o"], r"d must be an integer in"),
])
def test_integers_beyond_64_bits_are_refused(tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("noisesched: error: ") and "\n" not in err.strip()
    assert __import__("re").search(match, err)
    assert list(tmp_path.iterdir()) == []


def test_tiny_metrics_are_printed_with_their_digits():
    model = ns.GaussianMixture.two_modes(d=10, sigma=1e-3)
    line = model.describe({"within_mode_var": 1.02e-6, "within_mode_var_target": 1e-6,
                           "mode_weight": 0.8})
    assert "within-mode variance 1.02e-06 (target 1e-06)" in line
    assert "mode weight 0.8000" in line


# ----------------------------------------------------------------------------- memory, time
def test_memory_estimate_bounds_the_compiled_solves_memory():
    """The check's estimate against XLA's own accounting of the compiled chunk solve."""
    devices = streaming.resolve_devices(1)
    sharding = streaming.batch_sharding(devices)
    d, rows, steps = 512, 64, 300
    interp = ns.Interpolant("vp", "linear", d)
    gm, cw = ns.GaussianMixture.two_modes(d), ns.CurieWeiss(d, beta=2.0)
    for model, options in ((gm, {"solver": "euler"}), (cw, {"solver": "heun", "method": "scan"}),
                           (gm, {"solver": "dopri5", "adaptive": True})):
        compiled = streaming._solve_rows.lower(
            model, interp, ns.schedules.vp_dilated(d), jax.random.PRNGKey(0), jnp.asarray(0),
            rows, jnp.float32, sharding, "rows", dict(options, steps=steps)).compile()
        used = compiled.compiled.memory_analysis()
        used = used.temp_size_in_bytes + used.argument_size_in_bytes + used.output_size_in_bytes
        estimate = streaming.solve_memory_bytes(d, rows, jnp.float32, devices, steps=steps,
                                                adaptive=bool(options.get("adaptive")))
        assert used <= estimate <= 2 * used, (type(model).__name__, options)


def test_memory_is_checked_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(streaming, "_device_memory", lambda device: 10**7)  # 10 MB free
    solved = []
    monkeypatch.setattr(streaming, "_solve_rows", lambda *a: solved.append(a))
    out = tmp_path / "X"
    cases = [(["solver.steps=1000000"], "steps = 1000000 needs about 32 MB for the time grid's "
              "tables alone and 10 MB are free on the host: use fewer steps"),
             (["model.d=1000000"], "a sample of d = 1000000 needs about 24 MB for its solve"),
             (["model.d=2000", "sample.n=8192", "sample.chunk_size=4096"],
              "4096 samples of d = 2000 need about 197 MB and 10 MB are free on the host: set "
              "chunk_size to at most 208 (or 0: sized from the free memory)"),
             (["model.d=20000", "sample.n=256", "output.trajectories=200"],
              "200 samples of d = 20000 need about 96 MB and 10 MB are free on the host: set "
              "output.trajectories to at most 20")]
    for overrides, message in cases:
        assert main(["run", GM, *SMALL, *overrides, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err, err
    assert solved == [] and list(tmp_path.iterdir()) == []


def test_the_demo_checks_its_memory_before_any_work(tmp_path, monkeypatch, capsys):
    """Seen in a hostile test: ``demo --d 1000000000`` started its first solve and died in the
    runtime's allocator."""
    monkeypatch.setattr(streaming, "_device_memory", lambda device: 10**7)  # 10 MB free
    import noisesched.experiments.demo as demo_mod
    monkeypatch.setattr(demo_mod, "sample", lambda *a, **k: pytest.fail("solved"))
    out = tmp_path / "D"
    assert main(["demo", "--d", "1000000000", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "noisesched: error: a sample of d = 1000000000 needs about 24 GB for its solve and "
        "10 MB are free on the host: reduce d")
    assert main(["demo", "--d", "2000", "--n", "4096", "--out", str(out)]) == 2
    assert "4096 samples of d = 2000 need about 197 MB and 10 MB are free on the host: set " \
        "--n to at most 208" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_demo_refuses_an_unresolved_spread_before_printing(tmp_path, monkeypatch, capsys):
    import noisesched.experiments.demo as demo_mod
    monkeypatch.setattr(demo_mod, "sample", lambda *a, **k: pytest.fail("solved"))
    out = tmp_path / "D"
    assert main(["demo", "--d", "200", "--n", "16", "--m", "1e6", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("noisesched: error: sigma must be at least 3.58 for samples "
                                   "in float32")
    assert list(tmp_path.iterdir()) == []


def test_a_chunk_on_a_cpu_is_bounded_in_work(monkeypatch):
    devices = streaming.resolve_devices(1)
    monkeypatch.setattr(streaming, "_device_memory", lambda device: 10**12)
    assert streaming.auto_chunk_size(10_000, jnp.float32, devices, steps=100) == (
        streaming.CPU_CHUNK_WORK // 10**6)
    assert streaming.auto_chunk_size(10**8, jnp.float32, devices, steps=100) == 1
    by_memory = streaming.auto_chunk_size(10_000, jnp.float32, devices)
    assert by_memory == 10**12 // 4 // (4 * 10_000 * 4)


def test_a_chunk_is_bounded_by_the_models_work(monkeypatch):
    """Seen in a hostile test: ``cw_exact`` (hundreds of quadrature points per entry) got the
    mixture's chunk, minutes of work lost to a SIGTERM. A chunk's rows scale with
    1/work_per_entry, which each model states."""
    devices = streaming.resolve_devices(1)
    monkeypatch.setattr(streaming, "_device_memory", lambda device: 10**12)
    mixture = ns.GaussianMixture.two_modes(d=1000)
    exact = ns.CurieWeissExact(d=1000, beta=2.0)
    assert mixture.work_per_entry() == 1.0 and ns.CurieWeiss(d=1000, beta=1.5).work_per_entry() > 1
    assert exact.work_per_entry() == 2 * exact._global_grid() > 500
    rows = [streaming.auto_chunk_size(1000, jnp.float32, devices, steps=100,
                                      work_per_entry=m.work_per_entry()) for m in (mixture, exact)]
    assert rows == [streaming.CPU_CHUNK_WORK // 10**5,
                    int(streaming.CPU_CHUNK_WORK // (10**5 * exact.work_per_entry()))]
    with pytest.raises(ValueError, match="work_per_entry"):
        streaming.auto_chunk_size(1000, jnp.float32, devices, steps=100, work_per_entry=0.0)
    planned = []
    monkeypatch.setattr(streaming, "check_memory", lambda d, rows, *a, **k: planned.append(rows))
    streaming._plan(exact, ns.Interpolant("vp", "linear", 1000), 10**4, jnp.float32, None, 1,
                    {"steps": 100})
    assert planned == [rows[1]]


def test_waiting_for_a_computation_lets_signal_handlers_run():
    """A handler runs while the computation is still going (a blocking wait would defer it to
    the end); nothing is timed but the handler's alarm."""
    @jax.jit
    def slow(x):
        return jax.lax.fori_loop(0, 3_000, lambda i, y: jnp.sin(y) * 1.0001, x)

    x = jnp.ones((1000, 1000))
    slow(x[:2, :2]).block_until_ready()  # compiled for another shape: the first call compiles

    class Alarm(Exception):
        pass

    def ring(signum, frame):
        raise Alarm

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        y = slow(x)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Alarm):
            streaming.wait_interruptibly(y)
        assert not y.is_ready()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    y.block_until_ready()
    assert streaming.wait_interruptibly({"a": y, "b": 3})["b"] == 3


class _SignalledOnCollection:
    """Sends ``signum`` to this process while it is being collected: the handler's exception is
    raised inside ``__del__``, where Python prints it as ignored and carries on."""

    def __init__(self, signum):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        for _ in range(100):  # the handler runs at the next check of the interpreter's loop
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowing
@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated),
                                            (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_swallowed_by_a_collector_still_ends_the_command(tmp_path, signum, raised):
    """Seen in a hostile test: SIGTERM arriving inside a garbage-collection callback of the
    array runtime was printed as "ignored", and the run went on to publish its result and exit
    0. The signal is remembered: waits, the publication of a result and the command's end raise
    it again."""
    with pytest.raises(raised), handling_signals():
        obj = _SignalledOnCollection(signum)
        del obj  # swallowed here
        with pytest.raises(raised):
            streaming.wait_interruptibly(jnp.ones(3) + 1)  # polled while not ready, or skipped
            raise_if_pending()
        with pytest.raises(raised), staged(tmp_path / "out") as stage:
            (stage / "results.json").write_text("{}")
        assert not (tmp_path / "out").exists()  # nothing published
    with handling_signals():  # the next command starts without the old signal
        raise_if_pending()


# ----------------------------------------------------------------------------- fit
def test_a_fit_interrupted_in_its_evaluation_writes_nothing_and_resumes(tmp_path, monkeypatch,
                                                                       capsys):
    from test_fit_cli import _config

    config = _config(tmp_path, family="piecewise_linear")
    out = tmp_path / "out"
    original = fit_mod._evaluate_all

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_mod, "_evaluate_all", interrupted)
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 130
    assert capsys.readouterr().err.startswith("noisesched: interrupted: no partial result")
    assert result_files(out) == ["checkpoint.eqx", "checkpoint.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.toml", "out"]
    monkeypatch.setattr(fit_mod, "_evaluate_all", original)
    assert main(["fit", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert set(result_files(out)) == set(history["files"])
    assert history["iterations"] == 6 and len(history["loss"]) == 6
    assert np.isfinite(history["loss"]).all()
