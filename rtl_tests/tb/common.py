"""Testbench building blocks: clock/reset, stream source and sink bound by port-name prefix.

Amaranth's Verilog flattens a ``stream.Signature`` member ``foo`` into ports ``foo__valid``,
``foo__ready`` and ``foo__payload``; the drivers bind to those by prefix (cocotbext-axi style).
Stalls come from generators: ``idle`` inserts cycles with ``valid`` low on a source,
``backpressure`` holds ``ready`` low on a sink. Sampling follows the usual cocotb convention:
values read right after ``RisingEdge`` are the ones the flops saw at that edge.
"""

import itertools
import json
import os

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer

__all__ = ["TB", "StreamSource", "StreamSink", "no_stall", "random_stall", "STALLS",
           "write_result", "env_int"]


def no_stall():
    return itertools.repeat(False)


def random_stall(seed, probability=0.3):
    """Stall on a seeded ``probability`` of cycles (reproducible)."""
    rng = np.random.default_rng(seed)
    while True:
        yield bool(rng.random() < probability)


#: Named stall patterns for ``@cocotb.parametrize``.
STALLS = {"none": no_stall, "random": random_stall}


class StreamSource:
    """Drives ``<prefix>__valid``/``__payload`` and honours ``<prefix>__ready``."""

    def __init__(self, dut, prefix, clk, idle=None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.ready = getattr(dut, f"{prefix}__ready", None)  # absent when always_ready
        self.clk = clk
        self.idle = idle if idle is not None else no_stall()
        self.valid.value = 0
        self.sent = 0

    async def send(self, words):
        for word in words:
            while next(self.idle):
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = int(word)
            self.valid.value = 1
            await RisingEdge(self.clk)
            while self.ready is not None and not int(self.ready.value):
                await RisingEdge(self.clk)
            self.sent += 1
        self.valid.value = 0


class StreamSink:
    """Drives ``<prefix>__ready`` (with backpressure) and collects ``__payload`` words."""

    def __init__(self, dut, prefix, clk, backpressure=None, signed_bits=None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.ready = getattr(dut, f"{prefix}__ready", None)
        self.clk = clk
        self.backpressure = backpressure if backpressure is not None else no_stall()
        self.signed_bits = signed_bits
        if self.ready is not None:
            self.ready.value = 0

    def _word(self):
        v = int(self.payload.value)
        if self.signed_bits and v >> (self.signed_bits - 1):
            v -= 1 << self.signed_bits
        return v

    async def _until_valid(self, timeout_ns):
        """Sleep until ``valid`` rises, without a Python callback per clock (the simulator
        runs free while the design computes); a stream's valid stays high until accepted."""
        if int(self.valid.value):
            return
        timer = Timer(timeout_ns, unit="ns") if timeout_ns else None
        fired = await (First(RisingEdge(self.valid), timer) if timer else RisingEdge(self.valid))
        if fired is timer:
            raise TimeoutError(f"valid stayed low for {timeout_ns} ns")

    async def recv(self, count, timeout_cycles=None, period_ns=10):
        """Collect ``count`` words; raise TimeoutError after ``timeout_cycles`` idle cycles."""
        out, idle = [], 0
        while len(out) < count:
            ready = not next(self.backpressure)
            if self.ready is not None:
                self.ready.value = int(ready)
            if ready:
                await self._until_valid(timeout_cycles * period_ns if timeout_cycles else None)
            await RisingEdge(self.clk)
            if ready and int(self.valid.value):
                out.append(self._word())
                idle = 0
            else:
                idle += 1
                if timeout_cycles is not None and idle > timeout_cycles:
                    raise TimeoutError(f"no word for {timeout_cycles} cycles after {len(out)} of"
                                       f" {count}")
        if self.ready is not None:
            self.ready.value = 0
        return out


class TB:
    """Base testbench: starts the clock on ``clk`` and owns reset on ``rst``.

    The clock toggles in the simulator interface's C++ (``impl="gpi"``), not in a Python
    coroutine (cocotb's default unless COCOTB_TRUST_INERTIAL_WRITES is set), so a testbench
    that waits for an event lets the simulator run free between Python steps."""

    CLOCK_NS = 10

    def __init__(self, dut, clock=True):
        """``clock=False``: the top makes its own clock (rtl_tests/tb/player.v), of period
        ``CLOCK_NS``."""
        self.dut = dut
        self.clk = dut.clk
        if clock:
            Clock(self.clk, self.CLOCK_NS, unit="ns", impl="gpi").start()

    async def reset(self, cycles=2):
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def cycles(self, n):
        for _ in range(n):
            await RisingEdge(self.clk)


def env_int(name, default):
    value = os.environ.get(name)
    return default if value is None else int(value)


def write_result(obj):
    """Hand a JSON report back to the pytest side / ``hwgen simulate`` (``$HWGEN_RESULT``)."""
    path = os.environ.get("HWGEN_RESULT")
    if path:
        with open(path, "w") as f:
            json.dump(obj, f)
