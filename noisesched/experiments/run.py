"""``noisesched run``: one configured experiment → results.json (+ figures), written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from .. import theory
from ..interpolants import Interpolant
from ..learning.export import load_schedule
from ..models import AbstractModel, CurieWeiss, GaussianMixture
from ..sampling import SCAN_SOLVERS, sample_prior, solve
from ..schedules import AbstractSchedule, ScheduleKindWarning, make
from ..streaming import ChunkStore, sample_summary
from . import figures
from .config import RunConfig
from .io import environment, resume_folder, write_json


def build(config: RunConfig) -> tuple[AbstractModel, Interpolant, AbstractSchedule]:
    """(model, interpolant, schedule) of a validated config. ``schedule = "@path"`` reads a file
    written by ``noisesched.learning.save_schedule``."""
    interp = Interpolant(kind=config.kind, shape=config.shape, d=config.d)
    if config.schedule.startswith("@"):  # a saved (learned) schedule
        schedule = load_schedule(config.schedule[1:], interp)
    else:
        options = {"cosine": {"offset": config.offset},
                   "karras": {"sigma_min": config.sigma_min, "sigma_max": config.sigma_max,
                              "rho": config.rho}}.get(config.schedule, {})
        with warnings.catch_warnings():  # said once, when the config was validated
            warnings.simplefilter("ignore", ScheduleKindWarning)
            schedule = make(config.schedule, interp, k=config.k, **options)
    model: AbstractModel
    if config.model == "cw":
        if config.cw_form == "exact":
            from ..models import CurieWeissExact

            model = CurieWeissExact(d=config.d, beta=config.beta_cw, h=config.h)
        else:
            model = CurieWeiss(d=config.d, beta=config.beta_cw, h=config.h)
    elif config.K == 2 and not config.weights:
        model = GaussianMixture.two_modes(d=config.d, p=config.p, m=config.m, sigma=config.sigma)
    else:
        directions = jax.random.normal(jax.random.PRNGKey(config.means_seed), (config.K, config.d))
        model = GaussianMixture(config.weights, config.m * directions, config.sigma)
    return model, interp, schedule


def exact_metrics(config: RunConfig, model, interp, schedule) -> dict[str, float]:
    """Monte-Carlo-free values of the same discretisation, where the theory has them."""
    out: dict[str, float] = {}
    if (theory.TwoModeReduction.applies(model) and not config.adaptive
            and config.solver in theory.ORACLE_SOLVERS):
        with jax.enable_x64(True):
            model64, interp64, schedule64 = build(config)
            assert isinstance(model64, GaussianMixture)  # TwoModeReduction.applies
            exact = theory.gm_oracle(model64, interp64, schedule64, config.steps, config.solver)
        out["mode_weight_exact"] = float(exact["mode_weight"])
        out["within_mode_var_exact"] = float(exact["within_mode_var"])
    return out


#: config keys that change no chunk's statistics (chunk_size and devices stay in: chunks of
#: another size are no use, while 0, automatic, reuses the stored chunks' size)
_NOT_IN_FINGERPRINT = ("name", "figures", "trajectories")


def run_experiment(config: RunConfig, out: str | Path, *, log=print) -> dict:
    """Run ``config``; write ``out/results.json`` and, if ``config.figures``, PNG figures with
    their data (``.npz``). Files appear in ``out`` only when the run has succeeded.

    Each finished chunk of samples is kept in a hidden sibling folder (``.OUT.resume``) until
    the run succeeds: an interrupted run, started again with the same config and ``out``,
    solves only the chunks it had not finished."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    x64 = config.dtype == "float64"
    store = None
    if jax.process_count() == 1:  # several processes would write the same chunks
        fingerprint = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_FINGERPRINT}
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
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    key = jax.random.PRNGKey(config.seed)
    options: dict[str, Any] = {
        "steps": config.steps, "solver": config.solver, "method": config.method,
        "adaptive": config.adaptive, "rtol": config.rtol, "atol": config.atol,
        "max_steps": config.max_steps}
    solve_start = time.perf_counter()
    resumed = len(store.starts()) if store is not None else 0
    if resumed:
        log(f"{config.name}: resuming, {resumed} finished chunk(s) kept from an interrupted run")
    streamed = sample_summary(model, interp, schedule, key, config.n, dtype=dtype,
                              chunk_size=config.chunk_size, devices=config.devices, store=store,
                              **options)
    solve_seconds = time.perf_counter() - solve_start
    results = dict(streamed.metrics)
    results.update(exact_metrics(config, model, interp, schedule))
    files = []
    traj = min(config.trajectories, config.n) if config.figures else 0
    if config.figures:
        title = (f"{config.name}: {config.model}, d={config.d}, {config.kind} {config.shape}, "
                 f"{config.schedule}, N={config.steps} {config.solver}")
        if traj:  # the first rows of the batch again, with their paths observed
            def observe(x):
                return model.overlap(x)[:, 0], x[: min(traj, 4), :3]

            x0 = sample_prior(interp, key, traj, dtype=dtype)
            if not config.adaptive and config.solver in SCAN_SOLVERS:
                # the same numbers; diffrax's checks of saved times would be host callbacks,
                # which keep a program out of the persistent compilation cache
                options = dict(options, method="scan")
            sol = solve(model, interp, schedule, x0, observe=observe, **options)
            label = "overlap $M_t$" if config.model == "gm" else "magnetisation $M_t$"
            assert sol.observables is not None
            overlaps, coordinates = sol.observables
            files += figures.save(stage, "trajectories", *figures.trajectories(
                sol.ts, overlaps, coordinates, title, label))
        files += figures.save(stage, "final",
                              *figures.final_histograms(model, streamed.rows, title))
    result = {
        "config": config.to_dict(),
        "metrics": results,
        "num_steps": streamed.num_steps,
        "timings": {"total_seconds": time.perf_counter() - start,
                    "solve_seconds_with_compile": solve_seconds},
        "scale": {"chunk_size": streamed.chunk_size, "devices": streamed.devices,
                  "chunks": -(-config.n // streamed.chunk_size), "chunks_resumed": resumed},
        "files": files,
        "environment": environment(),
    }
    write_json(stage / "results.json", result)
    log(_summary_line(config, results))
    return result


def _summary_line(config, r) -> str:
    if config.model == "gm":
        line = (f"{config.name}: mode weight {r['mode_weight']:.4f} (target "
                f"{r['mode_weight_target']:.4f}), within-mode var {r['within_mode_var']:.4f} "
                f"(target {r['within_mode_var_target']:.4f})")
        if "mode_weight_exact" in r:
            line += (f"; exact for this discretisation {r['mode_weight_exact']:.4f}, "
                     f"{r['within_mode_var_exact']:.4f}")
        return line
    return (f"{config.name}: positive fraction {r['mode_weight']:.4f} (target "
            f"{r['mode_weight_target']:.4f}), mean x² {r['mean_sq']:.4f} (target 1), "
            f"|magnetisation| {r['mean_abs_magnetization']:.4f} (m = {r['m']:.4f})")


@contextlib.contextmanager
def _staging(out: Path):
    """A temporary sibling folder whose files move into ``out`` only on success. In a
    multi-process run only process 0 writes; the others' files are discarded."""
    if jax.process_index() != 0:
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield stage
        if out.exists():
            for item in stage.iterdir():
                os.replace(item, out / item.name)
            stage.rmdir()
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
