"""A :class:`hwgen.host.Link` over a serial port, on pyserial (Linux, macOS and Windows ports,
and its URL handlers such as ``loop://`` and ``rfc2217://``).

Host words go out as ``host_bits // 8`` bytes, least significant first, which is what
:class:`hwgen.uart.UARTBridge` assembles; replies come back the same way. Reads and writes
have timeouts: a board that is not programmed, or a wrong port, is one clear line, not a hang.
"""

import time

from hwgen.errors import ToolError, UserError
from hwgen.host import Link

__all__ = ["SerialLink", "ports", "find_port"]

#: USB vendor:product of the boards' own USB-UART bridges (serial.tools.list_ports' vid/pid).
BOARD_USB = {
    "icebreaker": [(0x0403, 0x6010)],           # FT2232H: interface 0 JTAG/SPI, 1 the UART
    "ulx3s-85f": [(0x0403, 0x6015)],            # FT231X
    "tangnano9k": [(0x0403, 0x6010)],           # BL702 as FT2232 (interface 1 the UART)
    "orangecrab-25f": [],                       # no USB UART: a 3.3 V adapter on io0/io1
}


def ports():
    """``[(device, description, (vid, pid) or None)]`` of the serial ports this machine has."""
    from serial.tools import list_ports

    return [(p.device, p.description or "", (p.vid, p.pid) if p.vid is not None else None)
            for p in sorted(list_ports.comports(), key=lambda p: p.device)]


def find_port(board):
    """The serial port of ``board`` (a board name): its USB bridge's last interface (the
    UART on the FT2232H boards), else the only USB serial port there is; one line listing
    what is there otherwise."""
    found = ports()
    ids = BOARD_USB.get(board, [])
    mine = [dev for dev, _, usb in found if usb in ids]
    if mine:
        return mine[-1]
    usb = [dev for dev, _, u in found if u is not None]
    if len(usb) == 1:
        return usb[0]
    have = ", ".join(f"{dev} ({desc})" for dev, desc, _ in found) or "none"
    raise UserError(f"cannot tell which serial port is the {board}'s (ports: {have});"
                    f" name it with --port")


class SerialLink(Link):
    """8N1 serial port at ``baud``; ``recv`` gives up after ``timeout`` seconds of silence,
    ``send`` after ``timeout`` seconds of a blocked write, each with one
    :class:`~hwgen.errors.ToolError` line."""

    def __init__(self, port, baud, host_bits, timeout=5.0):
        import serial

        if not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
        self.nbytes = host_bits // 8
        self.timeout = timeout
        self.port = port
        try:
            self.serial = serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N",
                                                stopbits=1, timeout=timeout,
                                                write_timeout=timeout, exclusive=True)
        except (serial.SerialException, ValueError) as e:
            raise ToolError(f"{port}: {_why(e)}") from None
        self.serial.reset_input_buffer()

    def close(self):
        self.serial.close()

    async def send(self, words):
        import serial

        data = b"".join(int(w).to_bytes(self.nbytes, "little") for w in words)
        try:
            self.serial.write(data)
            self.serial.flush()
        except serial.SerialTimeoutException:
            raise ToolError(f"{self.port}: a write blocked for {self.timeout:g} s") from None
        except serial.SerialException as e:
            raise ToolError(f"{self.port}: {_why(e)}") from None

    async def recv(self, count):
        import serial

        want = count * self.nbytes
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        try:
            while len(buf) < want and time.monotonic() < deadline:
                chunk = self.serial.read(want - len(buf))
                if chunk:
                    buf += chunk
                    deadline = time.monotonic() + self.timeout
        except serial.SerialException as e:
            raise ToolError(f"{self.port}: {_why(e)}") from None
        if len(buf) < want:
            raise ToolError(f"serial port: {len(buf)} of {want} reply bytes after"
                            f" {self.timeout:g} s (is the bitstream loaded?)")
        n = self.nbytes
        return [int.from_bytes(buf[i * n:(i + 1) * n], "little") for i in range(count)]


def _why(e):
    """pyserial's message in a user's words."""
    text = str(e)
    if "Inappropriate ioctl" in text or "Errno 25" in text:
        return "not a serial port (not a terminal device)"
    if "No such file" in text or "Errno 2]" in text:
        return "cannot open: No such file or directory"
    if "Permission denied" in text or "Errno 13" in text:
        return "cannot open: Permission denied (add yourself to the dialout group)"
    if "Errno 16" in text or "busy" in text.lower() or "exclusively lock" in text:
        return "busy: another program has the port open"
    return text.splitlines()[0] if text else type(e).__name__
