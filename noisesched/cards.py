"""Schedule cards: an N-step schedule as one JSON document, and the files that samplers read.

A card describes the noise levels σ_i = α(t_i)/β(t_i) of a schedule on the grid t_i = i/N of an
N-step sampler (spec §4, §7), with everything needed to use or rebuild them: τ_i, α_i, β_i, the
log-SNR λ_i = −2 log σ_i, the interpolant (kind, shape, d), the solver it was made for, where the
schedule came from (a method and its options, a built-in schedule, a learned schedule file) and
the noisesched version. ``card.schedule()`` rebuilds the ``KnotSchedule`` through its levels.

The σ list means the same for every interpolant: y = x/β = x1 + σ z, and the denoiser
D(y; σ) = E[x1 | y] depends on σ alone, so a σ-space sampler (σ-space Euler, DDIM,
k-diffusion's samplers, DPM-Solver++) runs the same steps from the list whatever the
interpolant that produced it. It starts from y_0 = σ_0 z and steps
y ← y + (σ_{i+1} − σ_i)(y − D(y; σ_i))/σ_i down to σ_N = 0.

**The card format** (``FORMAT``, version ``VERSION``), a JSON object:

| key | value |
|---|---|
| ``format``, ``version`` | ``"noisesched-schedule-card"``, 1 |
| ``noisesched_version`` | the version that wrote it |
| ``steps`` | N |
| ``interpolant`` | ``{"kind", "shape", "d", "alpha0"}`` (α0 is derived, for readers) |
| ``solver`` | the solver the schedule was made for (``noisesched.SOLVERS`` names) |
| ``source`` | where it came from: ``{"type": "method", "name": "edm", "options": {...}}`` |
| ``infinite_start`` | whether σ_0 = ∞ (a start from pure noise) |
| ``sigma_max`` | the finite level that the exported files use in place of σ_0 = ∞, or null |
| ``t``, ``tau``, ``alpha``, ``beta`` | N + 1 values each |
| ``sigmas`` | σ_0 … σ_N, N + 1 values, ending with σ_N = 0 |
| ``sigmas_no_zero`` | σ_0 … σ_{N−1}, the same without the trailing zero |
| ``log_snr`` | λ_i = −2 log σ_i, N + 1 values |
| ``encoding`` | a sentence restating the rule below |

JSON has no infinities. In ``source``, an infinite option (``sigma_max = inf``) is the string
``"inf"``. A card writes the three infinite values it can hold as ``null``, each
in the one place where it may occur: ``sigmas[0]`` and ``sigmas_no_zero[0]`` null is σ_0 = +∞,
``log_snr[0]`` null is λ_0 = −∞ (the same start) and ``log_snr[N]`` null is λ_N = +∞ (σ_N = 0).
``load_card`` reads them back exactly and refuses a null anywhere else; every other number is
written by Python's shortest round-trip representation and read back bit for bit.

**Exporters** (``EXPORTERS``; each writes one file into a folder, atomically, and returns its
path). Samplers start from a finite level, so every exporter refuses σ_0 = ∞ unless it is given
``sigma_max`` (> σ_1), which replaces σ_0; row 0 of τ, α, β, λ then belongs to that level (a
truncated start, see ``noisesched.schedules.AbstractSchedule``).

| name | file | content |
|---|---|---|
| ``diffusers`` | ``sigmas_diffusers.json`` | JSON list, N levels, **no** trailing 0 |
| ``diffusers_euler`` | ``sigmas_diffusers_euler.json`` | JSON list, N + 1 levels **with** the 0 |
| ``k_diffusion`` | ``sigmas_k_diffusion.npy`` | float64 array, N + 1 levels with the 0 |
| ``comfyui`` | ``sigmas_comfyui.json`` | JSON list in plain decimals, N + 1 with the 0 |
| ``csv`` | ``schedule.csv`` | columns ``i,t,tau,alpha,beta,sigma,log_snr`` |

Where each convention comes from (the samplers' own source code):

* diffusers differs between schedulers. ``EDMEulerScheduler.set_timesteps(sigmas=...)`` takes
  the N levels and appends the final one itself (``final_sigmas_type="zero"``, the default);
  pass ``torch.tensor(json.load(f))``, since it calls ``sigmas.to``. So do the flow-matching
  schedulers (``FlowMatchEulerDiscreteScheduler``), but their ``sigmas`` are flow times
  σ/(1 + σ) of another parametrisation, not these levels. ``EulerDiscreteScheduler`` (and the
  Stable Diffusion pipelines' ``sigmas=`` argument, which forwards to it) uses the list as
  given and runs ``len(sigmas) − 1`` steps, so it needs the trailing zero: diffusers' own
  example (the 10-step "Align Your Steps" list) has 11 values ending in 0.0. ``diffusers``
  writes the first convention and ``diffusers_euler`` the second. ``EulerDiscreteScheduler``
  maps each σ to a model timestep by interpolating log σ in its training levels, clamped to
  their range, and starts its latents at σ_0 z (``init_noise_sigma``).
* k-diffusion builds every schedule with ``append_zero`` and its samplers loop over
  ``len(sigmas) − 1`` steps with ``sigmas[i + 1]`` as the next level: the list includes the 0.
  The start is ``x = torch.randn(shape) * sigmas[0]``. Load the file as a tensor with
  ``torch.from_numpy(numpy.load("sigmas_k_diffusion.npy"))`` (float64; add ``.float()`` for
  float32).
* ComfyUI's SIGMAS are k-diffusion lists: every scheduler node appends 0.0 and the samplers run
  ``len(sigmas) − 1`` steps. Its ``ManualSigmas`` node reads a text field with the regular
  expression ``[-+]?(?:\\d*\\.*\\d+)``, which has no exponents ("1e-05" would become two
  numbers), so ``comfyui`` writes every value in plain decimal notation: the file is JSON and
  can also be pasted into that node as it is.
* CSV: one row per grid point i = 0 … N; the only non-finite value is λ_N = ``inf``, which
  Python's ``float``, NumPy and pandas read.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_write
from ._validation import check_choice, check_int
from .interpolants import Interpolant
from .learning.export import schedule_arrays
from .schedules import AbstractSchedule, KnotSchedule, noise_levels_to_tau

__all__ = [
    "FORMAT",
    "VERSION",
    "ScheduleCard",
    "make_card",
    "save_card",
    "load_card",
    "export_card",
    "write_diffusers",
    "write_diffusers_euler",
    "write_k_diffusion",
    "write_comfyui",
    "write_csv",
    "EXPORTERS",
    "CARD_FILE",
]

#: The ``format`` of a card file.
FORMAT = "noisesched-schedule-card"
#: The card format's version; ``load_card`` refuses others.
VERSION = 1
#: The card's file name in a folder written by ``export_card``.
CARD_FILE = "card.json"

_ENCODING = ("non-finite values are null: sigmas[0] and sigmas_no_zero[0] null = +inf (sigma_0, "
             "a start from pure noise); log_snr[0] null = -inf (the same start); log_snr[N] "
             "null = +inf (sigma_N = 0)")
_ARRAYS = ("t", "tau", "alpha", "beta", "sigmas", "log_snr")


def _floats(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _log_snr(sigmas: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -2.0 * np.log(sigmas) + 0.0  # + 0.0: λ = 0 at σ = 1, not −0


@dataclasses.dataclass(frozen=True)
class ScheduleCard:
    """An N-step schedule as samplers see it: its noise levels on t_i = i/N and where it came
    from (see the module's description of the format). Made by ``make_card`` or
    ``load_card``; every field is checked when a card is made.

    Attributes:
        kind: the interpolant's kind, ``"vp"`` or ``"ve"``.
        shape: the interpolant's shape, ``"linear"`` or ``"trig"``.
        d: the data dimension.
        solver: the solver the schedule was made for.
        source: where the schedule came from (JSON values).
        t: t_i = i/N, N + 1 values.
        tau: τ(t_i).
        alpha: α(t_i).
        beta: β(t_i) = τ(t_i).
        sigmas: σ_i = α_i/β_i, decreasing from σ_0 (∞ for pure noise) to σ_N = 0.
        log_snr: λ_i = −2 log σ_i, from λ_0 (−∞ for pure noise) to λ_N = +∞.
        sigma_max: the finite level that exported files use in place of σ_0 = ∞ (None: none
            given; a card that starts at a finite σ_0 has none).
        noisesched_version: the version that made the card.
    """

    kind: str
    shape: str
    d: int
    solver: str
    source: dict[str, Any]
    t: tuple[float, ...]
    tau: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    sigmas: tuple[float, ...]
    log_snr: tuple[float, ...]
    sigma_max: float | None = None
    noisesched_version: str = ""

    def __post_init__(self):
        self.interpolant()  # checks kind, shape and d
        if not isinstance(self.solver, str) or not self.solver:
            raise ValueError(f"solver must be a non-empty string; got {self.solver!r}")
        _check_source(self.source)
        sizes = {name: len(getattr(self, name)) for name in _ARRAYS}
        if len(set(sizes.values())) != 1 or sizes["sigmas"] < 3:
            raise ValueError("a card needs N + 1 >= 3 values (N >= 2 steps) in each of "
                             f"{', '.join(_ARRAYS)}; got lengths {sizes}")
        n = self.steps
        sigma = np.asarray(self.sigmas)
        if (sigma[-1] != 0.0 or np.any(np.isnan(sigma)) or np.any(np.isinf(sigma[1:]))
                or sigma[0] < 0 or not np.all(np.diff(sigma) < 0)):
            raise ValueError("sigmas must decrease strictly from sigma_0 (inf for pure noise) "
                             f"to sigma_N = 0, finite after the first; got {list(self.sigmas)}")
        if not np.allclose(self.t, np.arange(n + 1) / n, rtol=0.0, atol=1e-12):
            raise ValueError(f"t must be the grid i/N, i = 0 … {n}; got {list(self.t)}")
        if self.tau != self.beta:
            raise ValueError("beta must equal tau (β = τ for every interpolant)")
        tau, alpha = np.asarray(self.tau), np.asarray(self.alpha)
        if not (np.all(np.isfinite(tau)) and np.all(np.isfinite(alpha))):
            raise ValueError("tau and alpha must be finite")
        inner = tau > 0
        if np.isinf(sigma[0]) != (tau[0] == 0.0) or not np.allclose(
                alpha[inner] / tau[inner], sigma[inner], rtol=1e-9, atol=0.0):
            raise ValueError("sigmas must equal alpha/beta at every point (inf where beta = 0)")
        if not np.allclose(self.log_snr, _log_snr(sigma), rtol=1e-12, atol=1e-12):
            raise ValueError("log_snr must equal -2 log(sigmas) at every point")
        if self.sigma_max is not None:
            _check_sigma_max(self.sigma_max, self.sigmas)

    @property
    def steps(self) -> int:
        """N, the number of steps."""
        return len(self.sigmas) - 1

    @property
    def sigmas_no_zero(self) -> tuple[float, ...]:
        """σ_0 … σ_{N−1}: the levels without the trailing σ_N = 0."""
        return self.sigmas[:-1]

    @property
    def infinite_start(self) -> bool:
        """Whether σ_0 = ∞: the schedule starts from pure noise (τ_0 = 0)."""
        return math.isinf(self.sigmas[0])

    @property
    def alpha0(self) -> float:
        """The interpolant's base scale α0 (1 for VP, √d for VE)."""
        return self.interpolant().alpha0

    def interpolant(self) -> Interpolant:
        """The interpolant the card was made for."""
        return Interpolant(self.kind, self.shape, self.d)

    def schedule(self) -> KnotSchedule:
        """The ``KnotSchedule`` through the card's levels ``sigmas`` (σ_0 = ∞ kept: the
        schedule that was exported, not its truncated start)."""
        return KnotSchedule.from_noise_levels(self.interpolant(), self.sigmas)

    def with_sigma_max(self, sigma_max: float | None) -> ScheduleCard:
        """The card with ``sigma_max`` recorded: the finite level (> σ_1) that replaces an
        infinite σ_0 in exported files (None removes it)."""
        if sigma_max is not None:
            _check_sigma_max(sigma_max, self.sigmas)
            sigma_max = float(sigma_max)
        return dataclasses.replace(self, sigma_max=sigma_max)

    def sampler_arrays(self, sigma_max: float | None = None) -> dict[str, np.ndarray]:
        """What a sampler runs on, float64 arrays of N + 1 values: ``t``, ``tau``, ``alpha``,
        ``beta``, ``sigma`` (ending with 0) and ``log_snr``. An infinite σ_0 is replaced by
        ``sigma_max`` (default: the card's ``sigma_max``), and row 0 of τ, α, β, λ by the
        values at that level; without one it is refused (``ValueError``)."""
        out = {"t": np.asarray(self.t), "tau": np.asarray(self.tau),
               "alpha": np.asarray(self.alpha), "beta": np.asarray(self.beta),
               "sigma": np.asarray(self.sigmas), "log_snr": np.asarray(self.log_snr)}
        top = self.sigma_max if sigma_max is None else sigma_max
        if top is not None:
            _check_sigma_max(top, self.sigmas)
        elif self.infinite_start:
            raise ValueError(
                f"sigma_0 = inf (a start from pure noise) cannot be written for samplers, which "
                f"start from y_0 = sigma_0 z: pass sigma_max (--sigma-max), a finite first level "
                f"greater than sigma_1 = {self.sigmas[1]:.6g}, to replace it")
        if top is None:
            return out
        top = float(top)
        tau, rest = noise_levels_to_tau([top], self.alpha0, self.shape)
        alpha = self.alpha0 * (rest if self.shape == "linear" else np.sqrt(rest * (1.0 + tau)))
        out = {k: v.copy() for k, v in out.items()}
        out["tau"][0] = out["beta"][0] = tau[0]
        out["alpha"][0], out["sigma"][0] = alpha[0], top
        out["log_snr"][0] = -2.0 * math.log(top)
        return out

    def to_json(self) -> dict[str, Any]:
        """The card as a JSON object (see the module's description of the format)."""

        def encode(values: tuple[float, ...]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return {
            "format": FORMAT,
            "version": VERSION,
            "noisesched_version": self.noisesched_version,
            "encoding": _ENCODING,
            "steps": self.steps,
            "interpolant": {"kind": self.kind, "shape": self.shape, "d": self.d,
                            "alpha0": self.alpha0},
            "solver": self.solver,
            "source": self.source,
            "infinite_start": self.infinite_start,
            "sigma_max": self.sigma_max,
            "t": list(self.t),
            "tau": list(self.tau),
            "alpha": list(self.alpha),
            "beta": list(self.beta),
            "sigmas": encode(self.sigmas),
            "sigmas_no_zero": encode(self.sigmas_no_zero),
            "log_snr": encode(self.log_snr),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], d: int | None = None) -> ScheduleCard:
        """A card from its JSON object; with ``d``, a card made for another d is refused."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a schedule card (format = {got!r}, expected {FORMAT!r})")
        version = data.get("version")
        if version != VERSION:
            raise ValueError(f"schedule card version {version!r} is not supported (this "
                             f"noisesched reads version {VERSION})")
        missing = [k for k in ("steps", "interpolant", "solver", "source", "infinite_start",
                               "sigmas_no_zero", *_ARRAYS) if k not in data]
        if missing:
            raise ValueError(f"schedule card lacks {', '.join(missing)}")
        interp = data["interpolant"]
        if not isinstance(interp, Mapping) or not {"kind", "shape", "d"} <= set(interp):
            raise ValueError(f"interpolant must hold kind, shape and d; got {interp!r}")
        if d is not None and interp["d"] != d:
            raise ValueError(f"the card was made for d = {interp['d']}, not d = {d}: a schedule "
                             "is made for one dimension (its levels depend on d); make a card "
                             f"for d = {d}")
        n = data["steps"]
        sigmas = _decode("sigmas", data["sigmas"], {0: math.inf})
        no_zero = _decode("sigmas_no_zero", data["sigmas_no_zero"], {0: math.inf})
        log_snr = _decode("log_snr", data["log_snr"], {0: -math.inf, -1: math.inf})
        arrays = {k: _decode(k, data[k], {}) for k in ("t", "tau", "alpha", "beta")}
        if not isinstance(n, int) or len(sigmas) != n + 1:
            raise ValueError(f"steps = {n!r} but sigmas holds {len(sigmas)} values (N + 1)")
        if no_zero != sigmas[:-1]:
            raise ValueError("sigmas_no_zero must be sigmas without its trailing zero")
        sigma_max = data.get("sigma_max")
        card = cls(kind=interp["kind"], shape=interp["shape"], d=interp["d"],
                   solver=data["solver"], source=data["source"], sigmas=sigmas,
                   log_snr=log_snr,
                   sigma_max=None if sigma_max is None else _number("sigma_max", sigma_max),
                   noisesched_version=str(data.get("noisesched_version", "")), **arrays)
        if data["infinite_start"] is not card.infinite_start:
            raise ValueError(f"infinite_start = {data['infinite_start']!r} disagrees with "
                             f"sigmas[0] = {card.sigmas[0]!r}")
        return card


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def _decode(name: str, values: Any, nulls: Mapping[int, float]) -> tuple[float, ...]:
    """The numbers of a card's list, with null read as the infinity of its place (``nulls``,
    by index, −1 the last) and refused elsewhere."""
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list of numbers; got {values!r}")
    places = {i % len(values): v for i, v in nulls.items()} if values else {}
    out = []
    for i, value in enumerate(values):
        if value is None:
            if i not in places:
                allowed = " or ".join(f"{name}[{'N' if j < 0 else j}]" for j in nulls)
                raise ValueError(f"{name}[{i}] is null, which a card allows only in "
                                 f"{allowed or 'no place of ' + name} ({_ENCODING})")
            out.append(places[i])
        else:
            out.append(_number(f"{name}[{i}]", value))
    return tuple(out)


def _plain_source(value: Any) -> Any:
    """``value`` with tuples as lists and the non-finite floats of options (``sigma_max =
    inf``) as the strings ``"inf"``, ``"-inf"``, ``"nan"``, which JSON can hold."""
    if isinstance(value, dict):
        return {k: _plain_source(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_source(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _check_source(source: Any) -> None:
    if not isinstance(source, dict):
        raise ValueError(f"source must be a dict; got {source!r}")
    try:
        text = json.dumps(source, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"source must hold JSON values only ({err})") from None
    if json.loads(text) != source:
        raise ValueError("source must hold JSON values only (lists, not tuples; string keys)")


def _check_sigma_max(sigma_max: Any, sigmas: Sequence[float]) -> None:
    """``sigma_max`` replaces an infinite σ_0: a finite number greater than σ_1."""
    if not math.isinf(sigmas[0]):
        raise ValueError(f"sigma_max replaces an infinite sigma_0 (a start from pure noise); "
                         f"this schedule starts at the finite sigma_0 = {sigmas[0]:.6g}")
    value = _number("sigma_max", sigma_max)
    if not (math.isfinite(value) and value > sigmas[1]):
        raise ValueError(f"sigma_max must be finite and greater than sigma_1 = "
                         f"{sigmas[1]:.6g} (the first finite level); got {sigma_max!r}")


def make_card(schedule: AbstractSchedule, interp: Interpolant, steps: int, *, solver: str,
              source: dict[str, Any], sigma_max: float | None = None) -> ScheduleCard:
    """The card of ``schedule`` under ``interp`` for an N-step sampler (N = ``steps`` ≥ 2),
    made for ``solver``, with its ``source`` (JSON values, e.g.
    ``{"type": "method", "name": "edm", "options": {}}``) and optionally the ``sigma_max`` that
    replaces an infinite σ_0 in exported files.

    Raises:
        ValueError: N < 2; a ``KnotSchedule`` made for another N; levels that do not decrease
            strictly on the grid (a flat stretch of τ); a bad ``sigma_max`` or ``source``.
    """
    from . import __version__

    check_int("steps", steps, lo=2)
    if isinstance(schedule, KnotSchedule) and schedule.steps != steps:
        raise ValueError(f"the schedule is a KnotSchedule made for N = {schedule.steps} steps; "
                         f"got steps = {steps}")
    arrays = schedule_arrays(schedule, interp, steps)
    sigma = arrays["sigma"]
    flat = np.flatnonzero(~(np.diff(sigma) < 0))
    if flat.size:
        i = int(flat[0])
        raise ValueError(f"the schedule's noise levels must decrease strictly on the {steps}-step "
                         f"grid; sigma_{i} = {sigma[i]!r} and sigma_{i + 1} = {sigma[i + 1]!r}")
    if sigma[-1] != 0.0:
        raise ValueError(f"the schedule must reach the data at t = 1 (sigma_N = 0); got "
                         f"sigma_N = {sigma[-1]!r}")
    card = ScheduleCard(kind=interp.kind, shape=interp.shape, d=interp.d, solver=solver,
                        source=_plain_source(source),
                        t=_floats(arrays["times"]), tau=_floats(arrays["tau"]),
                        alpha=_floats(arrays["alpha"]), beta=_floats(arrays["beta"]),
                        sigmas=_floats(sigma), log_snr=_floats(_log_snr(sigma)),
                        noisesched_version=__version__)
    return card.with_sigma_max(sigma_max) if sigma_max is not None else card


def _write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def save_card(card: ScheduleCard, path: str | os.PathLike) -> Path:
    """Write ``card`` to ``path`` (``.json``), atomically."""
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"a card's path must end in .json; got {str(path)!r}")
    return _write_text(path, json.dumps(card.to_json(), indent=1, allow_nan=False) + "\n")


def load_card(path: str | os.PathLike, d: int | None = None) -> ScheduleCard:
    """Read a card written by ``save_card``, checking its format and version; with ``d``, a
    card made for another dimension is refused (``ValueError`` naming both)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"card file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a schedule card (malformed JSON: {err})") from None
    try:
        return ScheduleCard.from_json(data, d)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: {err}") from None


