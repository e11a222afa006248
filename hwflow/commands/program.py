"""`hwgen program`: load the bitstream `hwgen synth` built into a board (openFPGALoader)."""

NAME = "program"
HELP = "load a bitstream built by `hwgen synth` into a board over USB (openFPGALoader)"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(p):
    from hwflow.commands.synth import _board

    p.add_argument("build", metavar="BUILD",
                   help="the `hwgen synth --out` folder, or the bitstream file")
    p.add_argument("--board", metavar="NAME", type=_board, required=True,
                   help="the board the bitstream was built for")
    p.add_argument("--flash", action="store_true",
                   help="write the configuration flash, so the board keeps the design after a"
                        " power cycle (the iCEBreaker and the OrangeCrab always load flash)")
    p.add_argument("--cable", metavar="NAME", default=None,
                   help="openFPGALoader cable name instead of the board's own (e.g. ft2232)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the openFPGALoader command instead of running it")


def run(args):
    import shlex

    from boards.program import bitstream_of, command, program

    target = args.board.value
    bit = bitstream_of(target, args.build)
    cmd = command(target, bit, args.flash, args.cable)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    from hwflow.commands.progress import phases

    with phases(f"openFPGALoader: loading {bit} into the {target.name}"):
        program(target, bit, args.flash, args.cable)
    print(f"{target.name}: loaded {bit}; run it with `hwgen run QDIR --board {target.name}`")
    return 0
