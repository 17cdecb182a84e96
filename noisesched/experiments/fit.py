"""``noisesched fit CONFIG``: learn a schedule, save it, evaluate it on fresh keys.

A fit config is a run config (the model, interpolant, solver budget and the evaluation: ``n``
samples from ``seed``; ``schedule`` is the initial schedule) plus a ``[fit]`` table of
``FitSettings``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import theory
from .._atomic import atomic_write
from .._checkpoint import checkpoint_files
from .._output import check_output_folder, staged
from .._validation import check_bool, check_choice, check_int, check_real
from ..interpolants import Interpolant
from ..learning import (
    FAMILIES,
    LR_SCHEDULES,
    OPTIMIZERS,
    ExactLoss,
    FitOptions,
    SampleLoss,
    TeacherLoss,
    ThresholdLoss,
    combined_loss,
    fit_schedule,
    load_schedule,
    low_level_loss,
    make_optimizer,
    mode_asymmetry_loss,
    save_schedule,
)
from ..models.base import AbstractDataLaw
from ..sampling import ADAPTIVE_SOLVERS, SOLVERS
from ..schedules import NAMES, make
from ..streaming import sample_summary
from .config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    from_mapping,
    merge,
    override,
    parse_overrides,
    read_file,
    settings_from_table,
)
from .io import environment, save_figure, write_json

INITS = ("schedule", "uniform")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The ``[fit]`` table: what is learned and how."""

    family: str = "noise_ratio_knots"  # piecewise_linear | sigmoid_sum | noise_ratio_knots
    pieces: int = 20  # knots (pieces) of the piecewise families; sigmoids of sigmoid_sum
    init: str = "schedule"  # schedule (the run config's schedule) | uniform (noise_ratio_knots)
    # combined | mode | low (on final samples) | threshold (through the sampler, mode term on the
    # probit scale) | exact (two-mode mixture, from the reduction) | teacher (distance to a fine
    # solve from the same prior states: any denoiser, no data law)
    loss: str = "combined"
    bisections: int = 24  # threshold loss
    teacher_steps: int = 512  # teacher loss: the fine solve on the config's [schedule], fixed
    teacher_solver: str = "heun"  # with teacher_adaptive: bosh3 | tsit5 | dopri5
    teacher_adaptive: bool = False  # an adaptive solve (PID, rtol = atol = 1e-6) instead
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
            # 10^3 knots fit in seconds; 10^4 ended the process in a segmentation fault while
            # compiling (measured), and no schedule of a sampler needs that many
            check_int("fit.pieces", self.pieces, lo=2, hi=1_000)
            check_choice("fit.init", self.init, INITS)
            if self.init == "uniform" and not hasattr(FAMILIES[self.family], "uniform"):
                uniform = [name for name, cls in FAMILIES.items() if hasattr(cls, "uniform")]
                raise ConfigError(f"fit.init = 'uniform' needs fit.family in {uniform}; got "
                                  f"{self.family!r}")
            check_choice("fit.loss", self.loss, tuple(LOSS_BUILDERS))
            for key in ("weight_high", "weight_low"):
                check_real(f"fit.{key}", getattr(self, key), lo=0.0, lo_open=False)
            check_real("fit.temperature", self.temperature, lo=0.0)
            check_int("fit.batch", self.batch, lo=1)
            check_int("fit.bisections", self.bisections, lo=1)
            check_int("fit.teacher_steps", self.teacher_steps, lo=1)
            check_bool("fit.teacher_adaptive", self.teacher_adaptive)
            if self.teacher_adaptive:
                check_choice("fit.teacher_solver (fit.teacher_adaptive = true)",
                             self.teacher_solver, ADAPTIVE_SOLVERS)
            else:
                check_choice("fit.teacher_solver", self.teacher_solver, SOLVERS)
            check_int("fit.iterations", self.iterations, lo=1)
            check_choice("fit.optimizer", self.optimizer, OPTIMIZERS)
            # the parameters are log-ratios and logits of order 1: a larger step leaves them
            check_real("fit.learning_rate", self.learning_rate, lo=0.0, hi=1e3, hi_open=False)
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
    return settings_from_table("fit", FitSettings, data)


