"""``hwgen synth --target asic``: Yosys's generic synthesis, gates and transistors per module.

Not a command of its own (``hwflow.cli`` lists it nowhere): the ``asic`` half of ``synth``,
kept apart so that ``synth`` stays one screen per target.
"""

import json
from pathlib import Path

__all__ = ["run_asic", "print_asic"]


def run_asic(args):
    """Run :func:`boards.asic.asic_report` for ``args`` (``synth``'s namespace) and print it."""
    from boards.asic import asic_report
    from hwgen.errors import ConfigError, UserError
    from quantflow.serialize import atomic_dir, load

    if args.board is not None:
        raise UserError("--target asic takes no --board")
    if args.liberty is not None and not Path(args.liberty).is_file():
        raise UserError(f"{args.liberty}: no such Liberty file")
    out = Path(args.out) if args.out is not None else None
    if out is not None and out.exists() and not (out.is_dir() and (
            not any(out.iterdir()) or (out / "report.json").exists())):
        raise UserError(f"{out}: refusing to replace it, it is not an hwgen synth folder")
    model = load(args.qdir)
    try:
        doc = asic_report(model, args.array, liberty=args.liberty)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if out is not None:
        import shutil

        with atomic_dir(out) as tmp:
            for name in ("top.v", "asic.ys", "stat.json", "yosys.log"):
                shutil.copy2(Path(doc["folder"]) / name, tmp / name)
            (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        print_asic(doc)
    return 0


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
