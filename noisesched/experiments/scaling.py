"""``noisesched scaling``: the fewest steps N*(d) that get both features right, against d.

For each schedule and each d, N* is the smallest N with |p̂ − p| ≤ ``tol_weight`` and
|var/σ² − 1| ≤ ``tol_var``, where p̂ and var are the *exact* values of the N-step solve from the
two-mode reduction (``noisesched.theory.gm_oracle``): no Monte Carlo noise, any d. The search
doubles N until the criterion holds, then bisects. The slope of log N* against log d is fitted
by least squares: ½ for constant schedules (N ∝ √d), 0 for dilated ones. Optionally the
full-dimensional sampler is run at N* for the smaller d, as a Monte Carlo check of the oracle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import tomllib
from pathlib import Path

import jax
import numpy as np

from .. import metrics, theory
from .._atomic import claim_folder
from .._progress import progress_bar
from .._validation import check_choice, check_int, check_positive, check_real
from ..interpolants import Interpolant
from ..models import GaussianMixture
from ..sampling import sample
from ..schedules import make
from .config import ConfigError, suggest
from .io import environment, resume_folder, save_figure, write_json

CASES = ("vp:constant", "ve:constant", "vp:vp_dilated", "ve:ve_dilated")


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    name: str = "scaling_gm"
    dims: tuple[int, ...] = (10**2, 10**3, 10**4, 10**5, 10**6, 10**7, 10**8)
    cases: tuple[str, ...] = CASES
    shape: str = "linear"
    solver: str = "euler"
    p: float = 0.8
    m: float = 1.0
    sigma: float = 0.5
    k: float = 3.0
    tol_weight: float = 0.01
    tol_var: float = 0.1
    max_steps: int = 1_000_000
    full_d_max: int = 0  # run the full sampler at N* for d up to this (0: never)
    n_full: int = 2000
    seed: int = 0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "dims": list(self.dims), "cases": list(self.cases)}

    def __post_init__(self):
        try:
            if not self.dims:
                raise ConfigError("dims must list at least two dimensions")
            for d in self.dims:
                check_int("dims[]", d, lo=2)
            if len(set(self.dims)) < 2:
                raise ConfigError("dims must list at least two different dimensions")
            for case in self.cases:
                kind, _, sched = case.partition(":")
                check_choice("cases[] kind", kind, ("vp", "ve"))
                check_choice("cases[] schedule", sched, ("constant", "vp_dilated", "ve_dilated"))
            check_choice("shape", self.shape, ("linear", "trig"))
            check_choice("solver", self.solver, theory.ORACLE_SOLVERS)
            check_real("p", self.p, 0.0, 1.0)
            check_positive("m", self.m)
            check_positive("sigma", self.sigma)
            check_real("k", self.k, 0.0, math.sqrt(min(self.dims)))
            check_positive("tol_weight", self.tol_weight)
            check_positive("tol_var", self.tol_var)
            check_int("max_steps", self.max_steps, lo=1)
            check_int("full_d_max", self.full_d_max, lo=0)
            check_int("n_full", self.n_full, lo=1)
            check_int("seed", self.seed, lo=0)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None


def load_scaling(path: str | Path) -> ScalingConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    fields = {f.name for f in dataclasses.fields(ScalingConfig)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown scaling key {key!r}" + suggest(key, sorted(fields)))
        if key == "dims":
            if not isinstance(value, list):
                raise ConfigError(f"dims must be a list of integers; got {value!r}")
            value = tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in value)
        elif key == "cases":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"cases must be a list of 'kind:schedule' strings; got {value!r}")
            value = tuple(value)
        values[key] = value
    return ScalingConfig(**values)


def _criterion(config: ScalingConfig, exact) -> bool:
    return (abs(float(exact["mode_weight"]) - config.p) <= config.tol_weight
            and abs(float(exact["within_mode_var"]) / config.sigma**2 - 1) <= config.tol_var)


def steps_needed(config: ScalingConfig, kind: str, schedule_name: str, d: int
                 ) -> tuple[int | None, int]:
    """(N*, number of oracle evaluations); N* is None if it exceeds ``max_steps``."""
    with jax.enable_x64(True):
        model = theory.TwoModeReduction.two_modes(d, p=config.p, m=config.m, sigma=config.sigma)
        interp = Interpolant(kind=kind, shape=config.shape, d=d)
        sched = make(schedule_name, interp, k=config.k)
        oracle = jax.jit(lambda n: theory.gm_oracle(model, interp, sched, n, config.solver))
        calls = 0

        def ok(n):
            nonlocal calls
            calls += 1
            return _criterion(config, oracle(n))

        hi = 1
        while not ok(hi):
            if hi >= config.max_steps:
                return None, calls
            hi = min(2 * hi, config.max_steps)
        lo = hi // 2  # criterion fails at lo (or lo = 0)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi, calls


def fit_slope(dims, steps) -> float:
    """Least-squares slope of log N* on log d."""
    x, y = np.log(np.asarray(dims, float)), np.log(np.asarray(steps, float))
    return float(np.polyfit(x, y, 1)[0])


def run_scaling(config: ScalingConfig, out: str | Path, *, log=print) -> dict:
    """N*(d) for every case and dimension of ``config``; writes ``out/scaling.json`` and
    ``out/scaling.png``. Each finished (case, d) point is kept in a hidden sibling folder
    (``.OUT.resume``) until the study succeeds: an interrupted study, started again with the
    same config and ``out``, computes only the points it had not finished."""
    out = Path(out)
    folder = resume_folder(out)
    if folder.exists():  # emptied if it holds the points of another config
        claim_folder(folder, config.to_dict())
    progress = folder / "rows.json"
    rows = json.loads(progress.read_text()) if progress.is_file() else []
    finished = {(r["case"], r["d"]) for r in rows}
    if finished:
        log(f"{config.name}: resuming, {len(finished)} finished point(s) kept from an "
            "interrupted study")
    points = [(case, d) for case in config.cases for d in config.dims]
    start = time.perf_counter()
    bar = progress_bar(len(points), desc=config.name,
                       initial=sum(point in finished for point in points))
    try:
        for case, d in points:
            if (case, d) in finished:
                continue
            kind, _, sched = case.partition(":")
            n_star, calls = steps_needed(config, kind, sched, d)
            row = {"case": case, "d": d, "steps": n_star, "oracle_calls": calls}
            if n_star is not None and d <= config.full_d_max:
                row["full_d"] = _full_check(config, kind, sched, d, n_star)
            rows.append(row)
            claim_folder(folder, config.to_dict())
            write_json(progress, rows)
            bar.set_postfix_str(f"{case} d={d:.0e}: N*={n_star}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    slopes = {}
    for case in config.cases:
        pts = [(r["d"], r["steps"]) for r in rows if r["case"] == case and r["steps"]]
        slopes[case] = fit_slope(*zip(*pts, strict=True)) if len(pts) >= 2 else None
    order = {(case, d): i for i, (case, d) in enumerate(
        (case, d) for case in config.cases for d in config.dims)}
    rows.sort(key=lambda r: order[(r["case"], r["d"])])
    result = {"config": config.to_dict(),
              "rows": rows, "slopes": slopes, "seconds": time.perf_counter() - start,
              "environment": environment()}
    out.mkdir(parents=True, exist_ok=True)
    save_figure(out / "scaling.png", _figure(config, rows, slopes))
    write_json(out / "scaling.json", result)
    shutil.rmtree(folder, ignore_errors=True)
    for case, slope in slopes.items():
        log(f"{case:<16} slope of log N* on log d: "
            + ("n/a" if slope is None else f"{slope:.3f}"))
    return result


def _full_check(config, kind, sched_name, d, steps) -> dict:
    model = GaussianMixture.two_modes(d=d, p=config.p, m=config.m, sigma=config.sigma)
    interp = Interpolant(kind=kind, shape=config.shape, d=d)
    x = sample(model, interp, make(sched_name, interp, k=config.k),
               jax.random.PRNGKey(config.seed), config.n_full, steps=steps, solver=config.solver)
    return {"n": config.n_full, "mode_weight": float(metrics.mode_weight(model, x)),
            "within_mode_var": float(metrics.within_mode_variance(model, x))}


def _figure(config, rows, slopes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, case in enumerate(config.cases):
        pts = [(r["d"], r["steps"]) for r in rows if r["case"] == case and r["steps"]]
        if not pts:
            continue
        d, n = map(np.asarray, zip(*pts, strict=True))
        slope = slopes[case]
        ax.loglog(d, n, "o-", color=f"C{i}", label=f"{case}: slope {slope:.2f}")
    ax.set(xlabel="dimension d", ylabel="N* (fewest Euler steps)",
           title=f"|p̂ − p| ≤ {config.tol_weight}, |var/σ² − 1| ≤ {config.tol_var} (exact)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
