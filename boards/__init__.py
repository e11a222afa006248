"""Open FPGA board targets (iCEBreaker, ULX3S, OrangeCrab): synthesis with Yosys and nextpnr.

Filled in by the boards issue; the package exists so the layout and the distribution are whole.
"""

__all__ = []
