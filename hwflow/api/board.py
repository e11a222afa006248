"""``synth`` and ``run``: the overlay built for a board (or an ASIC's gates), and run on it."""

import enum
import json
from pathlib import Path

from . import values
from .results import AsicResult, RunResult, SynthResult

__all__ = ["Target", "synth", "run", "run_on_link"]


class Target(enum.Enum):
    """What :func:`synth` builds for: an FPGA board's bitstream, or an ASIC's gate netlist
    (:mod:`boards.asic`)."""

    FPGA = "fpga"
    ASIC = "asic"


def _quiet(text, done=None, total=None):
    pass


def _check_synth_out(out):
    """``out`` as a folder :func:`synth` may replace (empty, or an earlier synth folder)."""
    from quantflow.errors import UserError
    from quantflow.fsutil import check_out

    if out is None:
        return None
    out = Path(out)
    check_out(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir())
                                              or (out / "report.json").exists())):
        # atomic_dir replaces the whole folder: never do that to something we did not write.
        raise UserError(f"{out}: refusing to replace it, it is not an hwgen synth folder")
    return out


def _write_out(out, folder, names, doc):
    """All or nothing: ``out`` appears with the files of ``folder`` and report.json together."""
    import shutil

    from quantflow.fsutil import atomic_dir

    with atomic_dir(out) as tmp:
        for name in names:
            shutil.copy2(Path(folder) / name, tmp / name)
        (tmp / "report.json").write_text(json.dumps(doc, indent=1) + "\n")


def synth(qdir, *, board=None, target="fpga", array=None, liberty=None, force=False, out=None,
          progress=None):
    """Build ``qdir``'s overlay (``hwgen synth``): for an FPGA ``board``, with its UART bridge
    through Yosys and nextpnr (minutes; cached by digest); with ``target="asic"``, Yosys's
    generic gates per module (``liberty``: map to that cell library and report its area).

    The estimate is checked first (``force``: build anyway); without ``array``, a build that
    does not fit where the estimate said it would falls back to the next smaller overlay
    (``hwgen: notice:`` on stderr). ``out``: a folder for the bitstream, logs and
    ``report.json`` (replaced atomically; default: only the build cache).

    Returns
    -------
    SynthResult, or AsicResult for ``target="asic"``

    Raises
    ------
    quantflow.errors.UserError
        A bad folder, board, array or ``out``; a design the estimate says cannot fit
        (:class:`~hwgen.errors.DoesNotFitError`); a failed build.
    """
    from quantflow.errors import UserError

    target = values.member("--target", Target, target)
    board, array = values.board(board), values.array(array)
    progress = progress or _quiet
    if target is Target.ASIC:
        return _asic(qdir, board, array, liberty, out)
    if liberty is not None:
        raise UserError("--liberty applies to --target asic only")
    if board is None:
        raise UserError("--target fpga needs --board NAME")
    return _fpga(qdir, board, array, out, force, progress)


def _fpga(qdir, board, array, out, force, progress):
    import time

    from boards.build import board_config, cache_root
    from quantflow.fsutil import check_cache_root
    from quantflow.program import compile_program

    from .quantize import load

    start = time.monotonic()
    target = board.value
    check_cache_root(cache_root(), "HWGEN_BUILD_CACHE")
    out = _check_synth_out(out)
    model = load(qdir)
    cfg, style = values.configured(board_config, target, model, array)
    compile_program(model, cfg)  # the model must run on this overlay (DoesNotFitError)
    result, cfg, style, design, est, tried = _build(model, board, array, cfg, style, force,
                                                    progress)
    doc = {
        "board": target.name, "device": target.device.name, "family": target.family,
        "array": [cfg.rows, cfg.cols], "weight_bits": cfg.weight_bits,
        "act_bits": cfg.act_bits, "multipliers": style, "config_digest": cfg.digest,
        "memories": design.about["memories"], "uart_divisor": design.divisor,
        "verilog_sha256": result.verilog,
        **result.report.to_json(),
        "bitstream": result.bitstream if out is None else out / result.bitstream.name,
        "build_folder": result.folder, "cached": result.cached,
        "lut_mapper": result.lut_mapper,
        "wall_seconds": round(time.monotonic() - start, 1),
        "estimate": est, "arrays_that_did_not_fit": tried,
    }
    res = SynthResult.from_dict(doc, out=out)
    if out is not None:
        _write_out(out, result.folder, (result.bitstream.name, "top.rpt", "top.tim",
                                        "top.report.json", "top.stat.json"), res.to_dict())
    return res


