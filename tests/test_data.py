"""Data sets: the embedded digits split and a user's .npz file, with every error message."""

import re

import numpy as np
import pytest
from flowkit import digits

from quantflow import data
from quantflow.errors import DataError, UserError


def test_digits_split():
    ds = digits()
    assert ds.name == "digits"
    assert (len(ds.x_train), len(ds.x_test)) == (1347, 450)
    assert ds.x_train.shape == (1347, 1, 8, 8) and ds.x_test.shape == (450, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 8, 8) and ds.classes == 10
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    assert np.all(ds.x_train * 16 == np.round(ds.x_train * 16)), "pixels are k/16"
    # stratified: every class in both splits, in proportion
    counts = np.bincount(ds.y_test, minlength=10)
    total = counts + np.bincount(ds.y_train, minlength=10)
    assert np.all(np.abs(counts - total / 4) <= 1), (counts, total)


def test_digits_split_is_the_documented_one():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, x_te, _, y_te = train_test_split(d.data, d.target, test_size=0.25, random_state=0,
                                        stratify=d.target)
    ds = digits()
    assert np.array_equal(ds.x_test.reshape(450, 64) * 16, x_te)
    assert np.array_equal(ds.y_test, y_te)


def test_validation_split_comes_from_training_data():
    ds = digits()
    x_val, y_val = data.validation_split(ds)
    assert len(x_val) == len(y_val) == 337  # 25% of 1347, rounded up by scikit-learn
    train_rows = {r.tobytes() for r in ds.x_train}
    assert all(r.tobytes() in train_rows for r in x_val)
    x2, y2 = data.validation_split(ds)
    assert np.array_equal(x_val, x2) and np.array_equal(y_val, y2)


def test_fit_split_is_the_rest_of_the_training_data():
    """What the zoo trains on and calibration draws from: the training images the validation
    split does not hold, each once, with their labels (the digits images are distinct)."""
    ds = digits()
    x_val, y_val = data.validation_split(ds)
    x_fit, y_fit = data.fit_split(ds)
    assert len(x_fit) == len(y_fit) == 1347 - 337
    val_rows = {r.tobytes() for r in x_val}
    assert not any(r.tobytes() in val_rows for r in x_fit)
    label = {x.tobytes(): y for x, y in zip(ds.x_train, ds.y_train, strict=True)}
    assert len(label) == 1347
    assert sorted(label) == sorted(r.tobytes() for r in np.concatenate([x_fit, x_val]))
    assert all(label[x.tobytes()] == y for x, y in zip(x_fit, y_fit, strict=True))
    assert np.array_equal(np.bincount(y_fit) + np.bincount(y_val), np.bincount(ds.y_train))


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _good(n_train=6, n_test=4, shape=(1, 2, 2)):
    return {"x_train": np.zeros((n_train, *shape)), "y_train": np.arange(n_train) % 3,
            "x_test": np.ones((n_test, *shape)), "y_test": np.arange(n_test) % 3}


def test_load_npz_ok(tmp_path):
    ds = data.load_npz(_write(tmp_path / "mine.npz", **_good()))
    assert ds.name == "mine" and ds.input_shape == (1, 2, 2) and ds.classes == 3
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert len(ds.x_train) == 6 and len(ds.x_test) == 4


def test_load_npz_missing_file(tmp_path):
    p = tmp_path / "nope.npz"
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: no such data file$"):
        data.load_npz(p)


@pytest.mark.parametrize("drop", [["x_test"], ["y_train", "y_test"],
                                  ["x_train", "y_train", "x_test", "y_test"]])
def test_load_npz_missing_arrays(tmp_path, drop):
    arrays = {k: v for k, v in _good().items() if k not in drop}
    p = _write(tmp_path / "d.npz", other=np.zeros(1), **arrays)
    with pytest.raises(DataError,
                       match=rf"^{re.escape(str(p))}: missing arrays {', '.join(drop)} \(need "
                             rf"x_train, y_train, x_test, y_test\)$"):
        data.load_npz(p)


@pytest.mark.parametrize(("change", "split", "nx", "ny"), [
    ({"y_train": np.zeros(5, dtype=np.int64)}, "train", 6, 5),
    ({"x_test": np.zeros((3, 1, 2, 2))}, "test", 3, 4),
    ({"x_train": np.zeros((0, 1, 2, 2)), "y_train": np.zeros(0, dtype=np.int64)}, "train", 0,
     0),
])
def test_load_npz_bad_lengths(tmp_path, change, split, nx, ny):
    p = _write(tmp_path / "d.npz", **(_good() | change))
    with pytest.raises(DataError,
                       match=rf"^{re.escape(str(p))}: x_{split} and y_{split} must be non-empty"
                             rf" and of equal length, not {nx} and {ny}$"):
        data.load_npz(p)