def load_fit(path: str | Path, overrides: Sequence[str] = ()
             ) -> tuple[RunConfig, FitSettings]:
    """Read a fit config (TOML with a ``[fit]`` table, or a fit's ``history.json``); overrides
    are ``section.key=value`` for the run sections and ``fit.key=value`` for the table."""
    path = Path(path)
    if path.suffix == ".json" and path.is_file():
        try:
            stored = json.loads(path.read_text())
            data, fit = dict(stored["config"]), dict(stored["fit"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: not a fit history.json ({err})") from None
    else:
        data = read_file(path)
        fit = data.pop("fit", {})
        if not isinstance(fit, dict):
            raise ConfigError(f"{path}: fit must be a table [fit]")
    updates = parse_overrides(overrides, (*SECTIONS, "fit"))
    fit.update(updates.pop("fit", {}))
    return from_mapping(merge(data, updates), where=f"{path}: "), _fit_settings(fit)


def initial_schedule(config: RunConfig, settings: FitSettings, interp: Interpolant):
    """The learnable family's start: the config's schedule on ``pieces`` knots, or the
    family's uniform start."""
    family: Any = FAMILIES[settings.family]
    if settings.init == "uniform":
        return family.uniform(interp, settings.pieces)
    start = config.build()[2]
    if "interpolant" in inspect.signature(family.from_schedule).parameters:
        return family.from_schedule(start, interpolant=interp, pieces=settings.pieces)
    return family.from_schedule(start, settings.pieces)


def _exact_loss(config: RunConfig, s: FitSettings, model, interp):
    if not theory.TwoModeReduction.applies(model):
        raise ConfigError("fit.loss = 'exact' needs a model with the exact two-mode reduction "
                          "(gm with two modes ±μ)")
    if config.solver.name not in theory.ORACLE_SOLVERS:
        raise ConfigError(f"fit.loss = 'exact' needs solver.name in {theory.ORACLE_SOLVERS}; "
                          f"got {config.solver.name!r}")
    return ExactLoss.of(model, interp, config.solver.steps, solver=config.solver.name,
                        weight_high=s.weight_high, weight_low=s.weight_low)


def _threshold_loss(config: RunConfig, s: FitSettings, model, interp):
    if model.mode_split() is None:
        raise ConfigError("fit.loss = 'threshold' needs a model whose high-level feature is a "
                          "two-way split (cw, or gm with two modes ±μ)")
    return ThresholdLoss(model, interp, config.solver.steps, solver=config.solver.name,
                         method=config.solver.method, weight_high=s.weight_high,
                         weight_low=s.weight_low, bisections=s.bisections)


def _teacher_loss(config: RunConfig, s: FitSettings, model, interp):
    steps = config.solver.steps
    if not s.teacher_adaptive and s.teacher_steps <= steps:
        raise ConfigError(f"fit.teacher_steps must exceed solver.steps = {steps} (the teacher "
                          f"is the finer solve); got {s.teacher_steps}")
    return TeacherLoss(model, interp, steps, solver=config.solver.name,
                       method=config.solver.method, checkpoints=s.checkpoints or None,
                       teacher_steps=s.teacher_steps, teacher_solver=s.teacher_solver,
                       reference=config.build()[2], teacher_adaptive=s.teacher_adaptive)


def _on_samples(fn: Callable[[FitSettings], Callable]) -> Callable[..., SampleLoss]:
    """The builder of a loss on final samples: ``fn(settings)`` is the function (model, x) ->
    scalar, applied after the config's solve."""

    def build(config: RunConfig, s: FitSettings, model, interp) -> SampleLoss:
        return SampleLoss(fn(s), model, interp, config.solver.steps, solver=config.solver.name,
                          method=config.solver.method, checkpoints=s.checkpoints or None)

    return build


#: ``fit.loss`` by name: each builds the loss (an ``AbstractLoss``) from the config, the
#: settings, the model and the interpolant.
LOSS_BUILDERS: dict[str, Callable[..., Any]] = {
    "combined": _on_samples(lambda s: (
        lambda m, x: combined_loss(m, x, s.weight_high, s.weight_low, s.temperature))),
    "mode": _on_samples(lambda s: lambda m, x: mode_asymmetry_loss(m, x, s.temperature)),
    "low": _on_samples(lambda s: low_level_loss),
    "threshold": _threshold_loss,
    "exact": _exact_loss,
    "teacher": _teacher_loss,
}


def make_loss(config: RunConfig, settings: FitSettings, model, interp):
    """The loss named by ``fit.loss`` (``LOSS_BUILDERS``)."""
    return LOSS_BUILDERS[settings.loss](config, settings, model, interp)


def fingerprint(config: RunConfig, settings: FitSettings) -> str:
    """A hash of everything that changes the numbers of a fit (not the evaluation)."""
    keep = {k: v for k, v in config.identity().items() if k not in ("name", "output")}
    keep["sample"] = {k: v for k, v in keep["sample"].items() if k not in ("n", "seed")}
    unused: tuple[str, ...] = ("compare", "transfer_dims")  # the evaluation's keys
    if settings.loss != "teacher":  # the teacher's keys change only a teacher fit (and the
        # checkpoints of other fits made before they existed stay valid)
        unused += ("teacher_steps", "teacher_solver", "teacher_adaptive")
    fit = {k: v for k, v in settings.to_dict().items() if k not in unused}
    text = json.dumps({"config": keep, "fit": fit}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate(model, interp, schedule, config: RunConfig, *, chunk: int = 2048
             ) -> dict[str, float]:
    """Every feature of the data law with its target (and standard error), for ``sample.n``
    samples from ``sample.seed`` (the rows ``noisesched run`` draws), streamed in chunks
    (``noisesched.streaming.sample_summary``); and the Monte-Carlo-free values of the same
    discretisation where the law has an oracle."""
    dtype = jnp.float64 if config.sample.dtype == "float64" else jnp.float32
    summary = sample_summary(model, interp, schedule, jax.random.PRNGKey(config.sample.seed),
                             config.sample.n, steps=config.solver.steps,
                             solver=config.solver.name, method=config.solver.method,
                             dtype=dtype, chunk_size=chunk).metrics
    out: dict[str, float] = {}
    for feature in model.features:
        for key in (feature.key, feature.target, feature.se):
            if key is not None:
                out[key] = summary[key]
    if not config.solver.adaptive:
        with jax.enable_x64(True):
            model64 = config.build()[0]
            out.update(model64.exact_metrics(interp, schedule, config.solver.steps,
                                             config.solver.name))
    return {k: float(v) for k, v in out.items()}


def run_fit(config: RunConfig, settings: FitSettings, out: str | Path, *, log=print,
            progress: bool = True) -> dict:
    """Learn a schedule; write ``schedule.json``, ``history.json``, ``schedules.png`` (+ .npz)
    into ``out``. ``out/checkpoint.eqx`` (with ``out/checkpoint.json``) is written during the
    fit; rerunning the same config into the same folder resumes from it (with identical
    results)."""
    out = check_output_folder(out, [path.name for path in checkpoint_files("checkpoint.eqx")])
    start_time = time.perf_counter()
    x64 = config.sample.dtype == "float64"
    baselines = _baselines(config, settings)
    # the exact loss costs the same in float64 and its root finding wants the digits
    with jax.enable_x64(x64 or settings.loss == "exact"):
        model, interp, _ = config.build()
        schedule = initial_schedule(config, settings, interp)
        loss = make_loss(config, settings, model, interp)
        optimizer = make_optimizer(settings.optimizer, settings.learning_rate,
                                   lr_schedule=settings.lr_schedule,
                                   iterations=settings.iterations, warmup=settings.warmup,
                                   clip_norm=settings.clip_norm or None)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / "checkpoint.eqx"  # and its loss history, checkpoint.json
        if checkpoint.is_file():
            log(f"resuming from {checkpoint}")
        key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), 1)  # apart from evaluation
        options = FitOptions(
            batch=settings.batch, iterations=settings.iterations,
            common_random_numbers=settings.common_random_numbers,
            patience=settings.patience or None, min_delta=settings.min_delta,
            checkpoint=checkpoint, checkpoint_every=settings.checkpoint_every,
            fingerprint=fingerprint(config, settings), progress=progress)
        result = fit_schedule(loss, schedule, key, options, optimizer=optimizer)
    # the result's files appear together, and only once all of them are written: a fit
    # interrupted during its evaluation resumes from its finished checkpoint
    with staged(out) as stage:
        return _finish(config, settings, result, interp, baselines, stage,
                       fit_seconds=time.perf_counter() - start_time, start_time=start_time,
                       log=log)


def _finish(config, settings, result, interp, baselines, stage: Path, *, fit_seconds: float,
            start_time: float, log=print) -> dict:
    """Save the learned schedule, evaluate it on fresh keys, draw it: the result's files, in
    ``stage``."""
    x64 = config.sample.dtype == "float64"
    with jax.enable_x64(x64 or settings.loss == "exact"):
        schedule_file = save_schedule(
            result.schedule, stage / "schedule.json", interpolant=interp,
            steps=config.solver.steps,
            metadata={"config": config.to_dict(), "fit": settings.to_dict()})
    with jax.enable_x64(x64):
        model, interp, _ = config.build()
        learned = load_schedule(schedule_file, interp)  # evaluate exactly what the file holds
        evaluation = []
        if isinstance(model, AbstractDataLaw):  # a bare denoiser has no features to measure
            evaluation = _evaluate_all(config, settings, model, interp, learned,
                                       initial_schedule(config, settings, interp),
                                       schedule_file, baselines)
        save_figure(stage / "schedules.png", _figure(config, model, interp, learned, settings,
                                                     stage / "schedules.npz"))
    history = {
        "command": "fit",  # so that `run` refuses this file (see config.read_file)
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
                  "schedules.npz", "checkpoint.eqx",
                  "checkpoint.json"],
        "environment": environment(),
    }
    text = (table(evaluation, model) if evaluation else
            f"no evaluation: {type(model).__name__} is not a data law (no features to measure)")
    atomic_write(stage / "evaluation.md",
                 lambda tmp: Path(tmp).write_text(f"# {config.name}: evaluation on fresh keys "
                                                  f"(n = {config.sample.n}, seed = "
                                                  f"{config.sample.seed})\n\n"
                                                  f"{text}\n"))
    write_json(stage / "history.json", history)
    log(text)
    return history


