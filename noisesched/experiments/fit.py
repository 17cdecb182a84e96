"""``noisesched fit CONFIG``: learn a schedule, save it, evaluate it on fresh keys.

A fit config is a run config (the model, interpolant, solver budget and the evaluation: ``n``
samples from ``seed``; ``schedule`` is the initial schedule) plus a ``[fit]`` table of
``FitSettings``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import theory
from .._atomic import atomic_write
from .._validation import check_choice, check_int, check_real
from ..interpolants import Interpolant
from ..learning import (
    FAMILIES,
    LR_SCHEDULES,
    OPTIMIZERS,
    ExactLoss,
    NoiseRatioKnots,
    PiecewiseLinear,
    SigmoidSum,
    ThresholdLoss,
    combined_loss,
    fit_schedule,
    load_schedule,
    low_level_loss,
    make_optimizer,
    mode_asymmetry_loss,
    save_schedule,
)
from ..models import GaussianMixture
from ..schedules import NAMES, make
from ..streaming import sample_summary
from .config import ConfigError, RunConfig, from_mapping, parse_overrides, unknown_key
from .io import environment, save_figure, write_json
from .run import build

LOSSES = ("combined", "mode", "low", "exact", "threshold")
INITS = ("schedule", "uniform")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The ``[fit]`` table: what is learned and how."""

    family: str = "noise_ratio_knots"  # piecewise_linear | sigmoid_sum | noise_ratio_knots
    pieces: int = 20  # knots (pieces) of the piecewise families; sigmoids of sigmoid_sum
    init: str = "schedule"  # schedule (the run config's schedule) | uniform (noise_ratio_knots)
    # combined | mode | low (on final samples) | threshold (through the sampler, mode term on the
    # probit scale) | exact (two-mode mixture, from the reduction)
    loss: str = "combined"
    bisections: int = 24  # threshold loss
    weight_high: float = 1.0
    weight_low: float = 1.0
    temperature: float = 0.05
    batch: int = 512
    iterations: int = 300
    optimizer: str = "adam"
    learning_rate: float = 0.05
    lr_schedule: str = "cosine"
    warmup: int = 0
    clip_norm: float = 0.0  # 0: no clipping
    seed: int = 0
    common_random_numbers: bool = False
    checkpoints: int = 0  # states kept by reverse mode; 0: ⌈√N⌉ blocks
    patience: int = 0  # early stopping; 0: never
    min_delta: float = 0.0
    checkpoint_every: int = 25
    compare: tuple[str, ...] = ()  # baselines; empty: constant and the kind's dilated schedule
    transfer_dims: tuple[int, ...] = ()  # also evaluate at these d (noise_ratio_knots)

    def __post_init__(self):
        try:
            check_choice("fit.family", self.family, tuple(FAMILIES))
            check_int("fit.pieces", self.pieces, lo=2)
            check_choice("fit.init", self.init, INITS)
            if self.init == "uniform" and self.family != "noise_ratio_knots":
                raise ConfigError("fit.init = 'uniform' needs fit.family = 'noise_ratio_knots'")
            check_choice("fit.loss", self.loss, LOSSES)
            for key in ("weight_high", "weight_low"):
                check_real(f"fit.{key}", getattr(self, key), lo=0.0, lo_open=False)
            check_real("fit.temperature", self.temperature, lo=0.0)
            check_int("fit.batch", self.batch, lo=1)
            check_int("fit.bisections", self.bisections, lo=1)
            check_int("fit.iterations", self.iterations, lo=1)
            check_choice("fit.optimizer", self.optimizer, OPTIMIZERS)
            check_real("fit.learning_rate", self.learning_rate, lo=0.0)
            check_choice("fit.lr_schedule", self.lr_schedule, LR_SCHEDULES)
            check_int("fit.warmup", self.warmup, lo=0, hi=self.iterations - 1)
            check_real("fit.clip_norm", self.clip_norm, lo=0.0, lo_open=False)
            for key in ("seed", "checkpoints", "patience"):
                check_int(f"fit.{key}", getattr(self, key), lo=0)
            check_real("fit.min_delta", self.min_delta, lo=0.0, lo_open=False)
            check_int("fit.checkpoint_every", self.checkpoint_every, lo=1)
            for name in self.compare:
                check_choice("fit.compare entry", name, NAMES)
            for d in self.transfer_dims:
                check_int("fit.transfer_dims entry", d, lo=2)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["compare"], out["transfer_dims"] = list(self.compare), list(self.transfer_dims)
        return out


