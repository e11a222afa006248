"""Versioned, pickle-free save and load of a QuantizedModel folder.

Layout of a folder::

    model.json     format version, metadata, layer records, tensor digest
    tensors.npz    every array, loaded with ``allow_pickle=False``

The folder is written beside its destination under a temporary name and renamed into place,
so a crash never leaves a half-written folder. ``model.json`` records a SHA-256 of the tensors
so a folder whose two files come from different runs is refused.
"""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import ArtifactError
from .fsutil import atomic_dir, check_out
from .numerics import QFormat
from .qmodel import FORMAT_VERSION, LayerKind, QLayer, QuantizedModel

__all__ = ["save", "load", "check_replaceable", "atomic_dir", "tensor_digest"]

_ARRAYS = ("weight", "bias", "mult", "shift", "w_scale", "out_scale")
_MAGIC = "hwgen.quantized-model"
#: Versions :func:`load` reads: 1 (chains: each layer reads the previous one) and the current.
_READABLE = (1, FORMAT_VERSION)


def tensor_digest(arrays):
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _layer_record(layer, index, arrays):
    rec = {
        "name": layer.name, "kind": layer.kind.value,
        "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
        "in_fmt": layer.in_fmt.to_json(), "out_fmt": layer.out_fmt.to_json(),
        "in_scale": float(layer.in_scale),
        "kernel": list(layer.kernel), "stride": list(layer.stride), "padding": list(layer.padding),
        "w_fmt": layer.w_fmt.to_json() if layer.w_fmt else None,
        "requant": layer.requant, "lo": int(layer.lo), "hi": int(layer.hi),
        "extra": layer.extra,
        "inputs": [index - 1] if layer.inputs is None else [int(j) for j in layer.inputs],
        "groups": int(layer.groups),
    }
    for attr in _ARRAYS:
        value = getattr(layer, attr)
        if value is not None:
            arrays[f"{index}.{attr}"] = np.asarray(value)
    return rec


