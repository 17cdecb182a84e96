"""Fit a learnable schedule with optax by differentiating through the sampler."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PRNGKeyArray

from .._checkpoint import (
    check_checkpoint_option,
    check_not_folder,
    load_checkpoint,
    save_checkpoint,
)
from .._interrupt import raise_if_pending
from .._progress import progress_bar
from .._validation import check_bool, check_choice, check_int, check_key, check_real
from ..interpolants import Interpolant
from ..sampling import sample_prior
from ..schedules import AbstractSchedule
from .losses import AbstractLoss

__all__ = ["FitOptions", "FitResult", "fit_schedule", "make_optimizer", "OPTIMIZERS",
           "LR_SCHEDULES"]

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
    if lr_schedule == "warmup_cosine" and max(warmup, 1) >= iterations:
        raise ValueError(f"warmup must be < iterations = {iterations} (and iterations >= 2) "
                         f"with lr_schedule 'warmup_cosine'; got {warmup}")
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


class FitOptions(eqx.Module):
    """How ``fit_schedule`` runs: the batch, the length, early stopping, checkpoints, progress.

    Attributes:
        batch: prior states drawn at every iteration (losses with ``needs_prior``).
        iterations: optimiser steps in total (a resumed fit counts the earlier ones).
        common_random_numbers: draw the prior states of every iteration from ``key`` itself
            (the same batch each time) instead of ``fold_in(key, i)`` (fresh noise).
        patience: stop when the smoothed loss (EMA with factor ``smoothing``) has not improved
            by more than ``min_delta`` for ``patience`` iterations (``None``: never).
        min_delta: the improvement that counts, ≥ 0.
        smoothing: the EMA factor of the smoothed loss, in [0, 1).
        checkpoint: a file (e.g. ``checkpoint.eqx``) written atomically every
            ``checkpoint_every`` iterations and at the end, with its loss history beside it
            (``checkpoint.json``, see ``checkpoint_files``); if it exists, the fit resumes from
            it and gives exactly the numbers of an uninterrupted fit. ``None``: no checkpoint.
        checkpoint_every: iterations between two checkpoints.
        fingerprint: any string (e.g. a hash of the config) stored in the checkpoint; a
            checkpoint with another fingerprint is refused.
        progress: a progress meter with the current loss on stderr (a redrawn bar on a
            terminal, a plain line every 30 s otherwise).
    """

    batch: int = 256
    iterations: int = 200
    common_random_numbers: bool = False
    patience: int | None = None
    min_delta: float = 0.0
    smoothing: float = 0.9
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int = 25
    fingerprint: str = ""
    progress: bool = False

    def __check_init__(self):
        check_int("batch", self.batch, lo=1)
        check_int("iterations", self.iterations, lo=1)
        check_bool("common_random_numbers", self.common_random_numbers)
        if self.patience is not None:
            check_int("patience", self.patience, lo=1)
        check_real("min_delta", self.min_delta, lo=0.0, lo_open=False)
        check_real("smoothing", self.smoothing, lo=0.0, hi=1.0, lo_open=False)
        check_checkpoint_option(self.checkpoint)
        check_int("checkpoint_every", self.checkpoint_every, lo=1)
        if not isinstance(self.fingerprint, str):
            raise ValueError(f"fingerprint must be a string; got {self.fingerprint!r}")
        check_bool("progress", self.progress)


def fit_schedule(
    loss: AbstractLoss,
    schedule: AbstractSchedule,
    key: PRNGKeyArray,
    options: FitOptions | None = None,
    *,
    optimizer: optax.GradientTransformation | None = None,
    callback: Callable[[int, float, AbstractSchedule], None] | None = None,
) -> FitResult:
    """Minimise ``loss`` over the array leaves of ``schedule`` with optax.

    Each iteration takes one optimiser step on ``loss(schedule, x0)``, where ``x0`` holds
    ``options.batch`` prior states drawn from ``loss.interpolant`` (``sample_prior``), from
    ``fold_in(key, i)`` at iteration i (fresh noise) or from ``key`` at every iteration if
    ``options.common_random_numbers``; for a loss with ``needs_prior = False`` (``ExactLoss``)
    ``x0`` is None and nothing is drawn. A function ``fn(model, x)`` of the final samples is
    fitted as ``SampleLoss(fn, model, interpolant, steps)``.

    Args:
        loss: an ``AbstractLoss``: ``SampleLoss``, ``ThresholdLoss``, ``ExactLoss``,
            ``TeacherLoss`` or a user's own.
        options: a ``FitOptions`` (default ``FitOptions()``).
        optimizer: any optax transformation (default ``make_optimizer``: Adam, 3·10⁻²).
        callback: called as ``callback(iteration, loss, schedule)`` after every iteration.

    Returns:
        A ``FitResult``.

    Raises:
        FloatingPointError: the loss left the finite numbers.
        ValueError: a bad argument, or a checkpoint of another fit (``options.fingerprint``)
            or that does not fit this schedule and optimiser.
    """
    if not isinstance(loss, AbstractLoss):
        raise ValueError("loss must be an AbstractLoss (SampleLoss(fn, model, interpolant, "
                         "steps) for a function fn(model, x) -> scalar of the final samples, "
                         f"ThresholdLoss, ExactLoss); got {type(loss).__name__}")
    if loss.needs_prior and not isinstance(getattr(loss, "interpolant", None), Interpolant):
        raise ValueError(f"{type(loss).__name__} needs the prior batch: it must have a field "
                         "interpolant (an ns.Interpolant) to draw it from")
    check_key("key", key)
    options = FitOptions() if options is None else options
    if not isinstance(options, FitOptions):
        raise ValueError(f"options must be a FitOptions; got {type(options).__name__}")
    check_not_folder(options.checkpoint)
    optimizer = make_optimizer() if optimizer is None else optimizer
    params, static = eqx.partition(schedule, eqx.is_inexact_array)
    if not jax.tree.leaves(params):
        raise ValueError("schedule has no trainable array leaves; use a learnable family such "
                         "as ns.learning.PiecewiseLinear")
    opt_state = optimizer.init(params)

    @eqx.filter_jit
    def update(p, state, objective, x0):  # the loss is an argument: its arrays are traced
        value, grads = jax.value_and_grad(lambda q: objective(eqx.combine(q, static), x0))(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    record = _Record(options.smoothing, options.min_delta)
    start = 0
    if options.checkpoint is not None:
        loaded = load_checkpoint(options.checkpoint, params, opt_state, options.fingerprint)
        if loaded is not None:
            params, opt_state, history = loaded
            for value in history:  # the moving average and the best iteration, replayed
                record.add(value)
            start = len(history)
    bar = progress_bar(options.iterations, desc="fit", initial=start, enabled=options.progress)
    it = start
    try:
        for it in range(start, options.iterations):
            raise_if_pending()  # a Ctrl-C or SIGTERM swallowed during the last iteration
            if options.patience is not None and it - record.best_iteration > options.patience:
                break
            x0 = None
            if loss.needs_prior:
                k = key if options.common_random_numbers else jax.random.fold_in(key, it)
                x0 = sample_prior(loss.interpolant, k, options.batch)
            params, opt_state, value = update(params, opt_state, loss, x0)
            record.add(float(value))
            if not math.isfinite(record.history[-1]):
                raise FloatingPointError(
                    f"the loss became {record.history[-1]} at iteration {it}; lower the "
                    "learning rate or clip gradients (make_optimizer(clip_norm=...))")
            bar.set_postfix_str(f"loss {record.history[-1]:.3e} (avg {record.smoothed[-1]:.3e})",
                                refresh=False)
            bar.update(1)
            if callback is not None:
                callback(it, record.history[-1], eqx.combine(params, static))
            if options.checkpoint is not None and (it + 1) % options.checkpoint_every == 0:
                save_checkpoint(options.checkpoint, params, opt_state, record.history,
                                options.fingerprint)
        else:
            it = options.iterations
    finally:
        bar.close()
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params)):
        raise FloatingPointError("the schedule's parameters left the finite numbers in the last "
                                 "iteration; lower the learning rate or clip gradients")
    stopped = it < options.iterations
    if options.checkpoint is not None:
        save_checkpoint(options.checkpoint, params, opt_state, record.history,
                        options.fingerprint, stopped_early=stopped)
    return FitResult(eqx.combine(params, static), record.history, record.smoothed, it, stopped)



class _Record:
    """Loss history, its moving average and the iteration of the best average."""

    def __init__(self, smoothing: float, min_delta: float):
        self.smoothing, self.min_delta = smoothing, min_delta
        self.history: list[float] = []
        self.smoothed: list[float] = []
        self.best = math.inf
        self.best_iteration = 0

    def add(self, value: float):
        prev = self.smoothed[-1] if self.smoothed else value
        avg = self.smoothing * prev + (1.0 - self.smoothing) * value
        self.history.append(value)
        self.smoothed.append(avg)
        if avg < self.best - self.min_delta:
            self.best, self.best_iteration = avg, len(self.history) - 1
