"""Python values the API accepts, turned into the objects the layers below take.

Each keyword of :mod:`hwflow.api` takes what its command's flag takes, as text (``"8x8"``,
``"verilator"``, ``"icebreaker"``) or as the Python value (``(8, 8)``, ``Sim.VERILATOR``,
``Board.ICEBREAKER``). A value that is neither is one :class:`~quantflow.errors.UserError`
naming the option as the command spells it (``--array must be ..., not ...``), so a message
reads the same from the API and from ``hwgen``.
"""

import enum
from pathlib import Path

from quantflow.errors import UserError

__all__ = ["bits", "non_negative", "positive", "array", "member", "board", "sim", "method",
           "recipe", "weight_grid", "layer_bits", "qdir", "path", "configured"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def bits(option, value):
    """A word length in ``MIN_BITS..MAX_BITS`` (an int, or its decimal text)."""
    from quantflow.numerics import MAX_BITS, MIN_BITS

    b = _int(value)
    if b is None or not MIN_BITS <= b <= MAX_BITS:
        raise UserError(f"{option} must be a bit width in {MIN_BITS}..{MAX_BITS}, not {value!r}")
    return b


def _int(value):
    if _is_int(value):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def non_negative(option, value):
    """An integer >= 0."""
    n = _int(value)
    if n is None or n < 0:
        raise UserError(f"{option} must be a non-negative integer, not {value!r}")
    return n


def positive(option, value):
    """An integer >= 1."""
    n = _int(value)
    if n is None or n < 1:
        raise UserError(f"{option} must be a positive integer, not {value!r}")
    return n


def array(value):
    """``None``, ``(rows, cols)`` or ``"ROWSxCOLS"`` -> ``None`` or a tuple of two positive
    ints."""
    if value is None:
        return None
    shape = value.lower().split("x") if isinstance(value, str) else value
    try:
        rows, cols = (_int(v) for v in shape)
    except (TypeError, ValueError):
        rows = cols = None
    if rows is None or cols is None or rows < 1 or cols < 1:
        raise UserError(f"--array must be ROWSxCOLS or (rows, cols) of positive integers,"
                        f" not {value!r}")
    return rows, cols


def member(option, cls, value):
    """A member of the enum ``cls``, or its value (``"verilator"`` for ``Sim.VERILATOR``)."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except (ValueError, TypeError):
        names = ", ".join(str(m.value) for m in cls)
        raise UserError(f"{option} must be one of {names}, not {value!r}") from None


def board(value, option="--board"):
    """A :class:`boards.Board`, or its name (``"icebreaker"``); ``None`` stays ``None``."""
    if value is None:
        return None
    from boards import Board, board_by_name

    if isinstance(value, Board):
        return value
    try:
        return board_by_name(value)
    except (ValueError, TypeError):
        names = ", ".join(b.value.name for b in Board)
        raise UserError(f"{option} must be one of {names}, not {value!r}") from None


def sim(value):
    """A :class:`rtl_tests.runner.Sim`, or its name (``"verilator"``, ``"icarus"``)."""
    from rtl_tests.runner import Sim

    return member("--sim", Sim, value)


def method(value):
    """``None`` (the recipe decides), a :class:`quantflow.flow.Method` or its name."""
    if value is None:
        return None
    from quantflow.calibrate import Method

    return member("--method", Method, value)


def recipe_name(value):
    """A recipe's name, checked without loading torch (a flow file is read before any work):
    the name itself, or a Recipe's name."""
    from quantflow.calibrate import RECIPE_NAMES

    name = getattr(value, "name", value)
    if name not in RECIPE_NAMES:
        raise UserError(f"--recipe must be one of {', '.join(RECIPE_NAMES)}, not {value!r}")
    return name


def recipe(value):
    """A :class:`quantflow.recipes.Recipe` (or ``recipes.AUTO``), or its name."""
    from quantflow import recipes

    if isinstance(value, recipes.Recipe) or value is recipes.AUTO:
        return value
    try:
        return recipes.by_name(value)
    except (ValueError, TypeError):
        names = ", ".join([recipes.AUTO.name] + [r.name for r in recipes.RECIPES])
        raise UserError(f"--recipe must be one of {names}, not {value!r}") from None


def weight_grid(value):
    """``"auto"`` or ``None`` (chosen on the validation data) -> ``None``; else a
    :class:`quantflow.numerics.WeightGrid` or its name."""
    from quantflow.numerics import WeightGrid

    if value is None or value == "auto":
        return None
    if isinstance(value, enum.Enum) and not isinstance(value, WeightGrid):
        value = value.value
    try:
        return WeightGrid(value)
    except ValueError:
        names = ", ".join(["auto"] + [g.value for g in WeightGrid])
        raise UserError(f"--weight-grid must be one of {names}, not {value!r}") from None


def layer_bits(value):
    """``None``, ``{layer name: (w_bits, a_bits)}`` or the flag's text ``"NAME=W/A,..."``
    (names are checked against the model when it is captured; an int name is its text)."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = _layer_bits_text(value)
    if not isinstance(value, dict):
        raise UserError(f"--layer-bits must be a dict {{name: (w_bits, a_bits)}}, not {value!r}")
    out = {}
    for name, wa in value.items():
        try:
            w, a = wa
        except (TypeError, ValueError):
            raise UserError(f"--layer-bits must map each name to (w_bits, a_bits), not"
                            f" {name!r}: {wa!r}") from None
        out[str(name)] = (bits(f"--layer-bits {name}", w), bits(f"--layer-bits {name}", a))
    return out


def _layer_bits_text(text):
    """``"0=8/8,10=8/8"`` -> ``{"0": ("8", "8"), "10": ("8", "8")}`` (checked by the caller)."""
    out = {}
    for item in text.split(","):
        name, sep, wa = item.strip().partition("=")
        w, slash, a = wa.partition("/")
        if not (sep and slash and name):
            raise UserError(f"--layer-bits must be NAME=W/A,... (e.g. 0=8/8), not {item!r}")
        out[name] = (w, a)
    return out


def qdir(value):
    """A QuantizedModel folder: a path, or a :class:`~hwflow.api.QuantizeResult` (its
    ``out``)."""
    out = getattr(value, "out", value)
    if out is None:
        raise UserError("QDIR must be a QuantizedModel folder, not None")
    return path("QDIR", out)


def path(option, value):
    """A ``str`` or ``os.PathLike`` -> :class:`pathlib.Path`; ``None`` stays ``None``."""
    if value is None:
        return None
    try:
        return Path(value)
    except TypeError:
        raise UserError(f"{option} must be a path, not {value!r}") from None


def configured(call, *args, **kw):
    """``call(*args, **kw)``, with a configuration the overlay refuses (the ``TypeError`` or
    ``ValueError`` of its validation) as one :class:`~hwgen.errors.ConfigError` line."""
    from hwgen.errors import ConfigError

    try:
        return call(*args, **kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
