"""``hwgen synth --target asic``'s screen: Yosys's generic gates and transistors per module.

Not a command of its own (``hwflow.cli`` lists it nowhere): the ``asic`` half of ``synth``'s
output (the work is :func:`hwflow.api.synth` with ``target="asic"``), kept apart so that
``synth`` stays one screen per target.
"""

from pathlib import Path

__all__ = ["print_asic"]


def print_asic(doc):
    """The report for the terminal: one line per module group, then the totals."""
    area = doc["liberty"] is not None
    last = doc["measure"]
    print(f"asic (generic {'cells of ' + Path(doc['liberty']).name if area else 'CMOS gates'}),"
          f" array {doc['array'][0]}x{doc['array'][1]}, W{doc['weight_bits']}A{doc['act_bits']}"
          f", {doc['tool']}")
    print(f"  {'module':12s} {'gates':>8s} {'FFs':>7s} {last:>12s} {'macros':>6s}")
    for name, g in doc["groups"].items():
        print(f"  {name:12s} {g['gates']:8d} {g['ffs']:7d} {g[last]:12g} {g['macros']:6d}")
    t = doc["total"]
    print(f"  {'total':12s} {t['gates']:8d} {t['ffs']:7d} {t[last]:12g} {t['macros']:6d}"
          f"  (+ {t['memory_bits']} bits in {len(doc['memories'])} SRAM macros)")
    e = doc["energy"]
    print(f"  {doc['cycles']} cycles per inference; energy per inference 45 nm"
          f" {e['asic_45nm_pj'] / 1e6:.3f} uJ (MACs {e['asic_45nm_mac_pj'] / 1e6:.3f}, memories"
          f" {e['asic_45nm_memory_pj'] / 1e6:.3f})")
    print(f"  netlist stats in {doc['folder']} ({'cached, ' if doc['cached'] else ''}"
          f"{doc['wall_seconds']} s)")
