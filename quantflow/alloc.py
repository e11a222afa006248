"""Activation-memory allocation for a DAG: each live tensor gets a bank and a base address.

Pure Python. Tensors are produced in layer order and stay until their last reader (a concat's
parts are one region, live from the first part to the last reader of the concat or of any
part). Placement is first fit over the two activation banks, lowest address first, so a chain
gets the classic ping-pong (input in bank 0, outputs alternating) and a DAG reuses the words of
dead tensors. A layer reads and writes through separate ports, so its input and output may
share a bank as long as their words do not overlap.
"""

from dataclasses import dataclass

__all__ = ["Region", "allocate"]


@dataclass(frozen=True)
class Region:
    """``words`` words at ``base`` in bank ``bank``, live over layers ``first..last``."""
    bank: int
    base: int
    words: int
    first: int
    last: int

    @property
    def end(self):
        return self.base + self.words


def _overlaps(a_first, a_last, region):
    return not (a_last < region.first or region.last < a_first)


def allocate(requests, fixed=(), banks=2):
    """Place ``requests`` (``(key, words, first, last)``, in production order).

    ``fixed`` are already placed :class:`Region` (``(key, region)``, e.g. the network input at
    bank 0, base 0). Returns ``{key: Region}``. Never fails: the caller compares the banks' high
    water marks with the memory depth (a clear need/have error).
    """
    placed = dict(fixed)
    for key, words, first, last in requests:
        best = None
        for bank in range(banks):
            live = sorted((r for r in placed.values()
                           if r.bank == bank and _overlaps(first, last, r)),
                          key=lambda r: r.base)
            base = 0
            for r in live:
                if base + words <= r.base:
                    break
                base = max(base, r.end)
            if best is None or base < best[1]:
                best = (bank, base)
        placed[key] = Region(best[0], best[1], words, first, last)
    return placed