FIT_FIELDS = {f.name: f for f in dataclasses.fields(FitSettings)}


def _fit_settings(data: dict[str, Any]) -> FitSettings:
    values = {}
    for key, value in data.items():
        if key not in FIT_FIELDS:
            raise unknown_key(key, FIT_FIELDS, "fit")
        default = FIT_FIELDS[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"fit.{key} must be a list; got {value!r}")
            value = tuple(int(v) if isinstance(v, float) and v.is_integer() else v
                          for v in value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"fit.{key} must be true or false; got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"fit.{key} must be an integer; got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"fit.{key} must be a number; got {value!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise ConfigError(f"fit.{key} must be a string; got {value!r}")
        values[key] = value
    return FitSettings(**values)


def load_fit(path: str | Path, overrides: Sequence[str] = ()
             ) -> tuple[RunConfig, FitSettings]:
    """Read a fit config (TOML with a ``[fit]`` table, or a fit's ``history.json``); overrides
    are ``key=value`` for run keys and ``fit.key=value`` for the table."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.suffix == ".json":
        try:
            stored = json.loads(path.read_text())
            data, fit = dict(stored["config"]), dict(stored["fit"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a fit history.json ({err})") from None
    else:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: malformed TOML: {err}") from None
        fit = data.pop("fit", {})
        if not isinstance(fit, dict):
            raise ConfigError(f"{path}: fit must be a table [fit]")
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: tables other than [fit] are not part of the schema; "
                              f"got [{key}]")
    run_over = [o for o in overrides if not o.strip().startswith("fit.")]
    fit_over = [o.strip()[4:] for o in overrides if o.strip().startswith("fit.")]
    data.update(parse_overrides(run_over))
    for item in fit_over:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set takes key=value; got 'fit.{item}'")
        try:
            fit[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            fit[key.strip()] = raw.strip()
    return from_mapping(data), _fit_settings(fit)


def initial_schedule(config: RunConfig, settings: FitSettings, interp: Interpolant):
    if settings.init == "uniform":
        return NoiseRatioKnots.uniform(interp, settings.pieces)
    _, _, start = build(config)
    if settings.family == "piecewise_linear":
        return PiecewiseLinear.from_schedule(start, settings.pieces)
    if settings.family == "sigmoid_sum":
        return SigmoidSum.from_schedule(start, settings.pieces)
    return NoiseRatioKnots.from_schedule(start, interp, settings.pieces)


def make_loss(config: RunConfig, settings: FitSettings, model, interp):
    s = settings
    if s.loss == "exact":
        if not theory.TwoModeReduction.applies(model):
            raise ConfigError("fit.loss = 'exact' needs model = 'gm' with K = 2 (means ±μ)")
        if config.solver not in theory.ORACLE_SOLVERS:
            raise ConfigError(f"fit.loss = 'exact' needs solver in {theory.ORACLE_SOLVERS}; got "
                              f"{config.solver!r}")
        return ExactLoss.of(model, interp, config.steps, solver=config.solver,
                            weight_high=s.weight_high, weight_low=s.weight_low)
    if s.loss == "threshold":
        if isinstance(model, GaussianMixture) and not theory.TwoModeReduction.applies(model):
            raise ConfigError("fit.loss = 'threshold' needs model = 'cw' or a two-mode mixture")
        return ThresholdLoss(model, interp, config.steps, solver=config.solver,
                             method=config.method, weight_high=s.weight_high,
                             weight_low=s.weight_low, bisections=s.bisections)
    if s.loss == "mode":
        return lambda m, x: mode_asymmetry_loss(m, x, s.temperature)
    if s.loss == "low":
        return low_level_loss
    return lambda m, x: combined_loss(m, x, s.weight_high, s.weight_low, s.temperature)


def fingerprint(config: RunConfig, settings: FitSettings) -> str:
    """A hash of everything that changes the numbers of a fit (not the evaluation)."""
    keep = {k: v for k, v in config.to_dict().items() if k not in ("n", "seed", "name",
                                                                 "figures", "trajectories")}
    fit = {k: v for k, v in settings.to_dict().items() if k not in ("compare", "transfer_dims")}
    text = json.dumps({"config": keep, "fit": fit}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate(model, interp, schedule, config: RunConfig, *, chunk: int = 2048
             ) -> dict[str, float]:
    """Metrics of ``config.n`` samples from ``config.seed`` (the rows ``noisesched run`` draws),
    streamed in chunks (``noisesched.streaming.sample_summary``); exact values of the same
    discretisation for a two-mode mixture."""
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    summary = sample_summary(model, interp, schedule, jax.random.PRNGKey(config.seed), config.n,
                             steps=config.steps, solver=config.solver, method=config.method,
                             dtype=dtype, chunk_size=chunk).metrics
    out: dict[str, float] = {"mode_weight": summary["mode_weight"],
                             "mode_weight_target": summary["mode_weight_target"]}
    if isinstance(model, GaussianMixture):
        out["within_mode_var_ratio"] = summary["within_mode_var"] / model.sigma**2
        if theory.TwoModeReduction.applies(model) and config.solver in theory.ORACLE_SOLVERS:
            with jax.enable_x64(True):
                red = theory.TwoModeReduction.two_modes(model.d, config.p, config.m,
                                                        config.sigma)
                exact = theory.gm_oracle(red, interp, schedule, config.steps, config.solver)
            out["mode_weight_exact"] = float(exact["mode_weight"])
            out["within_mode_var_ratio_exact"] = float(exact["within_mode_var"]) / config.sigma**2
    else:
        out["mean_sq"] = summary["mean_sq"]
    return {k: float(v) for k, v in out.items()}


def run_fit(config: RunConfig, settings: FitSettings, out: str | Path, *, log=print,
            progress: bool = True) -> dict:
    """Learn a schedule; write ``schedule.json``, ``history.json``, ``schedules.png`` (+ .npz)
    into ``out``. ``out/checkpoint.npz`` is written during the fit; rerunning the same config
    into the same folder resumes from it (with identical results)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    start_time = time.perf_counter()
    x64 = config.dtype == "float64"
    baselines = _baselines(config, settings)
    # the exact loss costs the same in float64 and its root finding wants the digits
    with jax.enable_x64(x64 or settings.loss == "exact"):
        model, interp, _ = build(config)
        schedule = initial_schedule(config, settings, interp)
        loss = make_loss(config, settings, model, interp)
        optimizer = make_optimizer(settings.optimizer, settings.learning_rate,
                                   lr_schedule=settings.lr_schedule,
                                   iterations=settings.iterations, warmup=settings.warmup,
                                   clip_norm=settings.clip_norm or None)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / "checkpoint.npz"
        if checkpoint.is_file():
            log(f"resuming from {checkpoint}")
        key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), 1)  # apart from evaluation
        result = fit_schedule(
            model, interp, schedule, key, steps=config.steps, batch=settings.batch,
            iterations=settings.iterations, optimizer=optimizer, loss=loss,
            common_random_numbers=settings.common_random_numbers, solver=config.solver,
            method=config.method, checkpoints=settings.checkpoints or None,
            patience=settings.patience or None, min_delta=settings.min_delta,
            checkpoint=checkpoint, checkpoint_every=settings.checkpoint_every,
            fingerprint=fingerprint(config, settings), progress=progress)
        schedule_file = save_schedule(
            result.schedule, out / "schedule.json", interpolant=interp, steps=config.steps,
            metadata={"config": config.to_dict(), "fit": settings.to_dict()})
    fit_seconds = time.perf_counter() - start_time
    with jax.enable_x64(x64):
        model, interp, _ = build(config)
        learned = load_schedule(schedule_file, interp)  # evaluate exactly what the file holds
        evaluation = _evaluate_all(config, settings, model, interp, learned,
                                   initial_schedule(config, settings, interp), schedule_file,
                                   baselines)
        save_figure(out / "schedules.png", _figure(config, interp, learned, settings,
                                                   out / "schedules.npz"))
    history = {
        "config": config.to_dict(),
        "fit": settings.to_dict(),
        "loss": result.history,
        "smoothed": result.smoothed,
        "iterations": result.iterations,
        "stopped_early": result.stopped_early,
        "evaluation": evaluation,
        "timings": {"fit_seconds": fit_seconds,
                    "total_seconds": time.perf_counter() - start_time},
        "files": ["schedule.json", "history.json", "evaluation.md", "schedules.png",
                  "schedules.npz", "checkpoint.npz"],
        "environment": environment(),
    }
    text = table(evaluation, config)
    atomic_write(out / "evaluation.md",
                 lambda tmp: Path(tmp).write_text(f"# {config.name}: evaluation on fresh keys "
                                                  f"(n = {config.n}, seed = {config.seed})\n\n"
                                                  f"{text}\n"))
    write_json(out / "history.json", history)
    log(text)
    return history


