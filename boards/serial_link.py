"""A :class:`hwgen.host.Link` over a serial port (stdlib termios: no pyserial needed).

Host words go out as ``host_bits // 8`` bytes, least significant first, which is what
:class:`hwgen.uart.UARTBridge` assembles; replies come back the same way.
"""

import os
import select
import termios
import time

from hwgen.errors import ToolError
from hwgen.host import Link

__all__ = ["SerialLink"]

_BAUDS = {rate: getattr(termios, f"B{rate}") for rate in
          (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 2000000, 3000000)
          if hasattr(termios, f"B{rate}")}


class SerialLink(Link):
    """8N1 raw serial port at ``baud``; ``recv`` gives up after ``timeout`` seconds of
    silence with a :class:`~hwgen.errors.ToolError`."""

    def __init__(self, port, baud, host_bits, timeout=5.0):
        if baud not in _BAUDS:
            raise ValueError(f"Baud rate must be one of {sorted(_BAUDS)}, not {baud!r}")
        self.nbytes = host_bits // 8
        self.timeout = timeout
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise ToolError(f"{port}: cannot open: {e.strerror}") from None
        if not os.isatty(self.fd):
            os.close(self.fd)
            raise ToolError(f"{port}: not a serial port (not a terminal device)")
        try:
            self._configure(baud)
        except termios.error as e:
            os.close(self.fd)
            raise ToolError(f"{port}: not a usable serial port ({e.args[-1]})") from None

    def _configure(self, baud):
        attrs = termios.tcgetattr(self.fd)
        iflag, oflag, cflag, lflag, _ispeed, _ospeed, cc = attrs
        iflag = 0
        oflag = 0
        lflag = 0
        cflag = (cflag & ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)) \
            | termios.CS8 | termios.CREAD | termios.CLOCAL
        cc[termios.VMIN], cc[termios.VTIME] = 0, 0
        speed = _BAUDS[baud]
        termios.tcsetattr(self.fd, termios.TCSANOW,
                          [iflag, oflag, cflag, lflag, speed, speed, cc])
        termios.tcflush(self.fd, termios.TCIOFLUSH)

    def close(self):
        os.close(self.fd)

    async def send(self, words):
        data = b"".join(int(w).to_bytes(self.nbytes, "little") for w in words)
        while data:
            data = data[os.write(self.fd, data):]
        termios.tcdrain(self.fd)

    async def recv(self, count):
        want = count * self.nbytes
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(buf) < want:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise ToolError(f"serial port: {len(buf)} of {want} reply bytes after"
                                f" {self.timeout:g} s (is the bitstream loaded?)")
            chunk = os.read(self.fd, want - len(buf))
            buf += chunk
            deadline = time.monotonic() + self.timeout
        n = self.nbytes
        return [int.from_bytes(buf[i * n:(i + 1) * n], "little") for i in range(count)]
