"""`hwgen run`: run test images on a board over its UART, bit-exact against the reference."""

import json

NAME = "run"
HELP = "run a QuantizedModel on a board programmed by `hwgen synth`, over its serial port"

__all__ = ["NAME", "HELP", "add_arguments", "run", "run_on_link"]


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


async def run_on_link(link, model, cfg, xs):
    """Load ``model`` through ``link`` and run each input; return (logits list, cycles list).

    The same :class:`hwgen.host.Driver` as in simulation does the work."""
    from hwgen.host import Driver
    from quantflow.program import compile_program

    program = compile_program(model, cfg)
    driver = Driver(cfg, link)
    await driver.load(program)
    logits, cycles = [], []
    for x in xs:
        res = await driver.infer(program, x, every_layer=False)
        logits.append(res.outputs[-1])
        cycles.append(res.total_cycles)
    return logits, cycles


def run(args):
    import asyncio

    import numpy as np

    from boards.serial_link import SerialLink, find_port
    from hwgen.errors import ConfigError
    from hwgen.designs import images_for
    from quantflow import reference
    from quantflow.serialize import load

    from hwgen.errors import UserError

    if args.images < 0:
        raise UserError(f"--images must be a non-negative integer, not {args.images!r}")
    target = args.board.value
    model = load(args.qdir)
    from boards.build import board_config
    try:
        cfg, _ = board_config(target, model, args.array)  # the same overlay hwgen synth builds
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    xs, ys = images_for(model, args.images, args.data)
    port = args.port or find_port(target.name)
    link = SerialLink(port, target.baud, cfg.host_bits, timeout=args.timeout)
    from hwflow.commands.progress import phases

    try:
        with phases(f"{target.name} on {port}: loading the program and running {len(xs)}"
                    f" images at {target.baud} baud"):
            logits, cycles = asyncio.run(run_on_link(link, model, cfg, xs))
    finally:
        link.close()
    want = reference.run(model, xs)[-1]
    got = np.stack([np.asarray(v).reshape(want.shape[1:]) for v in logits])
    exact = int(sum(np.array_equal(g, w) for g, w in zip(got, want, strict=True)))
    pred = got.reshape(len(xs), -1).argmax(axis=1)
    doc = {"board": target.name, "images": len(xs), "bit_exact": exact,
           "accuracy": float(np.mean(pred == ys)), "cycles": cycles,
           "seconds_per_image_at_clock": float(np.mean(cycles)) / (target.clock_mhz * 1e6)}
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        print(f"{target.name}: {len(xs)} images, {exact} bit-exact with the reference,"
              f" accuracy {doc['accuracy']:.2%}, {int(np.mean(cycles))} cycles per image")
    return 0 if exact == len(xs) else 1
