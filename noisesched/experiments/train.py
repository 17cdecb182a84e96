"""``noisesched train CONFIG``: train a network as a denoiser and save it for every command.

A train config has a ``name`` and three sections:

* ``[model]``: the data law (a ``noisesched.models.REGISTRY`` name and its options, as in a run
  config), whose exact samples feed every batch and whose features the trained model is later
  measured against; optional when ``train.data_file`` gives the data;
* ``[network]``: ``name`` (``noisesched.networks.NETWORKS``: ``mlp``, ``conv``) and its options
  (d is the data's; ``conv`` takes the law's ``image_shape`` unless given);
* ``[train]``: the flat table ``TrainSettings``.

The output folder holds ``denoiser.eqx`` and ``denoiser.json`` (load with
``model.name = "learned:FOLDER"`` in run and fit configs), ``train.json`` (settings, timings, loss
history, denoising error), ``loss.png``, and, when the law has an exact denoiser,
``denoising.png`` (the excess error over the exact MMSE per noise level). ``checkpoint.eqx``
(with ``checkpoint.json``) is written during training; rerunning the same config into the same
folder resumes from it with identical results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._checkpoint import checkpoint_files
from .._output import check_output_folder, staged
from .._validation import check_choice, check_int, check_real
from ..learning import LR_SCHEDULES, OPTIMIZERS, make_optimizer
from ..models.base import AbstractDataLaw, AbstractDenoiser
from ..networks import (
    NETWORKS,
    NOISE_LAWS,
    ArrayData,
    TrainOptions,
    denoising_error,
    save_denoiser,
    train_denoiser,
)
from .config import (
    Choice,
    ConfigError,
    check_choice_config,
    check_name,
    choice_section,
    construct,
    merge,
    model_constructor,
    model_digest,
    parameters,
    parse_overrides,
    read_file,
    resolve_choice,
    resolved_options,
    settings_from_table,
    suggest,
)
from .io import environment, save_figure, write_json

__all__ = ["TrainSettings", "TrainConfig", "load_train", "run_train"]

SECTIONS = ("model", "network", "train")
#: Network options that the data fixes.
_NETWORK_CONTEXT = ("d", "key")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The ``[train]`` table."""

    steps: int = 4000
    batch: int = 256
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "warmup_cosine"
    warmup: int = 200
    clip_norm: float = 0.0  # 0: no clipping
    ema_decay: float = 0.999
    noise: str = "log_normal"  # log_normal (EDM) | log_uniform
    noise_mean: float = -1.2  # log_normal: mean and std of log σ
    noise_std: float = 1.2
    sigma_min: float = 0.002  # log_uniform: the range of σ
    sigma_max: float = 80.0
    sigma_data: float = 0.0  # 0: the RMS of the data's coordinates
    data_file: str = ""  # an .npz of samples (n, d) or (n, H, W); empty: the law's samples
    data_key: str = ""  # the array in data_file; empty: its only array
    seed: int = 0
    checkpoint_every: int = 500
    eval_n: int = 2048  # samples per noise level of the denoising error
    eval_sigmas: tuple[float, ...] = ()  # empty: 13 levels log-spaced over the noise law

    def __post_init__(self):
        try:
            check_int("train.steps", self.steps, lo=1)
            check_int("train.batch", self.batch, lo=1)
            check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
            check_real("train.learning_rate", self.learning_rate, lo=0.0)
            check_choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
            if self.lr_schedule == "warmup_cosine":
                if self.steps < 2:
                    raise ConfigError("train.steps must be >= 2 with train.lr_schedule = "
                                      "'warmup_cosine'; got 1")
                check_int("train.warmup", self.warmup, lo=0, hi=self.steps - 1)
            check_real("train.clip_norm", self.clip_norm, lo=0.0, lo_open=False)
            check_real("train.ema_decay", self.ema_decay, lo=0.0, hi=1.0, lo_open=False)
            check_choice("train.noise", self.noise, tuple(NOISE_LAWS))
            check_real("train.noise_mean", self.noise_mean)
            check_real("train.noise_std", self.noise_std, lo=0.0)
            check_real("train.sigma_min", self.sigma_min, lo=0.0)
            check_real("train.sigma_max", self.sigma_max, lo=self.sigma_min)
            check_real("train.sigma_data", self.sigma_data, lo=0.0, lo_open=False)
            check_int("train.seed", self.seed, lo=0, hi=2**32 - 1)
            check_int("train.checkpoint_every", self.checkpoint_every, lo=1)
            check_int("train.eval_n", self.eval_n, lo=2)
            for sigma in self.eval_sigmas:
                check_real("train.eval_sigmas entry", sigma, lo=0.0)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def noise_law(self):
        if self.noise == "log_normal":
            return NOISE_LAWS["log_normal"](self.noise_mean, self.noise_std)
        return NOISE_LAWS["log_uniform"](self.sigma_min, self.sigma_max)

    def levels(self) -> np.ndarray:
        """The noise levels of the denoising error."""
        if self.eval_sigmas:
            return np.asarray(self.eval_sigmas, float)
        if self.noise == "log_uniform":
            lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        else:
            lo, hi = (self.noise_mean - 2.5 * self.noise_std,
                      self.noise_mean + 2.5 * self.noise_std)
        return np.exp(np.linspace(lo, hi, 13))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training: the data (``model`` law and/or ``train.data_file``), the ``network``,
    the ``train`` settings."""

    name: str = "train"
    model: Choice | None = Choice("gm", {"d": 1000})
    network: Choice = Choice("mlp")
    train: TrainSettings = TrainSettings()

    def __post_init__(self):
        check_name(self.name)
        if self.model is None and not self.train.data_file:
            raise ConfigError("a train config needs a data law [model] or train.data_file")
        self.build()  # every constructor validates its arguments before training starts

    def law(self) -> AbstractDataLaw | None:
        if self.model is None:
            return None
        law = construct("model", model_constructor(self.model.name), dict(self.model.options),
                         self.model.name)
        if not isinstance(law, AbstractDataLaw):
            raise ConfigError(f"model.name = {self.model.name!r} is not a data law "
                              "(noisesched.AbstractDataLaw): training needs its samples")
        return law

    def build(self) -> tuple[AbstractDataLaw | None, AbstractDataLaw | ArrayData, Any]:
        """(law or None, training data, network), each made by the library's constructor."""
        law = self.law()
        if self.train.data_file:
            data: AbstractDataLaw | ArrayData = read_array(self.train.data_file,
                                                           self.train.data_key)
            if law is not None and data.d != law.d:
                raise ConfigError(f"train.data_file {self.train.data_file!r} holds samples of "
                                  f"d = {data.d}, but the data law [model] has d = {law.d}")
        elif law is not None:
            try:
                jax.eval_shape(law.sample_one, jax.random.PRNGKey(0))
            except NotImplementedError:
                raise ConfigError(f"the data law {type(law).__name__} has no exact sampler "
                                  "(sample_one): give train.data_file") from None
            data = law
        else:
            raise ConfigError("a train config needs a data law [model] or train.data_file")
        cls = NETWORKS[self.network.name]
        options = dict(self.network.options)
        options["d"] = data.d
        if "image_shape" in parameters(cls) and "image_shape" not in options:
            shape = getattr(law, "image_shape", None)
            if shape is None:
                raise ConfigError(f"network.image_shape is required for network "
                                  f"{self.network.name!r} (the data law gives none)")
            options["image_shape"] = tuple(shape)
        if "d" not in parameters(cls):
            options.pop("d")
        options["key"] = init_key(self.train.seed)
        network = construct("network", cls, options, self.network.name)
        shape = getattr(network, "d", data.d)
        if shape != data.d:
            raise ConfigError(f"network {self.network.name!r} acts on d = {shape}, but the data "
                              f"have d = {data.d}")
        return law, data, network

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.model is not None:
            out["model"] = {"name": self.model.name,
                            **resolved_options(model_constructor(self.model.name),
                                               self.model.options)}
        out["network"] = {"name": self.network.name,
                          **resolved_options(NETWORKS[self.network.name], self.network.options,
                                             _NETWORK_CONTEXT)}
        out["train"] = {k: list(v) if isinstance(v, tuple) else v
                        for k, v in dataclasses.asdict(self.train).items()}
        return out


