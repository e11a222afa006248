"""The model zoo: small networks trained deterministically on the CPU, cached on disk.

``digits-cnn`` and ``digits-mlp`` are trained on the embedded digits data (AdamW, cosine
schedule, batch 64; see :data:`RECIPES`), on the training images minus the validation split
(:func:`quantflow.data.fit_split`): the default PTQ recipe is chosen on that split, and a
network nearly 100% right on images it has fitted separates the candidates weakly.

A user's own model comes in as ``path/to/file.py:factory``: the factory returns the
``nn.Module`` (with its weights loaded by the user's code, which must use
``torch.load(..., weights_only=True)``).
"""

import dataclasses
import enum
import hashlib
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import fit_split
from .errors import DataError

__all__ = ["ZooModel", "build", "train", "load_or_train", "load_user_model", "cache_dir",
           "accuracy"]


class ZooModel(enum.Enum):
    DIGITS_CNN = "digits-cnn"
    DIGITS_MLP = "digits-mlp"


@dataclass(frozen=True)
class Recipe:
    """Float training settings: AdamW (decoupled ``weight_decay``) with a cosine schedule,
    cross-entropy with ``label_smoothing``."""

    epochs: int = 40
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0


#: The CNN's recipe was never tuned (it meets its targets). The MLP's was chosen on the
#: validation split (float network trained on the fit split, ranked by accuracy, then mean
#: log-likelihood, as the PTQ recipes are) from lr {3e-3, 1e-2, 3e-2} x epochs {40, 80, 150}
#: x weight decay {0, 1e-2, 1e-1} x label smoothing {0, 0.1}: the old recipe (1e-2, 40, 0, 0)
#: scored 96.14%; label smoothing gained 1 to 2 points almost everywhere; three settings tied
#: at the top with 98.52% and this one had the best log-likelihood (-0.1790).
RECIPES = {
    ZooModel.DIGITS_CNN: Recipe(lr=3e-3),
    ZooModel.DIGITS_MLP: Recipe(epochs=80, lr=3e-2, weight_decay=1e-2, label_smoothing=0.1),
}


def build(which):
    """A freshly initialised zoo network (seeded by the caller)."""
    if which is ZooModel.DIGITS_CNN:
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(512, 10),
        )
    if which is ZooModel.DIGITS_MLP:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 64), nn.ReLU(),
            nn.Linear(64, 32), nn.ReLU(),
            nn.Linear(32, 10),
        )
    raise TypeError(f"Zoo model must be a ZooModel, not {which!r}")


def cache_dir():
    """Where trained zoo weights are cached: ``$HWGEN_CACHE`` or ``~/.cache/hwgen``."""
    root = os.environ.get("HWGEN_CACHE") or Path.home() / ".cache" / "hwgen"
    return Path(root)


def _cache_key(which, recipe, ds):
    h = hashlib.sha256()
    # v2: trained without the validation split (v1 weights had seen it); v3: AdamW and label
    # smoothing in the recipe
    h.update(f"{which.value}|{recipe}|{torch.__version__}|v3".encode())
    h.update(np.ascontiguousarray(ds.x_train).tobytes())
    h.update(np.ascontiguousarray(ds.y_train).tobytes())
    return h.hexdigest()[:16]


def train(model, ds, recipe, progress=None):
    """AdamW + cosine schedule on ``ds.x_train``, deterministic: fixed seed, one thread,
    deterministic kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions differ with the thread count
    try:
        torch.manual_seed(recipe.seed)
        gen = torch.Generator().manual_seed(recipe.seed)
        x = torch.from_numpy(ds.x_train)
        y = torch.from_numpy(ds.y_train)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                weight_decay=recipe.weight_decay)
        steps = recipe.epochs * ((len(x) + recipe.batch - 1) // recipe.batch)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        model.train()
        for epoch in range(recipe.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), recipe.batch):
                idx = perm[i:i + recipe.batch]
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                sched.step()
            if progress is not None:
                progress(epoch + 1, recipe.epochs)
        model.eval()
    finally:
        torch.set_num_threads(threads)
    return model


def load_or_train(which, ds, progress=None):
    """The trained zoo network, from the cache when its key (recipe, data, torch) matches.

    It is trained on ``ds``'s training data minus the validation split."""
    recipe = RECIPES[which]
    x_fit, y_fit = fit_split(ds)
    ds = dataclasses.replace(ds, x_train=x_fit, y_train=y_fit)
    path = cache_dir() / "zoo" / f"{which.value}-{_cache_key(which, recipe, ds)}.pt"
    torch.manual_seed(recipe.seed)
    model = build(which)
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a corrupt cache entry is retrained and overwritten
    train(model, ds, recipe, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model


def load_user_model(spec):
    """``path/to/file.py:factory`` -> the nn.Module the factory returns (in eval mode)."""
    file, sep, factory = str(spec).rpartition(":")
    if not sep or not file.endswith(".py") or not factory.isidentifier():
        raise DataError(f"{spec!r} is not a model spec of the form path/to/file.py:factory")
    path = Path(file)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    module_spec = importlib.util.spec_from_file_location(f"_hwgen_user_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: report, don't trace back
        raise DataError(f"{path}: failed to import ({type(e).__name__}: {e})") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise DataError(f"{path}: has no callable {factory!r}")
    try:
        model = fn()
    except Exception as e:
        raise DataError(f"{path}:{factory}() failed ({type(e).__name__}: {e})") from None
    if not isinstance(model, nn.Module):
        raise DataError(f"{path}:{factory}() must return a torch.nn.Module, not "
                        f"{type(model).__name__}")
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y, batch=512):
    """Top-1 accuracy (fraction 0..1) of a float torch model."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(torch.from_numpy(np.asarray(x[i:i + batch], dtype=np.float32)))
        correct += int((logits.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(x)
