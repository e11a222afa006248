"""The model zoo: small networks trained deterministically on the CPU, cached on disk.

``digits-cnn``, ``digits-mlp`` and the two DAG networks ``digits-resnet`` and
``digits-dsconv`` are trained on the embedded digits data; the MLPerf Tiny networks
(``dscnn-kws``, ``mobilenetv1-vww``, ``mobilenetv1-vww-32``, ``resnet8-ic``,
``fc-autoencoder``; architectures and sources in :mod:`quantflow.zoo_nets`) on their proxy
data sets (:mod:`quantflow.proxy`), or on a user's data of the same shapes
(:func:`default_data` gives each network's own). AdamW, cosine schedule, batch 64 (see
:data:`RECIPES`); cross-entropy for class labels, mean squared error for regression targets.
Every network trains on the training data minus the validation split
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
import io
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import metrics, proxy, zoo_nets
from .data import Task, digits, fit_split
from .errors import DataError
from .fsutil import cache_dir, cache_lock, check_cache_root, file_digest, notice, write_bytes

__all__ = ["ZooModel", "Recipe", "RECIPES", "build", "entry_name", "default_data", "check_data",
           "train", "load_or_train", "load_user_model", "check_user_data", "cache_dir", "accuracy"]


class ZooModel(enum.Enum):
    DIGITS_CNN = "digits-cnn"
    DIGITS_MLP = "digits-mlp"
    DIGITS_RESNET = "digits-resnet"
    DIGITS_DSCONV = "digits-dsconv"
    DSCNN_KWS = "dscnn-kws"
    MOBILENETV1_VWW = "mobilenetv1-vww"
    MOBILENETV1_VWW_32 = "mobilenetv1-vww-32"
    RESNET8_IC = "resnet8-ic"
    FC_AUTOENCODER = "fc-autoencoder"


@dataclass(frozen=True)
class Recipe:
    """Float training settings: AdamW (decoupled ``weight_decay``) with a cosine schedule,
    cross-entropy with ``label_smoothing`` (mean squared error for regression targets).

    Its ``repr`` is part of the cache key: a new field would retrain every cached network."""

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
    # The DAG nets take the CNN's recipe; DS-CNN and ResNet-8 20 epochs with weight decay 1e-2
    # (neither tuned: both met their targets at once). Chosen on the validation split of the
    # proxy: MobileNetV1 from epochs {20, 40} x lr {3e-3, 1e-2} x weight decay {0, 1e-2},
    # 81.6% (20, 3e-3, 0) .. 94.4% (40, 1e-2, 1e-2), the 96x96 variant takes the best 20-epoch
    # point (93.5% at 32x32) untried, since one epoch there costs about nine at 32x32; the
    # autoencoder from epochs {60, 150} x lr {3e-3, 1e-2}: MSE 0.0096 .. 0.0017 (150, 3e-3).
    ZooModel.DIGITS_RESNET: Recipe(lr=3e-3),
    ZooModel.DIGITS_DSCONV: Recipe(lr=3e-3),
    ZooModel.DSCNN_KWS: Recipe(epochs=20, lr=3e-3, weight_decay=1e-2),
    ZooModel.MOBILENETV1_VWW: Recipe(epochs=20, lr=1e-2),
    ZooModel.MOBILENETV1_VWW_32: Recipe(epochs=40, lr=1e-2, weight_decay=1e-2),
    ZooModel.RESNET8_IC: Recipe(epochs=20, lr=3e-3, weight_decay=1e-2),
    ZooModel.FC_AUTOENCODER: Recipe(epochs=150, lr=3e-3),
}

#: Builders of the networks beyond the first two: (architecture, its default data set).
_NETS = {
    ZooModel.DIGITS_RESNET: (zoo_nets.digits_resnet, digits),
    ZooModel.DIGITS_DSCONV: (zoo_nets.digits_dsconv, digits),
    ZooModel.DSCNN_KWS: (zoo_nets.dscnn_kws, proxy.kws_proxy),
    ZooModel.MOBILENETV1_VWW: (zoo_nets.mobilenetv1_vww, lambda: proxy.vww_proxy(
        zoo_nets.VWW_RESOLUTION)),
    ZooModel.MOBILENETV1_VWW_32: (lambda: zoo_nets.mobilenetv1_vww(
        resolution=zoo_nets.VWW_PROXY_RESOLUTION), proxy.vww_proxy),
    ZooModel.RESNET8_IC: (zoo_nets.resnet8_ic, proxy.ic_proxy),
    ZooModel.FC_AUTOENCODER: (zoo_nets.fc_autoencoder, proxy.ad_proxy),
}


def default_data(which):
    """The data set ``which`` is trained on by default: the embedded digits for the digits
    networks, the benchmark's proxy (:mod:`quantflow.proxy`) for the MLPerf ones."""
    if not isinstance(which, ZooModel):
        raise TypeError(f"Zoo model must be a ZooModel, not {which!r}")
    return _NETS[which][1]() if which in _NETS else digits()


