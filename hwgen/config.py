"""AccelConfig: the one frozen description of an overlay, and every size derived from it.

One generated design per configuration runs any network whose buffers fit (an overlay); the
Program compiler (:mod:`quantflow.program`), the gateware and the host driver all read their
sizes from here. Stored fields are the free parameters; everything else is a property computed
with integers (STYLE rules 1 and 3).
"""

import hashlib
import json
from dataclasses import asdict, dataclass

from quantflow.numerics import (DEFAULT_MULT_BITS, MAX_BITS, MIN_BITS, QFormat, acc_bits,
                                digit_reach, weight_digits)

from .errors import DoesNotFitError, UserError

__all__ = ["AccelConfig", "DEFAULT_ARRAY", "input_digits", "model_act_bits", "model_signed",
           "lane_bits", "lane_pairs", "lane_weight_bits", "act_widths"]

#: Default MAC-array shape (PE output lanes x SIMD input lanes).
DEFAULT_ARRAY = (8, 8)

# Fixed pipeline depths of the datapath, mirrored by the components' ``latency`` properties
# (tests check each component against these).
_OPERAND_LATENCY = 2  # the array's operand registers: block-RAM data -> a flip-flop -> one per PE
_MULT_LATENCY = 1   # registered product
_TREE_LATENCY = 2   # the adder tree over the SIMD lanes, registered halfway and at the end
_ACC_LATENCY = 1    # accumulator register
_POOL_LATENCY = 1   # lane-wise max/sum register
_REQUANT_LATENCY = 6  # product x2, rounding, shift, pair sum, clamp
_RQ_IN_LATENCY = 2  # the drain registers the requantizers' input twice (DSP neighbours)
_MEM_LATENCY = 1    # synchronous block-RAM read
_READ_REG_LATENCY = 1  # the activation words registered after the read (operand path)
_SEQ_LATENCY = 2    # loop counters -> registered tap, then registered im2col address
_BIAS_LATENCY = 1   # registered bias add in front of the requantizer
_PARAM_LATENCY = 1  # the bias and (M, s) words registered as they leave the block RAMs
#: Program memory word: a descriptor is stored as ``desc_words`` of these, low bits first, and
#: read one per cycle into the sequencer (a 16 x ~240-bit memory would take 15 of the
#: iCE40UP5K's 30 block RAMs; 32-bit words take 2).
PROG_WORD_BITS = 32


#: Depth fields and the Program usage entry each one must hold.
_DEPTHS = {"weight_depth": "weight_words", "act_depth": "act_words",
           "param_depth": "param_entries", "acc_depth": "acc_words",
           "max_layers": "descriptors"}


def _int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer in {rng}, not {value!r}")


