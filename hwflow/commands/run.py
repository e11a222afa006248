"""`hwgen run`: run test images on a board over its UART, bit-exact against the reference."""

import json

NAME = "run"
HELP = "run a QuantizedModel on a board programmed by `hwgen synth`, over its serial port"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    from hwflow.commands.generate import array_shape
    from hwflow.commands.synth import _board

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    p.add_argument("--port", metavar="DEV", default=None,
                   help="serial port, e.g. /dev/ttyUSB1 (default: the board's USB UART, found"
                        " by its USB id, else the only USB serial port)")
    p.add_argument("--data", metavar="FILE.npz", default=None,
                   help="test images from this file (x_test, y_test) instead of digits")
    p.add_argument("--board", metavar="NAME", type=_board, default="icebreaker",
                   help="the board the bitstream was built for (%(default)s)")
    p.add_argument("--array", metavar="ROWSxCOLS", type=array_shape, default=None,
                   help="MAC-array shape the bitstream was built with (default: the board's)")
    p.add_argument("--images", metavar="N", type=int, default=10,
                   help="test images to run (%(default)s)")
    p.add_argument("--timeout", metavar="S", type=float, default=5.0,
                   help="seconds of silence before giving up on a reply (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    from hwflow import api
    from hwflow.commands.progress import phases

    with phases(f"{args.board.value.name}: loading the model") as phase:
        r = api.run(args.qdir, board=args.board, port=args.port, data=args.data, array=args.array,
                images=args.images, timeout=args.timeout, progress=phase)
    if args.json:
        print(json.dumps(r.to_dict(), sort_keys=True))
    else:
        print(f"{r.board}: {r.images} images, {r.bit_exact} bit-exact with the reference,"
              f" accuracy {r.accuracy:.2%}, {int(sum(r.cycles) / len(r.cycles))} cycles per"
              f" image")
    return 0 if r.bit_exact == r.images else 1