@pytest.mark.parametrize(("change", "message"), [
    ({"x_train": np.full((6, 1, 2, 2), np.nan)}, r"x_train must hold finite numbers"),
    ({"x_test": np.array([["a"] * 4] * 4)}, r"x_test must hold finite numbers"),
    ({"y_test": np.array([0, 1, -1, 2])}, r"y_test must hold non-negative integer class labels"),
    ({"y_train": np.zeros(6)}, r"y_train must hold non-negative integer class labels"),
    ({"x_test": np.zeros((4, 1, 3, 3))}, r"x_train and x_test have different sample shapes"),
    ({"x_train": np.zeros((6, 1, 2, 2), dtype=np.complex64)},
     r"x_train must hold real numbers, not complex64"),
    ({"y_test": np.zeros(4, dtype=np.complex128)}, r"y_test must hold real numbers, not"
                                                   r" complex128"),
    ({"y_train": np.eye(3, dtype=np.int64)[np.arange(6) % 3]},
     r"y_train must hold class labels of shape \(N,\), not \(6, 3\) \(one-hot labels\? store"
     r" labels\.argmax\(1\)\)"),
    ({"x_test": np.zeros(4)}, r"x_test must be \(N, \*sample shape\), not \(4,\)"),
])
def test_load_npz_bad_contents(tmp_path, change, message):
    p = _write(tmp_path / "d.npz", **(_good() | change))
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: {message}$"):
        data.load_npz(p)


@pytest.mark.parametrize("kind", ["text", "npy", "truncated", "pickle", "directory"])
def test_load_npz_not_an_npz(tmp_path, kind):
    p = tmp_path / "d.npz"
    if kind == "text":
        p.write_text("x_train,y_train\n1,2\n")
    elif kind == "npy":
        with open(p, "wb") as f:
            np.save(f, np.arange(3))
    elif kind == "truncated":
        _write(p, **_good())
        p.write_bytes(p.read_bytes()[:300])
    elif kind == "pickle":
        _write(p, **(_good() | {"y_test": np.array([0, 1, 2, None], dtype=object)}))
    else:
        p.mkdir()
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: not a readable \.npz file "
                                        rf"\(.+\)$"):
        data.load_npz(p)


def test_data_error_is_a_user_error():
    assert issubclass(DataError, UserError)


@pytest.mark.parametrize(("n_train", "message"), [
    (8, r"The test_size = 2 should be greater or equal to the number of classes = 4"),
    (5, r"The least populated class(es)? in y ha(s|ve) only 1 member"),
])
def test_validation_split_too_small(tmp_path, n_train, message):
    arrays = _good(n_train=n_train) | {"y_train": np.arange(n_train) % 4}
    ds = data.load_npz(_write(tmp_path / "small.npz", **arrays))
    with pytest.raises(DataError, match=rf"^small: the training data cannot give a stratified "
                                        rf"validation split \({message}.*\)$"):
        data.validation_split(ds)


def test_regression_targets(tmp_path):
    """Float targets of two or more dimensions make a regression data set (the autoencoder's);
    its validation split is seeded but not stratified."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 5)).astype(np.float64)
    p = tmp_path / "ae.npz"
    _write(p, x_train=x, y_train=x, x_test=x[:4], y_test=x[:4])
    ds = data.load_npz(p)
    assert ds.task is data.Task.REGRESSION and ds.y_train.dtype == np.float32
    assert ds.classes is None and ds.output_shape == (5,)
    x_val, y_val = data.validation_split(ds)
    x_fit, _ = data.fit_split(ds)
    assert len(x_val) == 3 and len(x_fit) == 9 and np.array_equal(x_val, y_val)
    assert data.Task.of(np.arange(3)) is data.Task.CLASSIFICATION
    _write(p, x_train=x, y_train=x, x_test=x[:4], y_test=np.arange(4))
    with pytest.raises(DataError, match=r"^.*ae\.npz: y_train and y_test must both be class "
                                        r"labels or both regression targets of one shape$"):
        data.load_npz(p)
    _write(p, x_train=x, y_train=np.where(x > 0.5, np.nan, x), x_test=x[:4], y_test=x[:4])
    with pytest.raises(DataError, match=r"y_train must hold finite regression targets$"):
        data.load_npz(p)


def test_load_npz_validation_arrays(tmp_path):
    arrays = _good() | {"x_val": np.full((3, 1, 2, 2), 0.5), "y_val": np.array([0, 1, 2])}
    ds = data.load_npz(_write(tmp_path / "v.npz", **arrays))
    assert ds.x_val.dtype == np.float32 and ds.y_val.dtype == np.int64
    x_val, y_val = data.validation_split(ds)
    assert np.array_equal(x_val, arrays["x_val"]) and np.array_equal(y_val, arrays["y_val"])
    x_fit, _ = data.fit_split(ds)  # nothing of x_train is held out
    assert np.array_equal(x_fit, ds.x_train) and data.validation_source(ds) == "x_val"
    assert data.validation_source(data.load_npz(_write(tmp_path / "n.npz", **_good()))) == (
        "split of x_train")


@pytest.mark.parametrize(("change", "message"), [
    ({"x_val": np.zeros((3, 1, 2, 2))}, r"x_val without y_val \(validation data needs both\)"),
    ({"y_val": np.zeros(3, np.int64)}, r"y_val without x_val \(validation data needs both\)"),
    ({"x_val": np.zeros((3, 1, 2, 2)), "y_val": np.zeros(2, np.int64)},
     r"x_val and y_val must be non-empty and of equal length, not 3 and 2"),
    ({"x_val": np.zeros((3, 1, 3, 3)), "y_val": np.zeros(3, np.int64)},
     r"x_train and x_val have different sample shapes"),
    ({"x_val": np.zeros((3, 1, 2, 2)), "y_val": -np.ones(3, np.int64)},
     r"y_val must hold non-negative integer class labels"),
])
def test_load_npz_bad_validation_arrays(tmp_path, change, message):
    p = _write(tmp_path / "bad.npz", **(_good() | change))
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}: {message}$"):
        data.load_npz(p)