def embedded_data(model_name, dataset_name):
    """The embedded data set a QuantizedModel named ``model_name`` was quantized on, from its
    ``meta["dataset"]``: the digits, or the zoo network's own proxy; ``None`` for any other
    (a user's ``.npz``: only the user has it). Without a record (a folder older than it, or
    a model built in Python) the zoo network's own data set, else the digits."""
    if dataset_name == "digits":
        return digits()
    try:
        which = ZooModel(model_name)
    except ValueError:
        return digits() if dataset_name is None else None
    ds = default_data(which)
    return ds if dataset_name in (None, ds.name) else None


def check_data(which, net, ds):
    """Raise :class:`DataError` unless ``ds`` fits zoo network ``net``: its input shape, and
    class labels below the network's outputs (classifiers) or targets of the output's shape
    (the autoencoder)."""
    default = default_data(which)
    if ds.input_shape != default.input_shape:
        raise DataError(f"zoo model {which.value!r} takes inputs of shape "
                        f"{default.input_shape}, the data {ds.name!r} has {ds.input_shape}"
                        f" (its default data set is {default.name!r})")
    if ds.task is not default.task:
        raise DataError(f"zoo model {which.value!r} is a {default.task.value} model; the data"
                        f" {ds.name!r} holds {ds.task.value} labels")
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, *ds.input_shape)).shape[1:]
    if ds.task is Task.REGRESSION and ds.output_shape != tuple(out):
        raise DataError(f"zoo model {which.value!r} outputs shape {tuple(out)}, the data"
                        f" {ds.name!r} has targets of shape {ds.output_shape}")
    if ds.task is Task.CLASSIFICATION and ds.classes > out[0]:
        raise DataError(f"zoo model {which.value!r} has {out[0]} classes, the data"
                        f" {ds.name!r} has labels up to {ds.classes - 1}")


def check_user_data(net, ds, spec):
    """Raise :class:`DataError` unless a user's network takes ``ds``'s inputs and has an
    output for every class label in it."""
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(1, *ds.input_shape))
    except Exception as e:  # noqa: BLE001 - the user's forward on the data's input shape
        raise DataError(f"{spec}: the network does not take the data's inputs of shape"
                        f" {ds.input_shape} ({_user_failure(e)})") from None
    if not isinstance(out, torch.Tensor) or out.ndim < 2:
        raise DataError(f"{spec}: the network must return one (N, outputs) tensor")
    if ds.task is Task.CLASSIFICATION and ds.classes > out.shape[1]:
        raise DataError(f"{spec}: the network has {out.shape[1]} classes, the data"
                        f" {ds.name!r} has labels up to {ds.classes - 1}")


