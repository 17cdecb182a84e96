"""The experiment schema: TOML sections that map onto the library's constructors.

A run config has a ``name`` and six sections:

* ``[model]``: ``name`` (a ``noisesched.models.REGISTRY`` entry, or ``"package.module:Name"``
  for a user's model) and the constructor's arguments (``d``, ...);
* ``[interpolant]``: ``kind``, ``shape`` of ``noisesched.Interpolant`` (d is the model's);
* ``[schedule]``: ``name`` (a ``noisesched.schedules.REGISTRY`` entry, a learnable family of
  ``noisesched.learning.FAMILIES``, a schedule method of ``noisesched.methods.METHODS``, or
  ``"@file.json"`` for a saved schedule) and its options (``k``, ...). A method is made for the
  config's model, interpolant and ``solver.steps``, and for ``solver.name`` when it takes a
  ``solver`` option and the solver is a noise-level sampler; ``sigma_max = "dimension_aware"``
  sets σ_max from the model's data law (``noisesched.methods.dimension_aware_sigma_max``);
* ``[solver]``: ``name``, ``steps``, ``method``, ``adaptive``, ``rtol``, ``atol``,
  ``max_steps`` (the options of ``noisesched.solve``);
* ``[sample]``: ``n``, ``seed``, ``dtype``, ``chunk_size``, ``devices``, ``shard``
  (``noisesched.sample_summary``);
* ``[output]``: ``figures``, ``trajectories``.

One loader reads every section: values are coerced from the annotated types of the constructor
(or of the section's dataclass), and validated once, by the library's constructors, before any
sample is drawn; each error names ``section.key``. An unknown key suggests the nearest valid one;
a key that belongs to another choice of the section (``k`` with the constant schedule) is
dropped with a warning that says so.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import re
import sys
import tomllib
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp

from .. import methods as methods_mod
from .. import models as models_mod
from .. import networks
from .. import schedules as schedules_mod
from .._solve.span import span_applies
from .._typing import IntLike, RealLike
from .._validation import check_choice, check_file, check_int, check_positive
from ..interpolants import Interpolant
from ..learning.families import FAMILIES
from ..models.base import check_data_law
from ..sampling import (
    ADAPTIVE_SOLVERS,
    FINAL_STEPS,
    NOISE_LEVEL_SOLVERS,
    SCAN_SOLVERS,
    SOLVERS,
)
from ..streaming import SHARDS

DTYPES = ("float32", "float64")
METHODS = ("diffrax", "scan", "pallas")


class ConfigError(ValueError):
    """A config that cannot run: bad key, type, value, or file."""


class ConfigWarning(UserWarning):
    """A config key that does not apply to the chosen model or schedule, and is ignored."""


# ----------------------------------------------------------------------------- coercion
#: A config's name is the default output folder's name (noisesched-out/NAME): one plain
#: component, so that no name writes outside noisesched-out or into it.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,127}")


def check_name(name: Any, where: str = "name") -> None:
    """Check a config's ``name`` is a plain folder name (letters, digits and ``_ . + = -``,
    not starting with ``.`` or ``-``, at most 128 characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where} must be a plain folder name: 1 to 128 letters, digits or "
                          f"'_.+=-', not starting with '.' or '-' (it names the output folder "
                          f"noisesched-out/NAME); got {name!r}")


def _hints(target: Callable) -> dict[str, Any]:
    """The resolved annotations of ``target``'s parameters (a function, or a class: its fields
    and its ``__init__``); a name that does not resolve leaves its parameter unannotated."""
    out: dict[str, Any] = {}
    sources = [target, getattr(target, "__init__", None)] if inspect.isclass(target) else [target]
    local = {"Interpolant": Interpolant}  # named only for type checkers in some modules
    for source in sources:
        raw = getattr(source, "__annotations__", None)
        if not isinstance(raw, dict):
            continue
        scope = getattr(inspect.unwrap(source) if callable(source) else source, "__globals__",
                        None)
        if scope is None:
            scope = vars(sys.modules.get(getattr(source, "__module__", ""), types.ModuleType("_")))
        for key, annotation in raw.items():
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, dict(scope), local)  # noqa: S307 - own modules
                except Exception:
                    continue
            out[key] = annotation
    return out


