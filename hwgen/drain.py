"""The drain: result vectors out of the array or pool unit, to memory.

Each element gets its channel's bias (MAC layers), goes through a requantizer (a wide
``acc x M`` multiplier shared by the whole array instead of one per PE) or bypasses it (max
pooling, logits), and is written to its lanes of an activation word or to the logits memory.
A requantized MAC layer drains ``drain_group`` elements per cycle through ``drain_lanes``
requantizers side by side (a group's parameters are one word of the bias and requantization
memories, its lanes adjacent in one activation word), max pooling as many lanes past them;
average pooling and logits one element per cycle.

For an add (``pair``) the vector of input A arrives one cycle before the vector of input B
(elements of a tensor wider than the lanes arrive joined, one value per lane);
the drain keeps A's lanes and emits ``A_0, B_0, A_1, B_1, ...``, each rescaled with its own
input's ``(M, s)`` (parameter entries ``p_base`` and ``p_base + 1``); the requantizer sums
each pair before the clamp (:func:`quantflow.numerics.add_requantize`) and one lane is written
per pair. With ``drain_lanes > 1`` it emits a group of ``g`` (the layer's ``drain_group``) A
elements in one cycle and the ``g`` B elements in the next, through ``g`` requantizers that
each hold their own first value; the parameter block then holds ``g`` copies of A's ``(M, s)``
and ``g`` of B's (entries ``p_base`` and ``p_base + g``, each group one parameter word).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.data import ArrayLayout as data_array
from amaranth.lib.wiring import In, Out

from .layouts import (Mem, acc_shape, acc_vector_layout, act_addr_bits, act_layout,
                      drain_in_layout, lane_bits, mem_shape, rq_layout)
from quantflow.schedule import drain_group, out_position

from .requant import Requantizer

__all__ = ["Drain"]


def _stages(m, signals, n, name):
    """``n`` register stages of ``signals`` (a tuple): the list of each stage's tuple."""
    out = []
    for k in range(n):
        nxt = tuple(Signal.like(v, name=f"{name}{k}_{i}") for i, v in enumerate(signals))
        m.d.sync += [a.eq(b) for a, b in zip(nxt, signals, strict=True)]
        out.append(nxt)
        signals = nxt
    return out


