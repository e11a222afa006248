"""cocotb: the board design (UART bridge + Top) driven by the host Driver through its pins.

:class:`UARTPinLink` is a :class:`hwgen.host.Link` that bit-bangs 8N1 frames on ``rx`` and
decodes ``tx`` in the background, so the same :class:`hwgen.host.Driver` that runs a board
over a serial port runs here. Bits are timed with ``Timer`` (the simulator runs free between
edges), at the design's divisor (``uart_divisor`` in its manifest: the board's own). Parameters
from the environment, as for :mod:`rtl_tests.tb.tb_network`: ``HWGEN_DESIGN`` (a board design
folder with manifest.json, :func:`rtl_tests.simulate.simulate` with ``uart=True``),
``HWGEN_QMODEL``, ``HWGEN_INPUTS`` (.npz x, y), ``HWGEN_SEED``. Every layer of every image is
read back over the UART and compared with :mod:`quantflow.reference`; the report (the same as
the player's) goes back as JSON through ``HWGEN_RESULT``.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout
from cocotb.utils import get_sim_time

from hwgen.config import AccelConfig
from hwgen.host import Driver, Link
from quantflow.program import compile_program
from quantflow.serialize import load
from rtl_tests.tb.common import TB, env_int
from rtl_tests.tb.tb_network import report


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
    manifest = json.loads((design / "manifest.json").read_text())
    cfg = AccelConfig(**manifest["config"])
    divisor = manifest["design"]["uart_divisor"]
    model = load(os.environ["HWGEN_QMODEL"])
    program = compile_program(model, cfg)
    with np.load(os.environ["HWGEN_INPUTS"], allow_pickle=False) as f:
        xs, ys = f["x"].astype(np.int64), f["y"].astype(np.int64)

    tb = TB(dut)
    dut.rx.value = 1
    await tb.reset()
    await RisingEdge(tb.clk)
    t0, c0 = time.perf_counter(), get_sim_time("ns")
    # a word may wait behind a whole inference (every layer runs alone: twice its model)
    budget = 2 * sum(program.cycles) + 40 * divisor * cfg.host_bits + 10_000
    link = UARTPinLink(dut, cfg.host_bits, divisor, TB.CLOCK_NS,
                       timeout_ns=TB.CLOCK_NS * budget)
    driver = Driver(cfg, link)
    await driver.load(program)
    results = [await driver.infer(program, x, every_layer=True) for x in xs]
    report(model, cfg, program, xs, ys, results, seed=env_int("HWGEN_SEED", 0),
           sim_seconds=time.perf_counter() - t0,
           sim_cycles=int((get_sim_time("ns") - c0) // TB.CLOCK_NS))