def init_key(seed: int):
    """The key of the network's initial weights, apart from the training's ``PRNGKey(seed)``
    (whose splits would otherwise coincide with the initialisation's)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def read_array(path: str, key: str = "") -> ArrayData:
    """The samples in an ``.npz`` file: the array ``key`` (or the file's only array), of shape
    (n, d) or (n, H, W) (flattened row-major)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"train.data_file {path!r} does not exist")
    try:
        with np.load(file, allow_pickle=False) as archive:
            names = list(archive.files)
            if key:
                if key not in names:
                    raise ConfigError(f"train.data_key {key!r} is not in {path!r} (arrays: "
                                      f"{', '.join(names) or 'none'})")
                array = archive[key]
            elif len(names) == 1:
                array = archive[names[0]]
            else:
                raise ConfigError(f"{path!r} holds {len(names)} arrays "
                                  f"({', '.join(names) or 'none'}); name one with "
                                  "train.data_key")
    except ConfigError:
        raise
    except Exception as err:  # NumPy raises several kinds for a file that is not an .npz
        raise ConfigError(f"train.data_file {path!r} is not a readable .npz ({err})") from None
    if array.ndim == 3:
        array = array.reshape(array.shape[0], -1)
    if array.ndim != 2:
        raise ConfigError(f"train.data_file {path!r}: the samples must have shape (n, d) or "
                          f"(n, H, W); got {array.shape}")
    try:
        return ArrayData(array)
    except ValueError as err:
        raise ConfigError(f"train.data_file {path!r}: {err}") from None