# ----------------------------------------------------------------------------- exporters
def _json_list(values: np.ndarray) -> str:
    return json.dumps([float(v) for v in values], allow_nan=False) + "\n"


def write_diffusers(card: ScheduleCard, folder: str | os.PathLike, *,
                    sigma_max: float | None = None) -> Path:
    """``sigmas_diffusers.json``: the N levels σ_0 … σ_{N−1}, without the trailing zero, for
    diffusers schedulers that append the final level themselves (``EDMEulerScheduler``:
    ``scheduler.set_timesteps(sigmas=torch.tensor(levels))``). ``EulerDiscreteScheduler``
    needs the zero: use ``write_diffusers_euler``."""
    sigma = card.sampler_arrays(sigma_max)["sigma"]
    return _write_text(Path(folder) / "sigmas_diffusers.json", _json_list(sigma[:-1]))


def write_diffusers_euler(card: ScheduleCard, folder: str | os.PathLike, *,
                          sigma_max: float | None = None) -> Path:
    """``sigmas_diffusers_euler.json``: the N + 1 levels with the trailing zero, for
    ``EulerDiscreteScheduler.set_timesteps(sigmas=levels)`` and the pipelines' ``sigmas=``
    argument with that scheduler (it runs ``len(sigmas) − 1`` steps on the list as given)."""
    sigma = card.sampler_arrays(sigma_max)["sigma"]
    return _write_text(Path(folder) / "sigmas_diffusers_euler.json", _json_list(sigma))


