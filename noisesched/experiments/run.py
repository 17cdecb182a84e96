"""``noisesched run``: one configured experiment → results.json (+ figures), written atomically."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from .._output import check_output_folder, staged
from ..interpolants import Interpolant
from ..models.base import check_data_law
from ..sampling import SCAN_SOLVERS, sample_prior, solve
from ..schedules import AbstractSchedule
from ..streaming import ChunkStore, check_memory, sample_summary, wait_interruptibly
from . import figures
from .config import RunConfig
from .io import environment, resume_folder, write_json


def build(config: RunConfig) -> tuple[Any, Interpolant, AbstractSchedule]:
    """(model, interpolant, schedule) of a config, each made by the library's constructor."""
    return config.build()


def exact_metrics(config: RunConfig) -> dict[str, float]:
    """Monte-Carlo-free values of the same discretisation, where the data law has an oracle
    (``AbstractDataLaw.exact_metrics``), computed in float64 from the config."""
    if config.solver.adaptive:
        return {}
    with jax.enable_x64(True):
        model64, interp64, schedule64 = build(config)
        return model64.exact_metrics(interp64, schedule64, config.solver.steps,
                                     config.solver.name)


#: config entries that change no chunk's statistics (chunk_size and devices stay in: chunks of
#: another size are no use, while 0, automatic, reuses the stored chunks' size)
_NOT_IN_FINGERPRINT = ("name", "output")


def run_experiment(config: RunConfig, out: str | Path, *, log=print) -> dict:
    """Run ``config``; write ``out/results.json`` and, if ``config.figures``, PNG figures with
    their data (``.npz``). Files appear in ``out`` only when the run has succeeded.

    Each finished chunk of samples is kept in a hidden sibling folder (``.OUT.resume``) until
    the run succeeds: an interrupted run, started again with the same config and ``out``,
    solves only the chunks it had not finished."""
    out = check_output_folder(out)
    x64 = config.sample.dtype == "float64"
    store = None
    if jax.process_count() == 1:  # several processes would write the same chunks
        fingerprint = {k: v for k, v in config.identity().items() if k not in _NOT_IN_FINGERPRINT}
        fingerprint["backend"] = jax.default_backend()
        store = ChunkStore(resume_folder(out), fingerprint)
    with jax.enable_x64(x64), _staging(out) as stage:
        result = _run(config, stage, log, store)
    if store is not None:
        store.remove()
    return result


def _run(config: RunConfig, stage: Path, log, store: ChunkStore | None = None) -> dict:
    start = time.perf_counter()
    model, interp, schedule = build(config)
    check_data_law(model, "noisesched run")
    dtype = jnp.float64 if config.sample.dtype == "float64" else jnp.float32
    key = jax.random.PRNGKey(config.sample.seed)
    options: dict[str, Any] = config.solver.options()
    figures_on = config.output.figures
    traj = min(config.output.trajectories, config.sample.n) if figures_on else 0
    if traj:  # the observed paths are solved in one piece, on one device, after the samples
        check_memory(model.d, traj, dtype, jax.devices()[:1], steps=config.solver.steps,
                     adaptive=config.solver.adaptive, rows_name="output.trajectories")
    solve_start = time.perf_counter()
    resumed = len(store.starts()) if store is not None else 0
    if resumed:
        log(f"{config.name}: resuming, {resumed} finished chunk(s) kept from an interrupted run")
    streamed = sample_summary(model, interp, schedule, key, config.sample.n, dtype=dtype,
                              chunk_size=config.sample.chunk_size, devices=config.sample.devices,
                              shard=config.sample.shard, store=store, **options)
    solve_seconds = time.perf_counter() - solve_start
    results = dict(streamed.metrics)
    results.update(exact_metrics(config))
    files = []
    if figures_on:
        title = (f"{config.name}: {config.model.name}, d={model.d}, {interp.kind} {interp.shape}, "
                 f"{config.schedule.name}, N={config.solver.steps} {config.solver.name}")
        if traj:  # the first rows of the batch again, with their paths observed
            def observe(x):
                return model.overlap(x)[:, 0], x[: min(traj, 4), :3]

            x0 = sample_prior(interp, key, traj, dtype=dtype, schedule=schedule)
            # observed paths are of the whole state: one pass per step
            options = dict(options, row_block="auto")
            if not config.solver.adaptive and config.solver.name in SCAN_SOLVERS:
                # the same numbers; diffrax's checks of saved times would be host callbacks,
                # which keep a program out of the persistent compilation cache
                options = dict(options, method="scan")
            sol = wait_interruptibly(solve(model, interp, schedule, x0, observe=observe,
                                           **options))
            assert sol.observables is not None
            overlaps, coordinates = sol.observables
            files += figures.save(stage, "trajectories", *figures.trajectories(
                sol.ts, overlaps, coordinates, title, model.overlap_label))
        final = figures.final_features(model, streamed.rows, title)
        if final is not None:
            files += figures.save(stage, "final", *final)
    result = {
        "command": "run",
        "config": config.to_dict(),
        "metrics": results,
        "features": [f._asdict() for f in model.features],
        "num_steps": streamed.num_steps,
        "timings": {"total_seconds": time.perf_counter() - start,
                    "solve_seconds_with_compile": solve_seconds},
        "scale": {"chunk_size": streamed.chunk_size, "devices": streamed.devices,
                  "shard": streamed.shard,
                  "chunks": -(-config.sample.n // streamed.chunk_size),
                  "chunks_resumed": resumed},
        "files": files,
        "environment": environment(),
    }
    write_json(stage / "results.json", result)
    log(f"{config.name}: {model.describe(results)}")
    return result


@contextlib.contextmanager
def _staging(out: Path):
    """A temporary sibling folder whose files replace those of the previous result in ``out``
    only on success (``noisesched._output.staged``). In a multi-process run only process 0
    writes; the others' files are discarded."""
    if jax.process_index() != 0:
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)
        return
    with staged(out) as stage:
        yield stage
