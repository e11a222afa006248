"""Packing integer tensors into buffer words and host chunks, and back."""

import numpy as np
import pytest

from quantflow.packing import (chunks_per_word, from_chunks, pack_lanes, sign_extend, to_chunks,
                               unpack_lanes)


@pytest.mark.parametrize("bits,lanes,signed", [(2, 8, True), (3, 5, False), (8, 4, True),
                                               (25, 1, True), (4, 64, True)])
def test_lanes_roundtrip(bits, lanes, signed):
    rng = np.random.default_rng(bits * 100 + lanes)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = rng.integers(lo, hi + 1, size=(7, lanes))
    values[0, :] = lo
    values[1, :] = hi
    words = pack_lanes(values, bits)
    assert all(0 <= w < 1 << (bits * lanes) for w in words)
    assert np.array_equal(unpack_lanes(words, lanes, bits, signed), values)


def test_lane_order():
    assert pack_lanes([[1, 2, 3]], 4) == [0x321]
    assert pack_lanes([[-1, 0]], 3) == [0b000111]


@pytest.mark.parametrize("width,chunk", [(1, 32), (32, 32), (33, 32), (256, 32), (221, 8)])
def test_chunks_roundtrip(width, chunk):
    word = (1 << width) - 1 - (1 << (width // 2))
    chunks = to_chunks(word, width, chunk)
    assert len(chunks) == chunks_per_word(width, chunk) == -(-width // chunk)
    assert all(0 <= c < 1 << chunk for c in chunks)
    assert from_chunks(chunks, width, chunk) == word


def test_sign_extend():
    assert sign_extend(0b111, 3) == -1
    assert sign_extend(0b011, 3) == 3
    assert sign_extend(-5 & 0xFF, 8) == -5


def test_pack_rejects_1d():
    with pytest.raises(ValueError, match=r"^Values must be a 2-D array \(words, lanes\), not"
                                         r" shape \(3,\)$"):
        pack_lanes([1, 2, 3], 4)


@pytest.mark.parametrize("lanes,bits,signed", [(8, 4, False), (64, 4, True), (2, 32, True),
                                               (3, 7, False), (1, 62, True), (16, 1, False)])
def test_unpack_lanes_matches_the_field_by_field_definition(lanes, bits, signed):
    """Every field of random words (wide ones too, with bits above the last lane set) is
    ``(word >> (i * bits)) & mask``, sign-extended when asked."""
    import random

    rng = random.Random(lanes * 100 + bits)
    words = [rng.getrandbits(lanes * bits + 5) for _ in range(20)]
    got = unpack_lanes(words, lanes, bits, signed)
    mask = (1 << bits) - 1
    want = [[(sign_extend if signed else (lambda v, b: v))((w >> (i * bits)) & mask, bits)
             for i in range(lanes)] for w in words]
    assert got.dtype == np.int64 and got.tolist() == want
