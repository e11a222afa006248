"""``generate``, ``simulate`` and ``estimate``: a QuantizedModel on the overlay, in Verilog,
in a simulator and on a board's figures."""

import json
import os

from . import values
from .results import EstimateResult, GenerateResult, SimulateResult

__all__ = ["generate", "simulate", "estimate", "model_estimate", "check_fits"]


def estimate(qdir, *, board, array=None):
    """Resources, fit, Fmax, latency and energy of ``qdir``'s overlay on ``board``
    (``hwgen estimate``), in a second: no synthesis.

    Parameters
    ----------
    qdir : str, os.PathLike or QuantizeResult
        The QuantizedModel folder.
    board : str or boards.Board
        The target board (``"icebreaker"``, ...).
    array : str or (int, int), optional
        The MAC-array shape; default: the board's.

    Returns
    -------
    EstimateResult

    Raises
    ------
    quantflow.errors.UserError
        A bad folder, board or array, or a model the overlay cannot run.
    """
    from .quantize import load

    board, array = values.board(board), values.array(array)
    return model_estimate(load(qdir), board, array)


def model_estimate(model, board, array=None, choice=None):
    """:func:`estimate` of a loaded QuantizedModel on a :class:`boards.Board` (``choice``: the
    overlay's ``(AccelConfig, multiplier style)`` instead of the board's default)."""
    from boards.estimate import estimate as board_estimate

    return EstimateResult.from_dict(
        values.configured(board_estimate, board.value, model, array, choice=choice))


def check_fits(est):
    """Raise :class:`~hwgen.errors.DoesNotFitError` naming the first resource the estimate
    ``est`` (an :class:`EstimateResult`) says is short, or the Fmax under the board clock."""
    from hwgen.errors import DoesNotFitError

    where = f"{est.board} ({est.device})"
    for name, f in est.fit.items():
        if not f["ok"]:
            raise DoesNotFitError(f"{where}: the estimate says the design needs {f['need']}"
                                  f" {name.upper()} but the device has {f['have']}"
                                  " (--force builds anyway)")
    if est.fmax_mhz < est.target_mhz:
        raise DoesNotFitError(f"{where}: the estimated Fmax {est.fmax_mhz:.1f} MHz is under"
                              f" the {est.target_mhz:g} MHz board clock (--force builds"
                              " anyway)")


def _design(model, board, array, drain_lanes=1):
    """The configuration, or with ``board`` the :class:`hwgen.emit.Design` synth builds."""
    from hwgen.config import DEFAULT_ARRAY, AccelConfig

    if board is None:
        return values.configured(AccelConfig.for_model, model, array=array or DEFAULT_ARRAY,
                                 **_lanes(drain_lanes))
    _no_board_lanes(drain_lanes)
    from boards.overlay import board_design
    return values.configured(board_design, board.value, model, array)


def _lanes(drain_lanes):
    """The configuration override for ``drain_lanes`` (none for the default, one lane)."""
    n = values.positive("--drain-lanes", drain_lanes)
    return {} if n == 1 else {"drain_lanes": n}


def _no_board_lanes(drain_lanes):
    from quantflow.errors import UserError

    if _lanes(drain_lanes):
        raise UserError("--drain-lanes applies to the generic overlay; a board's overlay is"
                        " the board's decision (one drain lane)")


def generate(qdir, *, out, board=None, array=None, drain_lanes=1):
    """Write the overlay's Verilog and ``manifest.json`` for ``qdir`` into the folder ``out``
    (``hwgen generate``; replaced atomically).

    Without ``board`` the generic overlay of ``array`` (default 8x8) with ``drain_lanes``
    requantizers in its drain (``AccelConfig.drain_lanes``); with one, the design
    :func:`synth` builds for it (its array, multipliers, memories and UART bridge: the same
    files), and its estimate.

    Returns
    -------
    GenerateResult

    Raises
    ------
    quantflow.errors.UserError
        A bad folder, board or array; a model that does not fit or uses an unsupported op;
        an ``out`` that is not an earlier output.
    """
    from hwgen.emit import check_emittable, emit
    from quantflow.program import compile_program

    from .quantize import load

    board, array = values.board(board), values.array(array)
    out = values.path("--out", out)
    check_emittable(out)
    model = load(qdir)
    design = _design(model, board, array, drain_lanes)
    cfg = getattr(design, "cfg", design)
    program = compile_program(model, cfg)  # raises DoesNotFitError / UnsupportedOpError
    est = None if board is None else model_estimate(model, board, array)
    vpath, mpath = emit(design, out, program)
    return GenerateResult(verilog=vpath, manifest=mpath, digest=cfg.digest,
                          array=(cfg.rows, cfg.cols), acc_bits=cfg.acc_bits,
                          cycles_per_inference=sum(program.cycles), estimate=est, out=out,
                          config=cfg, program=program)


