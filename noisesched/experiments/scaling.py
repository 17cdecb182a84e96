"""``noisesched scaling``: the fewest steps N*(d) that get both features right, against d.

For each schedule and each d, N* is the smallest N whose high-level error (the mode weight, the
positive-phase fraction) is at most ``tol_weight`` and whose relative low-level error (the
within-mode variance / σ², mean x²) is at most ``tol_var``. The slope of log N* against log d
is fitted by least squares: ½ for constant schedules (N ∝ √d), 0 for dilated ones, by the
theory.

* ``estimate = "exact"`` (the two-mode mixture, ``model = "gm"``): the errors are the *exact*
  values of the N-step solve from the two-mode reduction (``noisesched.theory.gm_oracle``): no
  Monte Carlo noise, any d. The search doubles N until the criterion holds, then bisects.
  Optionally the full-dimensional sampler is run at N* for the smaller d (``full_d_max``), as a
  Monte Carlo check of the oracle.
* ``estimate = "monte_carlo"`` (any law; the only way for Curie–Weiss, ``model = "cw"``):
  full solves through ``noisesched.sweep``, errors paired seed by seed against a converged
  reference, N* interpolated on a ladder N = 1, 2, 4, … with an interval from the errors' ±2
  standard errors (``noisesched.experiments.steps_needed``).

The slope's standard error combines the scatter of the points about the line (with three or
more d) and, for Monte Carlo estimates, the uncertainty of each N* (its interval taken as ±2
s.d. in log N).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import theory
from .._atomic import claim_folder
from .._output import check_output_folder, staged
from .._progress import progress_bar
from .._validation import check_choice, check_int, check_positive, check_real
from ..interpolants import Interpolant
from ..sampling import SCAN_SOLVERS
from ..schedules import make
from ..sweeps import sweep
from .config import ConfigError, check_name, from_mapping, read_toml, suggest
from .io import environment, resume_folder, save_figure, write_json
from .steps_needed import steps_needed_monte_carlo

CASES = ("vp:constant", "ve:constant", "vp:vp_dilated", "ve:ve_dilated")
MODELS = ("gm", "cw")
ESTIMATES = ("exact", "monte_carlo")


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    name: str = "scaling_gm"
    dims: tuple[int, ...] = (10**2, 10**3, 10**4, 10**5, 10**6, 10**7, 10**8)
    cases: tuple[str, ...] = CASES
    model: str = "gm"
    estimate: str = "exact"
    shape: str = "linear"
    solver: str = "euler"
    p: float = 0.8  # the mixture (model = "gm")
    m: float = 1.0
    sigma: float = 0.5
    beta: float = 2.0  # Curie–Weiss (model = "cw")
    h: float = 0.5 * math.log(4.0)
    k: float = 3.0
    tol_weight: float = 0.01
    tol_var: float = 0.1
    max_steps: int = 1_000_000
    full_d_max: int = 0  # run the full sampler at N* for d up to this (0: never)
    n_full: int = 2000
    seed: int = 0
    n: int = 128  # samples per seed (monte_carlo)
    seeds: int = 8  # independent prior draws per rung (monte_carlo)
    reference_steps: int = 1024  # steps of the converged reference (monte_carlo) ...
    reference_solver: str = "heun"  # ... and its solver

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "dims": list(self.dims), "cases": list(self.cases)}

    def __post_init__(self):
        check_name(self.name)
        try:
            if not self.dims:
                raise ConfigError("dims must list at least two dimensions")
            for d in self.dims:
                check_int("dims[]", d, lo=2)
            if len(set(self.dims)) < 2:
                raise ConfigError("dims must list at least two different dimensions")
            if not self.cases:
                raise ConfigError(f"cases must list at least one case of {list(CASES)}")
            for case in self.cases:
                kind, _, sched = case.partition(":")
                check_choice("cases[] kind", kind, ("vp", "ve"))
                check_choice("cases[] schedule", sched, ("constant", "vp_dilated", "ve_dilated"))
            check_choice("model", self.model, MODELS)
            check_choice("estimate", self.estimate, ESTIMATES)
            if self.estimate == "exact" and self.model != "gm":
                raise ConfigError(f"estimate = 'exact' needs the two-mode oracle, which model = "
                                  f"'gm' has and model = {self.model!r} has not: use estimate = "
                                  "'monte_carlo'")
            check_choice("shape", self.shape, ("linear", "trig"))
            check_choice("solver", self.solver, theory.ORACLE_SOLVERS)
            check_real("p", self.p, 0.0, 1.0)
            check_positive("m", self.m)
            check_positive("sigma", self.sigma)
            check_real("beta", self.beta, 1.0, math.inf)
            check_real("h", self.h, -math.inf, math.inf)
            check_real("k", self.k, 0.0, math.sqrt(min(self.dims)))
            check_positive("tol_weight", self.tol_weight)
            check_positive("tol_var", self.tol_var)
            check_int("max_steps", self.max_steps, lo=1)
            check_int("full_d_max", self.full_d_max, lo=0)
            check_int("n_full", self.n_full, lo=1)
            check_int("seed", self.seed, lo=0)
            check_int("n", self.n, lo=1)
            check_int("seeds", self.seeds, lo=2)
            check_int("reference_steps", self.reference_steps, lo=1)
            check_choice("reference_solver", self.reference_solver, SCAN_SOLVERS)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.estimate == "monte_carlo" or self.full_d_max:
            # the runs' own checks (a σ the samples cannot resolve, …) before any oracle work
            kind, _, schedule_name = self.cases[0].partition(":")
            try:
                from_mapping(_base(self, kind, schedule_name, min(self.dims)))
            except ConfigError as err:  # this config's keys are flat
                raise ConfigError(str(err).removeprefix("model.")) from None


def load_scaling(path: str | Path) -> ScalingConfig:
    data = read_toml(path)
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


def slope_with_error(rows: list[dict]) -> dict | None:
    """The least-squares slope of log N* on log d over ``rows`` with a finite N* (None with
    fewer than two d), with its standard error ``se``: the scatter about the line (three or
    more d) and the uncertainty of each N* where it has an interval (``steps_low``,
    ``steps_high`` taken as ±2 s.d. of log N*), added in quadrature; None where neither is
    known (two exact points) or an interval is open (a bound beyond ``max_steps``)."""
    pts = [r for r in rows if r["steps"]]
    if len({r["d"] for r in pts}) < 2:
        return None
    x = np.log(np.asarray([r["d"] for r in pts], float))
    y = np.log(np.asarray([r["steps"] for r in pts], float))
    slope, intercept = np.polyfit(x, y, 1)
    sxx = float(np.sum((x - x.mean()) ** 2))
    scatter = (float(np.sqrt(np.sum((y - slope * x - intercept) ** 2) / (len(x) - 2) / sxx))
               if len(x) > 2 else 0.0)
    sd = np.asarray([(math.log(r["steps_high"]) - math.log(r["steps_low"])) / 4
                     if r.get("steps_low") and r.get("steps_high") else 0.0 for r in pts])
    estimates = float(np.sqrt(np.sum((x - x.mean()) ** 2 * sd**2)) / sxx)
    open_interval = any("steps_low" in r and not (r["steps_low"] and r["steps_high"])
                        for r in pts)
    known = len(x) > 2 or any("steps_low" in r for r in pts)
    se = math.hypot(scatter, estimates) if known and not open_interval else None
    return {"slope": float(slope), "se": se, "se_scatter": scatter,
            "se_estimates": None if open_interval else estimates, "points": len(pts)}


def _base(config: ScalingConfig, kind: str, schedule_name: str, d: int) -> dict:
    """The run config of one case at dimension d (sections; ``solver.steps`` set per solve)."""
    model = ({"name": "gm", "d": d, "p": config.p, "m": config.m, "sigma": config.sigma}
             if config.model == "gm" else
             {"name": "cw", "d": d, "beta": config.beta, "h": config.h})
    schedule = {"name": schedule_name, **({"k": config.k} if schedule_name != "constant" else {})}
    return {"name": config.name, "model": model,
            "interpolant": {"kind": kind, "shape": config.shape}, "schedule": schedule,
            "solver": {"name": config.solver, "steps": 1, "method": "scan"},
            "sample": {"n": config.n, "seed": config.seed}}


def _point(config: ScalingConfig, kind: str, sched: str, d: int, store: Path) -> dict:
    """The row of one (case, d): N* and how it was found."""
    if config.estimate == "exact":
        n_star, calls = steps_needed(config, kind, sched, d)
        row: dict[str, Any] = {"steps": n_star, "oracle_calls": calls}
        if n_star is not None and d <= config.full_d_max:
            row["full_d"] = _full_check(config, kind, sched, d, n_star, store)
        return row
    return steps_needed_monte_carlo(
        _base(config, kind, sched, d), seeds=config.seeds,
        reference_steps=config.reference_steps, reference_solver=config.reference_solver,
        reference_k=config.k,
        tol_weight=config.tol_weight,
        tol_var=config.tol_var, max_steps=config.max_steps, store=store,
        run_sweep=_quiet_sweep)


def _quiet_sweep(base, grid, *, out):
    return sweep(base, grid, out=out, progress=False, log=lambda *_: None)


def run_scaling(config: ScalingConfig, out: str | Path, *, log=print) -> dict:
    """N*(d) for every case and dimension of ``config``; writes ``out/scaling.json`` and
    ``out/scaling.png``. Each finished (case, d) point, and each full solve (the Parquet parts
    of ``noisesched.sweep``), is kept in a hidden sibling folder (``.OUT.resume``) until the
    study succeeds: an interrupted study, started again with the same config and ``out``,
    computes only what it had not finished."""
    out = check_output_folder(out)
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
            claim_folder(folder, config.to_dict())
            row = {"case": case, "d": d, **_point(config, kind, sched, d, folder / "solves")}
            rows.append(row)
            write_json(progress, rows)
            bar.set_postfix_str(f"{case} d={d:.0e}: N*={_format_steps(row['steps'])}",
                                refresh=False)
            bar.update(1)
    finally:
        bar.close()
    slopes = {case: slope_with_error([r for r in rows if r["case"] == case])
              for case in config.cases}
    order = {(case, d): i for i, (case, d) in enumerate(
        (case, d) for case in config.cases for d in config.dims)}
    rows.sort(key=lambda r: order[(r["case"], r["d"])])
    result = {"command": "scaling", "config": config.to_dict(),
              "rows": rows, "slopes": {c: s and s["slope"] for c, s in slopes.items()},
              "slope_errors": slopes, "seconds": time.perf_counter() - start,
              "environment": environment()}
    with staged(out) as stage:  # the result's files appear together
        save_figure(stage / "scaling.png", _figure(config, rows, slopes))
        write_json(stage / "scaling.json", result)
    shutil.rmtree(folder, ignore_errors=True)
    for case, fitted in slopes.items():
        log(f"{case:<16} slope of log N* on log d: " + _format_slope(fitted))
    return result


def _format_steps(steps: float | None) -> str:
    return "n/a" if steps is None else f"{steps:.0f}" if float(steps).is_integer() else (
        f"{steps:.1f}")


def _format_slope(fitted: dict | None) -> str:
    """'0.48 ± 0.03'; '0.50' without a standard error; 'n/a' with fewer than two finite N*."""
    if fitted is None:
        return "n/a"
    return f"{fitted['slope']:.2f}" + ("" if fitted["se"] is None else f" ± {fitted['se']:.2f}")


def _full_check(config, kind, sched_name, d, steps, store) -> dict:
    """The full sampler at N* (one ``noisesched.sweep`` row, ``n_full`` samples)."""
    base = _base(config, kind, sched_name, d)
    base["solver"]["steps"] = steps
    base["sample"]["n"] = config.n_full
    (row,) = _quiet_sweep(base, {"seeds": [config.seed]}, out=store).rows
    if row.get("error"):
        raise FloatingPointError(f"the full sampler at N* = {steps}, d = {d}: {row['error']}")
    return {"n": config.n_full, "mode_weight": row["mode_weight"],
            "within_mode_var": row["within_mode_var"]}


def _figure(config, rows, slopes):
    from .._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = False
    for i, case in enumerate(config.cases):
        pts = [r for r in rows if r["case"] == case and r["steps"]]
        if not pts:
            continue
        drawn = True
        d = np.asarray([r["d"] for r in pts], float)
        n = np.asarray([r["steps"] for r in pts], float)
        label = f"{case}: slope {_format_slope(slopes[case])}"
        if any("steps_low" in r for r in pts):  # open ends drawn up to the point
            bounds = np.asarray([[r["steps"] - (r["steps_low"] or r["steps"]),
                                  (r["steps_high"] or r["steps"]) - r["steps"]]
                                 for r in pts]).T
            ax.errorbar(d, n, yerr=bounds, fmt="o-", color=f"C{i}", capsize=3, label=label)
        else:
            ax.plot(d, n, "o-", color=f"C{i}", label=label)
    how = ("exact" if config.estimate == "exact" else
           f"Monte Carlo, {config.seeds} × {config.n} samples, ±2 s.e.")
    low = "var/σ²" if config.model == "gm" else "mean x²"
    ax.set(xscale="log", yscale="log", xlabel="dimension d",
           ylabel=f"N* (fewest {config.solver} steps)",
           title=f"{config.model}: |high err| ≤ {config.tol_weight}, |{low} err| ≤ "
                 f"{config.tol_var} ({how})")
    ax.title.set_fontsize(9)
    if drawn:
        ax.legend(fontsize=8)
    else:  # an empty legend is a warning, and an empty plot needs its reason
        ax.text(0.5, 0.5, f"no case reached its tolerances within max_steps = "
                f"{config.max_steps}", transform=ax.transAxes, ha="center", fontsize=9)
        ax.set_xlim(min(config.dims), max(config.dims))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
