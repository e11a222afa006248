"""Simulate a QuantizedModel on the generated overlay with cocotb (Verilator or Icarus).

The design for the model's word-length configuration is emitted once into the cache
(``$HWGEN_CACHE/designs/<config digest>-<generator digest>``) and compiled once per simulator by
:mod:`rtl_tests.runner` (keyed by the Verilog's digest), so repeated runs only simulate.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_ARRAY, AccelConfig
from .errors import ConfigError

__all__ = ["SimReport", "design_for", "simulate", "images_for"]

#: The testbench top that plays recorded host words into the design (rtl_tests/tb/player.v).
PLAYER_TOP = "hwgen_player"


@dataclass
class SimReport:
    simulator: str
    config_digest: str
    result: dict
    passed: int
    failed: int
    wall_seconds: float
    build_seconds: float

    def summary(self):
        r = self.result or {}
        macs, cycles = r.get("macs", []), r.get("layer_cycles", [])
        array = r.get("array_macs", 1)
        per_layer = [{"descriptor": i, "cycles": c, "analytical_cycles": a, "macs": m,
                      "mac_utilization": (m / (c * array)) if c else 0.0}
                     for i, (c, a, m) in enumerate(zip(cycles, r.get("analytical_cycles", []),
                                                       macs, strict=False))]
        total = r.get("cycles_per_inference", 0)
        return {
            "simulator": self.simulator, "config_digest": self.config_digest,
            "images": r.get("images", 0), "mismatches": r.get("mismatches"),
            "bit_exact": bool(r.get("bit_exact")) and self.failed == 0,
            "first_mismatches": r.get("first_mismatches", []),
            "accuracy": r.get("accuracy"),
            "cycles_per_inference": total,
            "analytical_cycles_per_inference": sum(r.get("analytical_cycles", [])),
            "mac_utilization": (sum(macs) / (total * array)) if total else 0.0,
            "layers": per_layer, "seed": r.get("seed"), "waves": r.get("waves"),
            "sim_seconds": r.get("sim_seconds"), "sim_cycles": r.get("sim_cycles"),
            "play_seconds": r.get("play_seconds"),
            "build_seconds": self.build_seconds,
            "wall_seconds": self.wall_seconds,
        }


def design_for(model, array=DEFAULT_ARRAY, overrides=None):
    """(config, design folder) for ``model``: emitted into the cache unless already there.
    ``overrides``: AccelConfig fields to set (e.g. depths shared by several models, so one
    build serves them all)."""
    from quantflow.program import compile_program
    from quantflow.zoo import cache_dir

    from .emit import emit, generator_digest

    try:
        cfg = AccelConfig.for_model(model, array=tuple(array), **(overrides or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    compile_program(model, cfg)  # a model that does not fit fails here, before any build
    folder = cache_dir() / "designs" / f"{cfg.digest}-{generator_digest()}"
    if not (folder / "manifest.json").exists():
        emit(cfg, folder)
    return cfg, folder


def images_for(model, images=0, data=None):
    """(integer inputs, labels): the first ``images`` (0: all) test images of ``data`` (a .npz
    path) or of the embedded digits set, quantized as the model's input."""
    from quantflow import data as data_mod

    ds = data_mod.load_npz(data) if data is not None else data_mod.digits()
    if tuple(ds.input_shape) != tuple(model.input_shape):
        raise ConfigError(f"test images have shape {ds.input_shape}, the model expects"
                          f" {tuple(model.input_shape)}")
    n = images or len(ds.x_test)
    return model.quantize_input(ds.x_test[:n]), ds.y_test[:n]


def simulate(model_dir, sim, images=0, array=DEFAULT_ARRAY, waves=False, seed=0, idle=0,
             backpressure=0, data=None, test_dir=None, inputs=None, reference=None,
             quiet=False, overrides=None):
    """Run ``images`` test images (0: all) of the model in ``model_dir`` on ``sim``.

    ``inputs``: explicit integer inputs ``(N, *input_shape)`` instead of test images (random
    layer tests); ``idle``/``backpressure``: stall percentages on the host streams;
    ``reference``: compare with this model folder's reference instead (tests of the checker);
    ``quiet``: simulator and build output to log files in the build folder; ``overrides``:
    AccelConfig fields (:func:`design_for`)."""
    import tempfile

    import numpy as np

    from quantflow.serialize import load
    from rtl_tests import runner

    from .emit import TOP_NAME

    t0 = time.perf_counter()
    model = load(model_dir)
    if inputs is None:
        xs, ys = images_for(model, images, data)
    else:
        xs = np.asarray(inputs, dtype=np.int64)
        ys = np.full(len(xs), -1, dtype=np.int64)
    cfg, design = design_for(model, array, overrides)
    r, build_dir = runner.build([design / f"{TOP_NAME}.v", runner.PLAYER], PLAYER_TOP, sim,
                                waves=waves, quiet=quiet,
                                parameters={"HB": cfg.host_bits})
    t_build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="hwgen-inputs-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, x=xs, y=ys)
        env = {"HWGEN_DESIGN": design, "HWGEN_QMODEL": Path(model_dir).resolve(),
               "HWGEN_INPUTS": inputs, "HWGEN_SEED": seed, "HWGEN_IDLE": idle,
               "HWGEN_BACKPRESSURE": backpressure}
        if reference is not None:
            env["HWGEN_REFERENCE"] = Path(reference).resolve()
        passed, failed, result = runner.run(r, build_dir, PLAYER_TOP, "rtl_tests.tb.tb_network",
                                            env=env, seed=seed, waves=waves, test_dir=test_dir,
                                            log_file=build_dir / "sim.log" if quiet else None)
    if waves and test_dir is not None and result is not None:
        result["waves"] = _collect_waves(build_dir, Path(test_dir))
    return SimReport(sim.value, cfg.digest, result, passed, failed,
                     time.perf_counter() - t0, t_build)


def _collect_waves(build_dir, test_dir):
    """Move the trace into ``test_dir``: Icarus writes ``<top>.fst`` beside its build,
    Verilator ``dump.fst``/``dump.vcd`` where it runs."""
    import shutil

    for f in [*Path(build_dir).glob("*.fst"), *test_dir.glob("dump.*")]:
        dest = test_dir / f.name
        if f.resolve() != dest.resolve():
            shutil.move(f, dest)
        return str(dest)
    return None
