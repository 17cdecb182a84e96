"""Train a network as a denoiser: EDM's preconditioned regression with optax, an EMA of the
weights, checkpoints that resume to the same result, and a progress meter."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checkpoint import (
    check_checkpoint_option,
    check_not_folder,
    load_checkpoint,
    save_checkpoint,
)
from .._interrupt import raise_if_pending
from .._progress import progress_bar
from .._validation import check_bool, check_int, check_key, check_positive, check_real
from ..learning.fit import make_optimizer
from ..models.base import AbstractDataLaw
from .denoiser import NetworkDenoiser, apply_network
from .preconditioning import regression_target, sigma_scalings

__all__ = ["LogNormalNoise", "LogUniformNoise", "NOISE_LAWS", "ArrayData", "TrainOptions",
           "TrainResult", "train_denoiser", "data_scale"]


class LogNormalNoise(eqx.Module):
    """log σ ~ N(mean, std²): EDM's training law (mean −1.2, std 1.2, for images with
    σ_d = 0.5). In dimension d the mixture's speciation level σ ≈ m√d may lie far in its tail:
    shift ``mean`` or use ``LogUniformNoise``."""

    mean: float = -1.2
    std: float = 1.2

    def __check_init__(self):
        check_real("mean", self.mean)
        check_positive("std", self.std)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
        return jnp.exp(self.mean + self.std * jax.random.normal(key, shape))

    def range(self) -> tuple[float, float]:
        """exp(mean ± 3 std): the levels the network learns (99.7 % of the draws)."""
        return math.exp(self.mean - 3 * self.std), math.exp(self.mean + 3 * self.std)


class LogUniformNoise(eqx.Module):
    """log σ uniform on [log σ_min, log σ_max]: every scale weighted alike, the natural law
    when the levels that decide the features (σ_d and m√d for the mixture) are far apart."""

    sigma_min: float = 2e-3
    sigma_max: float = 80.0

    def __check_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_real("sigma_max", self.sigma_max, lo=self.sigma_min)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
        u = jax.random.uniform(key, shape)
        return jnp.exp(math.log(self.sigma_min)
                       + u * (math.log(self.sigma_max) - math.log(self.sigma_min)))

    def range(self) -> tuple[float, float]:
        return self.sigma_min, self.sigma_max


#: Noise-level laws by the name configs use (``train.noise``).
NOISE_LAWS: dict[str, Callable[..., Any]] = {"log_normal": LogNormalNoise,
                                             "log_uniform": LogUniformNoise}


class ArrayData(eqx.Module):
    """Training data given as an array of samples (n, d): each batch draws rows uniformly with
    replacement."""

    points: Float[Array, "n d"]

    def __init__(self, points):
        x = np.asarray(points)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"data must be an array of shape (n, d), n, d >= 1; got shape "
                             f"{x.shape}")
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"data must hold numbers; got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError("data must be finite")
        self.points = jnp.asarray(x, jnp.float32)

    @property
    def d(self) -> int:
        return int(self.points.shape[1])

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        return self.points[jax.random.randint(key, (n,), 0, self.points.shape[0])]


def data_scale(data: AbstractDataLaw | ArrayData, key: PRNGKeyArray, n: int = 4096) -> float:
    """σ_d: the root mean square of the coordinates (of ``n`` samples of a law, or of the
    array), EDM's data scale."""
    x = data.points if isinstance(data, ArrayData) else data.sample(key, n)
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))))


