"""Fit a learnable schedule with optax by differentiating through the sampler."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .._atomic import atomic_write
from .._validation import check_choice, check_int, check_real
from ..interpolants import Interpolant
from ..sampling import SCAN_SOLVERS, SOLVERS, sample_prior, solve
from ..schedules import AbstractSchedule
from .losses import AbstractPriorLoss, AbstractScheduleLoss, combined_loss

__all__ = ["FitResult", "fit_schedule", "make_optimizer", "OPTIMIZERS", "LR_SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lion")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


def make_optimizer(name: str = "adam", learning_rate: float = 3e-2, *,
                   lr_schedule: str = "constant", iterations: int = 200, warmup: int = 0,
                   clip_norm: float | None = None) -> optax.GradientTransformation:
    """An optax optimiser by name with a learning-rate schedule over ``iterations``:
    ``constant``, ``cosine`` (decay to 0), ``warmup_cosine`` (linear warm-up over ``warmup``
    iterations, then cosine) or ``exponential`` (×0.01 over the run); optionally gradients
    clipped to global norm ``clip_norm``."""
    check_choice("optimizer", name, OPTIMIZERS)
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    check_real("learning_rate", learning_rate, lo=0.0)
    check_int("iterations", iterations, lo=1)
    check_int("warmup", warmup, lo=0)
    if lr_schedule == "warmup_cosine" and warmup >= iterations:
        raise ValueError(f"warmup must be < iterations = {iterations}; got {warmup}")
    if clip_norm is not None:
        check_real("clip_norm", clip_norm, lo=0.0)
    rate = {
        "constant": lambda: learning_rate,
        "cosine": lambda: optax.cosine_decay_schedule(learning_rate, iterations),
        "warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, max(warmup, 1), iterations),
        "exponential": lambda: optax.exponential_decay(learning_rate, iterations, 0.01),
    }[lr_schedule]()
    opt = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd,
           "rmsprop": optax.rmsprop, "lion": optax.lion}[name](rate)
    return opt if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), opt)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What ``fit_schedule`` returns.

    Attributes:
        schedule: the fitted schedule (same family as the initial one).
        history: the loss at every iteration run (resumed runs include the earlier ones).
        smoothed: the exponential moving average of the loss used for early stopping.
        iterations: iterations run in total.
        stopped_early: whether early stopping ended the fit.
    """

    schedule: AbstractSchedule
    history: list[float]
    smoothed: list[float]
    iterations: int
    stopped_early: bool


def fit_schedule(
    model,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    *,
    steps: int = 10,
    batch: int = 256,
    iterations: int = 200,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable | AbstractScheduleLoss = combined_loss,
    common_random_numbers: bool = False,
    solver: str = "euler",
    method: str = "scan",
    checkpoints: int | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    smoothing: float = 0.9,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 25,
    fingerprint: str = "",
    progress: bool = False,
    callback: Callable[[int, float, AbstractSchedule], None] | None = None,
) -> FitResult:
    """Minimise a loss over the array leaves of ``schedule`` with optax.

    Each iteration draws ``batch`` prior states, solves the PF-ODE with ``steps`` steps of
    ``solver`` and takes one optimiser step on ``loss(model, X_1)``; or, for an
    ``AbstractScheduleLoss`` such as ``ExactLoss``, on ``loss(schedule)`` with no
    sampling, or for an ``AbstractPriorLoss`` such as ``ThresholdLoss``, on
    ``loss(schedule, x0)``. The prior states of iteration i come from ``fold_in(key, i)``
    (fresh noise), or from ``key`` at every iteration if ``common_random_numbers``.

    Args:
        optimizer: any optax transformation (default ``make_optimizer``: Adam, 3·10⁻²).
        checkpoints: states stored by reverse mode (see ``noisesched.solve``).
        patience: stop when the smoothed loss (EMA with factor ``smoothing``) has not improved
            by more than ``min_delta`` for ``patience`` iterations (``None``: never).
        checkpoint: a file (``.npz``) written atomically every ``checkpoint_every`` iterations
            and at the end; if it exists, the fit resumes from it and gives exactly the numbers
            of an uninterrupted fit. ``fingerprint`` (any string, e.g. a hash of the config) is
            stored in it and must match on resume.
        progress: a progress bar with the current loss on stderr.
        callback: called as ``callback(iteration, loss, schedule)`` after every iteration.

    Returns:
        A ``FitResult``.
    """
    check_int("steps", steps, lo=1)
    check_int("batch", batch, lo=1)
    check_int("iterations", iterations, lo=1)
    check_choice("solver", solver, SCAN_SOLVERS if method == "scan" else SOLVERS)
    check_int("checkpoint_every", checkpoint_every, lo=1)
    if patience is not None:
        check_int("patience", patience, lo=1)
    check_real("min_delta", min_delta, lo=0.0, lo_open=False)
    check_real("smoothing", smoothing, lo=0.0, hi=1.0, lo_open=False)
    exact = isinstance(loss, AbstractScheduleLoss)
    on_samples = not isinstance(loss, AbstractScheduleLoss | AbstractPriorLoss)
    if on_samples and interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    if not callable(loss):
        raise ValueError(f"loss must be a function (model, x) -> scalar or an "
                         f"AbstractScheduleLoss; got {type(loss).__name__}")
    optimizer = make_optimizer() if optimizer is None else optimizer
    params, static = eqx.partition(schedule, eqx.is_inexact_array)
    if not jax.tree.leaves(params):
        raise ValueError("schedule has no trainable array leaves; use a learnable family such "
                         "as ns.learning.PiecewiseLinear")
    opt_state = optimizer.init(params)

    def objective(p, x0):
        sched = eqx.combine(p, static)
        if exact:
            return loss(sched)
        if isinstance(loss, AbstractPriorLoss):
            return loss(sched, x0)
        x = solve(model, interp, sched, x0, steps=steps, solver=solver, method=method,
                  checkpoints=checkpoints).x
        return loss(model, x)

    @eqx.filter_jit
    def update(p, state, x0):
        value, grads = jax.value_and_grad(objective)(p, x0)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    progress_state = _Progress(iterations) if progress else None
    record = _Record()
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        params, opt_state, record, start = _load_checkpoint(checkpoint, params, opt_state,
                                                            fingerprint)
    it = start
    try:
        for it in range(start, iterations):
            if patience is not None and it - record.best_iteration > patience:
                break
            if exact:
                x0 = None
            else:
                k = key if common_random_numbers else jax.random.fold_in(key, it)
                x0 = sample_prior(interp, k, batch)
            params, opt_state, value = update(params, opt_state, x0)
            record.add(float(value), smoothing, min_delta)
            if not math.isfinite(record.history[-1]):
                raise FloatingPointError(
                    f"the loss became {record.history[-1]} at iteration {it}; lower the "
                    "learning rate or clip gradients (make_optimizer(clip_norm=...))")
            if progress_state is not None:
                progress_state.show(it + 1, record)
            if callback is not None:
                callback(it, record.history[-1], eqx.combine(params, static))
            if checkpoint is not None and (it + 1) % checkpoint_every == 0:
                _save_checkpoint(checkpoint, params, opt_state, record, it + 1, fingerprint)
        else:
            it = iterations
    finally:
        if progress_state is not None:
            progress_state.close()
    stopped = it < iterations
    if checkpoint is not None:
        _save_checkpoint(checkpoint, params, opt_state, record, it, fingerprint,
                         stopped_early=stopped)
    return FitResult(eqx.combine(params, static), record.history, record.smoothed, it, stopped)