class Drain(wiring.Component):
    """Serialize ``meta.n`` results; bias, requantize, write. Latency ``drain_latency``.

    Members
    -------
    i : In(stream.Signature(drain_in_layout, always_ready=True)) — a vector arrives at most
        every ``max(steps, ceil(n / group))`` cycles, and its first group leaves in the cycle
        it arrives, so the drain is always free when the next one comes.
    bias_en, requant_en, to_acc, pair : In(1); p_base : In(param entry address);
        lo, hi : In(signed(clamp_bits)) — layer constants from the descriptor (``pair``: an
        add); odigits : In(digit_bits) — each element fills ``odigits`` adjacent lanes (its
        digits, low first: a tensor wider than the lanes), ``cols // odigits`` elements per
        word (:func:`quantflow.schedule.out_position`).
    group, group_max : In(1), with ``drain_lanes > 1`` only — the layer drains
        :func:`quantflow.schedule.drain_group` elements per cycle: a requantized MAC layer
        through that many requantizers side by side, max pooling's lanes past them;
        otherwise one.
    p_addr : Out — parameter word address (``drain_lanes`` entries a word); bias, rq : In —
        the words.
    act_addr, act_en (one per lane), act_data : Out — activation write (dst buffer chosen
        by the core); acc_addr, acc_data, acc_en : Out — logits write.
    busy : Out(1) — elements still in flight.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        n = cfg.drain_lanes
        self._g_max = drain_group(cfg, 1, cfg.cols)  # max pooling's lanes per cycle
        pbits = cfg.addr_bits(cfg.param_depth // n)
        ports = {
            "i": In(stream.Signature(drain_in_layout(cfg), always_ready=True)),
            "bias_en": In(1), "requant_en": In(1), "to_acc": In(1), "pair": In(1),
            "p_base": In(cfg.addr_bits(cfg.param_depth)), "lo": In(signed(cfg.clamp_bits)),
            "hi": In(signed(cfg.clamp_bits)),
            "odigits": In(cfg.digit_bits),
            "p_addr": Out(pbits), "bias": In(mem_shape(cfg, Mem.BIAS)),
            "rq": In(mem_shape(cfg, Mem.RQ)),
            "act_addr": Out(cfg.addr_bits(cfg.act_depth)), "act_en": Out(cfg.cols),
            "act_data": Out(act_layout(cfg)),
            "acc_addr": Out(cfg.addr_bits(cfg.acc_depth)), "acc_en": Out(1),
            "acc_data": Out(acc_shape(cfg)),
            "busy": Out(1),
        }
        if n > 1:
            ports["group"] = In(1)
            ports["group_max"] = In(1)
        super().__init__(ports)

    @property
    def latency(self):
        return self._cfg.drain_latency

    def _group(self, m):
        """Elements per cycle this layer (a signal), and the table of it by output digits."""
        cfg = self._cfg
        dmax, n = cfg.act_digits_max, cfg.drain_lanes
        table = {d: drain_group(cfg, d) for d in range(1, dmax + 1)}
        g = Signal(range(n + 1))
        if n == 1:
            m.d.comb += g.eq(1)
            return g, table
        g_mac = Signal.like(g)
        with m.Switch(self.odigits):
            for d in range(2, dmax + 1):
                with m.Case(d):
                    m.d.comb += g_mac.eq(table[d])
            with m.Default():
                m.d.comb += g_mac.eq(table[1])
        m.d.comb += g.eq(Mux(self.group, g_mac, Mux(self.group_max, self._g_max, 1)))
        return g, table

    def elaborate(self, platform):  # one pipeline, kept in one place
        cfg = self._cfg
        m = Module()
        n_lanes = cfg.lanes_max
        nd = cfg.drain_lanes
        abits = act_addr_bits(cfg)
        vec = Signal(acc_vector_layout(cfg, n_lanes))
        # An add's input A, kept while the pairs drain (an element is at most the widest
        # tensor's digits joined, plus a sign: the pool unit joins digit lanes into values).
        va_bits = cfg.act_bits * cfg.act_digits_max + 1
        va = Signal(data_array(signed(va_bits), cfg.cols))
        phase = Signal()  # pair mode: the next element is B's
        cnt = Signal(cfg.drain_span.bit_length())  # elements still to leave after this group
        ch = Signal(cfg.count_bits)
        word = Signal(abits)
        lane = Signal(lane_bits(cfg))
        acc_addr = Signal(abits)
        g, table = self._group(m)
        powers = sorted({1, self._g_max, *table.values()})  # 1: adds, logits, averages

        # The group leaving this cycle: straight from an arriving vector, or from a register.
        # ``e_left`` elements remain including it; lane k of the group is valid if k < e_left.
        e_valid, e_second = Signal(), Signal()
        e_val = Signal(data_array(acc_shape(cfg), nd))
        e_left = Signal.like(cnt)
        e_ch, e_word, e_lane, e_acc = (Signal.like(ch), Signal.like(word), Signal.like(lane),
                                       Signal.like(acc_addr))
        src = Signal(acc_vector_layout(cfg, n_lanes))
        meta = self.i.payload.meta
        inc = self.i.payload.acc

        def shifted(v, by, n=n_lanes):
            return Cat(*[v[min(j + by, n - 1)] for j in range(n)])

        def next_vec(v, n=n_lanes):  # the vector (or A's n lanes) after this cycle's group left
            if len(powers) == 1:
                return shifted(v, powers[0], n)
            out = shifted(v, 1, n)
            for p in powers[1:]:
                out = Mux(g == p, shifted(v, p, n), out)
            return out

        def after(left):  # elements remaining once this group left
            return Mux(left > g, left - g, 0)

        shift_va = Cat(*[va[j + 1] for j in range(cfg.cols - 1)], va[cfg.cols - 1])
        m.d.comb += src.eq(vec)
        m.d.comb += [e_val[k].eq(src[k]) for k in range(1, nd)]
        with m.If(self.i.valid & self.pair & ~meta.b):
            # input A of an add: keep its lanes, emit nothing yet
            m.d.sync += va.eq(Cat(*[inc[j][:va_bits] for j in range(cfg.cols)]))
        with m.Elif(self.i.valid):
            m.d.comb += [e_valid.eq(meta.n != 0), e_ch.eq(meta.ch), e_word.eq(meta.word),
                         e_lane.eq(meta.lane), e_acc.eq(meta.acc_addr)]
            with m.If(self.pair):  # input B: A_0 leaves now, B_0 next
                if nd == 1:
                    m.d.comb += [e_val[0].eq(va[0]), e_left.eq(1)]
                    m.d.sync += [cnt.eq(Mux(meta.n != 0, 2 * meta.n - 1, 0)), phase.eq(1),
                                 vec.eq(inc), va.eq(shift_va)]
                else:  # A's first group leaves now, B's next; cnt: B's elements to leave
                    m.d.comb += [e_val[k].eq(va[k]) for k in range(nd)]
                    m.d.comb += e_left.eq(meta.n)
                    m.d.sync += [cnt.eq(meta.n), phase.eq(1), vec.eq(inc),
                                 va.eq(next_vec(va, cfg.cols))]
            with m.Else():
                m.d.comb += [src.eq(inc), e_val[0].eq(inc[0]), e_left.eq(meta.n)]
                m.d.sync += [cnt.eq(after(meta.n)), vec.eq(next_vec(src))]
        with m.Else():
            m.d.comb += [e_valid.eq(cnt != 0), e_ch.eq(ch), e_word.eq(word),
                         e_lane.eq(lane), e_acc.eq(acc_addr), e_left.eq(cnt)]
            with m.If(cnt != 0):
                with m.If(self.pair & ~phase):
                    if nd == 1:
                        m.d.comb += [e_val[0].eq(va[0]), e_left.eq(1)]
                        m.d.sync += [va.eq(shift_va), phase.eq(1), cnt.eq(cnt - 1)]
                    else:
                        m.d.comb += [e_val[k].eq(va[k]) for k in range(nd)]
                        m.d.sync += [va.eq(next_vec(va, cfg.cols)), phase.eq(1)]
                with m.Elif(self.pair):
                    if nd == 1:
                        m.d.comb += [e_val[0].eq(vec[0]), e_second.eq(1), e_left.eq(1)]
                        m.d.sync += [vec.eq(shifted(vec, 1)), phase.eq(0), cnt.eq(cnt - 1)]
                    else:
                        m.d.comb += [e_val[0].eq(vec[0]), e_second.eq(1)]
                        m.d.sync += [vec.eq(next_vec(vec)), phase.eq(0), cnt.eq(after(cnt))]
                with m.Else():
                    m.d.comb += e_val[0].eq(vec[0])
                    m.d.sync += [vec.eq(next_vec(vec)), cnt.eq(after(cnt))]
        e_mask = Signal(nd)  # the group's valid lanes
        m.d.comb += e_mask.eq(Mux(e_valid, Cat(*[(e_left > k) & (g > k) for k in range(nd)]),
                                  0))
        # The position advances after each group, or after each pair's B element.
        advance = ~self.pair | e_second
        lane_last = Signal(lane_bits(cfg) + 1)  # the word's last group starts here
        lane_step = Signal(lane_bits(cfg) + 1)  # lanes a group fills
        with m.Switch(self.odigits):
            for d in [*range(2, cfg.act_digits_max + 1), 1]:  # 1 (the default) last
                with m.Case(d) if d > 1 else m.Default():
                    last = out_position(cfg, 1, d)["lane_last"]
                    m.d.comb += [lane_last.eq(last), lane_step.eq(d)]
                    if table[d] > 1:
                        with m.If(self.group):
                            m.d.comb += [lane_last.eq(last - (table[d] - 1) * d),
                                         lane_step.eq(table[d] * d)]
                    if d == 1 and self._g_max > 1:  # max pooling writes one lane an element
                        with m.If(self.group_max):
                            m.d.comb += [lane_last.eq(last - (self._g_max - 1)),
                                         lane_step.eq(self._g_max)]
        last_lane = e_lane == lane_last
        m.d.sync += [
            ch.eq(e_ch + Mux(advance, g, 0)),
            lane.eq(Mux(advance, Mux(last_lane, 0, e_lane + lane_step), e_lane)),
            word.eq(Mux(advance & last_lane, e_word + 1, e_word)),
            acc_addr.eq(e_acc + advance),
        ]
        # Stage 0: the parameter address registered, so the element's selection (from the
        # pool's valid through the channel mux) and the base add end at a flip-flop instead
        # of running on into the block RAM's address (the iCE40's critical path).
        s0_mask, s0_val, s0_second = Signal(nd), Signal.like(e_val), Signal()
        s0_word, s0_lane, s0_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        s0_entry = Signal.like(self.p_base)
        m.d.sync += [s0_mask.eq(e_mask), s0_val.eq(e_val), s0_word.eq(e_word),
                     s0_lane.eq(e_lane), s0_acc.eq(e_acc), s0_second.eq(e_second),
                     s0_entry.eq(self.p_base + Mux(self.pair, e_second if nd == 1
                                                   else Mux(e_second, g, 0), e_ch))]
        sub_bits = (nd - 1).bit_length()
        m.d.comb += self.p_addr.eq(s0_entry[sub_bits:])

        # Stage 1: parameters arrive (memory latency 1); a group's entries are adjacent in
        # one word (its block starts at a word, the group at a multiple of its size).
        s1_mask, s1_val, s1_second = Signal(nd), Signal.like(e_val), Signal()
        s1_word, s1_lane, s1_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        m.d.sync += [s1_mask.eq(s0_mask), s1_val.eq(s0_val), s1_word.eq(s0_word),
                     s1_lane.eq(s0_lane), s1_acc.eq(s0_acc), s1_second.eq(s0_second)]
        s1_sub = Signal(max(1, sub_bits))
        m.d.sync += s1_sub.eq(s0_entry[:sub_bits] if sub_bits else 0)
        # Stage 1b: the parameter words registered as they leave the block RAMs (its
        # clock-to-out, 5.8 ns on the ECP5 at speed 6, left no time for the bias add).
        bias_r, rq_r = Signal.like(self.bias), Signal.like(self.rq)
        m.d.sync += [bias_r.eq(self.bias), rq_r.eq(self.rq)]
        staged = [s1_mask]  # every stage's mask, for busy
        (s1_mask, s1_val, s1_second, s1_word, s1_lane, s1_acc, s1_sub), = _stages(
            m, (s1_mask, s1_val, s1_second, s1_word, s1_lane, s1_acc, s1_sub), 1, "s1b")
        staged.append(s1_mask)
        if nd == 1:
            biases, rqs = [bias_r], [rq_r]
        else:
            biases = [bias_r[(s1_sub + k)[:sub_bits]] for k in range(nd)]
            rqs = [rq_r[(s1_sub + k)[:sub_bits]] for k in range(nd)]
        # Stage 2: bias added and registered (keeps the add out of the multiplier's path).
        s2_mask, s2_second = Signal(nd), Signal()
        s2_sum = Signal(data_array(acc_shape(cfg), nd))  # fits: acc + bias is in acc_bits
        s2_rq = Signal(data_array(rq_layout(cfg), nd))
        s2_word, s2_lane, s2_acc = Signal.like(word), Signal.like(lane), Signal.like(acc_addr)
        m.d.sync += [s2_sum[k].eq(s1_val[k] + Mux(self.bias_en, biases[k], 0))
                     for k in range(nd)]
        m.d.sync += [s2_rq[k].eq(rqs[k]) for k in range(nd)]
        m.d.sync += [s2_mask.eq(s1_mask), s2_word.eq(s1_word), s2_lane.eq(s1_lane),
                     s2_acc.eq(s1_acc), s2_second.eq(s1_second)]
        # Stages 2b, 2c: the requantizers' input registered twice more, so the registers
        # next to their multiplier blocks have no other neighbours (the placer kept the
        # drain's registers 25 rows from the DSP row on the ULX3S: 5.7 ns of routing around
        # the block's 3.9).
        staged.append(s2_mask)
        rq_in = _stages(m, (s2_mask, s2_sum, s2_rq, s2_word, s2_lane, s2_acc, s2_second),
                        cfg.rq_in_latency, "rq_in")
        staged += [v[0] for v in rq_in]
        s2_mask, s2_sum, s2_rq, s2_word, s2_lane, s2_acc, s2_second = rq_in[-1]
        rqs_out = []
        for k in range(nd):
            rq = Requantizer(cfg)
            m.submodules["requant" if k == 0 else f"requant{k}"] = rq
            m.d.comb += [rq.i.valid.eq(s2_mask[k]), rq.i.payload.acc.eq(s2_sum[k]),
                         rq.i.payload.mult.eq(s2_rq[k].mult),
                         rq.i.payload.shift.eq(s2_rq[k].shift), rq.lo.eq(self.lo),
                         rq.hi.eq(self.hi)]
            m.d.comb += [rq.i.payload.second.eq(s2_second), rq.pair.eq(self.pair)]
            rqs_out.append(rq)

        # Bypass path delayed alongside the requantizer.
        # (lanes past the first carry max pooling's lane values only: act_bits wide)
        byp = [Cat(*[s2_sum[k][:cfg.act_bits] for k in range(1, nd)])] if nd > 1 else []
        pipe = [(Mux(~self.pair | s2_second, s2_mask, 0), s2_sum[0], s2_word, s2_lane, s2_acc,
                 *byp)]
        for n in range(rqs_out[0].latency):
            prev = pipe[-1]
            nxt = tuple(Signal.like(s, name=f"d{n}_{i}") for i, s in enumerate(prev))
            m.d.sync += [a.eq(b) for a, b in zip(nxt, prev, strict=True)]
            pipe.append(nxt)
        w_mask, w_sum, w_word, w_lane, w_acc, *w_byp = pipe[-1]
        b, dmax = cfg.act_bits, cfg.act_digits_max
        # The values written, sign-extended over every digit they may need (a bypassed
        # element, max pooling's, is one lane: odigits is 1 then).
        values = [Signal(signed(b * dmax), name=f"value{k}") for k in range(nd)]
        m.d.comb += values[0].eq(Mux(self.requant_en, rqs_out[0].o.payload, w_sum[:b]))
        b_ = cfg.act_bits
        m.d.comb += [values[k].eq(Mux(self.requant_en, rqs_out[k].o.payload,
                                      w_byp[0][b_ * (k - 1):b_ * k])) for k in range(1, nd)]
        mask = Signal(cfg.cols)  # the group's lanes, from lane 0
        m.d.comb += self.act_addr.eq(w_word)
        # On bipolar weight lanes (no zero weight) the lanes past a tensor's last element must
        # hold zeros, not what an earlier tensor left there: a write that starts a word (lane
        # 0) writes zeros over the lanes above its elements (later writes to the word come in
        # lane order; a concat's parts start at word boundaries).
        zfill = None
        if cfg.bipolar_weights:
            zfill = Signal()
            m.d.comb += zfill.eq((w_lane == 0) & w_mask[0])  # a write (its first element valid)

        def write(d, size):
            """``size`` elements of ``d`` digits from lane 0: lane j holds digit j % d of
            element (j // d) % size (a group starts at a multiple of size * d lanes)."""
            m.d.comb += mask.eq(Cat(*[Mux(w_mask[k], Const((1 << d) - 1, d), Const(0, d))
                                      for k in range(size)]))
            for j in range(cfg.cols):
                v = values[(j // d) % size][b * (j % d):b * (j % d + 1)]
                m.d.comb += self.act_data[j].eq(Mux(zfill & ~mask[j], 0, v) if zfill is not None
                                                else v)

        with m.Switch(self.odigits):
            for d in [*range(2, dmax + 1), 1]:
                with m.Case(d) if d > 1 else m.Default():
                    sizes = []
                    if nd > 1:
                        sizes = [(self.group, table[d])]
                        if d == 1:
                            sizes.append((self.group_max, self._g_max))
                    sizes = [(cond, size) for cond, size in sizes if size > 1]
                    for n_, (cond, size) in enumerate(sizes):
                        with m.If(cond) if n_ == 0 else m.Elif(cond):
                            write(d, size)
                    if sizes:
                        with m.Else():
                            write(d, 1)
                    else:
                        write(d, 1)
        m.d.comb += [
            self.act_en.eq(Mux(~self.to_acc, mask << w_lane if zfill is None
                               else Mux(zfill, (1 << cfg.cols) - 1, mask << w_lane), 0)),
            self.acc_addr.eq(w_acc), self.acc_data.eq(w_sum),
            self.acc_en.eq(w_mask[0] & self.to_acc),
        ]
        valids = [mask.any() for mask in [s0_mask, *staged]] + [p[0].any() for p in pipe]
        m.d.comb += self.busy.eq(self.i.valid | (cnt != 0) | Cat(*valids).any())
        return m
