"""cocotb: the stream drivers against a FIFO, with idle and backpressure stalls."""

import cocotb
import numpy as np
from cocotb.triggers import Combine

from rtl_tests.tb.common import STALLS, TB, StreamSink, StreamSource, env_int


@cocotb.test()
@cocotb.parametrize(idle=list(STALLS), backpressure=list(STALLS))
async def fifo_passes_every_word(dut, idle, backpressure):
    seed = env_int("HWGEN_SEED", 0)
    width = env_int("HWGEN_WIDTH", 8)
    tb = TB(dut)
    src = StreamSource(dut, "i", tb.clk, STALLS[idle](seed) if idle != "none" else None)
    sink = StreamSink(dut, "o", tb.clk,
                      STALLS[backpressure](seed + 1) if backpressure != "none" else None)
    await tb.reset()
    rng = np.random.default_rng(seed)
    words = [0, (1 << width) - 1] + [int(w) for w in rng.integers(0, 1 << width, 200)]
    send = cocotb.start_soon(src.send(words))
    got = cocotb.start_soon(sink.recv(len(words), timeout_cycles=1000))
    await Combine(send, got)
    received = got.result()
    first = next((i for i, (a, b) in enumerate(zip(words, received, strict=False)) if a != b), None)
    assert received == words, (f"seed {seed}: first mismatch at {first}: expected "
                                f"{words[first]}, got {received[first]}")
