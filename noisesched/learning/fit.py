"""Fit a learnable schedule with optax by differentiating through the sampler."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import optax

from .._validation import check_int
from ..interpolants import Interpolant
from ..sampling import sample_prior, solve
from ..schedules import AbstractSchedule
from .losses import combined_loss


def fit_schedule(
    model,
    interp: Interpolant,
    schedule: AbstractSchedule,
    key,
    *,
    steps: int = 10,
    batch: int = 256,
    iterations: int = 200,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable = combined_loss,
    common_random_numbers: bool = False,
    solver: str = "euler",
    method: str = "scan",
    log_every: int = 0,
    log=print,
) -> tuple[AbstractSchedule, list[float]]:
    """Minimise ``loss(model, X_1)`` over the array leaves of ``schedule``.

    Each iteration samples ``batch`` prior draws (the same ones every iteration if
    ``common_random_numbers``, else fresh ones from ``fold_in(key, iteration)``), solves the
    PF-ODE with ``steps`` steps of ``solver`` and takes one optimizer step (default Adam, 3e-2).
    Returns the fitted schedule and the loss history.
    """
    check_int("steps", steps, lo=1)
    check_int("batch", batch, lo=1)
    check_int("iterations", iterations, lo=1)
    if interp.d != model.d:
        raise ValueError(f"interpolant d = {interp.d} must equal the model's d = {model.d}")
    optimizer = optax.adam(3e-2) if optimizer is None else optimizer
    params, static = eqx.partition(schedule, eqx.is_inexact_array)
    if not jax.tree.leaves(params):
        raise ValueError("schedule has no trainable array leaves; use a learnable family such "
                         "as ns.learning.PiecewiseLinear")
    state = optimizer.init(params)

    def objective(p, x0):
        sched = eqx.combine(p, static)
        x = solve(model, interp, sched, x0, steps=steps, solver=solver, method=method).x
        return loss(model, x)

    @eqx.filter_jit
    def update(p, state, x0):
        value, grads = jax.value_and_grad(objective)(p, x0)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    history = []
    for it in range(iterations):
        k = key if common_random_numbers else jax.random.fold_in(key, it)
        x0 = sample_prior(interp, k, batch)
        params, state, value = update(params, state, x0)
        history.append(float(value))
        if log_every and (it % log_every == 0 or it == iterations - 1):
            log(f"iteration {it}: loss {history[-1]:.3e}")
    return eqx.combine(params, static), history
