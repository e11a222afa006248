"""Simulate a QuantizedModel on the generated overlay with cocotb (Verilator or Icarus).

The verification layer's driver: the design comes from the cache (:mod:`hwgen.designs`),
compiled once per simulator by :mod:`rtl_tests.runner` (keyed by the Verilog's digest) and
run by the testbenches in :mod:`rtl_tests.tb`, so repeated runs only simulate.
"""

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hwgen.config import DEFAULT_ARRAY
from hwgen.designs import design_for, images_for
from hwgen.errors import ConfigError, ToolError
from quantflow.fsutil import check_cache_root, check_out, scratch_dir, write_bytes

__all__ = ["SimReport", "simulate", "PLAYER_TOP", "MIN_SHARD"]

#: The testbench top that plays recorded host words into the design (rtl_tests/tb/player.v).
PLAYER_TOP = "hwgen_player"
#: What its testbench (rtl_tests/tb/tb_network.py) writes and reads.
PLAYER_PORTS = {**dict.fromkeys(("rst", "load", "dump", "n_send", "n_recv", "idle",
                                 "backpressure", "seed"), "rw"),
                **dict.fromkeys(("clk", "sent", "got", "done"), "rd")}

#: Fewest images a simulator process gets when ``jobs`` split a run (each starts in ~1 s).
MIN_SHARD = 25


@dataclass
class SimReport:
    simulator: str
    config_digest: str
    result: dict
    passed: int
    failed: int
    wall_seconds: float
    build_seconds: float
    design: dict = None

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
            "accuracy": r.get("accuracy"), "mse": r.get("mse"),
            "cycles_per_inference": total,
            "analytical_cycles_per_inference": sum(r.get("analytical_cycles", [])),
            "mac_utilization": (sum(macs) / (total * array)) if total else 0.0,
            "layers": per_layer, "seed": r.get("seed"), "waves": r.get("waves"),
            "sim_seconds": r.get("sim_seconds"), "sim_cycles": r.get("sim_cycles"),
            "play_seconds": r.get("play_seconds"),
            "build_seconds": self.build_seconds,
            "wall_seconds": self.wall_seconds,
            "design": self.design,
        }


