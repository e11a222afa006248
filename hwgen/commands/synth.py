"""`hwgen synth`: the overlay + UART bridge for a board, through Yosys and nextpnr (YoWASP)."""

import json
from pathlib import Path

NAME = "synth"
HELP = "synthesize, place and route the overlay with a UART host bridge for an FPGA board"

__all__ = ["NAME", "HELP", "add_arguments", "run", "synthesize", "default_array"]


def _board(value):
    import argparse

    from boards import board_by_name
    try:
        return board_by_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p):
    from boards import Board
    from hwgen.commands.generate import array_shape

    names = ", ".join(b.value.name for b in Board)
    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    p.add_argument("--board", metavar="NAME", type=_board, required=True,
                   help=f"target board: {names}")
    p.add_argument("--array", metavar="ROWSxCOLS", type=array_shape, default=None,
                   help="MAC-array shape (default: the board's, e.g. 2x2 on icebreaker, with"
                        " columns widened to the input's digits at 2-3 activation bits)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the bitstream, logs and report.json (replaced atomically;"
                        " default: only the build cache)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def default_array(target, model):
    """The board's array for ``model`` (:func:`boards.build.default_array`)."""
    from boards.build import default_array as board_array

    return board_array(target, model)


def synthesize(qdir, board, array=None, out=None):
    """Build ``qdir``'s overlay for ``board``; return the report dict (``--json``'s keys)."""
    import shutil
    import time

    from boards.build import board_config, build
    from hwgen.errors import ConfigError, UserError
    from quantflow.program import compile_program
    from quantflow.serialize import atomic_dir, load

    start = time.monotonic()
    target = board.value
    if out is not None:
        out = Path(out)
        if out.exists() and not (out.is_dir() and (not any(out.iterdir())
                                                  or (out / "report.json").exists())):
            # atomic_dir replaces the whole folder: never do that to something we did not write.
            raise UserError(f"{out}: refusing to replace it, it is not an hwgen synth folder")
    model = load(qdir)
    try:
        cfg, style = board_config(target, model, array)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    rows, cols = cfg.rows, cfg.cols
    compile_program(model, cfg)  # the model must run on this overlay (DoesNotFitError)
    result = build(target, cfg)
    rep = result.report
    bitstream = result.bitstream if out is None else Path(out) / result.bitstream.name
    doc = {
        "board": target.name, "device": target.device.name, "family": target.family,
        "array": [rows, cols], "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
        "multipliers": style, "config_digest": cfg.digest,
        **rep.to_json(),
        "bitstream": str(bitstream), "build_folder": str(result.folder),
        "cached": result.cached, "wall_seconds": round(time.monotonic() - start, 1),
    }
    if out is not None:
        # All or nothing: the folder appears with the bitstream, logs and report together.
        with atomic_dir(out) as tmp:
            for name in (result.bitstream.name, "top.rpt", "top.tim"):
                shutil.copy2(result.folder / name, tmp / name)
            (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def run(args):
    doc = synthesize(args.qdir, args.board, args.array, args.out)
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
    print(f"  bitstream {doc['bitstream']} ({'cached, ' if doc['cached'] else ''}"
          f"{doc['wall_seconds']} s)")
    return 0
