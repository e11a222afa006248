"""cocotb: drive a block harness one vector per cycle and record its valid outputs.

``HWGEN_VECTORS`` is an .npz whose arrays are named after the harness's input ports, one entry
per cycle, each an unsigned bit pattern written as a decimal string (ports are wider than 64
bits); ``HWGEN_OUTPUTS`` lists ``port:valid_port`` pairs to record. An output is sampled right
after each rising edge (the value it held during the cycle before), when its valid port is
high; the recorded bit patterns, in order, go back through ``HWGEN_RESULT``.
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from rtl_tests.tb.common import TB, write_result


@cocotb.test()
async def drive_vectors(dut):
    with np.load(os.environ["HWGEN_VECTORS"], allow_pickle=False) as f:
        vectors = {name: [int(v) for v in f[name]] for name in f.files}
    outputs = [pair.split(":") for pair in os.environ["HWGEN_OUTPUTS"].split(",")]
    drain = int(os.environ.get("HWGEN_DRAIN", "8"))
    tb = TB(dut)
    for name in vectors:
        getattr(dut, name).value = 0
    await tb.reset()
    recorded = {port: [] for port, _ in outputs}
    n = len(next(iter(vectors.values())))
    for cycle in range(n + drain):
        for name, values in vectors.items():
            # While the pipeline drains, inputs hold their last value (layer constants such
            # as the clamp bounds are not pipelined) and only ``valid`` drops.
            if cycle < n or name == "valid":
                getattr(dut, name).value = values[cycle] if cycle < n else 0
        await RisingEdge(tb.clk)
        for port, valid in outputs:
            if int(getattr(dut, valid).value):
                recorded[port].append(str(int(getattr(dut, port).value)))
    write_result({"recorded": recorded, "cycles": n + drain})