def _baselines(config: RunConfig, settings: FitSettings) -> list[RunConfig]:
    """The configs the learned schedule is compared with (validated before any work)."""
    names = settings.compare or ("constant", f"{config.kind}_dilated")
    out = [dataclasses.replace(config, schedule=name) for name in names]
    out += [dataclasses.replace(config, d=d, schedule="constant")
            for d in settings.transfer_dims]
    return out


def _evaluate_all(config, settings, model, interp, learned, initial, schedule_file, baselines
                  ) -> list[dict]:
    learned_config = dataclasses.replace(config, schedule=f"@{schedule_file}")
    rows = [{"schedule": "learned", "d": config.d,
             **evaluate(model, interp, learned, learned_config)},
            {"schedule": f"initial ({settings.init})", "d": config.d,
             **evaluate(model, interp, initial, config)}]
    for d in settings.transfer_dims:  # noise_ratio_knots: the same ξ-knots at this d
        c = dataclasses.replace(learned_config, d=d)
        rows.append({"schedule": "learned", "d": d, **evaluate(*build(c), c)})
    for c in baselines:
        rows.append({"schedule": c.schedule, "d": c.d, **evaluate(*build(c), c)})
    return rows


def table(rows: list[dict], config: RunConfig) -> str:
    """The evaluation as a markdown table."""
    if config.model == "gm":
        head = ("| schedule | d | mode weight (p = {:.2f}) | exact | var/σ² | exact |"
                .format(rows[0]["mode_weight_target"]))
        lines = [head, "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['schedule']} | {r['d']:.0e} | {r['mode_weight']:.4f} | "
                         f"{r.get('mode_weight_exact', math.nan):.4f} | "
                         f"{r['within_mode_var_ratio']:.4f} | "
                         f"{r.get('within_mode_var_ratio_exact', math.nan):.4f} |")
    else:
        head = ("| schedule | d | positive fraction (W+ = {:.4f}) | mean x² (target 1) |"
                .format(rows[0]["mode_weight_target"]))
        lines = [head, "|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['schedule']} | {r['d']:.0e} | {r['mode_weight']:.4f} | "
                         f"{r['mean_sq']:.4f} |")
    return "\n".join(lines)


