"""Data layouts of the overlay, all built from one :class:`~hwgen.config.AccelConfig`.

Operands, accumulator vectors, memory words, the layer descriptor (the Program's instruction
word) and the host protocol's memory and command numbers live here, so gateware, host driver and
manifest agree by construction.
"""

import enum
import functools

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from quantflow.program import DESC_FIELDS, Op

from .config import PROG_WORD_BITS

__all__ = ["act_layout", "weight_row_layout", "weight_layout", "acc_shape", "acc_vector_layout",
           "rq_layout", "desc_layout", "step_layout", "meta_layout", "operand_layout",
           "drain_in_layout",
           "requant_in_layout", "Mem", "Command", "mem_shape", "mem_depth", "mem_width",
           "encode_desc", "layer_bits", "act_addr_bits", "lane_bits"]


def act_layout(cfg):
    """One activation word: ``cols`` unsigned lanes of ``act_bits``."""
    return data.ArrayLayout(unsigned(cfg.act_bits), cfg.cols)


def weight_row_layout(cfg):
    """One PE's weights: ``cols`` lanes of signed ``weight_bits``; 1-bit lanes are bipolar, an
    unsigned bit ``c`` standing for ``2c - 1``
    (:func:`quantflow.numerics.weight_lane_codes`)."""
    lane = unsigned(1) if cfg.bipolar_weights else signed(cfg.weight_bits)
    return data.ArrayLayout(lane, cfg.cols)


def weight_layout(cfg):
    """One weight word: ``rows`` PEs x ``cols`` lanes (:func:`weight_row_layout`)."""
    return data.ArrayLayout(weight_row_layout(cfg), cfg.rows)


def acc_shape(cfg):
    return signed(cfg.acc_bits)


def acc_vector_layout(cfg, length):
    return data.ArrayLayout(acc_shape(cfg), length)


def rq_layout(cfg):
    """Per-channel requantization parameters: unsigned multiplier ``M`` and shift ``s``."""
    return data.StructLayout({"mult": unsigned(cfg.mult_bits), "shift": unsigned(cfg.shift_bits)})


def layer_bits(cfg):
    return cfg.addr_bits(cfg.max_layers)


def act_addr_bits(cfg):
    """Addresses of the activation and logits memories (descriptor bases cover both)."""
    return cfg.act_addr_bits


def lane_bits(cfg):
    return max(1, (cfg.cols - 1).bit_length())


def _desc_field_shapes(cfg):
    dim = unsigned(cfg.dim_bits)
    count = unsigned(cfg.count_bits)
    step = unsigned(cfg.step_bits)
    base = unsigned(act_addr_bits(cfg))
    shapes = {
        "op": unsigned(max(op.value for op in Op).bit_length()),
        "src_buf": unsigned(1), "dst_buf": unsigned(1), "to_acc": unsigned(1),
        "bias_en": unsigned(1), "requant_en": unsigned(1), "a_signed": unsigned(1),
        "b_signed": unsigned(1), "src2_buf": unsigned(1),
        "in_h": dim, "in_w": dim, "in_g": count, "px_words": count, "row_words": count,
        "sx_words": base, "sy_words": base, "src2_delta": base,
        "out_h": dim, "out_w": dim, "out_g": count,
        "kh": dim, "kw": dim, "sy": dim, "sx": dim, "py": dim, "px": dim,
        "tiles": count, "steps": step, "slots": step, "out_ch": count,
        "digits": unsigned(cfg.digit_bits), "wdigits": unsigned(cfg.wdigit_bits + 1),
        "tdiv": count, "ginc": count,
        "odigits": unsigned(cfg.digit_bits),
        "w_base": unsigned(cfg.addr_bits(cfg.weight_depth)),
        "p_base": unsigned(cfg.addr_bits(cfg.param_depth)),
        "src_base": base, "src_org": base, "dst_base": base,
        # clamp bounds as two's complement of clamp_bits (unsigned max or signed min)
        "lo": unsigned(cfg.clamp_bits), "hi": unsigned(cfg.clamp_bits),
    }
    assert tuple(shapes) == DESC_FIELDS  # the compiler and the gateware list the same fields
    return shapes


def desc_layout(cfg):
    """The layer descriptor: one word of the program memory (see :mod:`quantflow.program`)."""
    return data.StructLayout(_desc_field_shapes(cfg))


def encode_desc(cfg, desc):
    """A :class:`quantflow.program.LayerDesc` -> its ``cfg.desc_words`` program-memory words
    (``PROG_WORD_BITS`` each, low bits first)."""
    word, offset = 0, 0
    for name, shape in _desc_field_shapes(cfg).items():
        value = desc.fields()[name]
        if not 0 <= value < (1 << shape.width):
            raise ValueError(f"Descriptor field {name} must fit {shape.width} bits, not {value!r}")
        word |= value << offset
        offset += shape.width
    mask = (1 << PROG_WORD_BITS) - 1
    return [(word >> (PROG_WORD_BITS * i)) & mask for i in range(cfg.desc_words)]


