"""`hwgen estimate`: resources, fit, Fmax, latency and energy of a board build, in a second."""

import json

NAME = "estimate"
HELP = "estimate LUT/FF/BRAM/DSP, fit, Fmax, latency and energy of the overlay on a board"

__all__ = ["NAME", "HELP", "add_arguments", "run", "print_estimate"]


def add_arguments(p):
    from hwflow.commands.synth import add_board_arguments

    p.add_argument("qdir", metavar="QDIR", help="QuantizedModel folder (hwgen quantize --out)")
    add_board_arguments(p)
    p.add_argument("--json", action="store_true", help="print the estimate as one JSON object")


def print_estimate(est, indent="  "):
    """The lines of an :class:`~hwflow.api.EstimateResult` for the terminal (also under
    ``generate --board`` and ``synth``)."""
    est = est.to_dict()
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
    from hwflow.api import estimate

    r = estimate(args.qdir, board=args.board, array=args.array)
    if args.json:
        print(json.dumps(r.to_dict(), sort_keys=True))
        return 0
    print(f"{r.board} ({r.device}), array {r.array[0]}x{r.array[1]},"
          f" W{r.weight_bits}A{r.act_bits}, multipliers in {r.multipliers}s")
    print_estimate(r)
    return 0
