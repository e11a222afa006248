"""The sequencer: runs layer descriptors, generating im2col addresses on the fly.

For each descriptor it loops ``tile -> output pixel -> issue slot``; slot ``k < steps`` issues
one array cycle for tap ``(ky, kx)`` and input group ``g`` (``g`` innermost; a pooling tile
fixes ``g`` to its own group). The activation address ``base + iy*row_words + ix*G + g`` is
computed from registered counters, and taps outside the map are flagged as padding (read as
zero). Every pixel takes ``slots = max(steps, drain length)`` cycles, so the drain never stalls
the array and the cycle count is exactly :func:`quantflow.program.layer_cycles`.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from quantflow.program import Op

from .layouts import desc_layout, lane_bits, layer_bits, meta_layout, step_layout

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Layer loop, tiling and address generation. Latency 2 (counters -> addresses).

    Members
    -------
    start : In(1); first, last : In(layer_bits) — run descriptors ``first..last``.
    busy : Out(1); total : Out(counter_bits) — cycles of the last run.
    desc_addr : Out; desc_data : In(desc_layout) — program memory read port.
    desc : Out(desc_layout) — the descriptor being executed (layer constants for the datapath).
    act_addr, w_addr : Out — memory addresses of this issue slot.
    step : Out(step_layout); meta : Out(meta_layout) — the slot's control, same cycle as the
        addresses (the core delays them by the memory latency).
    cnt_we, cnt_addr, cnt_data : Out — per-layer cycle counter write.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        lb = layer_bits(cfg)
        super().__init__({
            "start": In(1), "first": In(lb), "last": In(lb),
            "busy": Out(1), "total": Out(cfg.counter_bits),
            "desc_addr": Out(lb), "desc_data": In(desc_layout(cfg)),
            "desc": Out(desc_layout(cfg)),
            "act_addr": Out(cfg.addr_bits(cfg.act_depth)),
            "w_addr": Out(cfg.addr_bits(cfg.weight_depth)),
            "step": Out(step_layout(cfg)), "meta": Out(meta_layout(cfg)),
            "cnt_we": Out(1), "cnt_addr": Out(lb), "cnt_data": Out(cfg.counter_bits),
        })

    @property
    def latency(self):
        return self._cfg.seq_latency

    def elaborate(self, platform):  # one FSM, kept in one place on purpose (~110 lines)
        cfg = self._cfg
        m = Module()
        d = self.desc
        layer = Signal(layer_bits(cfg))
        cyc = Signal(cfg.counter_bits)
        m.d.comb += [self.desc_addr.eq(layer), self.cnt_addr.eq(layer)]

        is_mac = d.op == Op.MAC.value
        dim_s = signed(cfg.dim_bits + 2)
        t, g, pix = Signal(cfg.count_bits), Signal(cfg.count_bits), Signal(cfg.count_bits)
        oy, ox, ky, kx = (Signal(cfg.dim_bits, name=n) for n in ("oy", "ox", "ky", "kx"))
        k = Signal(cfg.step_bits)
        iy0, ix0 = Signal(dim_s), Signal(dim_s)
        wbits = cfg.addr_bits(cfg.weight_depth) + 1
        w_tile, w_addr = Signal(wbits), Signal(wbits)
        ch_base, ch_word = Signal(cfg.count_bits), Signal(cfg.count_bits)
        ch_lane = Signal(lane_bits(cfg))
        flush = Signal(cfg.layer_flush_cycles.bit_length())

        # Stage A: the issue slot, registered.
        a_valid, a_first, a_last = Signal(), Signal(), Signal()
        a_iy, a_ix = Signal(dim_s), Signal(dim_s)
        a_g, a_w = Signal(cfg.count_bits), Signal(wbits)
        a_meta = Signal(meta_layout(cfg))
        # Stage B: the im2col address and the padding flag, registered so the two small
        # multipliers do not sit in front of the memory address (Fmax).
        pad = ((a_iy < 0) | (a_iy >= d.in_h) | (a_ix < 0) | (a_ix >= d.in_w))
        m.d.sync += [
            self.act_addr.eq(d.src_base + a_iy * d.row_words + a_ix * d.in_g + a_g),
            self.w_addr.eq(a_w),
            self.step.valid.eq(a_valid), self.step.first.eq(a_first),
            self.step.last.eq(a_last), self.step.pad.eq(pad),
            self.meta.eq(a_meta),
        ]
        m.d.sync += a_valid.eq(0)

        nfull = Mux(is_mac, cfg.rows, cfg.cols)
        rem = Signal(cfg.count_bits)
        m.d.comb += rem.eq(d.out_ch - ch_base)

        def tap_advance():
            with m.If(kx == d.kw - 1):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
            with m.Else():
                m.d.sync += kx.eq(kx + 1)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [layer.eq(self.first), self.total.eq(0), cyc.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += cyc.eq(cyc + 1)
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [cyc.eq(cyc + 1), d.eq(self.desc_data)]
                m.next = "INIT"
            with m.State("INIT"):
                m.d.sync += [
                    cyc.eq(cyc + 1), t.eq(0), g.eq(0), pix.eq(0), oy.eq(0), ox.eq(0),
                    ky.eq(0), kx.eq(0), k.eq(0), iy0.eq(-d.py), ix0.eq(-d.px),
                    w_tile.eq(d.w_base), w_addr.eq(d.w_base),
                    ch_base.eq(0), ch_word.eq(0), ch_lane.eq(0),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += [
                    cyc.eq(cyc + 1),
                    a_valid.eq(k < d.steps), a_first.eq(k == 0), a_last.eq(k == d.steps - 1),
                    a_iy.eq(iy0 + ky), a_ix.eq(ix0 + kx), a_g.eq(Mux(is_mac, g, t)),
                    a_w.eq(w_addr),
                    a_meta.n.eq(Mux(rem < nfull, rem, nfull)), a_meta.ch.eq(ch_base),
                    a_meta.word.eq(d.dst_base + pix * d.out_g + ch_word),
                    a_meta.lane.eq(ch_lane),
                    a_meta.acc_addr.eq(d.dst_base + pix * d.out_ch + ch_base),
                ]
                with m.If(k != d.slots - 1):
                    m.d.sync += [k.eq(k + 1), w_addr.eq(w_addr + 1)]
                    with m.If(is_mac):
                        with m.If(g == d.in_g - 1):
                            m.d.sync += g.eq(0)
                            tap_advance()
                        with m.Else():
                            m.d.sync += g.eq(g + 1)
                    with m.Else():
                        tap_advance()
                with m.Else():
                    m.d.sync += [k.eq(0), g.eq(0), kx.eq(0), ky.eq(0), w_addr.eq(w_tile)]
                    with m.If(ox != d.out_w - 1):
                        m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + d.sx), pix.eq(pix + 1)]
                    with m.Else():
                        m.d.sync += [ox.eq(0), ix0.eq(-d.px)]
                        with m.If(oy != d.out_h - 1):
                            m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + d.sy), pix.eq(pix + 1)]
                        with m.Else():
                            # next output-channel tile (MAC) or channel group (pooling)
                            next_lane = ch_lane + Mux(is_mac, cfg.rows % cfg.cols, 0)
                            word_inc = Mux(is_mac, cfg.rows // cfg.cols, 1)
                            m.d.sync += [
                                oy.eq(0), iy0.eq(-d.py), pix.eq(0), t.eq(t + 1),
                                w_tile.eq(w_tile + d.steps), w_addr.eq(w_tile + d.steps),
                                ch_base.eq(ch_base + nfull),
                            ]
                            with m.If(next_lane >= cfg.cols):
                                m.d.sync += [ch_lane.eq(next_lane - cfg.cols),
                                             ch_word.eq(ch_word + word_inc + 1)]
                            with m.Else():
                                m.d.sync += [ch_lane.eq(next_lane),
                                             ch_word.eq(ch_word + word_inc)]
                            with m.If(t == d.tiles - 1):
                                m.d.sync += flush.eq(cfg.layer_flush_cycles - 2)
                                m.next = "FLUSH"
            with m.State("FLUSH"):
                # Wait for the array, the drain and the last memory write (fixed, so the cycle
                # count is exact): see AccelConfig.layer_flush_cycles.
                m.d.sync += [cyc.eq(cyc + 1), flush.eq(flush - 1)]
                with m.If(flush == 0):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.cnt_we.eq(1), self.cnt_data.eq(cyc + 1)]
                m.d.sync += [self.total.eq(self.total + cyc + 1), cyc.eq(0)]
                with m.If(layer == self.last):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "FETCH"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
