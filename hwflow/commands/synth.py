"""`hwgen synth`: the overlay + UART bridge for a board, through Yosys and nextpnr (YoWASP)."""

import json

from hwflow.api.board import Target

NAME = "synth"
HELP = ("synthesize, place and route the overlay with a UART host bridge for an FPGA board,"
        " or (--target asic) synthesize it to generic CMOS gates")

__all__ = ["NAME", "HELP", "Target", "add_arguments", "add_board_arguments", "run",
           "default_array"]


def _target(value):
    import argparse

    try:
        return Target(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a target (fpga, asic)") from None


def _board(value):
    import argparse

    from boards import board_by_name
    try:
        return board_by_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_board_arguments(p, required=True, board_help="", array_help=None):
    """``--board`` and ``--array`` as ``synth``, ``estimate`` and ``generate`` take them."""
    from boards import Board
    from hwflow.commands.generate import array_shape

    names = ", ".join(b.value.name for b in Board)
    p.add_argument("--board", metavar="NAME", type=_board, required=required,
                   help=f"target board: {names}{board_help}")
    p.add_argument("--array", metavar="ROWSxCOLS", type=array_shape, default=None,
                   help=array_help or "MAC-array shape (default: the board's, e.g. 2x2 on"
                   " icebreaker, with columns widened to the input's digits at 2-3 activation"
                   " bits)")


def add_arguments(p):
    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    p.add_argument("--target", metavar="TARGET", type=_target, default=Target.FPGA,
                   help="fpga (a board's bitstream; needs --board) or asic (Yosys's generic"
                        " synthesis: gates and transistors per module, no FPGA cells)")
    add_board_arguments(p, required=False, board_help=" (with --target fpga)")
    p.add_argument("--liberty", metavar="FILE", default=None,
                   help="with --target asic: map to this standard-cell library's cells"
                        " (dfflibmap, abc -liberty) and report their area")
    p.add_argument("--force", action="store_true",
                   help="build even when the estimate says the design does not fit")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the bitstream, logs and report.json (replaced atomically;"
                        " default: only the build cache)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def default_array(target, model):
    """The board's array for ``model`` (:func:`boards.build.default_array`)."""
    from boards.build import default_array as board_array

    return board_array(target, model)


def run(args):
    from hwflow.api import synth
    from hwflow.commands.estimate import print_estimate
    from hwflow.commands.progress import phases

    with phases(f"checking {args.qdir} against the estimate") as phase:
        r = synth(args.qdir, board=args.board, target=args.target, array=args.array,
                  liberty=args.liberty, force=args.force, out=args.out, progress=phase)
    doc = r.to_dict()
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    if args.target is Target.ASIC:
        from hwflow.commands.synth_asic import print_asic
        print_asic(doc)
        return 0
    avail = doc["available"]

    def cell(key):
        have = avail.get(key)
        return f"{doc[key]}" + (f"/{have}" if have else "")
    print(f"{doc['board']} ({doc['device']}), array {doc['array'][0]}x{doc['array'][1]},"
          f" W{doc['weight_bits']}A{doc['act_bits']}, multipliers in {doc['multipliers']}s")
    print(f"  LUT {cell('lut')}  FF {doc['ff']}  BRAM {cell('bram')}  SPRAM {cell('spram')}"
          f"  DSP {cell('dsp')}")
    verdict = "meets" if doc["fmax_mhz"] >= doc["target_mhz"] else "MISSES"
    print(f"  Fmax {doc['fmax_mhz']:.2f} MHz, {verdict} the {doc['target_mhz']:g} MHz board"
          f" clock")
    if doc.get("lut_mapper", "abc9") != "abc9":
        print(f"  LUT mapping by Yosys's {doc['lut_mapper']} (abc9 asserted on this netlist)")
    if doc["critical_path"]:
        cp = doc["critical_path"]
        print(f"  critical path {cp['delay_ns']:.1f} ns, {cp['logic_levels']} logic levels:"
              f" {cp['from']} -> {cp['to']}")
    print(f"  {'module':12s} {'LUT':>6s} {'FF':>6s} {'BRAM':>4s} {'SPRAM':>5s} {'DSP':>4s}"
          "  (Yosys cells)")
    for name, m in _grouped(doc["modules"]).items():
        print(f"  {name:12s} {m['lut']:6d} {m['ff']:6d} {m['bram']:4d} {m['spram']:5d}"
              f" {m['dsp']:4d}")
    if r.estimate is not None:
        _print_components(doc)
        print_estimate(r.estimate)
    print(f"  bitstream {doc['bitstream']} ({'cached, ' if doc['cached'] else ''}"
          f"{doc['wall_seconds']} s)")
    return 0


def _grouped(modules):
    """The breakdown for the screen: the buffers summed as ``memories`` (report.json keeps
    each ``mem_*``)."""
    out = {}
    for name, m in modules.items():
        key = "memories" if name.startswith("mem_") else name
        acc = out.setdefault(key, dict.fromkeys(m, 0))
        for k, v in m.items():
            acc[k] += v
    return out


def _print_components(doc):
    """Estimated against real Yosys cells per estimated component (boards.estimate)."""
    from boards.estimate import component_of

    real = {}
    for name, m in doc["modules"].items():
        r = real.setdefault(component_of(name), {"lut": 0, "ff": 0})
        r["lut"] += m["lut"]
        r["ff"] += m["ff"]
    cells = ", ".join(f"{c} {e['lut']}/{real.get(c, {}).get('lut', 0)}"
                      for c, e in doc["estimate"]["modules"].items())
    print(f"  estimated/real LUT cells per component: {cells}")