class TrainOptions(eqx.Module):
    """How ``train_denoiser`` runs.

    Attributes:
        steps: optimiser steps in total (a resumed training counts the earlier ones).
        batch: samples per step, each at its own noise level.
        ema_decay: the EMA factor of the weights (the saved denoiser), warmed up as
            min(ema_decay, (1 + i)/(10 + i)) at step i (so early weights are not kept long).
        checkpoint: a file written atomically every ``checkpoint_every`` steps and at the end
            (with its loss history beside it, as ``fit_schedule``'s); if it exists, training
            resumes from it and ends with exactly the weights of an uninterrupted run.
        fingerprint: any string (e.g. a hash of the config), stored in the checkpoint with
            a hash of what ``train_denoiser`` can see of the run (the key, d, σ_d, the noise
            law, batch, steps, EMA factor, the parameters' shapes); a checkpoint of another run
            is refused. The optimiser and the data cannot be hashed: put them in here.
        progress: a progress meter with the loss on stderr.
    """

    steps: int = 4000
    batch: int = 256
    ema_decay: float = 0.999
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int = 500
    fingerprint: str = ""
    progress: bool = False

    def __check_init__(self):
        check_int("steps", self.steps, lo=1)
        check_int("batch", self.batch, lo=1)
        check_real("ema_decay", self.ema_decay, lo=0.0, hi=1.0, lo_open=False)
        check_int("checkpoint_every", self.checkpoint_every, lo=1)
        check_bool("progress", self.progress)
        check_checkpoint_option(self.checkpoint)
        if not isinstance(self.fingerprint, str):
            raise ValueError(f"fingerprint must be a string; got {self.fingerprint!r}")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What ``train_denoiser`` returns.

    Attributes:
        denoiser: the EMA weights as a ``NetworkDenoiser`` (the one to sample).
        last: the last iterate's weights.
        history: the loss (mean over the batch of |F − F*|²/d) at every step.
    """

    denoiser: NetworkDenoiser
    last: NetworkDenoiser
    history: list[float]


def train_denoiser(network: Any, data: AbstractDataLaw | ArrayData | ArrayLike,
                   key: PRNGKeyArray, *,
                   sigma_data: float | None = None,
                   noise: LogNormalNoise | LogUniformNoise | None = None,
                   options: TrainOptions | None = None,
                   optimizer: optax.GradientTransformation | None = None,
                   callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Fit ``network`` so that ``NetworkDenoiser(network, d, σ_d)`` denoises ``data``.

    Step i draws a batch x1 (fresh samples of the law, or rows of the array), one σ per sample
    from ``noise``, z ~ N(0, I), y = x1 + σ z, and takes one optimiser step on
    mean |F(c_in y, c_noise) − F*|²/d with F* = (x1 − c_skip y)/c_out: EDM's loss with its
    weight λ(σ) = 1/c_out² (see ``noisesched.networks.preconditioning``); the noise input is
    clipped to the noise law's range, which the returned denoisers keep. Every random number
    of step i comes from ``fold_in(key, i)``, so a resumed run repeats the same steps.

    Args:
        network: an ``eqx.Module`` called as ``network(x, noise)`` on one sample
            (``noisesched.MLP``, ``noisesched.ConvNet``, or a user's own).
        data: a data law with exact samples (``sample``), or samples: ``ArrayData`` or an
            array of shape (n, d).
        key: the PRNG key of the whole training.
        sigma_data: σ_d; None: ``data_scale(data)`` (the RMS of the coordinates).
        noise: the law of σ (default ``LogNormalNoise()``, EDM's).
        options: a ``TrainOptions``.
        optimizer: any optax transformation (default: Adam, 10⁻³, warm-up and cosine decay).
        callback: called as ``callback(step, loss)`` after every step.

    Raises:
        FloatingPointError: the loss left the finite numbers.
        ValueError: a bad argument, or a checkpoint of another training.
    """
    check_key("key", key)
    options = TrainOptions() if options is None else options
    if not isinstance(options, TrainOptions):
        raise ValueError(f"options must be a TrainOptions; got {type(options).__name__}")
    if isinstance(data, np.ndarray | jax.Array):
        data = ArrayData(data)
    if not isinstance(data, AbstractDataLaw | ArrayData):
        raise ValueError(f"data must be a data law (noisesched.AbstractDataLaw), ArrayData or "
                         f"an array of shape (n, d); got {type(data).__name__}")
    noise = LogNormalNoise() if noise is None else noise
    if not isinstance(noise, LogNormalNoise | LogUniformNoise):
        raise ValueError(f"noise must be LogNormalNoise or LogUniformNoise; got "
                         f"{type(noise).__name__}")
    if not callable(network):
        raise ValueError(f"network must be callable as network(x, noise); got "
                         f"{type(network).__name__}")
    check_not_folder(options.checkpoint)
    d = data.d
    data_key, train_key = jax.random.split(key)
    if sigma_data is None:
        sigma_data = data_scale(data, data_key)
    check_positive("sigma_data", sigma_data)
    try:
        probe = jax.eval_shape(network, jax.ShapeDtypeStruct((d,), jnp.float32),
                               jax.ShapeDtypeStruct((), jnp.float32))
    except (TypeError, ValueError) as err:
        raise ValueError(f"network(x, noise) must take x of shape (d,) = ({d},) and return "
                         f"shape (d,); it fails: {err}") from None
    if getattr(probe, "shape", None) != (d,):
        raise ValueError(f"network(x, noise) must return shape (d,) = ({d},) for x of shape "
                         f"({d},); got {getattr(probe, 'shape', probe)}")
    if optimizer is None:
        optimizer = make_optimizer(
            "adam", 1e-3, lr_schedule="warmup_cosine" if options.steps > 2 else "constant",
            iterations=options.steps, warmup=max(1, options.steps // 20))
    params, static = eqx.partition(network, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    ema = params
    batch, decay, sd = options.batch, options.ema_decay, float(sigma_data)
    sigma_range = noise.range()

    def loss_fn(p, x1, sigma, z):
        s = sigma_scalings(sigma, sd, sigma_range)
        f = apply_network(eqx.combine(p, static), (x1 + sigma * z) * s.inp, s.noise[:, 0])
        return jnp.mean(jnp.square(f - regression_target(x1, z, sigma, sd)))

    @eqx.filter_jit
    def update(p, ema, state, step, source, law):
        k_data, k_sigma, k_z = jax.random.split(jax.random.fold_in(train_key, step), 3)
        x1 = source.sample(k_data, batch).astype(jnp.float32)
        sigma = law.sample(k_sigma, (batch, 1))
        z = jax.random.normal(k_z, x1.shape)
        value, grads = jax.value_and_grad(loss_fn)(p, x1, sigma, z)
        updates, state = optimizer.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
        ema = jax.tree.map(lambda e, q: rate * e + (1.0 - rate) * q, ema, p)
        return p, ema, state, value

    history: list[float] = []
    if options.checkpoint is not None:
        run = json.dumps({"key": np.asarray(jax.random.key_data(key)).tolist(), "d": d,
                          "sigma_data": sd, "noise": repr(noise), "batch": batch,
                          "steps": options.steps, "ema_decay": decay,
                          "shapes": str(jax.tree.map(lambda a: (a.shape, str(a.dtype)),
                                                     params))})
        fingerprint = f"{options.fingerprint}:{hashlib.sha256(run.encode()).hexdigest()[:16]}"
        loaded = load_checkpoint(options.checkpoint, (params, ema), opt_state, fingerprint)
        if loaded is not None:
            (params, ema), opt_state, history = loaded
    bar = progress_bar(options.steps, desc="train", initial=len(history),
                       enabled=options.progress)
    try:
        for step in range(len(history), options.steps):
            raise_if_pending()  # a Ctrl-C or SIGTERM swallowed during the last step
            params, ema, opt_state, value = update(params, ema, opt_state, jnp.asarray(step),
                                                   data, noise)
            history.append(float(value))
            if not math.isfinite(history[-1]):
                raise FloatingPointError(f"the training loss became {history[-1]} at step "
                                         f"{step}; lower the learning rate")
            bar.set_postfix_str(f"loss {history[-1]:.4f}", refresh=False)
            bar.update(1)
            if callback is not None:
                callback(step, history[-1])
            if options.checkpoint is not None and (step + 1) % options.checkpoint_every == 0:
                save_checkpoint(options.checkpoint, (params, ema), opt_state, history,
                                fingerprint)
    finally:
        bar.close()
    if options.checkpoint is not None:
        save_checkpoint(options.checkpoint, (params, ema), opt_state, history, fingerprint)
    return TrainResult(
        NetworkDenoiser(eqx.combine(ema, static), d, sd, sigma_range),
        NetworkDenoiser(eqx.combine(params, static), d, sd, sigma_range), history)
