"""Data sets: the embedded digits demo (scikit-learn's load_digits) and user .npz files.

Pure numpy. Arrays are float32 images ``(N, 1, 8, 8)`` in 0..1 and int64 labels.
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["Dataset", "digits", "load_npz", "validation_split", "fit_split",
           "VALIDATION_FRACTION"]

#: Share of the training data held out as the validation split.
VALIDATION_FRACTION = 0.25


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; ``x_*`` float32 ``(N, *shape)``, ``y_*`` int64 ``(N,)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def classes(self):
        return int(max(self.y_train.max(), self.y_test.max())) + 1


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

    try:
        return train_test_split(ds.x_train, ds.y_train, test_size=fraction, random_state=seed,
                                stratify=ds.y_train)
    except ValueError as e:  # too few images per class to hold some out, stratified
        raise DataError(f"{ds.name}: the training data cannot give a stratified validation"
                        f" split ({e})") from None


def validation_split(ds, fraction=VALIDATION_FRACTION, seed=0):
    """A stratified subset of the *training* data for choices made without the test set.

    Nothing is fitted to it: the zoo networks train on, and calibration images are drawn from,
    its complement :func:`fit_split`, so a choice made here is judged on unseen images."""
    _, x_val, _, y_val = _split(ds, fraction, seed)
    return x_val, y_val


def fit_split(ds, fraction=VALIDATION_FRACTION, seed=0):
    """The training data minus :func:`validation_split` (same ``fraction`` and ``seed``)."""
    x_fit, _, y_fit, _ = _split(ds, fraction, seed)
    return x_fit, y_fit


def load_npz(path):
    """A user's data file: ``x_train, y_train, x_test, y_test`` arrays (no pickle)."""
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
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{path}: x_{split} and y_{split} must be non-empty and of equal"
                            f" length, not {len(x)} and {len(y)}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise DataError(f"{path}: x_{split} must hold finite numbers")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must hold non-negative integer class labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: x_train and x_test have different sample shapes")
    return Dataset(path.stem, arrays["x_train"].astype(np.float32),
                   arrays["y_train"].astype(np.int64), arrays["x_test"].astype(np.float32),
                   arrays["y_test"].astype(np.int64))