def parameters(target: Callable) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a constructor or maker (not ``self``, ``*args``, ``**kw``)."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    return {name: p for name, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def coerce(where: str, value: Any, annotation: Any) -> Any:
    """``value`` (from TOML or ``--set``) as the type ``annotation`` asks for, or a
    ``ConfigError`` naming ``where``. Annotations without a rule pass the value through; the
    constructor then checks it."""
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false; got {value!r}")
        return value
    if annotation is int or annotation is IntLike:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)  # 1e6 is a fine way to write a dimension
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer; got {value!r}")
        return value
    if annotation is float or annotation is RealLike:
        if not _is_number(value):
            raise ConfigError(f"{where} must be a number; got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string; got {value!r}")
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if any(type(value) is type(a) and value == a for a in allowed):  # 1 is not true
            return value
        names = [str(a).lower() if isinstance(a, bool) else repr(a) for a in allowed]
        raise ConfigError(f"{where} must be {', '.join(names[:-1])} or {names[-1]}; got "
                          f"{value!r}")
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        errors = []
        for member in members:
            try:
                return coerce(where, value, member)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]  # no member takes the value (a list of strings for an array)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list; got {value!r}")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return origin(coerce(f"{where} entry", v, item) for v in value)
    if isinstance(value, list):  # arrays: lists of numbers
        if not all(_is_number(v) or isinstance(v, list) for v in value):
            raise ConfigError(f"{where} must be a list of numbers; got {value!r}")
    return value


def construct(section: str, target: Callable, kwargs: dict[str, Any], name: str = ""):
    """``target(**kwargs)``; a missing argument or a ``ValueError`` becomes a ``ConfigError``
    naming the section."""
    for key, p in parameters(target).items():
        if p.default is p.empty and key not in kwargs:
            raise ConfigError(f"{section}.{key} is required"
                              + (f" for {section} {name!r}" if name else ""))
    try:
        return target(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:
        raise section_error(section, err, (*kwargs, *parameters(target))) from None


def section_error(section: str, err: ValueError, keys: Iterable[str]) -> ConfigError:
    """``err`` as a ``ConfigError`` of ``section``: ``section.key …`` where its message starts
    with one of ``keys``, else ``[section] …``."""
    text = str(err)
    if text.split(" ", 1)[0] in set(keys):
        return ConfigError(f"{section}.{text}")
    return ConfigError(f"[{section}] {text}")


def suggest(key: str, known: Sequence[str]) -> str:
    """" (did you mean '…'?)" for the nearest of ``known``, or ""."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def suggest_key(key: str) -> str:
    """" (did you mean '…'?)" for a key given outside any section: the nearest section, or the
    ``section.key`` whose full name or key is nearest (``stpes`` → ``solver.steps``)."""
    full = all_keys()
    tails = sorted({k.partition(".")[2] for k in full if "." in k} - set(full))
    close = difflib.get_close_matches(key, [*SECTIONS, *full, *tails], n=1)
    if not close:
        return ""
    if close[0] in SECTIONS or close[0] in full:
        return f" (did you mean {close[0]!r}?)"
    matches = [k for k in full if k.partition(".")[2] == close[0]]
    return " (did you mean " + " or ".join(repr(k) for k in matches) + "?)"


# ----------------------------------------------------------------------------- choices
@dataclasses.dataclass(frozen=True)
class Choice:
    """A section that names one entry of a registry (or an importable constructor) and the
    options given for it."""

    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _plain(v) for k, v in self.options.items()}}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


#: What the model section's constructor receives from nothing else; the schedule's maker also
#: receives the interpolant (``interpolant``) where it takes one.
#: Arguments of a schedule maker that come from the rest of the config, not from [schedule]:
#: the interpolant of a built-in schedule, and the model, interpolant and N of a method.
_SCHEDULE_CONTEXT = ("interpolant", "model", "interp", "steps")
#: ``[schedule] sigma_max = "dimension_aware"``: σ_max from the model's data law
#: (``noisesched.methods.dimension_aware_sigma_max``), resolved when the schedule is built.
DIMENSION_AWARE = "dimension_aware"


class ModelLoader(typing.NamedTuple):
    """How ``[model] name = "PREFIX:PATH"`` loads a saved model: ``load(path, **options)``, and
    ``digest(path)``, a string that changes whenever the saved model does (resumed work of
    another model is never mixed in)."""

    load: Callable[..., Any]
    digest: Callable[[str], str]


#: Model names ``PREFIX:PATH`` that load a saved model, by prefix.
MODEL_LOADERS: dict[str, ModelLoader] = {
    "learned": ModelLoader(networks.learned, networks.record_digest),
}


def _saved_model(name: str) -> tuple[ModelLoader, str] | None:
    """(loader, path) of a model name ``PREFIX:PATH`` whose prefix is in ``MODEL_LOADERS``."""
    prefix, sep, path = name.partition(":")
    return (MODEL_LOADERS[prefix], path) if sep and prefix in MODEL_LOADERS else None


def model_digest(name: str) -> str | None:
    """The digest of a saved model's files (``learned:PATH``), None for any other model."""
    loaded = _saved_model(name)
    return None if loaded is None else loaded[0].digest(loaded[1])


def model_constructor(name: str) -> Callable:
    """The constructor of ``[model] name``: a registry entry, a saved model
    (``"learned:PATH"``, see ``MODEL_LOADERS``), or ``"package.module:Name"`` imported and
    checked against the protocol."""
    if not isinstance(name, str):
        raise ConfigError(f"model.name must be a string (a model of the registry, "
                          f"'learned:PATH' or 'package.module:Name'); got {name!r}")
    loaded = _saved_model(name)
    if loaded is not None:
        loader, path = loaded
        if not path:
            raise ConfigError(f"model.name = {name!r} needs a path after the ':'")
        return functools.partial(loader.load, path)
    if ":" in name:
        return _import_model(name)
    if name not in models_mod.REGISTRY:
        check_choice_config("model.name", name, list(models_mod.REGISTRY)
                            + [f"{key}:PATH" for key in MODEL_LOADERS]
                            + ["package.module:Name"])
    return models_mod.REGISTRY[name]


def _import_model(spec: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or module_name.startswith("."):  # no relative imports
        raise ConfigError(f"model.name must be a registry name, 'learned:PATH' or "
                          f"'package.module:Name'; got {spec!r}")
    if "" not in sys.path and "." not in sys.path:  # as `python -m`: the current folder
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"model.name = {spec!r}: cannot import module {module_name!r} "
                          f"({err}); it must be installed, on PYTHONPATH, or in the current "
                          "folder") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"model.name = {spec!r}: module {module_name!r} has no "
                              f"attribute {attr!r}")
        target = getattr(target, part)
    if inspect.isclass(target):
        _check_protocol(spec, target)
    elif not callable(target):
        raise ConfigError(f"model.name = {spec!r} is not a class or a function")
    return target


