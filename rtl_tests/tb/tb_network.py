"""cocotb: a whole QuantizedModel through the generated overlay, every layer compared.

Runs inside the simulator, on the ``hwgen_player`` top (rtl_tests/tb/player.v) around the
design. Parameters come from the environment (set by :func:`rtl_tests.simulate.simulate`):
``HWGEN_DESIGN`` (folder with manifest.json), ``HWGEN_QMODEL`` (QuantizedModel folder),
``HWGEN_INPUTS`` (.npz with the integer inputs ``x`` and labels ``y``, prepared by the host side:
loading scikit-learn inside the simulator's embedded Python takes seconds), ``HWGEN_SEED``,
``HWGEN_IDLE`` / ``HWGEN_BACKPRESSURE`` (stall probabilities in percent).

Python takes part per batch of inferences, not per clock cycle: the same
:class:`hwgen.host.Driver` that runs Amaranth simulation and boards first runs against a
:class:`~hwgen.host.RecordingLink` (its protocol never depends on the data read back), the
recorded words are played into the design by the Verilog player while the simulator runs free,
and the Driver then runs again on the captured replies (:class:`~hwgen.host.ReplayLink`), which
it decodes into every layer's output exactly as it would on a live link. The report
(mismatches, cycles) goes back as JSON through ``HWGEN_RESULT``.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from hwgen.config import AccelConfig
from hwgen.host import Driver, RecordingLink, ReplayLink
from quantflow import reference
from quantflow.metrics import is_regression, squared_error
from quantflow.program import compile_program
from quantflow.serialize import load
from rtl_tests.runner import PLAYER_DEPTH
from rtl_tests.tb.common import TB, env_int, write_result

#: Mismatches listed in the report (the count covers all of them).
MAX_LISTED = 20

#: Cycles the player waits after a batch for replies the protocol does not expect.
EXTRA_WORDS_WINDOW = 64


async def _record(cfg, program, xs):
    """[(host words, reply count)]: the program load, then one entry per input."""
    parts = []
    for x in [None, *xs]:
        link = RecordingLink()
        driver = Driver(cfg, link)
        await (driver.load(program) if x is None else driver.infer(program, x))
        parts.append((link.sent, link.expected))
    return parts


def _batches(parts):
    """Consecutive runs of ``parts`` whose words and replies fit the player's memories."""
    batch, words, replies = [], 0, 0
    for i, (sent, expected) in enumerate(parts):
        if len(sent) > PLAYER_DEPTH or expected > PLAYER_DEPTH:
            what = "the program load" if i == 0 else f"input {i - 1}"
            raise ValueError(f"{what} needs {len(sent)} host words and {expected} replies;"
                             f" the player holds {PLAYER_DEPTH} of each")
        if batch and (words + len(sent) > PLAYER_DEPTH or replies + expected > PLAYER_DEPTH):
            yield batch
            batch, words, replies = [], 0, 0
        batch.append(i)
        words, replies = words + len(sent), replies + expected
    if batch:
        yield batch


def _threshold(percent):
    """A stall percentage as the player's threshold out of 128 cycles."""
    return min(127, round(percent * 128 / 100))