def input_digits(input_bits, act_bits):
    """Digits of ``act_bits`` that carry one ``input_bits``-wide network input (adjacent
    lanes; 1 when it fits a lane): the array needs at least that many columns."""
    return max(1, -(-input_bits // act_bits))


def model_signed(qmodel):
    """True when any activation tensor of ``qmodel`` (or its input) is signed."""
    return qmodel.input_fmt.signed or any(layer.requant and layer.out_fmt.signed
                                          for layer in qmodel.layers)


def act_widths(qmodel):
    """The widths of ``qmodel``'s requantized activation tensors (between layers)."""
    from quantflow.qmodel import MAC_KINDS, LayerKind

    widths = {layer.out_fmt.bits for layer in qmodel.layers if layer.requant
              and layer.kind in MAC_KINDS + (LayerKind.AVGPOOL, LayerKind.ADD)}
    return {max(MIN_BITS, min(MAX_BITS, b)) for b in widths} or {model_act_bits(qmodel)}


def lane_pairs(qmodel, array=None):
    """The ``(weight lanes, activation lanes)`` pairs that run ``qmodel``, best first: among
    its layers' widths, ranked by multiplier area times cycles per inference,
    ``b_w * b_a * cycles`` (a LUT multiplier grows about as the product of its operands'
    widths; a layer with wider weights runs as weight digits, each digit a pass, and a wider
    activation tensor as digits in adjacent lanes, which its reader pays for in input groups;
    the cycles come from compiling
    the model for that pair). A network at one width gets that width; 8-bit first/last layers
    around a 2-bit body get 2-bit lanes when the body holds most of the work, 8-bit lanes when
    the wide layers do (a 640-input autoencoder). Bipolar 1-bit weight lanes hold 1-bit layers
    only, and no grouped convolution (it needs zero weights between groups), so a binary
    network also tries 2-bit lanes."""
    from quantflow.program import compile_program

    wwidths = sorted({layer.w_fmt.bits for layer in qmodel.mac_layers})
    awidths = sorted(act_widths(qmodel))
    if len(wwidths) == 1 and len(awidths) == 1 and wwidths[0] > 1:
        return [(wwidths[0], awidths[0])]
    rows, cols = array or DEFAULT_ARRAY
    a_wide = max(awidths)

    def cost(pair):
        wb, ab = pair
        try:
            cfg = AccelConfig(weight_bits=wb, layer_weight_bits=max(wwidths), act_bits=ab,
                              layer_act_bits=a_wide, rows=rows, cols=cols,
                              input_bits=qmodel.input_fmt.bits,
                              signed_acts=model_signed(qmodel), host_bits=64, counter_bits=64,
                              max_reduction=1 << 20, max_dim=4096,
                              **{name: 1 << 20 for name in _DEPTHS})
            return wb * ab * sum(compile_program(qmodel, cfg).cycles)
        except (UserError, ValueError):  # this pair cannot run the model: never chosen
            return float("inf")

    # bipolar 1-bit lanes run 1-bit layers only: beside wider layers, 2-bit lanes are a candidate
    lanes_w = sorted(set(wwidths) | ({2} if wwidths[0] == 1 else set()))
    pairs = [(wb, ab) for wb in lanes_w for ab in awidths]
    costs = {p: cost(p) for p in pairs}
    ranked = sorted(pairs, key=lambda p: (costs[p], -p[0], -p[1]))
    return [p for p in ranked if costs[p] != float("inf")] or ranked[:1]


def lane_bits(qmodel, array=None):
    """``(weight lanes, activation lanes)`` for ``qmodel``: the first of :func:`lane_pairs`."""
    return lane_pairs(qmodel, array)[0]


def lane_weight_bits(qmodel, array=None):
    """The weight lane width :func:`lane_bits` picks."""
    return lane_bits(qmodel, array)[0]


def model_act_bits(qmodel):
    """The activation lane width an overlay for ``qmodel`` gets (its bits, within range)."""
    return max(MIN_BITS, min(MAX_BITS, qmodel.abits))


@dataclass(frozen=True)
class AccelConfig:
    """Word lengths, array shape and buffer depths of one overlay.

    Parameters
    ----------
    weight_bits : int
        ``b_w``, signed weights, 1..8; 1-bit lanes are bipolar (``+-1``, a select between the
        activation and its negation instead of a multiplier) and run 1-bit layers only.
    act_bits : int
        ``b_a``, unsigned activations between layers, 1..8; also the SIMD lane width.
    input_bits : int
        Width of the unsigned network input (default 8). When it exceeds ``act_bits`` the
        first layer reads the input as ``digits`` digits of ``act_bits`` each, packed in
        adjacent SIMD lanes and shifted back into place in the adder tree (the reasons are in
        :mod:`quantflow.program`).
    mult_bits : int
        Width of the unsigned requantization multiplier ``M``.
    rows, cols : int
        MAC-array shape: ``rows`` output channels (PEs) x ``cols`` input lanes (SIMD).
    max_reduction : int
        Largest reduction length ``K`` any layer may have; sizes the accumulator.
    weight_depth, act_depth, param_depth, acc_depth, max_layers : int
        Words in the weight memory, in each ping-pong activation memory, entries in the
        bias / requantization-parameter memories, in the logits (accumulator) memory, and layer
        descriptors in the program memory.
    max_dim : int
        Largest feature-map height/width, kernel size, stride or padding.
    host_bits : int
        Width of a word on the host streams (16..64, a multiple of 8, at least as wide as a
        buffer count).
    counter_bits : int
        Width of the per-layer cycle counters (at most ``host_bits``: a RUN reply is one word).
    layer_weight_bits : int
        Widest weights of any layer the overlay runs (0: ``weight_bits``). A layer wider than
        the ``weight_bits`` lanes runs as ``weight_digits`` signed digits, one pass over the
        same activations per digit, each pass's lane sum shifted by ``weight_bits * e`` in the
        PE (:func:`quantflow.numerics.split_digits`): an 8-bit first or last layer runs
        exactly on 2-bit lanes, at ``digits`` times its cycles.
    layer_act_bits : int
        Widest activation tensor between layers (0: ``act_bits``). A tensor wider than the
        lanes is stored as ``act_digits`` digits of ``act_bits`` in adjacent lanes (low digit
        first; the top digit signed for a signed tensor): the drain writes an element's digits
        in one cycle, the consumer's PEs shift each lane's product back into place as for a
        wide network input, and max pooling compares the digit groups as whole values. An
        8-bit first layer output runs on 2-bit lanes at the cost of 4 lanes per channel.
    signed_acts : bool
        Activation lanes may hold signed (two's complement) values, per layer as the
        descriptor says: each multiplier takes a one-bit-wider signed operand and the pool
        unit compares signed. False (the default, and what :meth:`for_model` picks for a
        network without signed tensors) builds the unsigned datapath, one partial product
        smaller per multiplier.
    drain_lanes : int
        Requantizers side by side in the drain (a power of two, at most ``rows``): a MAC
        layer's results drain ``drain_group`` (:func:`quantflow.schedule.drain_group`, up to
        ``drain_lanes``) channels per cycle, so a pixel of few steps (a 1x1 convolution over
        few channels, a first layer with its taps across the lanes) takes ``max(steps,
        ceil(rows / group))`` cycles instead of ``max(steps, rows)``. The bias and
        requantization memories are that many entries wide; each requantizer is one more
        ``acc x M`` multiplier. Pooling, adds and logits drain one element per cycle.
    lut_multipliers : bool
        Build the ``b_a x b_w`` PE multipliers as shift-and-add logic (True), which Yosys keeps
        in LUTs, or as ``*`` (False), which it maps to DSP blocks where it can: low-bit
        products are cheap in LUTs and FPGAs have few DSPs (70 of them for an 8x8 array).
    """

    weight_bits: int = 4
    act_bits: int = 4
    input_bits: int = 8
    mult_bits: int = DEFAULT_MULT_BITS
    rows: int = DEFAULT_ARRAY[0]
    cols: int = DEFAULT_ARRAY[1]
    max_reduction: int = 4096
    weight_depth: int = 512
    act_depth: int = 512
    param_depth: int = 256
    acc_depth: int = 64
    max_layers: int = 16
    max_dim: int = 64
    host_bits: int = 32
    counter_bits: int = 32
    lut_multipliers: bool = True
    signed_acts: bool = False
    layer_weight_bits: int = 0
    layer_act_bits: int = 0
    drain_lanes: int = 1

    def __post_init__(self):
        _int("Weight bits", self.weight_bits, MIN_BITS, MAX_BITS)
        _int("Activation bits", self.act_bits, MIN_BITS, MAX_BITS)
        _int("Input bits", self.input_bits, 1, 16)
        _int("Multiplier bits", self.mult_bits, 2, 31)
        _int("Array rows", self.rows, 1, 64)
        _int("Array columns", self.cols, 1, 64)
        _int("Maximum reduction", self.max_reduction, 1, 1 << 20)
        for name, value in (("Weight depth", self.weight_depth),
                            ("Activation depth", self.act_depth),
                            ("Parameter depth", self.param_depth),
                            ("Accumulator depth", self.acc_depth),
                            ("Maximum layers", self.max_layers)):
            _int(name, value, 2, 1 << 20)
        _int("Maximum dimension", self.max_dim, 1, 4096)
        _int("Host word bits", self.host_bits, 16, 64)
        if self.host_bits % 8:
            raise ValueError(f"Host word bits must be a multiple of 8, not {self.host_bits!r}")
        # A command's address and count are one host word each (a UART bridge assembles bytes
        # into host words), and a RUN reply is one word of cycles.
        depth_bits = max(self.weight_depth, self.act_depth, self.param_depth, self.acc_depth,
                         self.max_layers).bit_length()
        if self.host_bits < depth_bits:
            raise ValueError(f"Host word bits must be at least the {depth_bits} bits of a buffer"
                             f" count, not {self.host_bits!r}")
        _int("Counter bits", self.counter_bits, 8, self.host_bits)
        if not isinstance(self.lut_multipliers, bool):
            raise TypeError(f"LUT multipliers must be a bool, not {self.lut_multipliers!r}")
        if self.layer_weight_bits != 0:
            _int("Layer weight bits", self.layer_weight_bits, self.weight_bits, MAX_BITS)
            if self.bipolar_weights and self.layer_weight_bits > 1:
                raise ValueError(f"Layer weight bits must be 1 on bipolar 1-bit weight lanes"
                                 f" (they hold +-1 only), not {self.layer_weight_bits!r}: wider"
                                 " layers need weight lanes of 2+ bits")
        if self.layer_act_bits != 0:
            _int("Layer activation bits", self.layer_act_bits, self.act_bits, MAX_BITS)
        if not isinstance(self.signed_acts, bool):
            raise TypeError(f"Signed activations must be a bool, not {self.signed_acts!r}")
        _int("Drain lanes", self.drain_lanes, 1, self.rows)
        if self.drain_lanes & (self.drain_lanes - 1):
            raise ValueError(f"Drain lanes must be a power of two, not {self.drain_lanes!r}")
        if self.param_depth % self.drain_lanes:
            raise ValueError(f"Parameter depth must be a multiple of the {self.drain_lanes}"
                             f" drain lanes, not {self.param_depth!r}")
        if self.cols < self.digits_max:
            what = (f"{self.input_bits}-bit input"
                    if input_digits(self.input_bits, self.act_bits) == self.digits_max
                    else f"{self.wide_act_bits}-bit activation tensor")
            raise ValueError(
                f"Array columns must be at least the {self.digits_max} digits of a "
                f"{what} at {self.act_bits} activation bits, not {self.cols!r}")

    # -- construction from a model ------------------------------------------------------------

    @classmethod
    def for_model(cls, qmodel, array=DEFAULT_ARRAY, **overrides):
        """A configuration whose word lengths match ``qmodel`` (weight, activation, input).

        Buffer depths start at the class defaults and grow to the next power of two the model
        needs, so the overlay always runs ``qmodel``; ``overrides`` (any field) win, and then
        :meth:`check_fits` reports what does not fit.
        """
        from quantflow.program import compile_program

        rows, cols = array
        wbits, abits = overrides.get("weight_bits"), overrides.get("act_bits")
        if not (wbits and abits):
            chosen = lane_bits(qmodel, array)
            wbits, abits = wbits or chosen[0], abits or chosen[1]
        wide_a = model_act_bits(qmodel)
        fields = dict(weight_bits=wbits,
                      layer_weight_bits=qmodel.wbits if qmodel.wbits > wbits else 0,
                      act_bits=abits, layer_act_bits=wide_a if wide_a > abits else 0,
                      input_bits=qmodel.input_fmt.bits, rows=rows, cols=cols,
                      signed_acts=model_signed(qmodel))
        k = max(layer.reduction for layer in qmodel.layers)
        fields["max_reduction"] = max(cls.max_reduction, 1 << (k - 1).bit_length())
        dims = [d for layer in qmodel.layers
                for d in (*layer.in_shape[1:], *layer.kernel, *layer.padding)]
        fields["max_dim"] = max(cls.max_dim, (1 << max(dims).bit_length()) - 1)
        probe_fields = {**fields, **{name: 1 << 20 for name in _DEPTHS}, **overrides,
                        "host_bits": 64, "counter_bits": 64}  # only the compiler reads it
        try:
            usage = compile_program(qmodel, cls(**probe_fields)).usage
        except DoesNotFitError:
            usage = {}  # an override is too small: check_fits will say which
        for name, key in _DEPTHS.items():
            need = usage.get(key, 0)
            fields[name] = max(getattr(cls, name), 1 << max(need - 1, 0).bit_length())
        fields.update(overrides)
        return cls(**fields)

    # -- formats and widths ------------------------------------------------------------------

    @property
    def w_fmt(self):
        return QFormat(self.weight_bits, True)

    @property
    def bipolar_weights(self):
        """1-bit weight lanes: bipolar, ``+-1`` (:func:`quantflow.numerics.weight_lane_codes`)."""
        return self.weight_bits == 1

    @property
    def wide_w_fmt(self):
        """The widest layer weights: ``layer_weight_bits`` (or the lanes' width)."""
        return QFormat(max(self.weight_bits, self.layer_weight_bits), True)

    @property
    def weight_digits_max(self):
        """Signed weight digits of ``weight_bits`` that carry the widest layer's weights."""
        return weight_digits(self.wide_w_fmt, self.weight_bits)

    @property
    def wdigit_bits(self):
        return max(1, (self.weight_digits_max - 1).bit_length())

    @property
    def a_fmt(self):
        return QFormat(self.act_bits, self.signed_acts)

    @property
    def in_fmt(self):
        return QFormat(self.input_bits, False)

    @property
    def wide_act_bits(self):
        """The widest activation tensor between layers: ``layer_act_bits`` (or the lanes')."""
        return max(self.act_bits, self.layer_act_bits)

    @property
    def act_digits_max(self):
        """Digits of ``act_bits`` that carry the widest activation tensor between layers."""
        return input_digits(self.wide_act_bits, self.act_bits)

    @property
    def digits_max(self):
        """Digits of ``act_bits`` needed to carry one network input or the widest activation
        tensor (1 when both fit a lane)."""
        return max(input_digits(self.input_bits, self.act_bits), self.act_digits_max)

    @property
    def clamp_bits(self):
        """Two's complement width of a requantized value and of the clamp bounds: the widest
        activation tensor's bits plus a sign (an unsigned maximum or a signed minimum)."""
        return self.wide_act_bits + 1

    @property
    def product_bits(self):
        """Signed width of one lane product after the digit shift."""
        return (self.weight_bits + self.a_operand_bits + 1
                + self.act_bits * (self.digits_max - 1))

    @property
    def acc_bits(self):
        """Signed accumulator width: products of the widest activation over ``max_reduction``,
        with weights as wide as the digits of the widest layer reach (a partial sum over some
        digits may exceed the finished one's bound)."""
        widest = QFormat(max(self.wide_act_bits, self.input_bits), False)
        reach = digit_reach(self.weight_bits, self.weight_digits_max)
        w = QFormat(max(self.wide_w_fmt.bits, (reach - 1).bit_length() + 1), True)
        return acc_bits(w, widest, self.max_reduction)

    @property
    def shift_max(self):
        """Largest requantization shift the hardware applies; any larger shift gives 0."""
        return self.acc_bits + self.mult_bits - 1

    @property
    def shift_bits(self):
        return self.shift_max.bit_length()

    @property
    def act_word_bits(self):
        return self.cols * self.act_bits

    @property
    def weight_word_bits(self):
        return self.rows * self.cols * self.weight_bits

    @property
    def array_macs(self):
        return self.rows * self.cols

    @property
    def lanes_max(self):
        """Entries of the vector the array or the pool unit hands to the drain."""
        return max(self.rows, self.cols)

    @property
    def drain_span(self):
        """Most cycles the drain spends on one vector: ``lanes_max`` elements, or an add's
        ``2 * cols`` (every lane twice, A then B) plus the slot that keeps pairs apart."""
        return max(self.lanes_max, 2 * self.cols + 1)

    @property
    def a_operand_bits(self):
        """Width of a multiplier's activation operand: one sign bit more when lanes may be
        signed."""
        return self.act_bits + (1 if self.signed_acts else 0)

    def addr_bits(self, depth):
        return max(1, (depth - 1).bit_length())

    @property
    def act_addr_bits(self):
        """Width of descriptor addresses: they cover the activation and the logits memory."""
        return max(self.addr_bits(self.act_depth), self.addr_bits(self.acc_depth))

    @property
    def dim_bits(self):
        return self.max_dim.bit_length()

    @property
    def count_bits(self):
        """Width of group, tile and channel counts (never more than an act memory holds)."""
        return (self.act_depth * max(self.cols, self.rows)).bit_length()

    @property
    def step_bits(self):
        return max(self.max_reduction, self.lanes_max).bit_length()

    @property
    def digit_bits(self):
        return self.digits_max.bit_length()

    # -- latencies (cycles) ------------------------------------------------------------------

    @property
    def mult_latency(self):
        """A PE multiplier: the registered product, and a DSP block's registered twice."""
        dsp = not (self.lut_multipliers or self.bipolar_weights)
        return _MULT_LATENCY + dsp

    @property
    def pe_latency(self):
        """A PE: operands in -> accumulator valid (product, tree, accumulator registers)."""
        return self.mult_latency + _TREE_LATENCY + _ACC_LATENCY

    @property
    def mac_latency(self):
        """MAC array: operands in -> accumulator vector valid (the operand register, its copy
        per PE, then the PEs)."""
        return _OPERAND_LATENCY + self.pe_latency

    @property
    def pool_latency(self):
        """Lane-wise register, and with activation digits a second stage that joins each
        element's digit sums into one value (free: the pool path is delayed to the array's
        latency anyway)."""
        return _POOL_LATENCY + (self.act_digits_max > 1)

    @property
    def requant_latency(self):
        return _REQUANT_LATENCY

    @property
    def mem_latency(self):
        return _MEM_LATENCY

    @property
    def operand_read_latency(self):
        """Sequencer address -> operands at the array: the block-RAM read, then the
        activation words registered (the weight address is delayed to match)."""
        return _MEM_LATENCY + _READ_REG_LATENCY

    @property
    def seq_latency(self):
        return _SEQ_LATENCY

    @property
    def rq_in_latency(self):
        """The drain's registers in front of the requantizers' multiplier blocks."""
        return _RQ_IN_LATENCY

    @property
    def drain_latency(self):
        """Drain: element selected -> written (registered parameter address, parameter read,
        parameter register, bias add, the requantizer's input registers, requantizer,
        write)."""
        return (1 + _MEM_LATENCY + _PARAM_LATENCY + _BIAS_LATENCY + _RQ_IN_LATENCY
                + _REQUANT_LATENCY + 1)

    @property
    def desc_bits(self):
        """Width of one layer descriptor (:func:`hwgen.layouts.desc_layout`)."""
        from .layouts import desc_layout
        return desc_layout(self).size

    @property
    def desc_words(self):
        """Program-memory words per descriptor."""
        return -(-self.desc_bits // PROG_WORD_BITS)

    @property
    def layer_setup_cycles(self):
        """Descriptor fetch (one cycle per program word), latch and counter initialisation
        before the first issue slot."""
        return self.desc_words + 2

    @property
    def layer_flush_cycles(self):
        """FLUSH + DONE states: covers the last issue slot until its last element is written
        (sequencer, memory, array, drain of up to ``lanes_max`` elements, write), with margin;
        fixed so the cycle count of a layer is exact."""
        return (_SEQ_LATENCY + self.operand_read_latency + self.mac_latency + self.lanes_max
                + self.drain_latency + 1)

    @property
    def add_flush_cycles(self):
        """The same for an add, whose last vector drains ``2 * cols`` elements (pairs)."""
        return self.layer_flush_cycles - self.lanes_max + self.drain_span

    # -- fitting -----------------------------------------------------------------------------

    @property
    def digest(self):
        """Stable short hash of the configuration (names build and output folders)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self):
        return asdict(self)

    def derived_json(self):
        names = ("digits_max", "act_digits_max", "clamp_bits", "weight_digits_max",
                 "product_bits", "acc_bits", "shift_max", "shift_bits",
                 "act_word_bits", "weight_word_bits", "array_macs", "seq_latency", "mult_latency",
                 "mac_latency",
                 "pool_latency", "requant_latency", "mem_latency", "operand_read_latency",
                 "drain_latency",
                 "layer_setup_cycles", "layer_flush_cycles", "add_flush_cycles")
        return {name: getattr(self, name) for name in names}

    def check_fits(self, qmodel):
        """Raise :class:`DoesNotFitError` naming the buffer, the need and the capacity."""
        from quantflow.program import compile_program
        compile_program(qmodel, self)  # raises UnsupportedOpError / DoesNotFit via _need
        return True

    def need(self, what, needed, have):
        """Raise :class:`DoesNotFitError` when ``needed > have`` (used by the compiler)."""
        if needed > have:
            raise DoesNotFitError(f"{what} does not fit: needs {needed}, has {have}"
                                  f" (configuration {self.digest})")