def write_k_diffusion(card: ScheduleCard, folder: str | os.PathLike, *,
                      sigma_max: float | None = None) -> Path:
    """``sigmas_k_diffusion.npy``: the N + 1 levels with the trailing zero, float64, as
    k-diffusion's samplers take them: ``sigmas = torch.from_numpy(numpy.load(path))``, then
    ``sample_euler(model, torch.randn(shape) * sigmas[0], sigmas)``."""
    sigma = np.asarray(card.sampler_arrays(sigma_max)["sigma"], np.float64)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, sigma, allow_pickle=False)

    return atomic_write(Path(folder) / "sigmas_k_diffusion.npy", write)


def _decimal(value: float) -> str:
    """``value`` in plain decimal notation (no exponent), the shortest that reads back
    exactly."""
    return np.format_float_positional(np.float64(value), unique=True, trim="0")


def write_comfyui(card: ScheduleCard, folder: str | os.PathLike, *,
                  sigma_max: float | None = None) -> Path:
    """``sigmas_comfyui.json``: the N + 1 levels with the trailing zero, as ComfyUI's SIGMAS
    carry them, a JSON list in plain decimals (no exponents), so that the text can also be
    pasted into ComfyUI's ``ManualSigmas`` node."""
    sigma = card.sampler_arrays(sigma_max)["sigma"]
    text = "[" + ", ".join(_decimal(v) for v in sigma) + "]\n"
    return _write_text(Path(folder) / "sigmas_comfyui.json", text)


