"""Flow files: the settings of one ``hwgen build`` in a TOML file (read with :mod:`tomllib`).

::

    # digits-cnn W4A4 on the iCEBreaker
    model = "digits-cnn"          # a zoo name, path/to/file.py:factory or a QONNX file.onnx
    data = "my_data.npz"          # optional: x_train, y_train, x_test, y_test (x_val, y_val)

    [quantize]                    # hwgen quantize's flags, with _ for -
    wbits = 4
    abits = 4
    recipe = "auto"               # or method = "minmax" (range setting only)
    layer_bits = {"0" = [8, 8]}   # or the flag's text "0=8/8"

    [hardware]
    board = "icebreaker"          # optional: without it, the generic overlay and no synth
    array = "2x2"                 # optional: default the board's (8x8 without a board)

    [simulate]
    sim = "verilator"
    images = 100                  # 0: the whole test set
    seed = 0

Relative paths (``data``, a model's ``.py`` or ``.onnx``) are read from the flow file's
folder. Every key, type and value is checked when the file is read, before any work: a
mistake is one :class:`FlowError` line naming the file and the key
(``flows/x.toml: quantize.wbits must be a bit width in 1..8, not 9``).
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from quantflow.errors import UserError

from . import values

__all__ = ["Flow", "FlowError", "read", "SCHEMA"]


class FlowError(UserError):
    """A flow file that cannot be read, or a key in it with a wrong name, type or value."""


_REQUIRED = object()

#: ``{section: {key: (TOML types, what the message calls them, default)}}``; ``""`` is the
#: top level. Keys mirror the commands' flags (``--weight-grid`` is ``weight_grid``).
SCHEMA = {
    "": {"model": ((str,), "a string", _REQUIRED), "data": ((str,), "a string", None)},
    "quantize": {
        "wbits": ((int,), "an integer", 4), "abits": ((int,), "an integer", 4),
        "input_bits": ((int,), "an integer", 8), "method": ((str,), "a string", None),
        "recipe": ((str,), "a string", None), "weight_grid": ((str,), "a string", "auto"),
        "wide_head": ((bool,), "true or false", False),
        "layer_bits": ((dict, str), "a table or a string", None),
        "data_free": ((bool,), "true or false", False), "qat": ((bool,), "true or false", False),
        "qat_epochs": ((int,), "an integer", 30)},
    "hardware": {"board": ((str,), "a string", None),
                 "array": ((str, list), "a string or an array", None)},
    "simulate": {"sim": ((str,), "a string", "verilator"), "images": ((int,), "an integer", 0),
                 "seed": ((int,), "an integer", 0)},
}


@dataclass(frozen=True)
class Flow:
    """A validated flow file. ``model`` is what :func:`~hwflow.api.quantize` takes (a path in
    it made absolute), ``model_file`` the file it names (``None`` for a zoo name); the other
    fields are the API's values (``quantize`` holds its keywords)."""

    path: Path
    model: str
    model_file: Path | None
    data: Path | None
    quantize: dict
    board: object = None
    array: tuple | None = None
    sim: object = None
    images: int = 0
    seed: int = 0
    text: dict = field(default_factory=dict, compare=False)

    @property
    def name(self):
        """The flow file's stem: the default build folder is ``build/<name>``."""
        return self.path.stem

    def settings(self):
        """The flow as written, every key with its default filled in (for the report):
        ``{"model": ..., "data": ..., "quantize": {...}, "hardware": {...}, ...}``."""
        return {**self.text[""], **{s: dict(keys) for s, keys in self.text.items() if s}}


def _bad(path, message):
    return FlowError(f"{path}: {message}")