def build(which):
    """A freshly initialised zoo network (seeded by the caller)."""
    if which in _NETS:
        return _NETS[which][0]()
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
    deterministic kernels. Cross-entropy on class labels, mean squared error on float
    targets."""
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
        if ds.task is Task.REGRESSION:
            loss_fn = nn.MSELoss()
        else:
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


def entry_name(which, ds, fitted=False):
    """The cache entry (relative to ``$HWGEN_CACHE``) that holds ``which`` trained on ``ds``:
    other entries of the same network (an older recipe, other data, another torch) may sit
    beside it and are never served. ``fitted``: ``ds`` is already the fit split."""
    if not fitted:
        x_fit, y_fit = fit_split(ds)
        ds = dataclasses.replace(ds, x_train=x_fit, y_train=y_fit)
    return f"zoo/{which.value}-{_cache_key(which, RECIPES[which], ds)}.pt"


def load_or_train(which, ds, progress=None):
    """The trained zoo network, from the cache when its key (recipe, data, torch) matches.

    It is trained on ``ds``'s training data minus the validation split. A cache entry is
    served only when its bytes match the digest written beside it and it loads into the
    network; anything else (truncated, zeroed, a folder, another object) is discarded with a
    one-line notice and retrained. Processes on one cache take turns (a lock per entry): the
    second finds the first's weights."""
    recipe = RECIPES[which]
    x_fit, y_fit = fit_split(ds)
    ds = dataclasses.replace(ds, x_train=x_fit, y_train=y_fit)
    path = check_cache_root(cache_dir(), "HWGEN_CACHE") / entry_name(which, ds, fitted=True)
    torch.manual_seed(recipe.seed)
    model = build(which)
    with cache_lock(path):
        if _load_cached(model, path):
            return model.eval()
        train(model, ds, recipe, progress)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        data = buf.getvalue()
        write_bytes(path, data)
        # The digest last: an entry without its digest is never served.
        write_bytes(_digest_file(path), hashlib.sha256(data).hexdigest().encode())
    return model


def _digest_file(path):
    return path.with_name(path.name + ".sha256")


def _load_cached(model, path):
    """Load the entry at ``path`` into ``model``; False (after discarding a bad entry) when
    it is missing or not the weights it claims to be."""
    digest = _digest_file(path)
    if not path.exists() and not path.is_symlink():
        digest.unlink(missing_ok=True)
        return False
    why = None
    try:
        if not path.is_file():
            why = "not a file"
        elif not digest.is_file() or digest.read_text().strip() != file_digest(path):
            why = "its content does not match its digest"
        else:
            model.load_state_dict(torch.load(path, weights_only=True))
    except (OSError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            pickle.UnpicklingError) as e:
        why = f"unreadable: {type(e).__name__}"
    if why is None:
        return True
    notice(f"zoo cache entry {path} discarded ({why}); retraining")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    digest.unlink(missing_ok=True)
    return False


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
    except (Exception, SystemExit) as e:  # the user's code: report, don't trace back
        raise DataError(f"{path}: failed to import ({_user_failure(e)})") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise DataError(f"{path}: has no callable {factory!r}")
    try:
        model = fn()
    except (Exception, SystemExit) as e:
        raise DataError(f"{path}:{factory}() failed ({_user_failure(e)})") from None
    if not isinstance(model, nn.Module):
        raise DataError(f"{path}:{factory}() must return a torch.nn.Module, not "
                        f"{type(model).__name__}")
    return model.eval()


def _user_failure(e):
    """What went wrong in the user's code, in one line."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
        # torch's message is six lines with colour codes; the gist and the fix:
        return ("UnpicklingError: torch.load(..., weights_only=True) refused a pickled object;"
                " save the model's state_dict() and load it into the network instead")
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


@torch.no_grad()
def accuracy(model, x, y, batch=512):
    """Top-1 accuracy (fraction 0..1) of a float torch model; for float targets ``y``
    (regression) the mean squared error instead (:mod:`quantflow.metrics`)."""
    model.eval()
    regression = metrics.is_regression(y)
    correct, sq = 0, 0.0
    for i in range(0, len(x), batch):
        out = model(torch.from_numpy(np.asarray(x[i:i + batch], dtype=np.float32)))
        if regression:
            sq += metrics.squared_error(out.numpy(), y[i:i + batch])
        else:
            correct += int((out.argmax(1).numpy() == y[i:i + batch]).sum())
    return sq / np.asarray(y).size if regression else correct / len(x)