#: The columns of ``write_csv``.
CSV_COLUMNS = ("i", "t", "tau", "alpha", "beta", "sigma", "log_snr")


def write_csv(card: ScheduleCard, folder: str | os.PathLike, *,
              sigma_max: float | None = None) -> Path:
    """``schedule.csv``: one row per grid point i = 0 … N with columns ``i, t, tau, alpha,
    beta, sigma, log_snr``; the last row has σ_N = 0 and λ_N = ``inf``."""
    arrays = card.sampler_arrays(sigma_max)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in range(card.steps + 1):
        writer.writerow([i, *(repr(float(arrays[k][i])) for k in CSV_COLUMNS[1:])])
    return _write_text(Path(folder) / "schedule.csv", buffer.getvalue())


#: The exporters by format name: ``write(card, folder, *, sigma_max=None) -> path``.
EXPORTERS: dict[str, Callable[..., Path]] = {
    "diffusers": write_diffusers,
    "diffusers_euler": write_diffusers_euler,
    "k_diffusion": write_k_diffusion,
    "comfyui": write_comfyui,
    "csv": write_csv,
}


def export_card(card: ScheduleCard, folder: str | os.PathLike,
                formats: Sequence[str] | None = None, *,
                sigma_max: float | None = None) -> dict[str, Path]:
    """Write ``card.json`` and the files of ``formats`` (default: every one of ``EXPORTERS``)
    into ``folder``, each atomically. ``sigma_max`` (replacing an infinite σ_0) is recorded in
    the card written. Every check runs before the first file is written.

    Returns:
        The paths written, by format name (``"card"`` for the card).
    """
    names = list(EXPORTERS) if formats is None else list(dict.fromkeys(formats))
    if not names:
        raise ValueError(f"formats must name at least one of {', '.join(EXPORTERS)}")
    for name in names:
        check_choice("format", name, tuple(EXPORTERS))
    if sigma_max is not None:
        card = card.with_sigma_max(sigma_max)
    card.sampler_arrays()  # refuses σ_0 = ∞ without sigma_max, before anything is written
    paths = {"card": save_card(card, Path(folder) / CARD_FILE)}
    for name in names:
        paths[name] = EXPORTERS[name](card, folder)
    return paths
