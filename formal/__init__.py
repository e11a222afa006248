"""Formal proofs of the overlay with SymbiYosys (``smtbmc yices``), from Amaranth ``Assert`` /
``Assume`` on the real components of :mod:`hwgen`.

- :mod:`formal.requant`: the requantizer equals ``quantflow.numerics.requantize`` (k-induction);
- :mod:`formal.pe`: a PE's accumulator never overflows over a reduction of ``max_reduction``
  products (k-induction with strengthening invariants);
- :mod:`formal.streams`: the host streams lose and duplicate nothing (bounded);
- :mod:`formal.sequencer`: every run takes exactly the compiler's cycles (bounded);
- :mod:`formal.variants`: broken variants that must fail; :mod:`formal.proofs`: the list;
  ``python -m formal`` runs it.

It imports hwgen and quantflow; nothing imports it.
"""

__all__ = []
