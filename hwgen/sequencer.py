"""The sequencer: runs layer descriptors, generating im2col addresses on the fly.

For each descriptor it loops ``tile -> output pixel -> issue slot``; slot ``k < steps`` issues
one array cycle for tap ``(ky, kx)`` and input group ``g`` (``g`` innermost; a pooling tile
fixes ``g`` to its own group). The activation address ``base + iy*row_words + ix*G + g`` is
kept as running sums of the descriptor's address steps (``src_org``, ``sx_words``,
``sy_words``, ``row_words``, ``in_g``: the compiler multiplies, the sequencer only adds), and
taps outside the map are flagged as padding (read as zero). Every pixel takes
``slots = max(steps, drain length)`` cycles, so the drain never stalls the array and the cycle
count is exactly :func:`quantflow.program.layer_cycles`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from quantflow.program import JOINING_OPS, Op
from quantflow.schedule import out_position

from .config import PROG_WORD_BITS
from .layouts import (Mem, act_addr_bits, desc_layout, lane_bits, layer_bits, mem_depth,
                      meta_layout, step_layout)

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Layer loop, tiling and address generation. Latency 2 (counters -> addresses).

    Members
    -------
    start : In(1); first, last : In(layer_bits) — run descriptors ``first..last``.
    busy : Out(1); total : Out(counter_bits) — cycles of the last run.
    desc_addr : Out; desc_data : In(PROG_WORD_BITS) — program memory read port; a descriptor
        is ``cfg.desc_words`` consecutive words, read one per cycle (FETCH).
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
            "desc_addr": Out(cfg.addr_bits(mem_depth(cfg, Mem.PROG))),
            "desc_data": In(PROG_WORD_BITS),
            "desc": Out(desc_layout(cfg)),
            "act_addr": Out(cfg.addr_bits(cfg.act_depth)),
            "w_addr": Out(cfg.addr_bits(cfg.weight_depth)),
            "step": Out(step_layout(cfg)), "meta": Out(meta_layout(cfg)),
            "cnt_we": Out(1), "cnt_addr": Out(lb), "cnt_data": Out(cfg.counter_bits),
        })

    @property
    def latency(self):
        return self._cfg.seq_latency

    def elaborate(self, platform):  # one FSM, kept in one place on purpose (~140 lines)
        cfg = self._cfg
        m = Module()
        d = self.desc
        layer = Signal(layer_bits(cfg))
        cyc = Signal(cfg.counter_bits)
        # Program words: ``paddr`` walks them (layer * desc_words + j without a multiplier),
        # ``raw`` collects one descriptor, low word first; ``desc`` is its low bits.
        paddr = Signal.like(self.desc_addr)
        fetch_j = Signal(range(cfg.desc_words + 1))
        raw = Signal(cfg.desc_words * PROG_WORD_BITS)
        m.d.comb += [self.desc_addr.eq(paddr), self.cnt_addr.eq(layer),
                     d.as_value().eq(raw[:cfg.desc_bits])]

        is_mac, is_add = Signal(), Signal()
        dim_s = signed(cfg.dim_bits + 2)
        abits = act_addr_bits(cfg)
        t, g = Signal(cfg.count_bits), Signal(cfg.count_bits)
        oy, ox, ky, kx = (Signal(cfg.dim_bits, name=n) for n in ("oy", "ox", "ky", "kx"))
        k = Signal(cfg.step_bits)
        iy0, ix0 = Signal(dim_s), Signal(dim_s)
        wbits = cfg.addr_bits(cfg.weight_depth) + 1
        w_tile, w_addr = Signal(wbits), Signal(wbits)
        ch_base, ch_word = Signal(cfg.count_bits), Signal(cfg.count_bits)
        ch_lane = Signal(lane_bits(cfg))
        rem = Signal(cfg.count_bits)  # out_ch - ch_base
        flush = Signal(max(cfg.layer_flush_cycles, cfg.add_flush_cycles).bit_length())
        # Address sums kept up to date by adding the descriptor's steps (no multipliers):
        # row_org / pix_org = the tap (0, 0) of this output row / pixel, tap_row = ky*row_words,
        # tap_col = kx*in_g, pix_word = pix*out_g, pix_acc = pix*out_ch (modulo 2**abits).
        row_org, pix_org, tap_row, tap_col, pix_word, pix_acc = (
            Signal(abits, name=n)
            for n in ("row_org", "pix_org", "tap_row", "tap_col", "pix_word", "pix_acc"))
        # Loop bounds minus one, and the end-of-slot flags, registered: compares against
        # ``field - 1`` computed on the fly were the design's longest path on the iCE40.
        # (the tap column, input group and weight digit ends too)
        kw_m2, in_g_m2 = Signal(cfg.dim_bits + 1), Signal(cfg.count_bits + 1)
        wd_m2 = Signal(cfg.wdigit_bits + 1)
        kx_last, g_last, e_last = Signal(), Signal(), Signal()
        kx_last0, g_last0, e_last0 = Signal(), Signal(), Signal()
        # The loop ends as registered flags, each set when its counter steps onto its last
        # value (a compare with the bound less two, all ones when there is no such step):
        # the compares chained into the FSM's next state were the iCE40's longest path.
        out_w_m2, out_h_m2 = Signal(cfg.dim_bits + 1), Signal(cfg.dim_bits + 1)
        tiles_m2 = Signal(cfg.count_bits + 1)
        ox_last, oy_last, t_last = Signal(), Signal(), Signal()
        ox_last0, oy_last0 = Signal(), Signal()
        slots_m2, steps_m1 = Signal(signed(cfg.step_bits + 1)), Signal(cfg.step_bits)
        k_end = Signal()     # k == slots - 1
        k_issue = Signal()   # k < steps
        k_first = Signal()   # k == 0
        nfull = Signal(cfg.count_bits)
        # Group window of a grouped/depthwise convolution: tile t reads groups
        # (t // tdiv) * ginc .. + in_g - 1, kept as the origin's offset ``gbase``.
        tcnt, tdiv_m2 = Signal(cfg.count_bits), Signal(cfg.count_bits + 1)
        tcnt_last, tcnt_last0 = Signal(), Signal()  # tcnt at tdiv - 1 (as the flags above)
        # src_org + gbase and src_org + gbase + ginc, kept ready: the next tile's origin is
        # then a select, not two adds after the tile-count compare (the iCE40's longest path)
        org_same, org_inc = Signal(act_addr_bits(cfg)), Signal(act_addr_bits(cfg))
        # Output position steps per tile, from the layer's output digits (a table built here
        # from quantflow.schedule.out_position: rows elements per MAC tile, cols otherwise).
        lane_inc, lane_wrap = Signal(lane_bits(cfg) + 1), Signal(lane_bits(cfg) + 1)
        word_inc = Signal(cfg.count_bits)

        # Stage A: the issue slot, registered.
        a_valid, a_first, a_last, a_bank, a_b = Signal(), Signal(), Signal(), Signal(), Signal()
        a_signed = Signal()
        # Weight digit of a wide layer: each activation read is issued ``wdigits`` times, once
        # per digit (the weight address still advances every slot).
        e, a_e = (Signal(cfg.wdigit_bits, name=n) for n in ("e", "a_e"))
        a_iy, a_ix = Signal(dim_s), Signal(dim_s)
        a_base, a_off = Signal(abits), Signal(abits)
        a_w = Signal(wbits)
        a_meta = Signal(meta_layout(cfg))
        # Stage B: the im2col address and the padding flag, registered in front of the memory.
        pad = ((a_iy < 0) | (a_iy >= d.in_h) | (a_ix < 0) | (a_ix >= d.in_w))
        m.d.sync += [
            self.act_addr.eq(a_base + a_off),
            self.w_addr.eq(a_w),
            self.step.valid.eq(a_valid), self.step.first.eq(a_first),
            self.step.last.eq(a_last), self.step.pad.eq(pad),
            self.step.bank.eq(a_bank), self.step.signed.eq(a_signed), self.step.b.eq(a_b),
            self.step.e.eq(a_e),
            self.meta.eq(a_meta),
        ]
        m.d.sync += a_valid.eq(0)

        def tap_advance():
            with m.If(kx_last):
                m.d.sync += [kx.eq(0), kx_last.eq(kx_last0), ky.eq(ky + 1), tap_col.eq(0),
                             tap_row.eq(tap_row + d.row_words)]
            with m.Else():
                m.d.sync += [kx.eq(kx + 1), kx_last.eq(kx == kw_m2),
                             tap_col.eq(tap_col + d.px_words)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [layer.eq(self.first), self.total.eq(0), cyc.eq(0),
                                 paddr.eq(self.first * cfg.desc_words), fetch_j.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # One address per cycle; each word arrives the next cycle (memory latency 1).
                m.d.sync += [cyc.eq(cyc + 1), paddr.eq(paddr + 1), fetch_j.eq(fetch_j + 1)]
                with m.If(fetch_j != 0):
                    m.d.sync += raw.eq(Cat(raw[PROG_WORD_BITS:], self.desc_data))
                with m.If(fetch_j == cfg.desc_words - 1):
                    m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [cyc.eq(cyc + 1), fetch_j.eq(0),
                             raw.eq(Cat(raw[PROG_WORD_BITS:], self.desc_data))]
                m.next = "INIT"
            with m.State("INIT"):
                mac = d.op == Op.MAC.value
                joined = Signal.like(d.digits)  # digits joined per element (SUM, ADD)
                m.d.comb += joined.eq(Mux(Cat(*(d.op == op.value for op in JOINING_OPS)).any(),
                                          d.digits, 1))
                m.d.sync += [
                    cyc.eq(cyc + 1), t.eq(0), g.eq(0), oy.eq(0), ox.eq(0),
                    ky.eq(0), kx.eq(0), k.eq(0), iy0.eq(-d.py), ix0.eq(-d.px),
                    w_tile.eq(d.w_base), w_addr.eq(d.w_base),
                    ch_base.eq(0), ch_word.eq(0), ch_lane.eq(0), rem.eq(d.out_ch),
                    row_org.eq(d.src_org), pix_org.eq(d.src_org), tap_row.eq(0), tap_col.eq(0),
                    pix_word.eq(0), pix_acc.eq(0),
                    is_mac.eq(mac), is_add.eq(d.op == Op.ADD.value),
                    kw_m2.eq(d.kw - 2), in_g_m2.eq(d.in_g - 2), wd_m2.eq(d.wdigits - 2),
                    kx_last.eq(d.kw == 1), g_last.eq(d.in_g == 1), e_last.eq(d.wdigits == 1),
                    kx_last0.eq(d.kw == 1), g_last0.eq(d.in_g == 1), e_last0.eq(d.wdigits == 1),
                    out_w_m2.eq(d.out_w - 2), out_h_m2.eq(d.out_h - 2),
                    tiles_m2.eq(d.tiles - 2),
                    ox_last.eq(d.out_w == 1), oy_last.eq(d.out_h == 1), t_last.eq(d.tiles == 1),
                    ox_last0.eq(d.out_w == 1), oy_last0.eq(d.out_h == 1),
                    slots_m2.eq(d.slots - 2), steps_m1.eq(d.steps - 1),
                    k_end.eq(d.slots == 1), k_issue.eq(1), k_first.eq(1),
                    e.eq(0),
                    tcnt.eq(0), tdiv_m2.eq(d.tdiv - 2),
                    tcnt_last.eq(d.tdiv == 1), tcnt_last0.eq(d.tdiv == 1),
                    org_same.eq(d.src_org), org_inc.eq(d.src_org + d.ginc),
                ]

                def position(n, per_lw):
                    p_mac, p_lw = out_position(cfg, cfg.rows, n), out_position(cfg, per_lw, n)
                    m.d.sync += [lane_inc.eq(Mux(mac, p_mac["lane_inc"], p_lw["lane_inc"])),
                                 word_inc.eq(Mux(mac, p_mac["word_inc"], p_lw["word_inc"])),
                                 lane_wrap.eq(Mux(mac, p_mac["lane_wrap"], p_lw["lane_wrap"]))]

                def positions(per_lw):
                    m.d.sync += nfull.eq(Mux(mac, cfg.rows, per_lw))
                    with m.Switch(d.odigits):
                        for n in range(2, cfg.act_digits_max + 1):
                            with m.Case(n):
                                position(n, per_lw)
                        with m.Default():
                            position(1, per_lw)
                # A lane-wise tile moves cols elements on, or cols // digits when a sum or an
                # add joins the input's digit lanes into values (max pooling keeps digits).
                with m.Switch(joined):
                    for n in range(2, cfg.act_digits_max + 1):
                        with m.Case(n):
                            positions(cfg.cols // n)
                    with m.Default():
                        positions(cfg.cols)
                m.next = "RUN"
            with m.State("RUN"):
                # An add reads input A at slot 0 and input B (src2_delta words on, in bank
                # src2_buf) at slot 1; each is its own one-step "window" for the pool path.
                second = is_add & ~k_first
                m.d.sync += [
                    cyc.eq(cyc + 1),
                    a_valid.eq(k_issue), a_first.eq(k_first | is_add),
                    a_last.eq(k_issue & ((k == steps_m1) | is_add)),
                    a_bank.eq(Mux(second, d.src2_buf, d.src_buf)),
                    a_signed.eq(Mux(second, d.b_signed, d.a_signed)), a_b.eq(second),
                    a_iy.eq(iy0 + ky), a_ix.eq(ix0 + kx),
                    a_base.eq(pix_org + tap_row + Mux(second, d.src2_delta, 0)),
                    a_off.eq(tap_col + Mux(is_mac, g, t)),
                    a_w.eq(w_addr), a_e.eq(e),
                    a_meta.n.eq(Mux(rem < nfull, rem, nfull)), a_meta.ch.eq(ch_base),
                    a_meta.word.eq(d.dst_base + pix_word + ch_word),
                    a_meta.lane.eq(ch_lane),
                    a_meta.acc_addr.eq(d.dst_base + pix_acc + ch_base),
                    a_meta.b.eq(second),
                ]
                with m.If(~k_end):
                    m.d.sync += [k.eq(k + 1), w_addr.eq(w_addr + 1), k_first.eq(0),
                                 k_end.eq(k == slots_m2)]
                    with m.If(k == steps_m1):
                        m.d.sync += k_issue.eq(0)
                    with m.If(is_mac & ~e_last):
                        m.d.sync += [e.eq(e + 1), e_last.eq(e == wd_m2)]
                    with m.Elif(is_mac):
                        m.d.sync += [e.eq(0), e_last.eq(e_last0)]
                        with m.If(g_last):
                            m.d.sync += [g.eq(0), g_last.eq(g_last0)]
                            tap_advance()
                        with m.Else():
                            m.d.sync += [g.eq(g + 1), g_last.eq(g == in_g_m2)]
                    with m.Elif(~is_add):
                        tap_advance()
                with m.Else():
                    m.d.sync += [k.eq(0), g.eq(0), kx.eq(0), ky.eq(0), w_addr.eq(w_tile), e.eq(0),
                                 g_last.eq(g_last0), kx_last.eq(kx_last0), e_last.eq(e_last0),
                                 tap_row.eq(0), tap_col.eq(0),
                                 k_end.eq(slots_m2 < 0), k_issue.eq(1), k_first.eq(1)]
                    with m.If(~ox_last):
                        m.d.sync += [ox.eq(ox + 1), ox_last.eq(ox == out_w_m2),
                                     ix0.eq(ix0 + d.sx),
                                     pix_org.eq(pix_org + d.sx_words),
                                     pix_word.eq(pix_word + d.out_g),
                                     pix_acc.eq(pix_acc + d.out_ch)]
                    with m.Else():
                        m.d.sync += [ox.eq(0), ox_last.eq(ox_last0), ix0.eq(-d.px)]
                        with m.If(~oy_last):
                            m.d.sync += [oy.eq(oy + 1), oy_last.eq(oy == out_h_m2),
                                         iy0.eq(iy0 + d.sy),
                                         row_org.eq(row_org + d.sy_words),
                                         pix_org.eq(row_org + d.sy_words),
                                         pix_word.eq(pix_word + d.out_g),
                                         pix_acc.eq(pix_acc + d.out_ch)]
                        with m.Else():
                            # next output-channel tile (MAC) or channel group (pooling):
                            # the output position moves on by the descriptor's steps
                            next_lane = ch_lane + lane_inc
                            next_group = tcnt_last
                            next_org = Mux(next_group, org_inc, org_same)
                            m.d.sync += [
                                oy.eq(0), oy_last.eq(oy_last0), iy0.eq(-d.py),
                                t.eq(t + 1), t_last.eq(t == tiles_m2),
                                tcnt.eq(Mux(next_group, 0, tcnt + 1)),
                                tcnt_last.eq(Mux(next_group, tcnt_last0, tcnt == tdiv_m2)),
                                row_org.eq(next_org), pix_org.eq(next_org),
                                pix_word.eq(0), pix_acc.eq(0),
                                w_tile.eq(w_tile + d.steps), w_addr.eq(w_tile + d.steps),
                                ch_base.eq(ch_base + nfull), rem.eq(rem - nfull),
                            ]
                            with m.If(next_group):
                                m.d.sync += [org_same.eq(org_inc), org_inc.eq(org_inc + d.ginc)]
                            with m.If(next_lane >= lane_wrap):
                                m.d.sync += [ch_lane.eq(next_lane - lane_wrap),
                                             ch_word.eq(ch_word + word_inc + 1)]
                            with m.Else():
                                m.d.sync += [ch_lane.eq(next_lane),
                                             ch_word.eq(ch_word + word_inc)]
                            with m.If(t_last):
                                m.d.sync += flush.eq(Mux(is_add, cfg.add_flush_cycles - 2,
                                                         cfg.layer_flush_cycles - 2))
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
