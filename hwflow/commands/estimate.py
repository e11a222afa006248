"""`hwgen estimate`: resources, fit, Fmax, latency and energy of a board build, in a second."""

import json

NAME = "estimate"
HELP = "estimate LUT/FF/BRAM/DSP, fit, Fmax, latency and energy of the overlay on a board"

__all__ = ["NAME", "HELP", "add_arguments", "run", "board_estimate", "print_estimate",
           "check_fits"]


def add_arguments(p):
    from hwflow.commands.synth import add_board_arguments

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    add_board_arguments(p)
    p.add_argument("--json", action="store_true", help="print the estimate as one JSON object")


def board_estimate(model, board, array=None, choice=None):
    """:func:`boards.estimate.estimate` of ``model`` on ``board`` (``choice``: its
    ``(AccelConfig, style)``), configuration errors as :class:`~hwgen.errors.ConfigError`."""
    from boards.estimate import estimate
    from hwgen.errors import ConfigError

    try:
        return estimate(board.value, model, array, choice=choice)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_fits(est):
    """Raise :class:`~hwgen.errors.DoesNotFitError` naming the first resource the estimate
    says is short (need and have), or the Fmax under the board clock."""
    from hwgen.errors import DoesNotFitError

    where = f"{est['board']} ({est['device']})"
    for name, f in est["fit"].items():
        if not f["ok"]:
            raise DoesNotFitError(f"{where}: the estimate says the design needs {f['need']}"
                                  f" {name.upper()} but the device has {f['have']}"
                                  " (--force builds anyway)")
    if est["fmax_mhz"] < est["target_mhz"]:
        raise DoesNotFitError(f"{where}: the estimated Fmax {est['fmax_mhz']:.1f} MHz is under"
                              f" the {est['target_mhz']:g} MHz board clock (--force builds"
                              " anyway)")


def print_estimate(est, indent="  "):
    """The estimate's lines for the terminal (also under ``generate --board`` and ``synth``)."""
    fit = est["fit"]
    cells = "  ".join(f"{k.upper()} {fit[k]['need']}/{fit[k]['have']}"
                      + ("" if fit[k]["ok"] else " (short)") for k in fit)
    print(f"{indent}estimate: {cells}; {'fits' if est['fits'] else 'DOES NOT FIT'}")
    t = est["timing"]
    print(f"{indent}Fmax ~{est['fmax_mhz']:.1f} MHz; {est['cycles']} cycles per inference:"
          f" {t['board_clock']['latency_us']} us, {t['board_clock']['inferences_per_s']}/s at"
          f" {t['board_clock']['mhz']:g} MHz; {t['fmax']['latency_us']} us,"
          f" {t['fmax']['inferences_per_s']}/s at Fmax")
    e = est["energy"]
    fpga = e["fpga"]
    board = (f"; board ~{fpga['energy_uj']:.2f} uJ (+-{fpga['uncertainty']:.0%}) at"
             f" {fpga['power_mw']:.1f} mW" if fpga else "; no board power data")
    print(f"{indent}energy per inference: 45 nm {e['asic_45nm_pj'] / 1e6:.3f} uJ"
          f" (MACs {e['asic_45nm_mac_pj'] / 1e6:.3f}, memories"
          f" {e['asic_45nm_memory_pj'] / 1e6:.3f}){board}")


def run(args):
    from quantflow.serialize import load

    est = board_estimate(load(args.qdir), args.board, args.array)
    if args.json:
        print(json.dumps(est, sort_keys=True))
        return 0
    print(f"{est['board']} ({est['device']}), array {est['array'][0]}x{est['array'][1]},"
          f" W{est['weight_bits']}A{est['act_bits']}, multipliers in {est['multipliers']}s")
    print_estimate(est)
    return 0
