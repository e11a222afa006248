"""The API's results: frozen dataclasses whose ``to_dict()`` is the command's ``--json``.

Every result's fields are the keys of the JSON object its command prints, in that order, and
:meth:`Result.to_dict` is the one place that document is made (``hwgen CMD --json`` prints
``result.to_dict()``): paths become strings, tuples lists, enums their values and a nested
result its own ``to_dict()``. Fields that are not in the document (the QuantizedModel, the
configuration, the Program) carry ``metadata={"json": False}`` and compare as equal.
"""

import enum
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["Result", "OverlayResult", "QuantizeResult", "GenerateResult", "SimulateResult",
           "EstimateResult", "SynthResult", "RunResult", "AsicResult", "Status", "StageResult",
           "BuildResult"]


def _extra(default=None):
    """A field kept out of ``to_dict()`` (bulky objects for Python callers)."""
    return field(default=default, compare=False, repr=False, metadata={"json": False})


def _optional():
    """A key the document holds only when the value is not ``None``."""
    return field(default=None, metadata={"omit_none": True})


def _jsonable(value):
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Result:
    """Base of the results: ``to_dict()`` gives the JSON document of the fields."""

    def to_dict(self):
        """The command's ``--json`` object (JSON types only: ``json.dumps`` takes it)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("json", True) and not (f.metadata.get("omit_none")
                                                     and value is None):
                out[f.name] = _jsonable(value)
        return out

    @classmethod
    def from_dict(cls, doc, **extra):
        """The result of a document a lower layer built (its keys are the fields)."""
        return cls(**doc, **extra)


@dataclass(frozen=True)
class QuantizeResult(Result):
    """:func:`hwflow.api.quantize`: the figures of a quantization and where it was saved.

    ``method`` is the label of what ran (``auto`` or another recipe's name, a range method,
    ``data-free``, ``+qat`` appended; ``qonnx`` for an import), ``recipe`` the recipe chosen,
    ``float_accuracy``/``quant_accuracy`` fractions 0..1 on the test split (mean squared
    errors when ``metric`` is ``mse``; the float figure is ``None`` for a QONNX import),
    ``validation`` where the choice was made (``source``, ``images``) and ``candidates`` every
    trial of it. A QONNX import has ``approximate`` (what the import could not keep exactly)
    instead of ``validation`` and ``candidates``. ``qmodel`` is the QuantizedModel.
    """

    model: str
    wbits: int
    abits: int
    input_bits: int
    method: str
    recipe: str | None
    w_method: str | None
    a_method: str | None
    w_grid: str | None
    float_accuracy: float | None
    quant_accuracy: float
    metric: str
    out: Path
    validation: dict | None = None
    candidates: list = field(default_factory=list)
    approximate: list | None = _optional()
    qmodel: object = _extra()

    def to_dict(self):
        doc = super().to_dict()
        if self.approximate is not None:  # a QONNX import: no choice was made
            del doc["validation"], doc["candidates"]
        return doc


@dataclass(frozen=True)
class OverlayResult(Result):
    """The overlay a board result is about, its first keys: the board, its device and
    family, the MAC array ``[rows, cols]``, the lanes' weight and activation bits, the
    multiplier style and the configuration's digest."""

    board: str
    device: str
    family: str
    array: list
    weight_bits: int
    act_bits: int
    multipliers: str
    config_digest: str


@dataclass(frozen=True)
class EstimateResult(OverlayResult):
    """:func:`hwflow.api.estimate` (built by :func:`boards.estimate.estimate`): the overlay on
    a board in a second, no synthesis.

    ``lut``, ``ff``, ``bram``, ``spram``, ``dsp`` the resources; ``fit`` each one's ``need``,
    ``have`` and ``ok``; ``fits`` all of them and ``fmax_mhz >= target_mhz``; ``cycles`` and
    ``macs`` per inference; ``timing`` latency and throughput at the board clock and at Fmax;
    ``energy`` per inference (45 nm ASIC figures in pJ, ``fpga`` the board's or ``None``);
    ``modules`` per component; ``model`` the fit the coefficients come from.
    """

    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    memories: dict
    modules: dict
    fit: dict
    fmax_mhz: float
    fits: bool
    target_mhz: float
    cycles: int
    macs: int
    timing: dict
    energy: dict
    model: dict


@dataclass(frozen=True)
class GenerateResult(Result):
    """:func:`hwflow.api.generate`: the Verilog and manifest written into ``out``.

    ``digest`` names the configuration, ``acc_bits`` the accumulator width,
    ``cycles_per_inference`` the compiler's analytical count; ``estimate`` only with a board.
    ``config`` (:class:`hwgen.config.AccelConfig`) and ``program``
    (:class:`quantflow.program.Program`) are for Python callers.
    """

    verilog: Path
    manifest: Path
    digest: str
    array: tuple
    acc_bits: int
    cycles_per_inference: int
    estimate: EstimateResult | None = _optional()
    out: Path = _extra()
    config: object = _extra()
    program: object = _extra()


