"""Host side: memory images for a Program, and the Driver that runs it over any Link.

The same :class:`Driver` code drives the Amaranth simulation (:class:`AmaranthLink`), cocotb
(a recorded script played by the testbench, :class:`RecordingLink` then :class:`ReplayLink`) and
a board over UART: it only calls ``await link.send(words)`` and ``await link.recv(count)`` (STYLE
rule 18). Every method is async so that simulator links
can advance time while waiting; a blocking link (UART) wraps its calls in ``async def``.
"""

import abc
from dataclasses import dataclass, field

import numpy as np

from quantflow.numerics import weight_lane_codes
from quantflow.packing import from_chunks, pack_lanes, to_chunks, unpack_chunks
from quantflow.program import Buffer, pack_input, read_loc

from .layouts import HOST_READABLE, Command, Mem, encode_desc, mem_width

__all__ = ["Link", "AmaranthLink", "RecordingLink", "ReplayLink", "Driver", "Inference",
           "program_images"]


class Link(abc.ABC):
    """A word pipe to a :class:`hwgen.top.Top`: host words of ``config.host_bits``."""

    @abc.abstractmethod
    async def send(self, words):
        """Send a list of host words, in order."""

    @abc.abstractmethod
    async def recv(self, count):
        """Receive exactly ``count`` host words; return them as a list of ints."""


class AmaranthLink(Link):
    """Drive a Top's streams from an Amaranth testbench (``sim.add_testbench(async ...)``).

    ``idle`` and ``backpressure`` are probabilities of an idle cycle before each sent word and
    of a not-ready cycle before each received word, drawn from ``rng`` (stream stall tests).
    """

    def __init__(self, ctx, top, idle=0.0, backpressure=0.0, rng=None):
        self.ctx, self.top = ctx, top
        self.idle, self.backpressure = idle, backpressure
        self.rng = rng

    def _stall(self, p):
        return p > 0 and self.rng.random() < p

    async def send(self, words):
        ctx, i = self.ctx, self.top.i
        for w in words:
            while self._stall(self.idle):
                ctx.set(i.valid, 0)
                await ctx.tick()
            ctx.set(i.payload, int(w))
            ctx.set(i.valid, 1)
            await ctx.tick().until(i.ready)
        ctx.set(i.valid, 0)

    async def recv(self, count):
        ctx, o = self.ctx, self.top.o
        out = []
        for _ in range(count):
            while self._stall(self.backpressure):
                ctx.set(o.ready, 0)
                await ctx.tick()
            ctx.set(o.ready, 1)
            (payload,) = await ctx.tick().sample(o.payload).until(o.valid)
            out.append(int(payload))
        ctx.set(o.ready, 0)
        return out


class RecordingLink(Link):
    """Records the words the Driver sends and counts the replies it expects, answering zeros.

    The first pass of a preloaded run: the protocol never depends on the data read back, so
    the recorded words are exactly what the Driver would send to the hardware."""

    def __init__(self):
        self.sent, self.expected = [], 0

    async def send(self, words):
        self.sent.extend(int(w) for w in words)

    async def recv(self, count):
        self.expected += count
        return [0] * count


class ReplayLink(Link):
    """Hands the Driver the replies captured from a preloaded run, in order (the second pass);
    what it sends was already played."""

    def __init__(self, words):
        self.words, self.pos = list(words), 0

    async def send(self, words):
        pass

    async def recv(self, count):
        if self.pos + count > len(self.words):
            raise ValueError(f"the hardware sent {len(self.words)} words, the protocol needs"
                             f" more than {self.pos + count - 1}")
        out = self.words[self.pos:self.pos + count]
        self.pos += count
        return out


def program_images(program, cfg):
    """{Mem: list of memory words} for the program, weights, biases and requant parameters."""
    n = len(program.weights)
    rq = [int(mu) | (int(s) << cfg.mult_bits)
          for mu, s in zip(program.mult, program.shift, strict=True)]
    bias = [int(b) & ((1 << cfg.acc_bits) - 1) for b in program.bias]
    return {
        Mem.PROG: [w for d in program.descs for w in encode_desc(cfg, d)],
        Mem.WEIGHT: pack_lanes(weight_lane_codes(program.weights.reshape(
            n, cfg.rows * cfg.cols), cfg.weight_bits), cfg.weight_bits),
        Mem.BIAS: _param_words(bias, cfg.acc_bits, cfg.drain_lanes),
        Mem.RQ: _param_words(rq, cfg.mult_bits + cfg.shift_bits, cfg.drain_lanes),
    }


def _param_words(entries, bits, lanes):
    """Parameter entries as memory words of ``lanes`` entries each (entry ``k`` of a word in
    bits ``k * bits``..; the compiler starts each layer's block at a word)."""
    entries = list(entries) + [0] * (-len(entries) % lanes)
    return [sum(e << (k * bits) for k, e in enumerate(entries[i:i + lanes]))
            for i in range(0, len(entries), lanes)]