def _network_section(given: Mapping[str, Any]) -> Choice:
    name = given.get("name", "mlp")
    if not isinstance(name, str):
        raise ConfigError(f"network.name must be a string; got {name!r}")
    check_choice_config("network.name", name, list(NETWORKS))
    others = {k for cls in NETWORKS.values() for k in parameters(cls)} - set(_NETWORK_CONTEXT)
    options = resolve_choice("network", {"name": name, **given}, NETWORKS[name], others,
                              _NETWORK_CONTEXT, {k for k in given if k != "name"})
    return Choice(name, options)


def from_mapping(data: Mapping[str, Any], *, where: str = "") -> TrainConfig:
    """A validated ``TrainConfig`` from nested ``data``."""
    stray = [k for k in data if k != "name" and k not in SECTIONS]
    if stray:
        raise ConfigError(f"{where}unknown train config key {stray[0]!r}"
                          + suggest(stray[0], ["name", *SECTIONS]))
    for section in SECTIONS:
        if section in data and not isinstance(data[section], Mapping):
            raise ConfigError(f"{where}{section} must be a table [{section}]; got "
                              f"{data[section]!r}")
    model = None
    if "model" in data:
        if "name" not in data["model"]:
            raise ConfigError(f"{where}model.name is required (the data law)")
        model = choice_section("model", data["model"], Choice(data["model"]["name"]))
    return TrainConfig(name=data.get("name", "train"), model=model,
                       network=_network_section(data.get("network", {})),
                       train=settings_from_table("train", TrainSettings, data.get("train", {})))


