"""Open FPGA board targets: one :class:`Board` member per board, each a small :class:`Target`.

Adding a board is one entry in :class:`Board`: its amaranth-boards platform, the device's
resources (for the report and the multiplier choice), the UART pins if the platform has none,
and the default array shape that fits it. Synthesis is in :mod:`boards.build`. A Gowin board
names its platform in :mod:`boards.gowin` (the amaranth-boards one with nextpnr-himbaechel).
"""

import enum
from dataclasses import dataclass, field

__all__ = ["Board", "Target", "Device", "board_by_name"]


@dataclass(frozen=True)
class Device:
    """What the FPGA has: LUTs (LUT4 / logic cells), flip-flops, block RAMs (count and Kbit
    each), SPRAM blocks, DSP blocks (18x18 multipliers)."""
    name: str
    lut: int
    ff: int
    bram: int
    bram_kbit: int
    spram: int
    dsp: int


@dataclass(frozen=True)
class Target:
    """A board: its amaranth-boards platform (module and class name, imported on use), its
    device, the board clock, the host UART baud rate and the default ``(rows, cols)`` array.

    ``uart_pins`` ``(rx, tx, connector)`` adds a UART resource on header pins when the
    platform defines none (the OrangeCrab's USB is the FPGA's own).
    """
    name: str
    platform_module: str
    platform_class: str
    device: Device
    clock_mhz: float
    family: str
    array: tuple
    baud: int = 115200
    uart_pins: tuple = None
    extra: dict = field(default_factory=dict)

    def platform(self):
        import importlib
        module = importlib.import_module(self.platform_module)
        platform = getattr(module, self.platform_class)()
        if self.uart_pins is not None:
            from amaranth.build import Attrs, Pins, Resource, Subsignal
            rx, tx, conn = self.uart_pins
            platform.add_resources([Resource(
                "uart", 0,
                Subsignal("rx", Pins(rx, dir="i", conn=conn)),
                Subsignal("tx", Pins(tx, dir="o", conn=conn)),
                Attrs(IO_TYPE="LVCMOS33"))])
        return platform

    def memory_factory(self):
        """The buffer factory for :class:`hwgen.core.Core` on this device (``None``: block RAM
        everywhere)."""
        from .memories import memory_factory
        return memory_factory(self)


_UP5K = Device("iCE40UP5K", lut=5280, ff=5280, bram=30, bram_kbit=4, spram=4, dsp=8)
_ECP5_25 = Device("LFE5U-25F", lut=24288, ff=24288, bram=56, bram_kbit=18, spram=0, dsp=28)
_ECP5_85 = Device("LFE5U-85F", lut=83640, ff=83640, bram=208, bram_kbit=18, spram=0, dsp=156)
_GW1NR_9 = Device("GW1NR-9", lut=8640, ff=6480, bram=26, bram_kbit=18, spram=0, dsp=20)


class Board(enum.Enum):
    """Supported boards; the value is the :class:`Target`."""

    ICEBREAKER = Target("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform",
                        _UP5K, 12.0, "ice40", array=(2, 2))
    ULX3S_85F = Target("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform",
                       _ECP5_85, 25.0, "ecp5", array=(8, 8))
    ORANGECRAB_25F = Target("orangecrab-25f", "amaranth_boards.orangecrab_r0_2",
                            "OrangeCrabR0_2_25FPlatform", _ECP5_25, 48.0, "ecp5",
                            array=(8, 8), uart_pins=("0", "1", ("io", 0)))
    TANGNANO9K = Target("tangnano9k", "boards.gowin", "TangNano9kPlatform", _GW1NR_9, 27.0,
                        "gowin", array=(4, 4))

    @property
    def target(self):
        return self.value


def board_by_name(name):
    """The :class:`Board` called ``name`` (as on the command line)."""
    for board in Board:
        if board.value.name == name:
            return board
    names = ", ".join(b.value.name for b in Board)
    raise ValueError(f"Board must be one of {names}, not {name!r}")
