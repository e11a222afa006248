"""UART host bridge: 8N1 bytes on two pins <-> the Top's host word streams.

A host word of ``host_bits`` travels as ``host_bits // 8`` bytes, least significant first, in
both directions. There is no flow control on the wire: the host protocol is request/response
(:class:`hwgen.host.Driver` waits for each reply), the Top takes a word within a few cycles of
its arrival except while a RUN is in progress, and a byte takes ``10 * divisor`` cycles.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .top import Top

__all__ = ["MIN_DIVISOR", "divisor_for", "UARTRx", "UARTTx", "UARTBridge", "UARTTop"]

#: Fewest clock cycles per bit: the receiver samples mid-bit after a 2-flop synchronizer.
MIN_DIVISOR = 4


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"UART divisor must be an integer, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be at least {MIN_DIVISOR}, not {divisor!r}")


def divisor_for(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz`` (nearest integer; error within 2%)."""
    if not baud > 0:
        raise ValueError(f"Baud rate must be positive, not {baud!r}")
    divisor = round(clk_hz / baud)
    _check_divisor(divisor)
    if abs(clk_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"Baud rate must be within 2% of {clk_hz:g} Hz / an integer,"
                         f" not {baud!r}")
    return divisor


class UARTRx(wiring.Component):
    """8N1 receiver. Latency: a byte is valid one stop-bit half after its last data bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= ``MIN_DIVISOR``).

    Members
    -------
    rx : In(1) — the line (idle high), asynchronous.
    o : Out(stream.Signature(8, always_ready=True)) — received bytes; always ready because
        a UART cannot be paused: a byte not taken is lost. Bytes with a bad stop bit are dropped.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8, always_ready=True))

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)  # to the middle of the start bit
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(rx):  # a glitch, not a start bit
                        m.next = "IDLE"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), shreg.eq(Cat(shreg[1:], rx)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    m.d.comb += [self.o.valid.eq(rx), self.o.payload.eq(shreg)]
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: one start bit, 8 data bits LSB first, one stop bit.

    Members
    -------
    i : In(stream.Signature(8)) — bytes to send; taken when the line is idle.
    tx : Out(1) — the line (idle high).
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        frame = Signal(10, init=(1 << 10) - 1)
        left = Signal(range(11))
        timer = Signal(range(div))
        m.d.comb += self.tx.eq(frame[0])
        with m.If(left == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             left.eq(10), timer.eq(div - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTBridge(wiring.Component):
    """Bytes from ``rx`` assembled into host words (``o``); host words (``i``) sent on ``tx``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.
    host_bits : int
        Host word width, a multiple of 8.

    Members
    -------
    rx : In(1); tx : Out(1) — the UART lines.
    o : Out(stream.Signature(host_bits)) — received words, least significant byte first.
    i : In(stream.Signature(host_bits)) — words to send, least significant byte first.
    """

    def __init__(self, divisor, host_bits):
        _check_divisor(divisor)
        if not isinstance(host_bits, int) or host_bits <= 0 or host_bits % 8:
            raise ValueError(f"Host word bits must be a positive multiple of 8, not"
                             f" {host_bits!r}")
        self._divisor, self._host_bits = divisor, host_bits
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "o": Out(stream.Signature(host_bits)), "i": In(stream.Signature(host_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        nbytes = self._host_bits // 8
        rxu = m.submodules.rx = UARTRx(self._divisor)
        txu = m.submodules.tx = UARTTx(self._divisor)
        m.d.comb += [rxu.rx.eq(self.rx), self.tx.eq(txu.tx)]

        # Receive: shift bytes in from the top; the word is complete after nbytes of them.
        word = Signal(self._host_bits)
        got = Signal(range(nbytes + 1))
        m.d.comb += [self.o.payload.eq(word), self.o.valid.eq(got == nbytes)]
        with m.If(rxu.o.valid):
            # A byte arriving on a complete word starts the next one (overrun: the host
            # protocol never sends while a word waits, see the module docstring).
            m.d.sync += [word.eq(Cat(word[8:], rxu.o.payload)),
                         got.eq(Mux(got == nbytes, 1, got + 1))]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += got.eq(0)

        # Transmit: latch a word, send its bytes least significant first.
        out = Signal(self._host_bits)
        left = Signal(range(nbytes + 1))
        m.d.comb += [self.i.ready.eq(left == 0), txu.i.payload.eq(out[:8]),
                     txu.i.valid.eq(left != 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [out.eq(self.i.payload), left.eq(nbytes)]
        with m.If(txu.i.valid & txu.i.ready):
            m.d.sync += [out.eq(out >> 8), left.eq(left - 1)]
        return m


class UARTTop(wiring.Component):
    """The :class:`~hwgen.top.Top` behind a :class:`UARTBridge`: the board-level design.

    Parameters
    ----------
    cfg : AccelConfig
    divisor : int
        Clock cycles per UART bit.
    memory : callable or None
        Buffer factory passed to the Top (see :class:`hwgen.core.Core`).
    core : str or None
        ``None``: the Top is elaborated inside this design. A module name (``hwgen_top``): the
        Top is an instance of that Verilog module, emitted separately by
        :func:`hwgen.emit.emit_verilog`, so the one Verilog file a simulation proves bit-exact
        is the file the board build reads (:mod:`boards.build`).

    Members
    -------
    rx : In(1) — from the host; tx : Out(1) — to the host.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, cfg, divisor, memory=None, core=None):
        _check_divisor(divisor)
        if core is not None and not isinstance(core, str):
            raise TypeError(f"Core must be a Verilog module name or None, not {core!r}")
        self._cfg, self._divisor, self._memory, self._core = cfg, divisor, memory, core
        super().__init__()

    @property
    def config(self):
        return self._cfg

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        bridge = m.submodules.bridge = UARTBridge(self._divisor, self._cfg.host_bits)
        if self._core is None:
            top = m.submodules.top = Top(self._cfg, memory=self._memory)
            wiring.connect(m, bridge.o, top.i)
            wiring.connect(m, top.o, bridge.i)
        else:  # the ports of hwgen.emit's Verilog (Top's signature, flattened with "__")
            m.submodules.top = Instance(
                self._core, i_clk=ClockSignal(), i_rst=ResetSignal(),
                i_i__valid=bridge.o.valid, o_i__ready=bridge.o.ready,
                i_i__payload=bridge.o.payload,
                o_o__valid=bridge.i.valid, i_o__ready=bridge.i.ready,
                o_o__payload=bridge.i.payload)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        return m