def _baselines(config: RunConfig, settings: FitSettings) -> list[RunConfig]:
    """The configs the learned schedule is compared with (validated before any work)."""
    names = settings.compare or ("constant", f"{config.interpolant.kind}_dilated")
    out = [override(config, {"schedule": {"name": name}}) for name in names]
    out += [override(config, {"model": {"d": d}, "schedule": {"name": "constant"}})
            for d in settings.transfer_dims]
    return out


def _evaluate_all(config, settings, model, interp, learned, initial, schedule_file, baselines
                  ) -> list[dict]:
    learned_config = override(config, {"schedule": {"name": f"@{schedule_file}"}})
    rows = [{"schedule": "learned", "d": model.d,
             **evaluate(model, interp, learned, learned_config)},
            {"schedule": f"initial ({settings.init})", "d": model.d,
             **evaluate(model, interp, initial, config)}]
    for d in settings.transfer_dims:  # noise_ratio_knots: the same ξ-knots at this d
        c = override(learned_config, {"model": {"d": d}})
        model_d, interp_d, schedule_d = c.build()
        rows.append({"schedule": "learned", "d": d,
                     **evaluate(model_d, interp_d, schedule_d, c)})
    for c in baselines:
        model_c, interp_c, schedule_c = c.build()
        rows.append({"schedule": c.schedule.name, "d": model_c.d,
                     **evaluate(model_c, interp_c, schedule_c, c)})
    return rows


