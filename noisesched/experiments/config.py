"""The experiment schema: one frozen dataclass with defaults, read from TOML, validated up front.

Every key of a config file, of ``--set key=value`` and of ``RunConfig(...)`` goes through
``validate`` before any array is made: unknown keys suggest the nearest valid one, and each
error names the key, the allowed range and the value received.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from .. import schedules as schedules_mod
from .._validation import check_choice, check_int, check_positive, check_real
from ..sampling import ADAPTIVE_SOLVERS, SOLVERS

MODELS = ("gm", "cw")
CW_FORMS = ("two_phase", "exact")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One experiment. Defaults: the paper's GM, VP-dilated, d = 10^4, N = 100 Euler steps."""

    name: str = "experiment"
    model: str = "gm"  # gm | cw
    d: int = 10_000
    n: int = 4096
    steps: int = 100
    kind: str = "vp"  # vp | ve
    shape: str = "linear"  # linear | trig
    schedule: str = "vp_dilated"
    k: float = 3.0
    # Gaussian mixture: K = 2 is the paper's ±m·(1, …, 1) with weights (p, 1 − p); K > 2 draws
    # K means m·g_k, g_k ~ N(0, I_d) from `means_seed`, with `weights`.
    p: float = 0.8
    m: float = 1.0
    sigma: float = 0.5
    K: int = 2
    weights: tuple[float, ...] = ()
    means_seed: int = 0
    # Curie–Weiss
    beta_cw: float = 2.0
    h: float = 0.5 * math.log(4.0)
    cw_form: str = "two_phase"  # two_phase | exact (finite-d Hubbard–Stratonovich)
    # schedule options (cosine, karras)
    offset: float = 0.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    # solver
    solver: str = "euler"
    method: str = "diffrax"
    adaptive: bool = False
    rtol: float = 1e-4
    atol: float = 1e-4
    max_steps: int = 16_384
    seed: int = 0
    dtype: str = "float32"
    # scale: rows per chunk (0: as many as fit a quarter of the free memory) and devices to
    # shard each chunk's rows over (0: all visible)
    chunk_size: int = 0
    devices: int = 0
    # outputs
    figures: bool = True
    trajectories: int = 200  # samples whose overlap / coordinates are plotted against t

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["weights"] = list(self.weights)
        return out


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_INT_KEYS = {"d", "n", "steps", "K", "means_seed", "max_steps", "seed", "trajectories",
             "chunk_size", "devices"}
_BOOL_KEYS = {"adaptive", "figures"}
_STR_KEYS = {"name", "model", "kind", "shape", "schedule", "cw_form", "solver", "method", "dtype"}


class ConfigError(ValueError):
    """A config that cannot run: bad key, type, value, or file."""


def unknown_key(key: str, fields=FIELDS, what: str = "config") -> ConfigError:
    """The error for a key outside the schema, with the nearest valid key as a hint."""
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {what} key {key!r}{hint}")


def _coerce(key: str, value: Any) -> Any:
    if key not in FIELDS:
        raise unknown_key(key)
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false; got {value!r}")
        return value
    if key in _INT_KEYS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e6 is a fine way to write a dimension
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer; got {value!r}")
        return value
    if key in _STR_KEYS:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {value!r}")
        return value
    if key == "weights":
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"weights must be a list of numbers; got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number; got {value!r}")
    return float(value)


def from_mapping(data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A validated config from ``data`` (keys of ``RunConfig``) on top of ``base``."""
    values = (base or RunConfig()).to_dict()
    for key, value in data.items():
        values[key] = _coerce(key, value)
    values["weights"] = tuple(values["weights"])
    return RunConfig(**values)


def load(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML config (or a results.json, whose ``config`` is rerun) and apply ``key=value``
    overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        import json

        try:
            data = json.loads(text)["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a results.json with a 'config' entry ({err})") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: malformed TOML: {err}") from None
    data = dict(data)
    data.pop("fit", None)  # a fit config runs with its initial schedule (see noisesched fit)
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: tables are not part of the schema; got [{key}]")
    data.update(parse_overrides(overrides))
    return from_mapping(data)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["d=1000", "schedule=constant"]`` → ``{"d": 1000, "schedule": "constant"}`` (TOML
    values; a bare word is a string)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set takes key=value; got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        if key not in FIELDS:
            raise unknown_key(key)
        out[key] = value
    return out


def validate(c: RunConfig) -> None:
    """Ranges and consistency of every key; raises ``ConfigError`` naming the key."""
    try:
        check_choice("model", c.model, MODELS)
        check_int("d", c.d, lo=2)
        check_int("n", c.n, lo=1)
        check_int("steps", c.steps, lo=1)
        check_choice("kind", c.kind, ("vp", "ve"))
        check_choice("shape", c.shape, ("linear", "trig"))
        if c.schedule.startswith("@"):
            if not Path(c.schedule[1:]).is_file():
                raise ConfigError(f"schedule file {c.schedule[1:]!r} (schedule = "
                                  f"{c.schedule!r}) does not exist")
        else:
            check_choice("schedule", c.schedule, schedules_mod.NAMES)
        if c.schedule in ("vp_dilated", "ve_dilated", "ve_dilated_trig"):
            check_real("k", c.k, 0.0, math.sqrt(c.d))
        check_real("p", c.p, 0.0, 1.0)
        check_positive("m", c.m)
        check_positive("sigma", c.sigma)
        check_int("K", c.K, lo=2)
        check_int("means_seed", c.means_seed, lo=0)
        if c.K > 2 or c.weights:
            if len(c.weights) != c.K:
                raise ConfigError(f"weights must list K = {c.K} numbers; got {len(c.weights)}")
            if any(not w > 0 for w in c.weights) or abs(sum(c.weights) - 1) > 1e-6:
                raise ConfigError(f"weights must be positive and sum to 1; got {list(c.weights)}")
        check_positive("beta_cw", c.beta_cw)
        check_real("h", c.h)
        check_choice("cw_form", c.cw_form, CW_FORMS)
        check_real("offset", c.offset, 0.0, 1.0, lo_open=False)
        check_positive("sigma_min", c.sigma_min)
        check_real("sigma_max", c.sigma_max, c.sigma_min, math.inf)
        check_positive("rho", c.rho)
        check_choice("solver", c.solver, SOLVERS)
        check_choice("method", c.method, ("diffrax", "scan"))
        if c.method == "scan":
            check_choice("solver (method = 'scan')", c.solver, ("euler", "heun"))
        if c.adaptive:
            check_choice("solver (adaptive)", c.solver, ADAPTIVE_SOLVERS)
            if c.method != "diffrax":
                raise ConfigError("adaptive = true needs method = 'diffrax'")
        check_positive("rtol", c.rtol)
        check_positive("atol", c.atol)
        check_int("max_steps", c.max_steps, lo=1)
        check_int("seed", c.seed, lo=0)
        check_choice("dtype", c.dtype, DTYPES)
        check_int("trajectories", c.trajectories, lo=0)
        check_int("chunk_size", c.chunk_size, lo=0)
        check_int("devices", c.devices, lo=0, hi=jax.device_count())
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None
    schedules_mod.warn_if_mismatched(c.schedule, c.kind)