@dataclass
class Inference:
    """One input's results: every layer's output (reference layout) and the cycle counters."""
    outputs: list
    layer_cycles: list
    total_cycles: int
    extra: dict = field(default_factory=dict)


class Driver:
    """Load a Program into the overlay, run inputs, read every layer back."""

    def __init__(self, cfg, link):
        self.cfg, self.link = cfg, link

    def _chunks(self, mem):
        return -(-mem_width(self.cfg, mem) // self.cfg.host_bits)

    async def write(self, mem, addr, words):
        if not words:
            return
        hb, width = self.cfg.host_bits, mem_width(self.cfg, mem)
        msg = [Command.WRITE | (mem << 8), addr, len(words)]
        for w in words:
            msg += to_chunks(w, width, hb)
        await self.link.send(msg)

    def _readable(self, mem):
        if mem not in HOST_READABLE:
            names = ", ".join(m.name for m in HOST_READABLE)
            raise ValueError(f"Memory {Mem(mem).name} is write-only to the host; READ returns"
                             f" {names}")

    async def read(self, mem, addr, count):
        self._readable(mem)
        if count == 0:
            return []
        hb, width, n = self.cfg.host_bits, mem_width(self.cfg, mem), self._chunks(mem)
        await self.link.send([Command.READ | (mem << 8), addr, count])
        raw = await self.link.recv(count * n)
        return [from_chunks(raw[i * n:(i + 1) * n], width, hb) for i in range(count)]

    async def read_lanes(self, mem, addr, count, lanes, bits, signed=False):
        """``count`` words of ``mem`` as (count, lanes) fields of ``bits``: :meth:`read` then
        :func:`unpack_lanes`, decoded in numpy (a simulation reads every layer back; the
        accumulator is at most 37 bits, within unpack_chunks' 62)."""
        self._readable(mem)
        if count == 0:
            return np.zeros((0, lanes), np.int64)
        n = self._chunks(mem)
        await self.link.send([Command.READ | (mem << 8), addr, count])
        raw = await self.link.recv(count * n)
        return unpack_chunks(raw, n, self.cfg.host_bits, lanes, bits, signed)

    async def run(self, first, last):
        """Run descriptors ``first..last``; return their cycles (from the hardware)."""
        if not 0 <= first <= last < self.cfg.max_layers:
            raise ValueError(f"Descriptor range must satisfy 0 <= first <= last <"
                             f" {self.cfg.max_layers}, not {first}..{last}")
        await self.link.send([Command.RUN, first, last])
        (cycles,) = await self.link.recv(1)
        return cycles

    async def load(self, program):
        for mem, words in program_images(program, self.cfg).items():
            await self.write(mem, 0, words)

    async def load_input(self, program, x):
        lanes = pack_input(program, self.cfg, x)
        await self.write(Mem(Mem.ACT0.value + program.input_loc.buf.value), 0,
                         pack_lanes(lanes, self.cfg.act_bits))

    async def read_tensor(self, loc):
        """One tensor (a layer output) in the reference's layout, from the hardware."""
        cfg = self.cfg
        act = [np.zeros((0, cfg.cols), np.int64)] * 2
        acc = np.zeros(0, np.int64)
        if loc.buf is Buffer.ACC:
            words = await self.read_lanes(Mem.ACC, loc.base, loc.words, 1, cfg.acc_bits,
                                          signed=True)
            acc = np.zeros(loc.base + loc.words, np.int64)
            acc[loc.base:] = words[:, 0]
        else:
            words = await self.read_lanes(Mem(Mem.ACT0.value + loc.buf.value), loc.base,
                                          loc.words, cfg.cols, cfg.act_bits)
            act = [np.zeros((loc.base + loc.words, cfg.cols), np.int64) for _ in range(2)]
            act[loc.buf.value][loc.base:] = words
        return read_loc(loc, cfg, act, acc)

    async def infer(self, program, x, every_layer=True):
        """Run one input (``input_shape``). With ``every_layer`` each descriptor runs alone and
        every layer output is read back (for layer-by-layer mismatch reports); otherwise the
        whole program runs at once and only the last output is read (others are ``None``)."""
        await self.load_input(program, x)
        n = len(program.descs)
        outputs = [None] * len(program.outputs)
        if every_layer:
            total = 0
            for i, loc in enumerate(program.outputs):
                di = program.layer_desc[i]
                if di is not None:
                    total += await self.run(di, di)
                outputs[i] = await self.read_tensor(loc)
        else:
            total = await self.run(0, n - 1)
            outputs[-1] = await self.read_tensor(program.outputs[-1])
        cycles = await self.read(Mem.CYCLES, 0, n)
        return Inference(outputs, cycles, total)
