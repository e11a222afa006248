"""The model zoo: architectures, deterministic cached training, and user model files."""

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from flowkit import digits, trained
from torch import nn

from quantflow import data, zoo
from quantflow.errors import DataError


def test_architectures():
    cnn = zoo.build(zoo.ZooModel.DIGITS_CNN)
    assert [type(m) for m in cnn] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d,
                                      nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU,
                                      nn.Flatten, nn.Linear]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding)
            for m in cnn if isinstance(m, nn.Conv2d)] == [(1, 16, (3, 3), (1, 1)),
                                                          (16, 32, (3, 3), (1, 1)),
                                                          (32, 32, (3, 3), (1, 1))]
    assert (cnn[-1].in_features, cnn[-1].out_features) == (512, 10)
    mlp = zoo.build(zoo.ZooModel.DIGITS_MLP)
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == [
        (64, 64), (64, 32), (32, 10)]
    assert cnn(torch.zeros(2, 1, 8, 8)).shape == mlp(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_recipes():
    """The CNN keeps the issue's recipe; the MLP's was chosen on the validation split."""
    assert zoo.RECIPES[zoo.ZooModel.DIGITS_CNN] == zoo.Recipe(40, 64, 3e-3, 0.0, 0.0)
    assert zoo.RECIPES[zoo.ZooModel.DIGITS_MLP] == zoo.Recipe(80, 64, 3e-2, 1e-2, 0.1)


def test_build_message():
    with pytest.raises(TypeError, match=r"^Zoo model must be a ZooModel, not 'digits-cnn'$"):
        zoo.build("digits-cnn")


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_trained_accuracy(name):
    ds = digits()
    acc = zoo.accuracy(trained(name), ds.x_test, ds.y_test)
    assert 0.96 <= acc <= 1.0, f"{name}: {acc}"


def test_trained_without_the_validation_split(monkeypatch, tmp_path):
    """The default recipe is chosen on the validation split, so the zoo must not fit it."""
    ds = digits()
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    seen = []

    def spy(model, ds_, recipe, progress=None):
        seen.append(ds_)
        return model

    monkeypatch.setattr(zoo, "train", spy)
    zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    (fit,) = seen
    x_fit, y_fit = data.fit_split(ds)
    assert np.array_equal(fit.x_train, x_fit) and np.array_equal(fit.y_train, y_fit)
    x_val, _ = data.validation_split(ds)
    val_rows = {r.tobytes() for r in x_val}
    assert not any(r.tobytes() in val_rows for r in fit.x_train)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HWGEN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.cache_dir() == tmp_path / ".cache" / "hwgen"


def test_training_is_deterministic_and_cached(monkeypatch, tmp_path):
    """Training the MLP into an empty cache reproduces the session's weights bit for bit;
    a second call loads from the cache; a corrupt entry is retrained and overwritten."""
    ds = digits()
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    fresh = zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    ref = trained("digits-mlp")
    for (k, a), b in zip(fresh.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{k} differs between two trainings"
    files = list((tmp_path / "zoo").iterdir())
    assert len(files) == 1 and files[0].name.startswith("digits-mlp-") and \
        files[0].suffix == ".pt"

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the cache holds the model")

    monkeypatch.setattr(zoo, "train", no_training)
    again = zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))
    assert not again.training

    files[0].write_bytes(b"not a torch file")
    retrained = []

    def fake_train(model, ds_, recipe, progress=None):
        retrained.append(recipe)
        return model

    monkeypatch.setattr(zoo, "train", fake_train)
    zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    assert len(retrained) == 1
    assert set(torch.load(files[0], weights_only=True)) == set(ref.state_dict())
    assert [p.name for p in (tmp_path / "zoo").iterdir()] == [files[0].name], "temp file left"


# -- user model files -------------------------------------------------------------------------

def _model_file(tmp_path, body, name="net.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def test_load_user_model(tmp_path):
    p = _model_file(tmp_path, """
        from torch import nn

        def make():
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    """)
    model = zoo.load_user_model(f"{p}:make")
    assert isinstance(model, nn.Module) and not model.training


@pytest.mark.parametrize("spec", ["digits", "net.py", "net.txt:make", "net.py:1bad", ":make",
                                  "net.py:"])
def test_user_model_spec_message(spec):
    with pytest.raises(DataError, match=rf"^{re.escape(repr(spec))} is not a model spec of the "
                                        rf"form path/to/file\.py:factory$"):
        zoo.load_user_model(spec)


@pytest.mark.parametrize(("body", "factory", "message"), [
    (None, "make", r"no such model file"),
    ("import no_such_module_anywhere\n", "make",
     r"failed to import \(ModuleNotFoundError: No module named 'no_such_module_anywhere'\)"),
    ("def make(:\n", "make", r"failed to import \(SyntaxError: .+\)"),
    ("x = 1\n", "make", r"has no callable 'make'"),
    ("make = 3\n", "make", r"has no callable 'make'"),
    ("def make():\n    raise RuntimeError('no weights')\n", "make",
     r"make\(\) failed \(RuntimeError: no weights\)"),
    ("def make():\n    return 42\n", "make", r"make\(\) must return a torch\.nn\.Module, not int"),
])
def test_user_model_errors(tmp_path, body, factory, message):
    p = tmp_path / "m.py" if body is None else _model_file(tmp_path, body, "m.py")
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}:? ?{message}$"):
        zoo.load_user_model(f"{p}:{factory}")


def test_user_model_file_in_the_repository_fixture():
    path = Path(__file__).parent / "fixtures" / "bad_model.py"
    model = zoo.load_user_model(f"{path}:make")
    assert any(isinstance(m, nn.Sigmoid) for m in model.modules())
