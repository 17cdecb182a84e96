"""Trained denoisers on disk: a folder with ``denoiser.eqx`` (the network's arrays, by
``equinox.tree_serialise_leaves``) and ``denoiser.json`` (its architecture, σ_d, the data law
it was trained on, and a SHA-256 of the arrays), each written atomically; the JSON is written
last and names the arrays' hash, so a folder whose arrays were replaced or cut is refused."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._atomic import atomic_write
from ..models import REGISTRY as MODEL_REGISTRY
from ..models.base import AbstractDataLaw
from .conv import ConvNet
from .denoiser import LearnedModel, NetworkDenoiser
from .mlp import MLP

__all__ = ["NETWORKS", "save_denoiser", "load_denoiser", "learned", "denoiser_files",
           "read_record", "record_digest", "build_law"]

#: Built-in networks by the name configs use (``[network] name = "mlp"``).
NETWORKS: dict[str, Callable[..., Any]] = {"mlp": MLP, "conv": ConvNet}

FORMAT = "noisesched denoiser"
VERSION = 1


def denoiser_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(arrays, record) of the saved denoiser at ``path``: a folder, or its ``denoiser.json``."""
    path = Path(path)
    folder = path.parent if path.suffix in (".json", ".eqx") else path
    return folder / "denoiser.eqx", folder / "denoiser.json"


