"""The overlay's designs in the cache, and the test images a model runs on.

The design for a word-length configuration is emitted once into the cache
(``$HWGEN_CACHE/designs/<config digest>-<generator digest>``) and sealed by a digest of its
files, so every simulation and board build of that configuration reads the same files.
"""

import shutil

from quantflow.fsutil import cache_lock, check_cache_root, file_digest, notice, write_bytes

from .config import DEFAULT_ARRAY, AccelConfig
from .errors import ConfigError, DataError

__all__ = ["cached_design", "design_for", "images_for"]


def design_for(model, array=DEFAULT_ARRAY, overrides=None, design=None):
    """(config, design folder) for ``model``: emitted into the cache unless already there.
    ``overrides``: AccelConfig fields to set (e.g. depths shared by several models, so one
    build serves them all); ``design``: a board's :class:`hwgen.emit.Design` instead
    (``array`` and ``overrides`` are then ignored)."""
    from quantflow.program import compile_program

    if design is None:
        try:
            cfg = AccelConfig.for_model(model, array=tuple(array), **(overrides or {}))
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    else:
        cfg = design.cfg
    compile_program(model, cfg)  # a model that does not fit fails here, before any build
    return cfg, cached_design(cfg if design is None else design)


def cached_design(design):
    """The cache folder holding ``design``'s files (an ``AccelConfig`` or a
    :class:`hwgen.emit.Design`), emitted unless already there and sealed by digest."""
    from quantflow.fsutil import cache_dir

    from .emit import Design, emit, generator_digest

    design = design if isinstance(design, Design) else Design(design)
    root = check_cache_root(cache_dir(), "HWGEN_CACHE") / "designs"
    folder = root / f"{design.digest}-{generator_digest()}"
    with cache_lock(folder):
        if not _design_complete(folder):
            if folder.exists():
                notice(f"design cache entry {folder} is incomplete or damaged; discarded,"
                       " emitting it again")
                shutil.rmtree(folder)
            emit(design, folder)
            write_bytes(folder.with_name(folder.name + _SEAL), _seal(folder).encode())
    return folder


#: Beside each design folder: the digest of its files, written once the folder is complete.
_SEAL = ".sha256"


def _seal(folder):
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if "manifest.json" not in names:
        return None
    return "\n".join(f"{file_digest(folder / n)}  {n}" for n in names)


def _design_complete(folder):
    seal = folder.with_name(folder.name + _SEAL)
    try:
        return seal.read_text() == _seal(folder)
    except OSError:
        return False


def images_for(model, images=0, data=None):
    """(integer inputs, labels): the first ``images`` (0: all) test images of ``data`` (a .npz
    path) or, without one, of the embedded data set the model was quantized on (the digits or
    a zoo network's proxy, :func:`quantflow.zoo.embedded_data`), quantized as the model's
    input."""
    import numpy as np

    from quantflow import data as data_mod

    if data is not None:
        ds = data_mod.load_npz(data)
    elif model.meta.get("dataset") == "digits":
        ds = data_mod.digits()  # without importing the zoo (and torch: 2 s of a simulate)
    else:
        from quantflow.zoo import embedded_data

        named = model.meta.get("dataset")
        ds = embedded_data(model.name, named)
        if ds is None:
            raise DataError(f"the model was quantized on the data {named!r}, which is not"
                            " embedded: give its .npz with --data")
    if tuple(ds.input_shape) != tuple(model.input_shape):
        raise ConfigError(f"test images have shape {ds.input_shape}, the model expects"
                          f" {tuple(model.input_shape)}")
    outputs = int(np.prod(model.layers[-1].out_shape))
    if ds.classes is not None and ds.classes > outputs:
        raise DataError(f"{ds.name}: labels go up to {ds.classes - 1}, the model has"
                        f" {outputs} classes")
    n = images or len(ds.x_test)
    return model.quantize_input(ds.x_test[:n]), ds.y_test[:n]