def load_train(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a train config (TOML, or a ``train.json``) and apply ``section.key=value``
    overrides."""
    path = Path(path)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = dict(json.loads(path.read_text())["config"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: not a train.json with a 'config' entry ({err})"
                              ) from None
    else:
        data = read_file(path)
    return from_mapping(merge(data, parse_overrides(overrides, SECTIONS)), where=f"{path}: ")


def fingerprint(config: TrainConfig) -> str:
    """A hash of everything that changes the trained weights: the config but its name, the
    evaluation and the checkpoint interval; the data file by its content, not its path; a
    saved data law (``learned:PATH``) by its digest."""
    keep = config.to_dict()
    keep.pop("name")
    keep["train"] = {k: v for k, v in keep["train"].items()
                     if not k.startswith("eval_") and k != "checkpoint_every"}
    if config.train.data_file:
        keep["train"]["data_file"] = hashlib.sha256(
            Path(config.train.data_file).read_bytes()).hexdigest()
    if config.model is not None:
        keep["model_digest"] = model_digest(config.model.name)
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def run_train(config: TrainConfig, out: str | Path, *, log=print, progress: bool = True
              ) -> dict[str, Any]:
    """Train, save the denoiser into ``out`` and measure it (see the module docstring)."""
    out = check_output_folder(out, [path.name for path in checkpoint_files("checkpoint.eqx")])
    start = time.perf_counter()
    settings = config.train
    law, data, network = config.build()
    optimizer = make_optimizer(settings.optimizer, settings.learning_rate,
                               lr_schedule=settings.lr_schedule, iterations=settings.steps,
                               warmup=settings.warmup, clip_norm=settings.clip_norm or None)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.eqx"
    if checkpoint.is_file():
        log(f"resuming from {checkpoint}")
    options = TrainOptions(steps=settings.steps, batch=settings.batch,
                           ema_decay=settings.ema_decay, checkpoint=checkpoint,
                           checkpoint_every=settings.checkpoint_every,
                           fingerprint=fingerprint(config), progress=progress)
    result = train_denoiser(network, data, jax.random.PRNGKey(settings.seed),
                            sigma_data=settings.sigma_data or None, noise=settings.noise_law(),
                            options=options, optimizer=optimizer)
    train_seconds = time.perf_counter() - start
    with staged(out) as stage:  # the result's files appear together, once all are written
        record: dict[str, Any] = {
            "command": "train",
            "config": config.to_dict(),
            "sigma_data": result.denoiser.sigma_data,
            "parameters": int(sum(x.size for x in jax.tree.leaves(network)
                                  if hasattr(x, "size"))),
            "loss": result.history,
            "final_loss": float(np.mean(result.history[-max(1, len(result.history) // 20):])),
        }
        files = ["denoiser.eqx", "denoiser.json", "train.json", "loss.png", "checkpoint.eqx",
                 "checkpoint.json"]
        exact = None if law is None else law.data_law()
        if isinstance(exact, AbstractDenoiser):  # the exact denoiser of the training law
            error = denoising_error(result.denoiser, exact, settings.levels(),
                                    jax.random.fold_in(jax.random.PRNGKey(settings.seed), 2),
                                    settings.eval_n)
            record["denoising_error"] = {k: v.tolist() for k, v in error.items()}
            save_figure(stage / "denoising.png", _error_figure(error, config.name))
            files.append("denoising.png")
            finite = np.isfinite(error["ratio"])
            if finite.any():
                worst = int(np.nanargmax(error["ratio"]))
                log(f"excess MSE / exact MMSE: at most {error['ratio'][worst]:.4f} ± "
                    f"{error['ratio_se'][worst]:.4f} (σ = {error['sigma'][worst]:.3g}) over "
                    f"{int(finite.sum())} noise levels")
        save_figure(stage / "loss.png", _loss_figure(result.history, config.name))
        law_spec = config.to_dict().get("model")
        save_denoiser(stage, result.denoiser, law=law_spec,
                      info={"name": config.name, "fingerprint": fingerprint(config),
                            "steps": settings.steps})
        record["timings"] = {"train_seconds": train_seconds,
                             "total_seconds": time.perf_counter() - start}
        record["files"] = files
        record["environment"] = environment()
        write_json(stage / "train.json", record)
        log(f"trained {record['parameters']} parameters for {settings.steps} steps in "
            f"{train_seconds:.0f} s; final loss {record['final_loss']:.4f}")
    return record


def _loss_figure(history: list[float], title: str):
    from .._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, history, lw=0.5, alpha=0.5, label="loss")
    window = max(1, len(history) // 50)
    smooth = np.convolve(history, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="|F − F*|²/d", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def _error_figure(error: dict[str, np.ndarray], title: str):
    from .._plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(error["sigma"], error["ratio"], yerr=error["ratio_se"], marker="o", ms=3)
    ax.axhline(0.05, color="gray", ls="--", lw=0.8, label="5 %")
    ax.set(xscale="log", xlabel="noise level σ = α/β", ylabel="excess MSE / exact MMSE",
           title=title)
    ax.legend()
    fig.tight_layout()
    return fig