@dataclass(frozen=True)
class SimulateResult(Result):
    """:func:`hwflow.api.simulate` (built by :meth:`rtl_tests.simulate.SimReport.summary`):
    every layer's output compared with the integer reference.

    ``bit_exact`` when no element differed (``mismatches`` counts them, ``first_mismatches``
    lists image, layer, name, index, expected, got); ``accuracy`` top-1 of a classifier, or
    ``mse`` (mean squared error of the dequantized outputs) of a regression model such as the
    autoencoder, the other one ``None``; ``cycles_per_inference`` measured (median
    over the images) beside ``analytical_cycles_per_inference``; ``mac_utilization`` useful
    MACs over cycles times array MACs; ``layers`` the same per descriptor; ``design`` the
    simulated design (board, array, lanes, multipliers, memories, top, Verilog SHA-256s).
    ``out`` is the file the document was written to, if any.
    """

    simulator: str
    config_digest: str
    images: int
    mismatches: int | None
    bit_exact: bool
    first_mismatches: list
    accuracy: float | None
    mse: float | None
    cycles_per_inference: int
    analytical_cycles_per_inference: int
    mac_utilization: float
    layers: list
    seed: int | None
    waves: str | None
    sim_seconds: float | None
    sim_cycles: int | None
    play_seconds: float | None
    build_seconds: float
    wall_seconds: float
    design: dict | None
    out: Path | None = _extra()


@dataclass(frozen=True)
class SynthResult(OverlayResult):
    """:func:`hwflow.api.synth` for an FPGA board: the bitstream and its figures.

    ``lut`` .. ``dsp`` the placed design's resources out of ``available``, ``fmax_mhz``
    (``fits`` when it placed, routed and met ``target_mhz``), ``critical_path``, ``modules``
    per component (Yosys cells); ``verilog_sha256`` the files built (the same bytes
    ``simulate(board=...)`` runs); ``estimate`` what :func:`estimate` said beforehand (``None``
    for an uncalibrated family); ``arrays_that_did_not_fit`` the arrays tried first;
    ``lut_mapper`` Yosys's LUT mapper (``abc9``, or ``abc`` where the pinned Yosys's abc9
    asserted on the netlist). ``out`` the folder the bitstream, logs and ``report.json``
    were copied to, if any.
    ``lut`` .. ``modules`` are :class:`boards.reports.SynthReport`'s fields (the document
    spreads its ``to_json()``).
    """

    memories: dict
    uart_divisor: int | None
    verilog_sha256: dict
    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    fmax_mhz: float
    target_mhz: float
    fits: bool
    available: dict
    fmax_by_clock: dict
    critical_path: dict
    modules: dict
    bitstream: Path
    build_folder: Path
    cached: bool
    lut_mapper: str
    wall_seconds: float
    estimate: EstimateResult | None
    arrays_that_did_not_fit: list
    out: Path | None = _extra()


@dataclass(frozen=True)
class AsicResult(Result):
    """:func:`hwflow.api.synth` with ``target="asic"`` (built by
    :func:`boards.asic.asic_report`): Yosys's generic gates per module group.

    The document is kept whole in ``report`` (its keys depend on ``liberty``: with a cell
    library the groups carry areas); ``to_dict()`` returns it. ``out`` as for
    :class:`SynthResult`.
    """

    report: dict
    out: Path | None = _extra()

    def to_dict(self):
        return _jsonable(self.report)


@dataclass(frozen=True)
class RunResult(Result):
    """:func:`hwflow.api.run`: test images on a programmed board over its UART.

    ``bit_exact`` counts the images whose logits equal the integer reference's (all of them
    when it equals ``images``); ``cycles`` per image as the board counted them.
    """

    board: str
    images: int
    bit_exact: int
    accuracy: float
    cycles: list
    seconds_per_image_at_clock: float


class Status(enum.Enum):
    """What :func:`hwflow.api.build` did with a stage."""

    BUILT = "built"
    UP_TO_DATE = "up to date"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StageResult(Result):
    """One stage of :func:`hwflow.api.build`: ``status``, the ``seconds`` it ran (0 when
    reused), the digest of its ``inputs`` and its ``outputs`` (``{path in the build folder:
    SHA-256}``, as ``build.json`` records them); ``reason`` why a stage was skipped."""

    name: str
    status: Status
    seconds: float
    inputs: str | None
    outputs: dict
    reason: str | None = _optional()


@dataclass(frozen=True)
class BuildResult(Result):
    """:func:`hwflow.api.build`: a flow file's stages in one build folder ``out``.

    ``stages`` in order (quantize, generate, simulate, estimate, synth, report), ``rebuilt``
    the names of those that ran (empty when the folder was up to date), ``bit_exact`` the
    simulation's verdict, ``report`` the Markdown report and ``html`` its HTML twin.
    """

    flow: Path
    out: Path
    stages: list
    rebuilt: list
    bit_exact: bool
    report: Path
    html: Path