def _figure(config, interp, learned, settings, data_path):
    from .figures import _plt

    plt = _plt()
    curves = {"learned": learned}
    for name in ("constant", f"{config.kind}_dilated"):
        curves[name] = make(name, interp, k=config.k)
    t = np.linspace(0.0, 1.0, 1001)
    grid = np.linspace(0.0, 1.0, config.steps + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    data = {"t": t, "grid": grid}
    with jax.enable_x64(True):
        for j, (name, sched) in enumerate(curves.items()):
            tau = np.asarray(jax.vmap(sched)(jnp.asarray(t)))
            on_grid = np.asarray(jax.vmap(sched)(jnp.asarray(grid)))
            ratio = np.asarray(jax.vmap(lambda s, sc=sched: interp.noise_ratio(sc, s))(
                jnp.asarray(grid[1:-1])))
            data[f"tau_{name}"], data[f"ratio_{name}"] = tau, ratio
            axes[0].plot(t, tau, color=f"C{j}", label=name)
            axes[0].plot(grid, on_grid, "o", color=f"C{j}", ms=3)
            axes[1].semilogy(grid[1:-1], ratio, "o-", color=f"C{j}", ms=3, label=name)
    axes[0].set(xlabel="t", ylabel="τ(t)", title=f"τ(t); dots: the N = {config.steps} grid")
    gm = config.model == "gm"
    speciation = (config.m if gm else 1.0) * math.sqrt(config.d)  # CW: |x1|² = d
    axes[1].axhline(speciation, color="k", ls="--", lw=0.8)
    text = {"fontsize": 8, "transform": axes[1].get_yaxis_transform()}
    axes[1].text(0.02, speciation * 1.15,
                 "speciation: α/β = m√d" if gm else "speciation: α/β = √d", **text)
    if gm:
        axes[1].axhline(config.sigma, color="k", ls=":", lw=0.8)
        axes[1].text(0.02, config.sigma * 1.15, "within-mode spread: α/β = σ", **text)
    axes[1].set(xlabel="t", ylabel="noise-to-signal ratio α/β",
                title="noise level at the interior grid points")
    axes[0].legend()
    fig.suptitle(f"{config.name}: {config.model}, d={config.d}, {config.kind} {config.shape}, "
                 f"N={config.steps} {config.solver}, family {settings.family}")
    fig.tight_layout()

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **data)

    atomic_write(data_path, write)
    return fig