def _network_name(network: Any) -> str:
    for name, cls in NETWORKS.items():
        if type(network) is cls:
            return name
    cls = type(network)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_denoiser(path: str | os.PathLike, denoiser: NetworkDenoiser, *,
                  law: Mapping[str, Any] | None = None,
                  info: Mapping[str, Any] | None = None) -> Path:
    """Save ``denoiser`` in the folder ``path`` (created); returns the record's path.

    Args:
        denoiser: a ``NetworkDenoiser`` whose network has ``hyperparameters()`` (the keyword
            arguments of its constructor besides ``key``) and a class importable by name.
        law: the data law it was trained on, as a config section (``{"name": "gm", "d": 1000,
            ...}``, a ``noisesched.models.REGISTRY`` name and its options), so that
            ``load_denoiser`` returns a ``LearnedModel`` that every command can measure; None:
            a bare denoiser.
        info: anything JSON-serialisable to keep beside (training settings, measured errors).

    Both files are made in memory first: a failure leaves a model saved there before intact.
    """
    if not isinstance(denoiser, NetworkDenoiser):
        raise ValueError(f"denoiser must be a NetworkDenoiser; got {type(denoiser).__name__}")
    network = denoiser.network
    if not callable(getattr(network, "hyperparameters", None)):
        raise ValueError(f"{type(network).__name__} has no hyperparameters() (the keyword "
                         "arguments of its constructor besides key): it cannot be rebuilt to load")
    name = _network_name(network)
    if name.startswith("__main__:") or "<locals>" in name:
        raise ValueError(f"the network class {name} cannot be imported by name to load it; "
                         "define it in a module")
    options = dict(network.hyperparameters())
    if "name" in options or "key" in options:
        raise ValueError("hyperparameters() must not hold 'name' or 'key'")
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, network)
    weights = buffer.getvalue()
    try:
        text = json.dumps({
            "format": FORMAT, "version": VERSION, "d": denoiser.d,
            "sigma_data": denoiser.sigma_data, "sigma_range": list(denoiser.sigma_range),
            "network": {"name": name, **options},
            "law": dict(law) if law is not None else None,
            "sha256": hashlib.sha256(weights).hexdigest(),
            "info": dict(info or {}),
        }, indent=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the denoiser's record is not JSON-serialisable ({err})") from None
    arrays, record = denoiser_files(path)
    arrays.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(arrays, lambda tmp: Path(tmp).write_bytes(weights))
    atomic_write(record, lambda tmp: Path(tmp).write_text(text))
    return record


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The checked ``denoiser.json`` of the saved denoiser at ``path``."""
    arrays, record = denoiser_files(path)
    if not record.is_file():
        raise ValueError(f"no trained denoiser at {str(path)!r}: {str(record)!r} does not exist "
                         "(give the folder written by noisesched train)")
    try:
        data = json.loads(record.read_text())
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        for key in ("d", "sigma_data", "network", "sha256"):
            if key not in data:
                raise ValueError(f"no {key!r}")
        if isinstance(data["d"], bool) or not isinstance(data["d"], int) or data["d"] < 1:
            raise ValueError(f"d must be an integer >= 1; got {data['d']!r}")
        if not isinstance(data["network"], dict) or not isinstance(data["network"].get("name"),
                                                                   str):
            raise ValueError("'network' has no name")
        if data.get("law") is not None and not (isinstance(data["law"], dict)
                                                and isinstance(data["law"].get("name"), str)):
            raise ValueError(f"'law' must be a table with a name; got {data['law']!r}")
        sigma_range = data.get("sigma_range")
        if sigma_range is not None and not (isinstance(sigma_range, list)
                                            and len(sigma_range) == 2):
            raise ValueError(f"'sigma_range' must be [min, max]; got {sigma_range!r}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError,
            ValueError) as err:
        raise ValueError(f"{str(record)!r} is not a readable denoiser record ({err})") from None
    if not arrays.is_file():
        raise ValueError(f"the trained denoiser {str(arrays)!r} is missing beside {record.name}")
    if _digest(arrays) != data["sha256"]:
        raise ValueError(f"{str(arrays)!r} does not match its record {record.name} (SHA-256 "
                         "differs): the file is corrupt or from another training")
    return data


def record_digest(path: str | os.PathLike) -> str:
    """A SHA-256 of the whole record (which holds the weights' hash): it changes whenever the
    saved denoiser, its σ range or its data law do."""
    read_record(path)
    return _digest(denoiser_files(path)[1])


def _network_class(name: str) -> Callable[..., Any]:
    if name in NETWORKS:
        return NETWORKS[name]
    module_name, _, attr = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"network {name!r} of the saved denoiser cannot be imported ({err})"
                         ) from None
    return target


def build_law(spec: Mapping[str, Any]) -> AbstractDataLaw:
    """The data law of a config section ``{"name": REGISTRY name, **options}``."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in MODEL_REGISTRY:
        raise ValueError(f"data law {name!r} is not a noisesched.models.REGISTRY name "
                         f"({', '.join(MODEL_REGISTRY)})")
    try:
        law = MODEL_REGISTRY[name](**spec)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data law {name!r} with options {spec} cannot be made ({err})"
                         ) from None
    if not isinstance(law, AbstractDataLaw):
        raise ValueError(f"data law {name!r} made a {type(law).__name__}, not a data law")
    return law


def load_denoiser(path: str | os.PathLike, *, d: int | None = None,
                  law: AbstractDataLaw | None = None) -> NetworkDenoiser | LearnedModel:
    """The denoiser saved at ``path`` by ``save_denoiser`` (``noisesched train``).

    Returns a ``LearnedModel`` (denoiser and data law) when ``law`` is given or the record
    names the law it was trained on, else the bare ``NetworkDenoiser``. Loading imports and
    builds the network class the record names (as unpickling would): load only folders you
    trust.

    Raises:
        ValueError: a missing or corrupt file, or ``d`` (when given) differs from the
            dimension the network was trained for.
    """
    data = read_record(path)
    if d is not None and d != data["d"]:
        raise ValueError(f"d = {d} but the denoiser at {str(path)!r} was trained for "
                         f"d = {data['d']} (set d = {data['d']} or leave it out)")
    options = dict(data["network"])
    cls = _network_class(options.pop("name"))
    try:
        with jax.enable_x64(False):  # the shapes and dtypes of training (float32)
            skeleton = cls(**options, key=jax.random.PRNGKey(0))
    except Exception as err:  # a user's constructor may raise anything on bad options
        raise ValueError(f"cannot rebuild the network of {str(path)!r} from its record "
                         f"({err})") from None
    arrays, _ = denoiser_files(path)
    try:
        with open(arrays, "rb") as f:
            network = eqx.tree_deserialise_leaves(f, skeleton)
    except Exception as err:  # equinox and NumPy raise several kinds
        raise ValueError(f"{str(arrays)!r} does not fit its recorded architecture ({err})"
                         ) from None
    sigma_range = data.get("sigma_range")
    d = int(data["d"])
    try:
        out = jax.eval_shape(network, jax.ShapeDtypeStruct((d,), jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.float32))
        if getattr(out, "shape", None) != (d,):
            raise ValueError(f"the network maps shape ({d},) to {getattr(out, 'shape', out)}")
        denoiser = NetworkDenoiser(network, d, float(data["sigma_data"]),
                                   None if sigma_range is None else tuple(sigma_range))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the record of {str(path)!r} is not valid ({err})") from None
    if law is None and data.get("law"):
        law = build_law(data["law"])
    return denoiser if law is None else LearnedModel(trained=denoiser, law=law)


def learned(path: str, d: int | None = None) -> NetworkDenoiser | LearnedModel:
    """``model.name = "learned:PATH"`` in a config: the denoiser saved at ``PATH`` (with the data
    law it was trained on); ``d``, when given, must be the dimension it was trained for."""
    return load_denoiser(path, d=d)