def simulate(qdir, *, sim="verilator", images=0, board=None, array=None, uart=False,
             data=None, seed=0, jobs=None, waves=None, out=None, quiet=True, progress=None,
             drain_lanes=1):
    """Run ``qdir`` on the overlay's Verilog in a simulator through cocotb and compare every
    layer's output with the integer reference (``hwgen simulate``).

    Parameters
    ----------
    sim : str or rtl_tests.runner.Sim
        ``"verilator"`` or ``"icarus"``.
    images : int
        Test images to run (0: the whole test set).
    board : str or boards.Board, optional
        Simulate the design :func:`synth` builds for this board instead of the generic one.
    array : str or (int, int), optional
        The MAC-array shape (default: the board's, else 8x8).
    drain_lanes : int
        Requantizers side by side in the generic overlay's drain (a power of two up to the
        array's rows; ``AccelConfig.drain_lanes``).
    uart : bool
        With ``board``: drive the board's top through its UART pins (slower).
    data : str or os.PathLike, optional
        Test images from this ``.npz`` (``x_test``, ``y_test``) instead of digits.
    seed, jobs
        The random seed; simulator processes (default: one per CPU core).
    waves : str or os.PathLike, optional
        Write an FST (Verilator) / VCD (Icarus) trace into this folder.
    out : str or os.PathLike, optional
        Also write the result's ``to_dict()`` as JSON to this file (atomically; the path is
        checked before the simulation).
    quiet : bool
        Simulator and build output to log files (``False``: on the terminal).
    progress : callable, optional
        ``progress(text, done=None, total=None)``: the phase being entered.

    Returns
    -------
    SimulateResult
        ``bit_exact`` tells whether every element matched.
    """
    from hwgen.config import DEFAULT_ARRAY
    from hwgen.errors import UserError
    from quantflow.fsutil import check_out_file
    from rtl_tests.simulate import simulate as run_simulation

    sim, board, array = values.sim(sim), values.board(board), values.array(array)
    images, seed = values.non_negative("--images", images), _int("--seed", seed)
    jobs = len(os.sched_getaffinity(0)) if jobs is None else values.positive("--jobs", jobs)
    waves, out = values.path("--waves", waves), values.path("--out", out)
    if uart and board is None:
        raise UserError("--uart simulates a board's top: it needs --board NAME")
    overrides = _lanes(drain_lanes) or None
    if board is not None:
        _no_board_lanes(drain_lanes)
    if out is not None:
        check_out_file(out, what="--out file")
    progress = progress or _quiet
    progress("loading the model and the test images")
    design = None
    if board is not None:
        from boards.overlay import board_design

        from .quantize import load
        design = values.configured(board_design, board.value, load(qdir), array)
    report = run_simulation(values.qdir(qdir), sim, images=images,
                            array=array or DEFAULT_ARRAY, waves=waves is not None, seed=seed,
                            data=data, test_dir=waves, quiet=quiet, design=design, uart=uart,
                            jobs=jobs, progress=progress, overrides=overrides)
    result = SimulateResult.from_dict(report.summary(), out=out)
    if out is not None:
        _write_json(out, result.to_dict())
    return result


def _int(option, value):
    from quantflow.errors import UserError

    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{option} must be an integer, not {value!r}")
    return value


def _quiet(text, done=None, total=None):
    pass


def _write_json(path, doc):
    """``doc`` as one JSON line in ``path``, atomically (a reader sees the old file or the
    whole new one); a refusal of the file system as one line."""
    from quantflow.errors import UserError
    from quantflow.fsutil import describe_os_error, write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, (json.dumps(doc) + "\n").encode())
    except OSError as e:
        raise UserError(f"{path}: cannot write the --out file ({describe_os_error(e)})") \
            from None
