# amaranth: UnusedElaboratable=no
"""UART bridge in Amaranth simulation against a bit-level 8N1 line model."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen.uart import UARTBridge, UARTRx, UARTTx, divisor_for


async def _send_byte(ctx, pin, byte, divisor):
    """Drive one 8N1 frame on ``pin``: start bit, 8 data bits LSB first, stop bit."""
    for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
        ctx.set(pin, bit)
        await ctx.tick().repeat(divisor)


async def _recv_byte(ctx, pin, divisor):
    """Wait for a start bit on ``pin`` and sample each bit in its middle; check the stop bit."""
    await ctx.tick().until(pin == 0)
    await ctx.tick().repeat(divisor // 2)
    assert ctx.get(pin) == 0, "start bit too short"
    byte = 0
    for k in range(8):
        await ctx.tick().repeat(divisor)
        byte |= ctx.get(pin) << k
    await ctx.tick().repeat(divisor)
    assert ctx.get(pin) == 1, "missing stop bit"
    return byte


def _words(seed, host_bits, n=6):
    rng = np.random.default_rng(seed)
    top = (1 << host_bits) - 1
    return [0, top, *(int(w) for w in rng.integers(0, top, n, dtype=np.uint64, endpoint=True))]


@pytest.mark.parametrize("divisor", [4, 5, 9])
@pytest.mark.parametrize("host_bits", [16, 32])
def test_bridge_words_both_ways(divisor, host_bits):
    dut = UARTBridge(divisor, host_bits)
    words = _words(divisor * 100 + host_bits, host_bits)
    nbytes = host_bits // 8
    got_rx, got_tx = [], []

    async def host_sends(ctx):
        await ctx.tick().repeat(3)
        for w in words:
            for k in range(nbytes):
                await _send_byte(ctx, dut.rx, (w >> (8 * k)) & 0xFF, divisor)
            await ctx.tick().repeat(divisor)  # idle gaps are allowed, not needed

    async def fabric_takes(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in words:
            (payload,) = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
            got_rx.append(payload)

    async def fabric_sends(ctx):
        for w in words:
            ctx.set(dut.i.payload, w)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def host_receives(ctx):
        for _ in words:
            w = 0
            for k in range(nbytes):
                w |= await _recv_byte(ctx, dut.tx, divisor) << (8 * k)
            got_tx.append(w)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in (host_sends, fabric_takes, fabric_sends, host_receives):
        sim.add_testbench(tb)
    sim.run()
    assert got_rx == words
    assert got_tx == words


def test_rx_drops_a_bad_stop_bit():
    divisor = 4
    dut = UARTRx(divisor)
    seen = []

    async def line(ctx):
        await ctx.tick().repeat(3)
        for bit in [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]:  # stop bit 0: a framing error
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        await _send_byte(ctx, dut.rx, 0xA5, divisor)
        await ctx.tick().repeat(2 * divisor)

    async def watch(ctx):
        for _ in range(30 * divisor):
            valid, payload = (await ctx.tick().sample(dut.o.valid, dut.o.payload))[2:]
            if valid:
                seen.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(watch)
    sim.run()
    assert seen == [0xA5]


def test_divisor_for_board_clocks():
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(25e6, 115200) == 217
    assert divisor_for(48e6, 1e6) == 48


@pytest.mark.parametrize(("args", "exc", "msg"), [
    ((3,), ValueError, r"^UART divisor must be at least 4, not 3$"),
    ((4.0,), TypeError, r"^UART divisor must be an integer, not 4\.0$"),
])
def test_divisor_messages(args, exc, msg):
    with pytest.raises(exc, match=msg):
        UARTTx(*args)


def test_messages():
    with pytest.raises(ValueError, match=r"^Baud rate must be positive, not 0$"):
        divisor_for(12e6, 0)
    with pytest.raises(ValueError, match=r"^UART divisor must be at least 4, not 1$"):
        divisor_for(12e6, 12e6)
    with pytest.raises(ValueError, match=r"^Host word bits must be a positive multiple of 8,"
                                         r" not 12$"):
        UARTBridge(4, 12)