class _Record:
    """Loss history, its moving average and the iteration of the best average."""

    def __init__(self):
        self.history: list[float] = []
        self.smoothed: list[float] = []
        self.best = math.inf
        self.best_iteration = 0

    def add(self, value: float, smoothing: float, min_delta: float):
        prev = self.smoothed[-1] if self.smoothed else value
        avg = smoothing * prev + (1.0 - smoothing) * value
        self.history.append(value)
        self.smoothed.append(avg)
        if avg < self.best - min_delta:
            self.best, self.best_iteration = avg, len(self.history) - 1


class _Progress:
    def __init__(self, total: int):
        self.total, self.start = total, time.perf_counter()

    def show(self, done: int, record: _Record):
        bar = "#" * int(30 * done / self.total)
        print(f"\r[{bar:<30}] {done}/{self.total} loss {record.history[-1]:.3e} "
              f"(avg {record.smoothed[-1]:.3e}) {time.perf_counter() - self.start:.0f} s   ",
              end="", file=sys.stderr, flush=True)

    def close(self):
        print(file=sys.stderr, flush=True)


def _save_checkpoint(path, params, opt_state, record: _Record, iteration: int,
                     fingerprint: str, stopped_early: bool = False):
    leaves = jax.tree.leaves((params, opt_state))
    arrays: dict[str, Any] = {f"leaf_{i}": np.asarray(v) for i, v in enumerate(leaves)}
    arrays.update(history=np.asarray(record.history, np.float64),
                  smoothed=np.asarray(record.smoothed, np.float64),
                  best=np.float64(record.best), best_iteration=np.int64(record.best_iteration),
                  iteration=np.int64(iteration), fingerprint=np.str_(fingerprint),
                  stopped_early=np.bool_(stopped_early))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _load_checkpoint(path, params, opt_state, fingerprint: str):
    with np.load(path) as data:
        stored = str(data["fingerprint"])
        if stored != fingerprint:
            raise ValueError(f"checkpoint {str(path)!r} belongs to another fit (fingerprint "
                             f"{stored!r}, expected {fingerprint!r}); remove it or use another "
                             "path")
        template, treedef = jax.tree.flatten((params, opt_state))
        leaves = [data[f"leaf_{i}"] for i in range(len(template))]
        for i, (a, b) in enumerate(zip(template, leaves, strict=True)):
            if np.shape(a) != b.shape:
                raise ValueError(f"checkpoint {str(path)!r} does not fit this schedule and "
                                 f"optimiser (leaf {i}: shape {b.shape}, expected "
                                 f"{np.shape(a)})")
        leaves = [jax.numpy.asarray(b, dtype=jax.numpy.asarray(a).dtype)
                  for a, b in zip(template, leaves, strict=True)]
        record = _Record()
        record.history = [float(v) for v in data["history"]]
        record.smoothed = [float(v) for v in data["smoothed"]]
        record.best = float(data["best"])
        record.best_iteration = int(data["best_iteration"])
        iteration = int(data["iteration"])
    params, opt_state = jax.tree.unflatten(treedef, leaves)
    return params, opt_state, record, iteration