def _check_protocol(spec: str, cls: type) -> None:
    """A user's model class must be a denoiser and a data law with nothing left abstract."""
    missing = [base.__name__ for base in (models_mod.AbstractDenoiser, models_mod.AbstractDataLaw)
               if not issubclass(cls, base)]
    if missing:
        raise ConfigError(f"model.name = {spec!r}: {cls.__name__} must subclass "
                          + " and ".join(f"noisesched.{m}" for m in missing)
                          + " (or noisesched.AbstractModel, which is both)")
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        raise ConfigError(f"model.name = {spec!r}: {cls.__name__} does not implement "
                          f"{', '.join(abstract)} of the model protocol")


def check_choice_config(where: str, value: str, choices: Sequence[str]) -> None:
    try:
        check_choice(where, value, choices)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _schedule_registry() -> dict[str, Callable[..., Any]]:
    """Built-in schedules (``noisesched.schedules.REGISTRY``), learnable families
    (``noisesched.learning.FAMILIES``) and schedule methods (``noisesched.methods.METHODS``),
    by name."""
    return {**schedules_mod.REGISTRY, **FAMILIES, **methods_mod.METHODS}


def schedule_maker(name: str) -> Callable[..., Any]:
    """The maker of ``[schedule] name``: a built-in schedule or a learnable family."""
    known = _schedule_registry()
    check_choice_config("schedule.name", name, list(known))
    return known[name]


def _all_options(registry: Mapping[str, Callable], context: Sequence[str] = ()) -> set[str]:
    return {key for target in registry.values() for key in parameters(target)
            if key not in context}