def _read_hex(path):
    """The words of a $writememh file (a reply capture: about 300 per image)."""
    text = Path(path).read_text()
    tokens = text.split()
    width = len(tokens[0]) if tokens else 0
    if 0 < width <= 16 and width % 2 == 0 and "/" not in text and "@" not in text \
            and len(text) == len(tokens) * (width + 1):  # one fixed-width word per line
        raw = np.frombuffer(bytes.fromhex("".join(tokens)), dtype=np.uint8)
        be = raw.reshape(len(tokens), width // 2)[:, ::-1]  # least significant byte first
        padded = np.zeros((len(tokens), 8), np.uint8)
        padded[:, :width // 2] = be
        return padded.view("<u8").ravel().tolist()
    words = []
    for line in text.splitlines():
        token = line.split("//")[0].strip()
        if token and not token.startswith("@"):
            words.append(int(token, 16))
    return words


async def _play(dut, clk, words, expected, budget):
    """Play ``words`` into the design; return the ``expected`` replies it sent back."""
    Path("script.hex").write_text("".join(f"{w:x}\n" for w in words))
    dut.n_send.value, dut.n_recv.value = len(words), expected
    dut.load.value = 1
    await RisingEdge(clk)
    dut.load.value = 0
    await RisingEdge(clk)
    if not int(dut.done.value):
        timer = Timer(budget * TB.CLOCK_NS, unit="ns")
        if await First(RisingEdge(dut.done), timer) is timer:
            raise TimeoutError(f"no progress after {budget} cycles: {int(dut.sent.value)} of"
                               f" {len(words)} host words accepted, {int(dut.got.value)} of"
                               f" {expected} replies received")
    await ClockCycles(clk, EXTRA_WORDS_WINDOW)
    if int(dut.got.value) != expected:
        raise AssertionError(f"the design sent {int(dut.got.value)} replies, the protocol"
                             f" expects {expected}")
    dut.dump.value = 1
    await RisingEdge(clk)
    dut.dump.value = 0
    await RisingEdge(clk)
    return _read_hex("capture.hex") if expected else []


def _images():
    with np.load(os.environ["HWGEN_INPUTS"], allow_pickle=False) as f:
        y = f["y"]  # class labels (int64), or a regression model's float targets
        return f["x"].astype(np.int64), y if is_regression(y) else y.astype(np.int64)


def _compare(model, xs, results):
    ref = reference.run(model, xs)
    mismatches, count = [], 0
    for n, res in enumerate(results):
        for li, got in enumerate(res.outputs):
            want = ref[li][n]
            bad = np.argwhere(got != want) if got.shape == want.shape else [None]
            count += len(bad)
            for idx in bad[:max(0, MAX_LISTED - len(mismatches))]:
                if idx is None:
                    entry = {"index": "shape", "expected": list(want.shape),
                             "got": list(got.shape)}
                else:
                    idx = tuple(int(v) for v in idx)
                    entry = {"index": list(idx), "expected": int(want[idx]),
                             "got": int(got[idx])}
                mismatches.append({"image": n, "layer": li, "name": model.layers[li].name}
                                  | entry)
    return count, mismatches, ref


@cocotb.test()
async def network(dut):
    design = Path(os.environ["HWGEN_DESIGN"])
    manifest = json.loads((design / "manifest.json").read_text())
    cfg = AccelConfig(**manifest["config"])
    model = load(os.environ["HWGEN_QMODEL"])
    program = compile_program(model, cfg)
    seed = env_int("HWGEN_SEED", 0)
    xs, ys = _images()

    tb = TB(dut, clock=False)
    idle, backpressure = env_int("HWGEN_IDLE", 0), env_int("HWGEN_BACKPRESSURE", 0)
    dut.idle.value, dut.backpressure.value = _threshold(idle), _threshold(backpressure)
    dut.seed.value = seed & 0xFFFFFFFF
    for port in (dut.load, dut.dump, dut.n_send, dut.n_recv):
        port.value = 0
    await tb.reset()
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    parts = await _record(cfg, program, xs)
    # Generous: every word may take many cycles under stalls, every layer twice its model.
    slow = 128 / max(1, 128 - max(_threshold(idle), _threshold(backpressure)))
    results, t_record, t_play = [], time.perf_counter() - t0, 0.0
    for batch in _batches(parts):
        words = [w for i in batch for w in parts[i][0]]
        expected = sum(parts[i][1] for i in batch)
        budget = int(16 * slow * (len(words) + expected)
                     + 2 * sum(program.cycles) * len(batch) + 10_000)
        t1 = time.perf_counter()
        link = ReplayLink(await _play(dut, tb.clk, words, expected, budget))
        t_play += time.perf_counter() - t1
        driver = Driver(cfg, link)
        for i in batch:
            if i == 0:
                await driver.load(program)
            else:
                results.append(await driver.infer(program, xs[i - 1], every_layer=True))
    wall = time.perf_counter() - t0
    sim_cycles = int((get_sim_time("ns") - c0) // TB.CLOCK_NS)

    report(model, cfg, program, xs, ys, results, seed=seed, sim_seconds=wall,
           sim_cycles=sim_cycles, record_seconds=t_record, play_seconds=t_play)


def report(model, cfg, program, xs, ys, results, seed, **extra):
    """Compare every layer of every result with the reference, write the report
    (``HWGEN_RESULT``) and fail on a mismatch (also :mod:`rtl_tests.tb.tb_uart`'s)."""
    # HWGEN_REFERENCE: compare against another model's reference (tests that prove a
    # difference is caught and reported).
    ref_dir = os.environ.get("HWGEN_REFERENCE")
    count, mismatches, ref = _compare(load(ref_dir) if ref_dir else model, xs, results)
    scale = np.asarray(model.output_scale, dtype=np.float64).reshape(1, -1)
    out = ref[-1].reshape(len(ref[-1]), -1) * scale
    regression = len(ys) and is_regression(ys)  # an autoencoder: targets, not labels
    pred = None if regression else np.argmax(out, axis=1)
    cycles = np.array([r.layer_cycles for r in results], dtype=np.int64)  # (images, descs)
    write_result({
        "images": len(xs), "mismatches": count, "first_mismatches": mismatches,
        "bit_exact": count == 0,
        "accuracy": float(np.mean(pred == ys)) if pred is not None and len(ys)
        and ys.min() >= 0 else None,
        "mse": squared_error(out, ys) / np.asarray(ys).size if regression else None,
        "layer_cycles": [int(c) for c in np.median(cycles, axis=0)] if len(cycles) else [],
        "cycles_per_inference": int(np.median(cycles.sum(axis=1))) if len(cycles) else 0,
        "image_layer_cycles": cycles.tolist(),
        "analytical_cycles": [int(c) for c in program.cycles],
        "macs": [int(m) for m in program.macs], "array_macs": cfg.array_macs,
        "seed": seed, **extra,
    })
    assert count == 0, (f"seed {seed}: {count} mismatching elements; first: "
                        f"{mismatches[:3]}")