def _build(model, board, array, cfg, style, force, progress):
    """Build ``cfg`` for ``board`` after checking its estimate (unless ``force``); without
    ``array``, a build that does not fit where the estimate said it would falls back to the
    next overlay board_config would take (a smaller array), with a notice. Return the build,
    the overlay built (cfg, style, design), its estimate and the arrays that did not fit."""
    from boards.build import board_design, build
    from boards.estimate import NotCalibratedError
    from boards.overlay import board_configs
    from hwgen.errors import DoesNotFitError
    from quantflow.fsutil import notice
    from quantflow.program import compile_program

    from .hardware import check_fits, model_estimate

    target = board.value
    tried = []
    fallbacks = iter(()) if array is not None else _after(board_configs(target, model), cfg)
    while True:
        try:
            est = model_estimate(model, board, array, choice=(cfg, style))
        except NotCalibratedError:
            est = None  # an uncalibrated family builds without the check
        if est is not None and not force:
            check_fits(est)  # before Yosys: an 8x8 array on the iCEBreaker fails in a second
        design = board_design(target, model, cfg=cfg)
        try:
            progress(f"Yosys and nextpnr for {target.name}, array {cfg.rows}x{cfg.cols} (cached"
                     f" by digest; a build takes 1-3 minutes, 4-7 on the Tang Nano 9K)")
            return build(target, design), cfg, style, design, est, tried
        except DoesNotFitError as e:
            nxt = next(fallbacks, None)
            if nxt is None:
                raise
            notice(f"{e}; the estimate said it would fit: building the next overlay,"
                   f" {nxt[0].rows}x{nxt[0].cols} W{nxt[0].weight_bits}A{nxt[0].act_bits}")
            tried.append([cfg.rows, cfg.cols])
            cfg, style = nxt[0], nxt[1]
            compile_program(model, cfg)


def _after(choices, cfg):
    """The overlays of ``choices`` after ``cfg`` that the estimate does not rule out."""
    seen = False
    for c in choices:
        if seen and c[2] is not False:
            yield c
        seen = seen or c[0] == cfg


def _asic(qdir, board, array, liberty, out):
    from boards.asic import asic_report
    from quantflow.errors import UserError

    from .quantize import load

    if board is not None:
        raise UserError("--target asic takes no --board")
    if liberty is not None and not Path(liberty).is_file():
        raise UserError(f"{liberty}: no such Liberty file")
    out = _check_synth_out(out)
    model = load(qdir)
    doc = values.configured(asic_report, model, array, liberty=liberty)
    if out is not None:
        _write_out(out, doc["folder"], ("top.v", "asic.ys", "stat.json", "yosys.log"), doc)
    return AsicResult(report=doc, out=out)


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


def run(qdir, *, board="icebreaker", port=None, data=None, array=None, images=10,
        timeout=5.0, progress=None):
    """Run ``images`` test images on a board programmed by :func:`synth` (and ``hwgen
    program``), over its serial port ``port`` (default: found by the board's USB id), and
    compare the logits with the integer reference (``hwgen run``).

    Returns
    -------
    RunResult
        ``bit_exact == images`` when every image matched.
    """
    import asyncio

    import numpy as np

    from boards.build import board_config
    from boards.serial_link import SerialLink, find_port
    from hwgen.designs import images_for
    from quantflow import reference

    from .quantize import load

    board, array = values.board(board), values.array(array)
    images = values.non_negative("--images", images)
    progress = progress or _quiet
    target = board.value
    model = load(qdir)
    # the same overlay hwgen synth builds
    cfg, _ = values.configured(board_config, target, model, array)
    xs, ys = images_for(model, images, data)
    port = port or find_port(target.name)
    link = SerialLink(port, target.baud, cfg.host_bits, timeout=timeout)
    try:
        progress(f"{target.name} on {port}: loading the program and running {len(xs)}"
                 f" images at {target.baud} baud")
        logits, cycles = asyncio.run(run_on_link(link, model, cfg, xs))
    finally:
        link.close()
    want = reference.run(model, xs)[-1]
    got = np.stack([np.asarray(v).reshape(want.shape[1:]) for v in logits])
    exact = int(sum(np.array_equal(g, w) for g, w in zip(got, want, strict=True)))
    pred = got.reshape(len(xs), -1).argmax(axis=1)
    return RunResult(board=target.name, images=len(xs), bit_exact=exact,
                     accuracy=float(np.mean(pred == ys)), cycles=cycles,
                     seconds_per_image_at_clock=float(np.mean(cycles))
                     / (target.clock_mhz * 1e6))
