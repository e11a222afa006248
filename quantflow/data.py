"""Data sets: the embedded digits demo (scikit-learn's load_digits) and user .npz files.

Pure numpy. Arrays are float32 samples ``(N, *shape)`` (digits: ``(N, 1, 8, 8)`` in 0..1) and
either int64 class labels ``(N,)`` (classification) or float32 targets ``(N, *outputs)``
(regression; :class:`Task` follows from the labels' dtype). The zoo's proxy data sets for the
MLPerf Tiny networks are built in :mod:`quantflow.proxy`.
"""

import enum
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["Task", "Dataset", "digits", "load_npz", "validation_split", "fit_split",
           "VALIDATION_FRACTION", "validation_source"]

#: Share of the training data held out as the validation split.
VALIDATION_FRACTION = 0.25


class Task(enum.Enum):
    """What the labels are: class indices (top-1 accuracy) or float targets (mean squared
    error)."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"

    @classmethod
    def of(cls, y):
        """The task of labels ``y``: float arrays are regression targets."""
        floating = np.issubdtype(np.asarray(y).dtype, np.floating)
        return cls.REGRESSION if floating else cls.CLASSIFICATION


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; ``x_*`` float32 ``(N, *shape)``; ``y_*`` int64 ``(N,)`` class
    labels or float32 ``(N, *outputs)`` regression targets.

    ``note`` says where the data comes from when that is not obvious from ``name`` (the zoo's
    proxy tasks say here that they are proxies, and for what). ``x_val``/``y_val``: the user's
    own validation data (both or neither); when given, every choice is made on them
    (:func:`validation_split`) and nothing of ``x_train`` is held out (:func:`fit_split`)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    note: str = ""
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self):
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError(f"Dataset {self.name!r} must have both x_val and y_val or neither")

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def task(self):
        return Task.of(self.y_train)

    @property
    def classes(self):
        """Number of classes (``None`` for regression)."""
        if self.task is Task.REGRESSION:
            return None
        extra = () if self.y_val is None else (self.y_val.max(),)
        return int(max(self.y_train.max(), self.y_test.max(), *extra)) + 1

    @property
    def output_shape(self):
        """Shape of one regression target (``None`` for classification)."""
        return tuple(self.y_train.shape[1:]) if self.task is Task.REGRESSION else None


def digits():
    """scikit-learn's 8x8 digits: 75/25 stratified split (random_state=0), pixels / 16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return Dataset("digits", x_tr, y_tr, x_te, y_te)


def _split(ds, fraction, seed):
    from sklearn.model_selection import train_test_split

    if ds.task is Task.REGRESSION:  # no classes to stratify on
        return train_test_split(ds.x_train, ds.y_train, test_size=fraction, random_state=seed)
    try:
        return train_test_split(ds.x_train, ds.y_train, test_size=fraction, random_state=seed,
                                stratify=ds.y_train)
    except ValueError as e:  # too few images per class to hold some out, stratified
        raise DataError(f"{ds.name}: the training data cannot give a stratified validation"
                        f" split ({e})") from None


def validation_split(ds, fraction=VALIDATION_FRACTION, seed=0):
    """The data every choice is made on without the test set: the user's ``x_val``/``y_val``
    when the data set has them, else a stratified (for regression: plain, seeded) subset of
    the *training* data.

    Nothing is fitted to it: the zoo networks train on, and calibration images are drawn from,
    its complement :func:`fit_split`, so a choice made here is judged on unseen images (unless
    a user's network was trained on all of ``x_train``: :func:`validation_source`)."""
    if ds.x_val is not None:
        return ds.x_val, ds.y_val
    _, x_val, _, y_val = _split(ds, fraction, seed)
    return x_val, y_val


def fit_split(ds, fraction=VALIDATION_FRACTION, seed=0):
    """The training data minus :func:`validation_split` (same ``fraction`` and ``seed``); all
    of it when the data set brings its own validation data."""
    if ds.x_val is not None:
        return ds.x_train, ds.y_train
    x_fit, _, y_fit, _ = _split(ds, fraction, seed)
    return x_fit, y_fit


def validation_source(ds):
    """Where :func:`validation_split` takes its data, for reports and ``model.json``:
    ``"x_val"`` or ``"split of x_train"``."""
    return "x_val" if ds.x_val is not None else "split of x_train"


def load_npz(path):
    """A user's data file: ``x_train, y_train, x_test, y_test`` arrays (no pickle), and
    optionally ``x_val, y_val`` (validation data for every choice; both or neither).

    ``y_*`` hold non-negative integer class labels ``(N,)`` or, for a regression model (the
    zoo's ``fc-autoencoder``), float targets ``(N, *outputs)`` of at least two dimensions."""
    path = Path(path)
    try:
        # Open the file here: np.load leaks its own handle when the zip is truncated.
        with open(path, "rb") as fh:
            f = np.load(fh, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not a readable .npz file (a single array, not an"
                                " archive of named arrays)")
            with f:
                arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)} (need x_train, y_train,"
                        " x_test, y_test)")
    has_val = [k for k in ("x_val", "y_val") if k in arrays]
    if len(has_val) == 1:
        other = "y_val" if has_val[0] == "x_val" else "x_val"
        raise DataError(f"{path}: {has_val[0]} without {other} (validation data needs both)")
    splits = ("train", "test", "val") if has_val else ("train", "test")
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{path}: x_{split} and y_{split} must be non-empty and of equal"
                            f" length, not {len(x)} and {len(y)}")
        for name, a in ((f"x_{split}", x), (f"y_{split}", y)):
            if np.issubdtype(a.dtype, np.complexfloating):
                raise DataError(f"{path}: {name} must hold real numbers, not {a.dtype}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise DataError(f"{path}: x_{split} must hold finite numbers")
        if x.ndim < 2:
            raise DataError(f"{path}: x_{split} must be (N, *sample shape), not {x.shape}")
        if _is_targets(y):
            if not np.all(np.isfinite(y)):
                raise DataError(f"{path}: y_{split} must hold finite regression targets")
        elif np.issubdtype(y.dtype, np.integer) and y.ndim != 1:
            raise DataError(f"{path}: y_{split} must hold class labels of shape (N,), not"
                            f" {y.shape} (one-hot labels? store labels.argmax(1))")
        elif not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must hold non-negative integer class labels")
    y_train = arrays["y_train"]
    for split in splits[1:]:
        if arrays["x_train"].shape[1:] != arrays[f"x_{split}"].shape[1:]:
            raise DataError(f"{path}: x_train and x_{split} have different sample shapes")
        y = arrays[f"y_{split}"]
        if _is_targets(y_train) != _is_targets(y) or (
                _is_targets(y_train) and y_train.shape[1:] != y.shape[1:]):
            raise DataError(f"{path}: y_train and y_{split} must both be class labels or both"
                            " regression targets of one shape")
    y_type = np.float32 if _is_targets(y_train) else np.int64
    val = {f"{k}_val": arrays[f"{k}_val"].astype(t) for k, t in (("x", np.float32), ("y", y_type))
           } if has_val else {}
    return Dataset(path.stem, arrays["x_train"].astype(np.float32), y_train.astype(y_type),
                   arrays["x_test"].astype(np.float32), arrays["y_test"].astype(y_type), **val)


def _is_targets(y):
    """Float labels of two or more dimensions are regression targets; 1-D ones must be class
    labels (a float 1-D ``y`` is most likely class labels saved as floats: refused)."""
    return np.issubdtype(y.dtype, np.floating) and y.ndim >= 2