def step_layout(cfg):
    """Control of one array cycle: operands valid, first/last step of a pixel, padding tap, the
    bank to read, whether the lanes are signed, input B of an add, and the weight digit."""
    return data.StructLayout({"valid": 1, "first": 1, "last": 1, "pad": 1, "bank": 1,
                              "signed": 1, "b": 1, "e": cfg.wdigit_bits})


def meta_layout(cfg):
    """Where the drain writes a result vector: element count, first channel, word and lane."""
    return data.StructLayout({
        "n": unsigned(cfg.lanes_max.bit_length()),
        "b": unsigned(1),  # the vector is input B of an add (A came the cycle before)
        "ch": unsigned(cfg.count_bits),
        "word": unsigned(act_addr_bits(cfg)),
        "lane": unsigned(lane_bits(cfg)),
        "acc_addr": unsigned(act_addr_bits(cfg)),
    })


def drain_in_layout(cfg):
    """A result vector for the drain: ``lanes_max`` accumulators and where they go."""
    return data.StructLayout({"acc": acc_vector_layout(cfg, cfg.lanes_max),
                              "meta": meta_layout(cfg)})


def operand_layout(cfg):
    """One array cycle's operands: the activation word, the weight word and the step control."""
    return data.StructLayout({"act": act_layout(cfg), "weight": weight_layout(cfg),
                              "first": 1, "last": 1, "signed": 1, "e": cfg.wdigit_bits})


def requant_in_layout(cfg):
    return data.StructLayout({"acc": acc_shape(cfg), "mult": unsigned(cfg.mult_bits),
                              "shift": unsigned(cfg.shift_bits), "second": unsigned(1)})


class Mem(enum.IntEnum):
    """Memories the host reads and writes (the ``mem`` field of a command)."""
    PROG = 0
    WEIGHT = 1
    BIAS = 2
    RQ = 3
    ACT0 = 4
    ACT1 = 5
    ACC = 6
    CYCLES = 7


#: The memories a host READ returns: every layer's tensor (the activation banks, the
#: logits memory) and the cycle counters. The others (program, weights, biases, ``(M, s)``)
#: are written by the host and read only by the engine; a READ of one replies zero words
#: (:class:`hwgen.host.Driver` refuses it), so the host's read mux is as wide as an
#: activation word, not as a weight word (the ECP5's longest path, and hundreds of LUTs).
HOST_READABLE = (Mem.ACT0, Mem.ACT1, Mem.ACC, Mem.CYCLES)


class Command(enum.IntEnum):
    """Host command opcodes (low byte of the header word; ``mem`` in the next byte).

    ``WRITE mem, addr, count`` then ``count`` memory words, each as ``chunks(mem)`` host words;
    ``READ mem, addr, count`` answers with ``count`` memory words the same way;
    ``RUN first, last`` runs descriptors ``first..last`` and answers one word: their cycles.
    """
    WRITE = 1
    READ = 2
    RUN = 3


def _param_word(cfg, entry):
    """A parameter memory word: ``drain_lanes`` entries, one per requantizer."""
    return entry if cfg.drain_lanes == 1 else data.ArrayLayout(entry, cfg.drain_lanes)


def mem_shape(cfg, mem):
    return {
        Mem.PROG: unsigned(PROG_WORD_BITS), Mem.WEIGHT: weight_layout(cfg),
        Mem.BIAS: _param_word(cfg, acc_shape(cfg)),
        Mem.RQ: _param_word(cfg, rq_layout(cfg)),
        Mem.ACT0: act_layout(cfg), Mem.ACT1: act_layout(cfg),
        Mem.ACC: acc_shape(cfg), Mem.CYCLES: unsigned(cfg.counter_bits),
    }[mem]


def mem_depth(cfg, mem):
    return {
        Mem.PROG: cfg.max_layers * cfg.desc_words, Mem.WEIGHT: cfg.weight_depth,
        Mem.BIAS: cfg.param_depth // cfg.drain_lanes,
        Mem.RQ: cfg.param_depth // cfg.drain_lanes,
        Mem.ACT0: cfg.act_depth, Mem.ACT1: cfg.act_depth,
        Mem.ACC: cfg.acc_depth, Mem.CYCLES: cfg.max_layers,
    }[mem]


@functools.lru_cache(maxsize=256)
def mem_width(cfg, mem):
    """Bits of one word of ``mem`` (cached: the host driver asks it for every word it reads
    back, and building the layout each time was a third of decoding a simulation's replies)."""
    shape = mem_shape(cfg, mem)
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width
