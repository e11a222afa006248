"""`hwgen synth`: the overlay + UART bridge for a board, through Yosys and nextpnr (YoWASP)."""

import enum
import json
from pathlib import Path

NAME = "synth"
HELP = ("synthesize, place and route the overlay with a UART host bridge for an FPGA board,"
        " or (--target asic) synthesize it to generic CMOS gates")

__all__ = ["NAME", "HELP", "Target", "add_arguments", "add_board_arguments", "run",
           "synthesize", "default_array"]


class Target(enum.Enum):
    """What ``hwgen synth`` builds for: an FPGA board's bitstream, or an ASIC's gate netlist
    (:mod:`boards.asic`)."""

    FPGA = "fpga"
    ASIC = "asic"


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


def synthesize(qdir, board, array=None, out=None, *, force=False):
    """Build ``qdir``'s overlay for ``board``; return the report dict (``--json``'s keys).

    ``force`` builds even when the estimate says the design cannot fit."""
    import shutil
    import time

    from boards.build import board_config, board_design, build, cache_root
    from boards.overlay import board_configs
    from hwflow.commands.progress import phases
    from hwgen.errors import DoesNotFitError
    from quantflow.fsutil import notice
    from boards.estimate import NotCalibratedError
    from hwflow.commands.estimate import board_estimate, check_fits
    from hwgen.errors import ConfigError, UserError
    from quantflow.fsutil import atomic_dir, check_cache_root, check_out
    from quantflow.program import compile_program
    from quantflow.serialize import load

    start = time.monotonic()
    target = board.value
    check_cache_root(cache_root(), "HWGEN_BUILD_CACHE")
    if out is not None:
        out = Path(out)
        check_out(out)
        if out.exists() and not (out.is_dir() and (not any(out.iterdir())
                                                  or (out / "report.json").exists())):
            # atomic_dir replaces the whole folder: never do that to something we did not write.
            raise UserError(f"{out}: refusing to replace it, it is not an hwgen synth folder")
    model = load(qdir)
    fallbacks_used = []
    try:
        cfg, style = board_config(target, model, array)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    compile_program(model, cfg)  # the model must run on this overlay (DoesNotFitError)
    # Without --array, a real build that does not fit where the estimate said it would falls
    # back to the next overlay board_config would take (a smaller array), with a notice.
    fallbacks = iter(()) if array is not None else _after(board_configs(target, model), cfg)
    while True:
        try:
            est = board_estimate(model, board, array, choice=(cfg, style))
        except NotCalibratedError:
            est = None  # an uncalibrated family builds without the check
        if est is not None and not force:
            check_fits(est)  # before Yosys: an 8x8 array on the iCEBreaker fails in a second
        design = board_design(target, model, cfg=cfg)
        rows, cols = cfg.rows, cfg.cols
        try:
            with phases(f"Yosys and nextpnr for {target.name}, array {rows}x{cols} (cached"
                        f" by digest; a build takes 1-3 minutes, 4-7 on the Tang Nano 9K)"):
                result = build(target, design)
            break
        except DoesNotFitError as e:
            nxt = next(fallbacks, None)
            if nxt is None:
                raise
            notice(f"{e}; the estimate said it would fit: building the next overlay,"
                   f" {nxt[0].rows}x{nxt[0].cols} W{nxt[0].weight_bits}A{nxt[0].act_bits}")
            cfg, style = nxt[0], nxt[1]
            compile_program(model, cfg)
            fallbacks_used.append([rows, cols])
    rep = result.report
    bitstream = result.bitstream if out is None else Path(out) / result.bitstream.name
    doc = {
        "board": target.name, "device": target.device.name, "family": target.family,
        "array": [rows, cols], "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
        "multipliers": style, "config_digest": cfg.digest,
        "memories": design.about["memories"], "uart_divisor": design.divisor,
        "verilog_sha256": result.verilog,
        **rep.to_json(),
        "bitstream": str(bitstream), "build_folder": str(result.folder),
        "cached": result.cached, "wall_seconds": round(time.monotonic() - start, 1),
        "estimate": est,
        "arrays_that_did_not_fit": fallbacks_used,
    }
    if out is not None:
        # All or nothing: the folder appears with the bitstream, logs and report together.
        with atomic_dir(out) as tmp:
            for name in (result.bitstream.name, "top.rpt", "top.tim", "top.report.json",
                         "top.stat.json"):
                shutil.copy2(result.folder / name, tmp / name)
            (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def _after(choices, cfg):
    """The overlays of ``choices`` after ``cfg`` that the estimate does not rule out."""
    seen = False
    for c in choices:
        if seen and c[2] is not False:
            yield c
        seen = seen or c[0] == cfg


def run(args):
    from hwflow.commands.estimate import print_estimate
    from hwgen.errors import UserError

    if args.target is Target.ASIC:
        from hwflow.commands.synth_asic import run_asic
        return run_asic(args)
    if args.liberty is not None:
        raise UserError("--liberty applies to --target asic only")
    if args.board is None:
        raise UserError("--target fpga needs --board NAME")
    doc = synthesize(args.qdir, args.board, args.array, args.out, force=args.force)
    if args.json:
        print(json.dumps(doc, sort_keys=True))
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
    if doc["critical_path"]:
        cp = doc["critical_path"]
        print(f"  critical path {cp['delay_ns']:.1f} ns, {cp['logic_levels']} logic levels:"
              f" {cp['from']} -> {cp['to']}")
    print(f"  {'module':12s} {'LUT':>6s} {'FF':>6s} {'BRAM':>4s} {'SPRAM':>5s} {'DSP':>4s}"
          "  (Yosys cells)")
    for name, m in _grouped(doc["modules"]).items():
        print(f"  {name:12s} {m['lut']:6d} {m['ff']:6d} {m['bram']:4d} {m['spram']:5d}"
              f" {m['dsp']:4d}")
    if doc["estimate"] is not None:
        _print_components(doc)
    if doc["estimate"] is not None:
        print_estimate(doc["estimate"])
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
