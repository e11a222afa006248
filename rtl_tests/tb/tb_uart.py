"""cocotb: the board design (UART bridge + Top) driven by the host Driver through its pins.

:class:`UARTPinLink` is a :class:`hwgen.host.Link` that bit-bangs 8N1 frames on ``rx`` and
decodes ``tx`` in the background, so the same :class:`hwgen.host.Driver` that runs a board
over a serial port runs here. Bits are timed with ``Timer`` (the simulator runs free between
edges), at ``HWGEN_DIVISOR`` clock cycles per bit. Parameters from the environment:
``HWGEN_DESIGN`` (folder with config.json), ``HWGEN_QMODEL``, ``HWGEN_INPUTS`` (.npz x, y).
Every image's output is compared with :mod:`quantflow.reference`; the report goes back as
JSON through ``HWGEN_RESULT``.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

from hwgen.commands.run import run_on_link
from hwgen.config import AccelConfig
from hwgen.host import Link
from quantflow import reference
from quantflow.serialize import load
from rtl_tests.tb.common import TB, write_result


class UARTPinLink(Link):
    """Host words as little-endian 8N1 bytes on ``dut.rx``; replies decoded from ``dut.tx``."""

    def __init__(self, dut, host_bits, divisor, period_ns, timeout_ns):
        self.dut, self.nbytes = dut, host_bits // 8
        self.bit_ns = divisor * period_ns
        self.timeout_ns = timeout_ns
        self.rx_bytes = Queue()
        dut.rx.value = 1
        cocotb.start_soon(self._receiver())

    async def _receiver(self):
        tx = self.dut.tx
        while True:
            await FallingEdge(tx)
            await Timer(self.bit_ns // 2, unit="ns")
            assert int(tx.value) == 0, "start bit shorter than half a bit"
            byte = 0
            for k in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(tx.value) << k
            await Timer(self.bit_ns, unit="ns")
            assert int(tx.value) == 1, "missing stop bit"
            self.rx_bytes.put_nowait(byte)

    async def send(self, words):
        rx = self.dut.rx
        for w in words:
            for k in range(self.nbytes):
                byte = (int(w) >> (8 * k)) & 0xFF
                for bit in (0, *((byte >> b) & 1 for b in range(8)), 1):
                    rx.value = bit
                    await Timer(self.bit_ns, unit="ns")

    async def recv(self, count):
        out = []
        for _ in range(count):
            w = 0
            for k in range(self.nbytes):
                w |= await with_timeout(self.rx_bytes.get(), self.timeout_ns, "ns") << (8 * k)
            out.append(w)
        return out


@cocotb.test()
async def uart_network(dut):
    design = Path(os.environ["HWGEN_DESIGN"])
    doc = json.loads((design / "config.json").read_text())
    cfg = AccelConfig(**doc["config"])
    model = load(os.environ["HWGEN_QMODEL"])
    with np.load(os.environ["HWGEN_INPUTS"], allow_pickle=False) as f:
        xs = f["x"].astype(np.int64)

    tb = TB(dut)
    dut.rx.value = 1
    await tb.reset()
    await RisingEdge(tb.clk)
    link = UARTPinLink(dut, cfg.host_bits, doc["divisor"], TB.CLOCK_NS,
                       timeout_ns=TB.CLOCK_NS * (1 << 22))
    logits, cycles = await run_on_link(link, model, cfg, xs)
    want = reference.run(model, xs)[-1]
    got = [np.asarray(v).reshape(want.shape[1:]) for v in logits]
    bad = [n for n in range(len(xs)) if not np.array_equal(got[n], want[n])]
    write_result({"images": len(xs), "mismatching_images": bad, "cycles": cycles,
                  "first": None if not bad else {"image": bad[0],
                                                 "expected": want[bad[0]].tolist(),
                                                 "got": got[bad[0]].tolist()}})
    assert not bad, f"images {bad} differ from the reference"