def _replaceable(path):
    """An existing ``path`` is replaced only when it is empty or a QuantizedModel folder."""
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        doc = json.loads((path / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == _MAGIC


def check_replaceable(path):
    """Raise :class:`ArtifactError` (one line) unless ``path`` can become a QuantizedModel
    folder: a usable path (:func:`~quantflow.fsutil.check_out`), and nothing there but an
    empty folder or an earlier QuantizedModel folder."""
    if not _replaceable(Path(path)):
        raise ArtifactError(f"{path}: exists and is not a QuantizedModel folder (refusing to"
                            " replace it)")
    check_out(path)


def save(model, path):
    """Validate ``model`` and write it to the folder ``path`` atomically; return the path.

    An existing QuantizedModel folder (or empty folder) at ``path`` is replaced; anything else
    there is refused rather than deleted (``--out .`` must not wipe a working directory).
    """
    model.validate()
    check_replaceable(path)
    arrays = {}
    layers = [_layer_record(layer, i, arrays) for i, layer in enumerate(model.layers)]
    doc = {
        "format": _MAGIC, "version": FORMAT_VERSION, "name": model.name,
        "input_shape": list(model.input_shape), "input_fmt": model.input_fmt.to_json(),
        "input_scale": float(model.input_scale), "layers": layers, "meta": model.meta,
        "tensors_sha256": tensor_digest(arrays),
    }
    with atomic_dir(path) as tmp:
        with open(tmp / "tensors.npz", "wb") as f:
            np.savez(f, **arrays)
        (tmp / "model.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Path(path)


def load(path):
    """Read and validate a QuantizedModel folder; any defect raises :class:`ArtifactError`."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: not a QuantizedModel folder (no such directory)")
    doc = _read_json(path / "model.json")
    arrays = _read_npz(path / "tensors.npz")
    if tensor_digest(arrays) != doc.get("tensors_sha256"):
        raise ArtifactError(f"{path}: tensors.npz does not match model.json (digest differs)")
    _check_arrays(path, doc, arrays)
    try:
        layers = [_layer_from_record(rec, i, arrays) for i, rec in enumerate(doc["layers"])]
        model = QuantizedModel(
            name=str(doc["name"]), input_shape=tuple(doc["input_shape"]),
            input_fmt=QFormat.from_json(doc["input_fmt"]), input_scale=float(doc["input_scale"]),
            layers=layers, meta=dict(doc.get("meta", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: malformed model.json ({type(e).__name__}: {e})") from None
    try:
        return model.validate()
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


#: Arrays that hold integers (the rest are float scales).
_INTEGER = ("weight", "bias", "mult", "shift")


def _check_arrays(path, doc, arrays):
    """Every array belongs to a layer model.json describes (a model.json that lost layers is
    refused, not run short), and the integer ones hold integers (no silent truncation)."""
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ArtifactError(f"{path}: malformed model.json (TypeError: layers must be a list,"
                            f" not {type(layers).__name__})")
    for key, a in arrays.items():
        index, _, attr = key.partition(".")
        if not index.isdigit() or attr not in _ARRAYS:
            raise ArtifactError(f"{path}: tensors.npz holds an unknown array {key!r}")
        if int(index) >= len(layers):
            raise ArtifactError(f"{path}: tensors.npz holds arrays of layer {index}, which"
                                f" model.json does not describe ({len(layers)} layers):"
                                " model.json is truncated or edited")
        if attr in _INTEGER and not np.issubdtype(a.dtype, np.integer):
            raise ArtifactError(f"{path}: layer {index} {attr} must hold integers, not"
                                f" {a.dtype} values")
        if attr not in _INTEGER and not np.issubdtype(a.dtype, np.floating):
            raise ArtifactError(f"{path}: layer {index} {attr} must hold real scales, not"
                                f" {a.dtype} values")


def _read_json(file):
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{file.parent}: not a QuantizedModel folder (no model.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{file}: not valid JSON ({e})") from None
    except RecursionError:
        raise ArtifactError(f"{file}: not a QuantizedModel description (nested too deeply)") \
            from None
    except OSError as e:
        raise ArtifactError(f"{file}: cannot read it ({e.strerror or e})") from None
    if not isinstance(doc, dict) or doc.get("format") != _MAGIC:
        raise ArtifactError(f"{file}: not a QuantizedModel description")
    if doc.get("version") not in _READABLE:
        raise ArtifactError(f"{file}: format version {doc.get('version')!r} is not supported"
                            f" (this tool reads versions {', '.join(map(str, _READABLE))})")
    return doc


def _read_npz(file):
    if not file.exists():
        raise ArtifactError(f"{file.parent}: tensors.npz is missing")
    if not file.is_file():
        raise ArtifactError(f"{file}: not a file")
    try:
        # Open the file here: np.load leaks its own handle when the zip is truncated.
        with open(file, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ArtifactError(f"{file}: unreadable or truncated ({e})") from None


def _layer_from_record(rec, index, arrays):
    def arr(attr, dtype):
        a = arrays.get(f"{index}.{attr}")
        return None if a is None else a.astype(dtype, copy=False)

    w_fmt = QFormat.from_json(rec["w_fmt"]) if rec.get("w_fmt") else None
    return QLayer(
        name=str(rec["name"]), kind=LayerKind(rec["kind"]),
        in_shape=tuple(rec["in_shape"]), out_shape=tuple(rec["out_shape"]),
        in_fmt=QFormat.from_json(rec["in_fmt"]), out_fmt=QFormat.from_json(rec["out_fmt"]),
        in_scale=float(rec["in_scale"]), out_scale=arr("out_scale", np.float64),
        kernel=tuple(rec["kernel"]), stride=tuple(rec["stride"]), padding=tuple(rec["padding"]),
        w_fmt=w_fmt, weight=arr("weight", np.int64), bias=arr("bias", np.int64),
        mult=arr("mult", np.int64), shift=arr("shift", np.int64), requant=bool(rec["requant"]),
        lo=int(rec["lo"]), hi=int(rec["hi"]), w_scale=arr("w_scale", np.float64),
        extra=dict(rec.get("extra", {})),
        inputs=tuple(int(j) for j in rec["inputs"]) if "inputs" in rec else None,
        groups=int(rec.get("groups", 1)))