def _load(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise _bad(path, "no such flow file") from None
    except IsADirectoryError:
        raise _bad(path, "is a folder, not a flow file") from None
    except tomllib.TOMLDecodeError as e:
        raise _bad(path, f"not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise _bad(path, "not valid TOML (not UTF-8 text)") from None


def _checked(path, doc):
    """``{section: {key: value}}`` with every key known, of its type, defaults filled in."""
    out = {}
    for section, schema in SCHEMA.items():
        table = doc if section == "" else doc.get(section, {})
        if not isinstance(table, dict):
            raise _bad(path, f"{section} must be a table [{section}], not {table!r}")
        known = [k for k in schema]
        for key in table:
            if section == "" and key in SCHEMA:
                continue
            if section == "" and isinstance(table[key], dict):
                sections = ", ".join(f"[{s}]" for s in SCHEMA if s)
                raise _bad(path, f"unknown section [{key}] (known: {sections})")
            if key not in schema:
                where = f"[{section}]" if section else "the top level"
                sections = ", ".join(f"[{s}]" for s in SCHEMA if s)
                also = f"; sections: {sections}" if section == "" else ""
                raise _bad(path, f"unknown key {_key(section, key)!r} (known in {where}:"
                           f" {', '.join(known)}{also})")
        out[section] = {}
        for key, (types, what, default) in schema.items():
            value = table.get(key, default)
            if value is _REQUIRED:
                raise _bad(path, f"{_key(section, key)} is required (e.g. {key} ="
                           ' "digits-cnn")')
            if value is not None and not (isinstance(value, types)
                                          and not (isinstance(value, bool) and bool not in types)):
                raise _bad(path, f"{_key(section, key)} must be {what}, not {value!r}")
            out[section][key] = value
    return out


def _key(section, key):
    return f"{section}.{key}" if section else key


def _value(path, key, convert, *args):
    """``convert(*args)``, its one-line error naming ``key`` instead of the command's flag."""
    try:
        return convert(*args)
    except UserError as e:
        text = re.sub(r"^--[\w-]+", key, str(e))
        raise _bad(path, text if text.startswith(key) else f"{key}: {text}") from None


def _file(path, key, name):
    """``name`` (relative to the flow file's folder) as an existing file."""
    f = Path(name).expanduser()
    f = f if f.is_absolute() else path.parent / f
    if not f.is_file():
        raise _bad(path, f"{key}: no such file {str(f)!r}")
    return f.resolve()


def _model(path, spec):
    """``(spec for quantize, the file it names or None)``: a zoo name is checked against
    the zoo (which imports torch: a second's cost, paid before any work)."""
    if spec.endswith(".onnx"):
        f = _file(path, "model", spec)
        return str(f), f
    name, sep, factory = spec.rpartition(":")
    if sep and name and factory:
        f = _file(path, "model", name)
        return f"{f}:{factory}", f
    from quantflow.zoo import ZooModel

    names = [m.value for m in ZooModel]
    if spec not in names:
        raise _bad(path, f"model must be a zoo name ({', '.join(names)}), path/to/file.py:"
                   f"factory or a file.onnx, not {spec!r}")
    return spec, None


def read(path):
    """The :class:`Flow` in the TOML file ``path``, every key checked (:class:`FlowError`)."""
    path = Path(path)
    text = _checked(path, _load(path))
    top, q, hw, sim = text[""], text["quantize"], text["hardware"], text["simulate"]
    model, model_file = _model(path, top["model"])
    data = None if top["data"] is None else _file(path, "data", top["data"])
    if q["method"] is not None and q["recipe"] is not None:
        raise _bad(path, "quantize.method and quantize.recipe exclude each other (method is"
                   " range setting only, no recipe): set one")
    kw = {"wbits": _value(path, "quantize.wbits", values.bits, "quantize.wbits", q["wbits"]),
          "abits": _value(path, "quantize.abits", values.bits, "quantize.abits", q["abits"]),
          "input_bits": _value(path, "quantize.input_bits", values.bits, "quantize.input_bits",
                               q["input_bits"]),
          "method": _value(path, "quantize.method", values.method, q["method"]),
          "recipe": _value(path, "quantize.recipe", values.recipe_name,
                            q["recipe"] or "auto"),
          "weight_grid": _value(path, "quantize.weight_grid", values.weight_grid,
                                q["weight_grid"]),
          "wide_head": q["wide_head"],
          "layer_bits": _value(path, "quantize.layer_bits", values.layer_bits, q["layer_bits"]),
          "data_free": q["data_free"], "qat": q["qat"],
          "qat_epochs": _value(path, "quantize.qat_epochs", values.positive, "quantize.qat_epochs",
                               q["qat_epochs"])}
    return Flow(
        path=path, model=model, model_file=model_file, data=data, quantize=kw,
        board=_value(path, "hardware.board", values.board, hw["board"]),
        array=_value(path, "hardware.array", values.array, hw["array"]),
        sim=_value(path, "simulate.sim", values.sim, sim["sim"]),
        images=_value(path, "simulate.images", values.non_negative, "simulate.images",
                      sim["images"]),
        seed=_value(path, "simulate.seed", values.non_negative, "simulate.seed",
                    sim["seed"]),
        text=text)