def resolve_choice(section: str, data: Mapping[str, Any], target: Callable,
                    others: set[str], context: Sequence[str] = (), explicit: set[str] | None = None
                    ) -> dict[str, Any]:
    """The options of a choice section coerced from ``target``'s annotations; keys of other
    choices are dropped (with a warning when the user gave them with this choice)."""
    params = {k: p for k, p in parameters(target).items() if k not in context}
    hints = _hints(target)
    out = {}
    for key, value in data.items():
        if key == "name":
            continue
        if key not in params:
            accepts_any = any(p.kind == p.VAR_KEYWORD
                              for p in inspect.signature(target).parameters.values())
            if accepts_any:
                out[key] = value
                continue
            if key in others:
                if explicit is None or key in explicit:
                    allowed = ", ".join(params) or "none"
                    warnings.warn(f"{section}.{key} = {value!r} does not apply to {section} "
                                  f"{data['name']!r} (its options: {allowed}); ignored",
                                  ConfigWarning, stacklevel=2)
                continue
            raise ConfigError(f"unknown {section} key {key!r} for {section} {data['name']!r}"
                              + suggest(key, list(params) + sorted(others)))
        if key == "sigma_max" and value == DIMENSION_AWARE:
            out[key] = value  # resolved from the model when the schedule is built
            continue
        out[key] = coerce(f"{section}.{key}", value, hints.get(key, Any))
    return out


def resolved_options(target: Callable, options: Mapping[str, Any], context: Sequence[str] = ()
                     ) -> dict[str, Any]:
    """``options`` with the defaults of every other parameter that is a plain value (what
    ``results.json`` records)."""
    out = {}
    for key, p in parameters(target).items():
        if key in context:
            continue
        if key in options:
            out[key] = _plain(options[key])
        elif p.default is not p.empty and isinstance(p.default, bool | int | float | str):
            out[key] = p.default
    return out


# ----------------------------------------------------------------------------- plain sections
@dataclasses.dataclass(frozen=True)
class InterpolantSettings:
    """``[interpolant]``: ``noisesched.Interpolant(kind, shape, d)`` with the model's d."""

    kind: str = "vp"  # vp | ve
    shape: str = "linear"  # linear | trig

    def __post_init__(self):
        construct("interpolant", Interpolant, dict(kind=self.kind, shape=self.shape, d=1))


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """``[solver]``: the options of ``noisesched.solve``; ``name`` is the solver."""

    name: str = "euler"
    steps: int = 100
    method: str = "diffrax"  # diffrax | scan | pallas
    adaptive: bool = False
    rtol: float = 1e-4
    atol: float = 1e-4
    max_steps: int = 16_384
    row_block: int = 0  # rows per block of a fixed-grid solve; 0: the platform's choice
    final_step: str = "auto"  # auto | euler | solver: the last interval of a fixed grid
    # as solve's span: the mixture's coefficients carried and the state written once; true asks
    # for it and is refused where it does not apply
    span: Literal["auto", True, False] = "auto"

    def __post_init__(self):
        try:
            check_choice("solver.name", self.name, SOLVERS)
            check_int("solver.steps", self.steps, lo=1)
            check_choice("solver.method", self.method, METHODS)
            if self.method in ("scan", "pallas"):
                check_choice(f"solver.name (method = '{self.method}')", self.name,
                             SCAN_SOLVERS)
            if self.adaptive:
                check_choice("solver.name (adaptive)", self.name, ADAPTIVE_SOLVERS)
                if self.method != "diffrax":
                    raise ConfigError("solver.adaptive = true needs solver.method = 'diffrax'")
            check_positive("solver.rtol", self.rtol)
            check_positive("solver.atol", self.atol)
            check_int("solver.max_steps", self.max_steps, lo=1)
            check_int("solver.row_block", self.row_block, lo=0)
            check_choice("solver.final_step", self.final_step, FINAL_STEPS)
            coerce("solver.span", self.span, Literal["auto", True, False])
            if self.final_step == "euler" and self.name in NOISE_LEVEL_SOLVERS:
                raise ConfigError(f"solver.final_step = 'euler' does not apply to solver.name = "
                                  f"{self.name!r}, which steps in the noise level; use 'auto'")
            if self.row_block and self.adaptive:
                raise ConfigError("solver.row_block applies to fixed-grid solves; set it to 0 "
                                  "(the platform's choice) with solver.adaptive = true")
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``noisesched.solve``."""
        return {"steps": self.steps, "solver": self.name, "method": self.method,
                "adaptive": self.adaptive, "rtol": self.rtol, "atol": self.atol,
                "max_steps": self.max_steps, "row_block": self.row_block or "auto",
                "final_step": self.final_step, "span": self.span}


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """``[sample]``: the batch: ``n`` samples from ``seed`` in ``dtype``, in chunks of
    ``chunk_size`` rows (0: as many as fit a quarter of the free memory) sharded over
    ``devices`` (0: all visible) by ``shard``: ``"rows"`` (each device solves whole samples) or
    ``"coordinates"`` (each device holds a slice of the d coordinates of every sample)."""

    n: int = 4096
    seed: int = 0
    dtype: str = "float32"  # float32 | float64
    chunk_size: int = 0
    devices: int = 0
    shard: str = "rows"  # rows | coordinates

    def __post_init__(self):
        try:
            check_int("sample.n", self.n, lo=1)
            check_int("sample.seed", self.seed, lo=0, hi=2**63 - 1)
            check_choice("sample.dtype", self.dtype, DTYPES)
            check_int("sample.chunk_size", self.chunk_size, lo=0)
            check_int("sample.devices", self.devices, lo=0)
            check_choice("sample.shard", self.shard, SHARDS)
            if self.devices:  # (0 asks for no device count: jax.distributed.initialize() and
                # any other setting of the backend may still come after a config is read)
                check_int("sample.devices", self.devices, lo=0, hi=jax.device_count())
        except ValueError as err:
            raise ConfigError(str(err)) from None


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """``[output]``: figures, and how many samples' paths the trajectory figure shows."""

    figures: bool = True
    trajectories: int = 200

    def __post_init__(self):
        try:
            check_int("output.trajectories", self.trajectories, lo=0)
        except ValueError as err:
            raise ConfigError(str(err)) from None