def feature_columns(law, rows: list[dict], exact_label: str = "exact"
                    ) -> list[tuple[str, str]]:
    """(heading, key) of each markdown column of a table of ``rows``: every feature of the
    data law, its target in the heading, and its exact value for the discretisation (headed
    ``exact_label``) where some row has one."""
    columns: list[tuple[str, str]] = []
    for f in law.features:
        head = f.label.replace("|", "\\|")  # in a table
        if f.target is not None and f.target in rows[0]:
            head += f" (target {rows[0][f.target]:.4f})"
        columns.append((head, f.key))
        if f.exact is not None and any(f.exact in r for r in rows):
            columns.append((exact_label, f.exact))
    return columns


def table_cell(row: dict, key: str, law) -> str:
    """A table cell: ``row[key]`` to 4 decimals, ``± s.e.`` where ``key`` is a feature of
    ``law`` whose standard error the row holds; "–" where the row has no finite value."""
    value = row.get(key)
    if value is None or not math.isfinite(value):
        return "–"
    se = next((f.se for f in law.features if f.key == key and f.se is not None), None)
    if se is not None and math.isfinite(row.get(se, math.nan)):
        return f"{value:.4f} ± {row[se]:.4f}"
    return f"{value:.4f}"


def table(rows: list[dict], model) -> str:
    """The evaluation as a markdown table (``feature_columns``), each value ± its standard
    error where the law gives one."""
    columns = feature_columns(model, rows)
    lines = ["| schedule | d | " + " | ".join(head for head, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = [table_cell(r, key, model) for _, key in columns]
        lines.append(f"| {r['schedule']} | {r['d']:.0e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(config, model, interp, learned, settings, data_path):
    from .._plotting import pyplot

    plt = pyplot()
    curves = {"learned": learned}
    for name in ("constant", f"{interp.kind}_dilated"):
        curves[name] = make(name, interp, k=config.schedule.options.get("k", 3.0))
    t = np.linspace(0.0, 1.0, 1001)
    grid = np.linspace(0.0, 1.0, config.solver.steps + 1)
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
    axes[0].set(xlabel="t", ylabel="τ(t)", title=f"τ(t); dots: the N = {config.solver.steps} grid")
    text = {"fontsize": 8, "transform": axes[1].get_yaxis_transform()}
    levels = model.noise_levels() if isinstance(model, AbstractDataLaw) else {}
    for j, (label, level) in enumerate(levels.items()):
        axes[1].axhline(level, color="k", ls=("--", ":", "-.")[j % 3], lw=0.8)
        axes[1].text(0.02, level * 1.15, label, **text)
    axes[1].set(xlabel="t", ylabel="noise-to-signal ratio α/β",
                title="noise level at the interior grid points")
    axes[0].legend()
    fig.suptitle(f"{config.name}: {config.model.name}, d={model.d}, {interp.kind} "
                 f"{interp.shape}, N={config.solver.steps} {config.solver.name}, "
                 f"family {settings.family}")
    fig.tight_layout()

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **data)

    atomic_write(data_path, write)
    return fig
