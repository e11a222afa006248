"""Pack integer tensors into buffer words and back (shared by the compiler, hwgen and tests).

A word is a Python ``int`` holding ``lanes`` fields of ``bits`` each, lane 0 in the least
significant bits, two's complement for signed fields. Host words are the ``chunk_bits``-wide
pieces of a memory word, least significant first. Pure Python/numpy.
"""

import numpy as np

__all__ = ["pack_lanes", "unpack_lanes", "unpack_chunks", "to_chunks", "from_chunks",
           "sign_extend", "chunks_per_word"]


def pack_lanes(values, bits):
    """(n, lanes) integers -> list of n words, lane ``i`` at bits ``[i*bits, (i+1)*bits)``."""
    values = np.asarray(values, dtype=np.int64)
    if values.ndim != 2:
        raise ValueError(f"Values must be a 2-D array (words, lanes), not shape {values.shape!r}")
    n, lanes = values.shape
    if not 1 <= bits <= 62 or n == 0 or lanes == 0:
        mask = (1 << bits) - 1
        return [sum((int(v) & mask) << (i * bits) for i, v in enumerate(row))
                for row in values.tolist()]
    # Through the words' bytes, one Python integer per word (a program's weights are
    # thousands of words of many lanes).
    field = (values[:, :, None] >> np.arange(bits, dtype=np.int64)) & 1
    raw = np.packbits(field.reshape(n, lanes * bits).astype(np.uint8), axis=1,
                      bitorder="little")
    data, width = raw.tobytes(), raw.shape[1]
    return [int.from_bytes(data[i * width:(i + 1) * width], "little") for i in range(n)]


def unpack_lanes(words, lanes, bits, signed=False):
    """List of words -> (n, lanes) int64 array; the inverse of :func:`pack_lanes` (bits above
    the last lane are ignored). Vectorised through the words' bytes: a simulation reads back
    every layer of every image through it."""
    if not 1 <= bits <= 62:
        raise ValueError(f"Lane bits must be 1..62, not {bits!r}")
    n, total = len(words), lanes * bits
    if n == 0 or lanes == 0:
        return np.zeros((n, lanes), dtype=np.int64)
    nbytes = (total + 7) // 8
    keep = (1 << total) - 1
    raw = b"".join((int(w) & keep).to_bytes(nbytes, "little") for w in words)
    return _fields(np.frombuffer(raw, np.uint8).reshape(n, nbytes), total, lanes, bits, signed)


def _fields(raw, total, lanes, bits, signed):
    """(n, nbytes) little-endian bytes -> (n, lanes) fields of ``bits`` (the low ``total``)."""
    field = np.unpackbits(raw, axis=1, bitorder="little")[:, :total].reshape(len(raw), lanes,
                                                                             bits)
    out = field.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    if signed:
        out = np.where(out >> (bits - 1), out - (np.int64(1) << bits), out)
    return out


def unpack_chunks(chunks, per, chunk_bits, lanes, bits, signed=False):
    """Host words -> (n, lanes) int64: :func:`from_chunks` then :func:`unpack_lanes`, without
    a Python integer per word. ``chunks`` holds words of ``per`` host words each, least
    significant first; ``chunk_bits`` is a multiple of 8, at most 64, and the lanes fit in a
    word."""
    total = lanes * bits
    if not 1 <= bits <= 62 or chunk_bits % 8 or not 8 <= chunk_bits <= 64:
        raise ValueError(f"Lane bits must be 1..62 and host word bits a multiple of 8 up to"
                         f" 64, not {bits!r} and {chunk_bits!r}")
    if per < 1 or len(chunks) % per or total > per * chunk_bits:
        raise ValueError(f"{len(chunks)} host words are not whole words of {per} holding"
                         f" {lanes} lanes of {bits} bits")
    n = len(chunks) // per
    if n == 0 or lanes == 0:
        return np.zeros((n, lanes), dtype=np.int64)
    raw = np.asarray(chunks, dtype=np.uint64).astype("<u8").view(np.uint8)
    raw = raw.reshape(n, per, 8)[:, :, :chunk_bits // 8].reshape(n, per * chunk_bits // 8)
    return _fields(raw, total, lanes, bits, signed)


def sign_extend(value, bits):
    """Interpret the low ``bits`` of ``value`` as two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def chunks_per_word(width, chunk_bits):
    return max(1, -(-width // chunk_bits))


def to_chunks(word, width, chunk_bits):
    """A ``width``-bit word -> host words of ``chunk_bits``, least significant first."""
    word = int(word) & ((1 << width) - 1)
    mask = (1 << chunk_bits) - 1
    return [(word >> (i * chunk_bits)) & mask for i in range(chunks_per_word(width, chunk_bits))]


def from_chunks(chunks, width, chunk_bits):
    """Host words (least significant first) -> the ``width``-bit word they carry."""
    word = 0
    for i, c in enumerate(chunks):
        word |= (int(c) & ((1 << chunk_bits) - 1)) << (i * chunk_bits)
    return word & ((1 << width) - 1)