PLAIN_SECTIONS: dict[str, type] = {"interpolant": InterpolantSettings, "solver": SolverSettings,
                                   "sample": SampleSettings, "output": OutputSettings}
CHOICE_SECTIONS = ("model", "schedule")
SECTIONS = ("model", "interpolant", "schedule", "solver", "sample", "output")


def settings_from_table(section: str, cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` for a flat table of a command (``[fit]``, ``[train]``): each value
    coerced to the type of its field's default (lists to tuples), unknown keys refused with the
    nearest known one."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown {section} key {key!r}" + suggest(key, list(fields)))
        default = fields[key].default
        where = f"{section}.{key}"
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{where} must be a list; got {value!r}")
            value = tuple(int(v) if isinstance(v, float) and v.is_integer() else v
                          for v in value)
        elif isinstance(default, bool):
            value = coerce(where, value, bool)
        elif isinstance(default, int):
            value = coerce(where, value, int)
        elif isinstance(default, float):
            value = coerce(where, value, float)
        else:
            value = coerce(where, value, str)
        values[key] = value
    return cls(**values)


# ----------------------------------------------------------------------------- the run config
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One experiment. Defaults: the paper's GM (d = 10^4, p = 0.8, m = 1, σ = 0.5), VP,
    VP-dilated (k = 3), N = 100 Euler steps, n = 4096."""

    name: str = "experiment"
    model: Choice = Choice("gm", {"d": 10_000})
    interpolant: InterpolantSettings = InterpolantSettings()
    schedule: Choice = Choice("vp_dilated", {"k": 3.0})
    solver: SolverSettings = SolverSettings()
    sample: SampleSettings = SampleSettings()
    output: OutputSettings = OutputSettings()
    #: a schedule method's result, made once: a method may cost minutes (it optimises against
    #: the model), and a config is built several times (in float32 and float64 alike; the
    #: knots are cast to the precision of each solve)
    _method_schedules: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                                compare=False)

    def __post_init__(self):
        check_name(self.name)
        # every constructor validates its arguments before any sample is drawn, in the samples'
        # precision (a level that float32 rounds to 0 is fine in float64)
        float64 = self.sample.dtype == "float64"
        with jax.enable_x64(float64):
            model, interp, _ = self.build()
            try:
                model.check_resolution(interp, jnp.float64 if float64 else jnp.float32)
            except ValueError as err:
                keys = parameters(model_constructor(self.model.name))
                raise section_error("model", err, keys) from None
            self._check_span(model, jnp.float64 if float64 else jnp.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("always", schedules_mod.ScheduleKindWarning)
            schedules_mod.warn_if_mismatched(self.schedule.name, self.interpolant.kind,
                                             stacklevel=4)

    def _check_span(self, model, dtype) -> None:
        """``solver.span = true`` where the span form does not apply is refused here, before
        any solve (``solve`` would refuse it at its first call)."""
        s = self.solver
        states = jax.ShapeDtypeStruct((1, model.d), dtype)
        if s.span is True and not span_applies(model, states, solver=s.name, method=s.method,
                                               adaptive=s.adaptive, observe=None):
            raise ConfigError(
                f"solver.span = true needs a fixed-grid Euler or Heun solve (solver.method "
                f"'diffrax' or 'scan', not adaptive) of a model with a span form (the exact "
                f"mixture); here model {self.model.name!r}, solver.name = {s.name!r}, "
                f"solver.method = {s.method!r}{', adaptive' if s.adaptive else ''}: use "
                "'auto' or false")

    def build(self) -> tuple[Any, Interpolant, Any]:
        """(model, interpolant, schedule), each made by the library's constructor."""
        model = construct("model", model_constructor(self.model.name), dict(self.model.options),
                           self.model.name)
        if not isinstance(model, models_mod.AbstractDenoiser):
            raise ConfigError(f"model.name = {self.model.name!r} made a "
                              f"{type(model).__name__}, not a noisesched.AbstractDenoiser")
        interp = construct("interpolant", Interpolant,
                            dict(kind=self.interpolant.kind, shape=self.interpolant.shape,
                                 d=model.d))
        maker = schedule_maker(self.schedule.name)
        options = dict(self.schedule.options)
        if options.get("sigma_max") == DIMENSION_AWARE:
            options["sigma_max"] = methods_mod.dimension_aware_sigma_max(
                check_data_law(model, "sigma_max = 'dimension_aware'").data_law())
        if self.schedule.name in methods_mod.METHODS:
            options.update(model=model, interp=interp, steps=self.solver.steps)
            if "solver" in parameters(maker) and "solver" not in options \
                    and self.solver.name in NOISE_LEVEL_SOLVERS:
                options["solver"] = self.solver.name  # made for the sampler it will meet
        elif "interpolant" in parameters(maker):
            options["interpolant"] = interp
        if "schedule" in self._method_schedules:
            return model, interp, self._method_schedules["schedule"]
        with warnings.catch_warnings():  # said once, when the config was made
            warnings.simplefilter("ignore", schedules_mod.ScheduleKindWarning)
            schedule = construct("schedule", maker, options, self.schedule.name)
        if self.schedule.name in methods_mod.METHODS:
            self._method_schedules["schedule"] = schedule
        return model, interp, schedule

    @property
    def d(self) -> int:
        """The data dimension (the model's)."""
        d = resolved_options(model_constructor(self.model.name), self.model.options).get("d")
        return int(d) if isinstance(d, int) else self.build()[0].d

    def identity(self) -> dict[str, Any]:
        """``to_dict()`` and, for a model loaded from a file (``learned:PATH``), that file's
        digest: what fingerprints of resumable work hash."""
        out = self.to_dict()
        digest = model_digest(self.model.name)
        if digest is not None:
            out["model_digest"] = digest
        return out

    def to_dict(self) -> dict[str, Any]:
        """The whole config with every default resolved (what ``results.json`` records)."""
        model = model_constructor(self.model.name)
        schedule = schedule_maker(self.schedule.name)
        return {
            "name": self.name,
            "model": {"name": self.model.name,
                      **resolved_options(model, self.model.options)},
            "interpolant": dataclasses.asdict(self.interpolant),
            "schedule": {"name": self.schedule.name,
                         **resolved_options(schedule, self.schedule.options, _SCHEDULE_CONTEXT)},
            "solver": dataclasses.asdict(self.solver),
            "sample": dataclasses.asdict(self.sample),
            "output": dataclasses.asdict(self.output),
        }


#: Where each key of a flat config (earlier versions) now lives.
FLAT_KEYS = {
    "model": "model.name", "d": "model.d", "p": "model.p", "m": "model.m",
    "sigma": "model.sigma", "K": "model (name = 'gm_random', weights = [...])",
    "weights": "model.weights", "means_seed": "model.seed", "beta_cw": "model.beta",
    "h": "model.h", "cw_form": "model.name ('cw' or 'cw_exact')", "kind": "interpolant.kind",
    "shape": "interpolant.shape", "schedule": "schedule.name", "k": "schedule.k",
    "offset": "schedule.offset", "sigma_min": "schedule.sigma_min",
    "sigma_max": "schedule.sigma_max", "rho": "schedule.rho", "solver": "solver.name",
    "steps": "solver.steps", "method": "solver.method", "adaptive": "solver.adaptive",
    "rtol": "solver.rtol", "atol": "solver.atol", "max_steps": "solver.max_steps",
    "n": "sample.n", "seed": "sample.seed", "dtype": "sample.dtype",
    "chunk_size": "sample.chunk_size", "devices": "sample.devices",
    "figures": "output.figures", "trajectories": "output.trajectories",
}


def _flat_config_error(keys: Sequence[str], where: str) -> ConfigError:
    moves = "; ".join(f"{k} → {FLAT_KEYS[k]}" for k in keys if k in FLAT_KEYS)
    return ConfigError(f"{where}a flat config of an earlier version: its keys now live in "
                       f"sections [model], [interpolant], [schedule], [solver], [sample], "
                       f"[output]; move them: {moves} (see configs/ for examples)")


def _section_keys(section: str, choice: str | None = None) -> list[str]:
    if section in PLAIN_SECTIONS:
        return [f.name for f in dataclasses.fields(PLAIN_SECTIONS[section])]
    registry = (models_mod.REGISTRY if section == "model"
                else _schedule_registry())
    return ["name", *sorted(_all_options(registry, _SCHEDULE_CONTEXT))]


def all_keys() -> list[str]:
    """Every ``section.key`` a run config can hold (for suggestions)."""
    return ["name"] + [f"{s}.{k}" for s in SECTIONS for k in _section_keys(s)]


def from_mapping(data: Mapping[str, Any], base: RunConfig | None = None, *,
                 where: str = "") -> RunConfig:
    """A validated config from nested ``data`` (sections as tables) on top of ``base``.

    A section that names another choice than ``base`` (``schedule.name``) starts from that
    choice's defaults, keeping the base's options that it also takes."""
    base = base or RunConfig()
    data = dict(data)
    flat = [k for k, v in data.items() if k in FLAT_KEYS and not isinstance(v, Mapping)]
    if flat:
        raise _flat_config_error(flat, where)
    stray = [k for k in data if k != "name" and k not in SECTIONS]
    if stray:
        key = stray[0]
        raise ConfigError(f"{where}unknown config key {key!r}" + suggest_key(key))
    values: dict[str, Any] = {"name": data.get("name", base.name)}
    for section in SECTIONS:
        given = data.get(section, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"{where}{section} must be a table [{section}]; got {given!r}")
        if section in PLAIN_SECTIONS:
            values[section] = _plain_section(section, given, getattr(base, section))
        else:
            values[section] = choice_section(section, given, getattr(base, section))
    return RunConfig(**values)


def _plain_section(section: str, given: Mapping[str, Any], base):
    cls = PLAIN_SECTIONS[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    updates = {}
    for key, value in given.items():
        if key not in fields:
            raise ConfigError(f"unknown {section} key {key!r}" + suggest(key, sorted(fields)))
        updates[key] = coerce(f"{section}.{key}", value, hints[key])
    return dataclasses.replace(base, **updates)


def choice_section(section: str, given: Mapping[str, Any], base: Choice) -> Choice:
    name = given.get("name", base.name)
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name must be a string; got {name!r}")
    if section == "schedule" and name.startswith("@"):
        name, stored = _schedule_file(name[1:])
        given = {**{k: v for k, v in given.items() if k != "name"}, **stored}
    if section == "model":
        target = model_constructor(name)
        others = _all_options(models_mod.REGISTRY)
        context: Sequence[str] = ()
    else:
        target = schedule_maker(name)
        others = _all_options(_schedule_registry(), _SCHEDULE_CONTEXT)
        context = _SCHEDULE_CONTEXT
    if name == base.name:
        merged = dict(base.options)
    elif _is_loaded(section, name):  # a saved model's options are only those given with it
        merged = {}
    else:
        merged = {k: v for k, v in base.options.items()
                  if k in parameters(target) and k not in context}
    explicit = {k for k in given if k != "name"}
    merged.update({k: v for k, v in given.items() if k != "name"})
    options = resolve_choice(section, {"name": name, **merged}, target, others, context,
                              explicit)
    return Choice(name, types.MappingProxyType(options))


def _schedule_file(path: str) -> tuple[str, dict[str, Any]]:
    """``schedule.name = "@path"``: the family and fields of a schedule saved by
    ``noisesched.learning.save_schedule`` (its content goes into the config, so a rerun needs
    no file)."""
    from ..learning.export import read_schedule_file

    try:
        family, fields = read_schedule_file(path)
    except ValueError as err:
        raise ConfigError(f"{err} (schedule.name = '@{path}')") from None
    fields.pop("interpolant", None)  # the config's own interpolant
    return family, fields


# ----------------------------------------------------------------------------- files
def _read_text(path: str | Path) -> tuple[Path, str]:
    """(path, its text) of a config file, with a clear error for what cannot be one."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder; give a .toml config (or a "
                          "results.json) in it")
    try:
        check_file("config file", path)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        return path, path.read_text(encoding="utf-8-sig")  # a byte-order mark is not TOML's
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"
                          ) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The mapping in a TOML file."""
    path, text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    if not _has_settings(data):  # most likely the wrong file, or one not yet saved: never
        # run the defaults
        raise ConfigError(f"{path}: holds no settings (at most a name and empty tables); a "
                          "config names at least its [model] (configs/ has examples)")
    return data


def _has_settings(data: Mapping[str, Any], top: bool = True) -> bool:
    """Whether ``data`` holds a value other than empty tables and its top-level ``name``."""
    return any(_has_settings(value, False) if isinstance(value, dict) else
               not (top and key == "name") for key, value in data.items())


def read_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a TOML config, or the ``config`` of a ``results.json``."""
    if Path(path).suffix != ".json":
        return read_toml(path)
    path, text = _read_text(path)
    try:
        result = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a results.json: malformed JSON ({err})") from None
    if not isinstance(result, dict) or "config" not in result:
        raise ConfigError(f"{path}: not a results.json (it has no 'config' entry)")
    data = result["config"]
    # files of other commands, from before they recorded it: a demo's "results" list, a fit's
    # "fit" table, a scaling's "slopes", a training's "parameters"
    legacy = [name for name, key in (("demo", "results"), ("fit", "fit"), ("scaling", "slopes"),
                                     ("train", "parameters")) if key in result]
    command = result.get("command", legacy[0] if legacy else "run")
    if command != "run":
        raise ConfigError(f"{path} is the result of noisesched {command}, not of a run; "
                          f"repeat it with noisesched {command} (its options are in its "
                          "'config')")
    if not isinstance(data, dict) or not _has_settings(data):
        raise ConfigError(f"{path}: its 'config' must be a table of settings; got {data!r}")
    return data


def load(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML config (or a results.json, whose ``config`` is rerun) and apply
    ``section.key=value`` overrides."""
    data = read_file(path)
    data.pop("fit", None)  # a fit config runs with its initial schedule (see noisesched fit)
    return from_mapping(merge(data, parse_overrides(overrides)), where=f"{path}: ")


def _is_loaded(section: str, name: Any) -> bool:
    """Whether ``[section] name`` loads a saved model (``learned:PATH``)."""
    return section == "model" and isinstance(name, str) and _saved_model(name) is not None


def _applicable(section: str, name: Any) -> set[str] | None:
    """The options that choice ``name`` of ``section`` keeps from another choice (None: not
    a known choice); none for a saved model, whose d is its own."""
    if _is_loaded(section, name):
        return set()
    try:
        target = model_constructor(name) if section == "model" else schedule_maker(name)
    except (ConfigError, TypeError):
        return None
    return set(parameters(target))


def merge(data: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the nested ``updates`` applied, section by section. Where ``updates``
    names another choice (``schedule.name``), the options ``data`` gave for its own choice are
    kept only if the new one takes them."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for section in CHOICE_SECTIONS:
        new = updates.get(section, {}).get("name") if isinstance(updates.get(section),
                                                                 Mapping) else None
        old = out.get(section)
        if new is not None and isinstance(old, dict) and old.get("name") != new:
            takes = _applicable(section, new)
            if takes is not None:
                out[section] = {k: v for k, v in old.items() if k in takes}
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def parse_value(raw: str) -> Any:
    """A TOML value; a bare word is a string."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def parse_overrides(items: Sequence[str], sections: Sequence[str] = SECTIONS
                    ) -> dict[str, Any]:
    """``["model.d=1000", "schedule.name=constant"]`` → ``{"model": {"d": 1000}, "schedule":
    {"name": "constant"}}`` (TOML values; a bare word is a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes section.key=value; got {item!r}")
        section, dot, sub = key.partition(".")
        value = parse_value(raw)
        if not dot:
            if key != "name":
                hint = (f" (now {FLAT_KEYS[key]})" if key in FLAT_KEYS
                        else suggest_key(key))
                raise ConfigError(f"unknown config key {key!r}{hint}")
            out["name"] = value
            continue
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r} in {item!r}"
                              + suggest(section, list(sections)))
        out.setdefault(section, {})[sub] = value
    return out


def override(config: RunConfig, updates: Mapping[str, Any]) -> RunConfig:
    """``config`` with nested ``updates`` (as from ``parse_overrides``)."""
    return from_mapping(updates, base=config)