def simulate(model_dir, sim, images=0, array=DEFAULT_ARRAY, waves=False, seed=0, idle=0,
             backpressure=0, data=None, test_dir=None, inputs=None, reference=None,
             quiet=False, overrides=None, design=None, uart=False, jobs=1, progress=None):
    """Run ``images`` test images (0: all) of the model in ``model_dir`` on ``sim``.

    ``inputs``: explicit integer inputs ``(N, *input_shape)`` instead of test images (random
    layer tests); ``idle``/``backpressure``: stall percentages on the host streams;
    ``reference``: compare with this model folder's reference instead (tests of the checker);
    ``quiet``: simulator and build output to log files in the build folder; ``overrides``:
    AccelConfig fields (:func:`design_for`); ``design``: a board's :class:`hwgen.emit.Design`
    (:func:`boards.overlay.board_design`: the files its bitstream is built from) instead of
    ``array``/``overrides``; ``uart``: drive that design's UART bridge through its pins at its
    divisor (:mod:`rtl_tests.tb.tb_uart`) instead of the host streams through the player;
    ``jobs``: simulator processes the images are split between (at least ``MIN_SHARD``
    images each), their reports merged; ``progress``: called with the phase being entered
    (a line for the user)."""
    import numpy as np

    from quantflow.fsutil import cache_dir
    from quantflow.serialize import load
    from hwgen.emit import TOP_NAME, UART_NAME

    from . import runner

    t0 = time.perf_counter()
    progress = progress or (lambda text: None)
    if test_dir is not None:
        check_out(test_dir, what="--waves folder")
    check_cache_root(cache_dir(), "HWGEN_CACHE")
    model = load(model_dir)
    if inputs is None:
        xs, ys = images_for(model, images, data)
    else:
        xs = np.asarray(inputs, dtype=np.int64)
        ys = np.full(len(xs), -1, dtype=np.int64)
    if uart and (design is None or design.divisor is None):
        raise ConfigError("a UART simulation needs a board's design (--board NAME)")
    spec = design
    progress("emitting the design (cached per configuration)")
    cfg, design = design_for(model, array, overrides, design=spec)
    progress(f"building the {sim.value} model (cached per design; a first build takes"
             f" 10-60 s)")
    models = [design / name for name, _ in (spec.models if spec is not None else ())]
    if uart:
        top, bench = UART_NAME, "rtl_tests.tb.tb_uart"
        r, build_dir = runner.build([design / f"{TOP_NAME}.v", design / f"{UART_NAME}.v",
                                     *models], top, sim, waves=waves, quiet=quiet)
    else:
        top, bench = PLAYER_TOP, "rtl_tests.tb.tb_network"
        r, build_dir = runner.build([design / f"{TOP_NAME}.v", *models, runner.PLAYER], top,
                                    sim, waves=waves, quiet=quiet,
                                    parameters={"HB": cfg.host_bits}, timing=True,
                                    public=PLAYER_PORTS)
    t_build = time.perf_counter() - t0
    env = {"HWGEN_DESIGN": design, "HWGEN_QMODEL": Path(model_dir).resolve(),
           "HWGEN_SEED": seed, "HWGEN_IDLE": idle, "HWGEN_BACKPRESSURE": backpressure}
    if reference is not None:
        env["HWGEN_REFERENCE"] = Path(reference).resolve()
    # one shard per simulator process; waves need one trace, a UART run is one link
    n = 1 if waves or uart else max(1, min(jobs, len(xs) // MIN_SHARD))
    bounds = [len(xs) * k // n for k in range(n + 1)]
    progress(f"simulating {len(xs)} inputs on {sim.value}"
             + (f", {n} processes" if n > 1 else "") + (" over the UART" if uart else ""))
    t1 = time.perf_counter()
    with scratch_dir("hwgen-inputs") as tmp:
        args = [(k, xs[bounds[k]:bounds[k + 1]], ys[bounds[k]:bounds[k + 1]]) for k in range(n)]

        def shard(arg):
            k, x, y = arg
            inputs = Path(tmp) / f"inputs{k}.npz"
            np.savez(inputs, x=x, y=y)
            log = Path(tmp) / f"sim{k}.log"
            got = runner.run(copy.copy(r) if n > 1 else r, build_dir, top, bench,
                             env={**env, "HWGEN_INPUTS": inputs}, seed=seed, waves=waves,
                             test_dir=test_dir, log_file=log if quiet else None)
            if quiet and log.exists():  # kept for the user, one per build (the last run's)
                write_bytes(build_dir / "sim.log", log.read_bytes())
            passed, failed, result = got
            if result is None or passed + failed == 0:
                where = build_dir / "sim.log" if quiet else "the log above"
                cause = _testbench_error(log) if quiet else None
                raise ToolError(f"the testbench failed before reporting a result"
                                f"{f' ({cause})' if cause else ''}; see {where}")
            return got

        if n == 1:
            parts = [shard(args[0])]
        else:
            import os
            from concurrent.futures import ThreadPoolExecutor

            # runner.run hides pytest from cocotb's runner; once for all threads
            current = os.environ.pop("PYTEST_CURRENT_TEST", None)
            try:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    parts = list(pool.map(shard, args))
            finally:
                if current is not None:
                    os.environ["PYTEST_CURRENT_TEST"] = current
    passed, failed = sum(p[0] for p in parts), sum(p[1] for p in parts)
    result = _merge([p[2] for p in parts], bounds, time.perf_counter() - t1)
    if waves and test_dir is not None and result is not None:
        result["waves"] = _collect_waves(build_dir, Path(test_dir))
    about = json.loads((design / "manifest.json").read_text()).get("design", {})
    about = {**about, "array": [cfg.rows, cfg.cols], "weight_bits": cfg.weight_bits,
             "act_bits": cfg.act_bits, "simulated_top": UART_NAME if uart else TOP_NAME,
             "folder": str(design)}
    return SimReport(sim.value, cfg.digest, result, passed, failed,
                     time.perf_counter() - t0, t_build, about)


def _merge(results, bounds, wall):
    """One report from the shards' (``bounds``: each shard's first image): counts summed,
    mismatches renumbered, medians over every image, ``sim_seconds`` the wall time of the
    parallel run and ``sim_cycles`` the sum (simulated cycles per wall second)."""
    import numpy as np

    if len(results) == 1:
        return results[0]
    first, out = results[0], dict(results[0])
    images = sum(r["images"] for r in results)
    out["images"], out["mismatches"] = images, sum(r["mismatches"] for r in results)
    out["bit_exact"] = all(r["bit_exact"] for r in results)
    out["first_mismatches"] = [{**m, "image": m["image"] + start} for r, start
                               in zip(results, bounds, strict=False)
                               for m in r["first_mismatches"]][:20]
    for key in ("accuracy", "mse"):  # both are means over the images
        if first.get(key) is not None:
            out[key] = sum(r[key] * r["images"] for r in results) / images
    cycles = np.array([c for r in results for c in r["image_layer_cycles"]], dtype=np.int64)
    if len(cycles):
        out["layer_cycles"] = [int(c) for c in np.median(cycles, axis=0)]
        out["cycles_per_inference"] = int(np.median(cycles.sum(axis=1)))
    out["image_layer_cycles"] = cycles.tolist()
    out["sim_cycles"] = sum(r["sim_cycles"] for r in results)
    out["sim_seconds"] = wall
    for key in ("play_seconds", "record_seconds"):
        if key in first:
            out[key] = max(r[key] for r in results)
    out["shards"] = len(results)
    return out


def _testbench_error(log):
    """The exception line of the testbench's traceback in ``log`` (or its last error line)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    exc = [ln.strip() for ln in lines if re.match(r"^\s*[\w.]+(Error|Exception|Exit): ", ln)]
    errors = [ln.strip() for ln in lines if "ERROR" in ln or "FAIL" in ln]
    found = (exc or errors or [None])[-1]
    return found[:300] if found else None


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
