"""boards.serial_link.SerialLink over a pseudo-terminal: byte order, framing of replies,
the timeout, and the messages."""

import asyncio
import os

import pytest

from boards.serial_link import SerialLink
from hwgen.errors import ToolError


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_words_are_little_endian_bytes(pty):
    master, name = pty
    link = SerialLink(name, 115200, 32, timeout=1.0)
    try:
        asyncio.run(link.send([0x04030201, 0xFFFFFFFF]))
        assert os.read(master, 64) == bytes([1, 2, 3, 4, 255, 255, 255, 255])
        os.write(master, bytes([0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0x80]))
        assert asyncio.run(link.recv(2)) == [0x12345678, 0x80000000]
    finally:
        link.close()


def test_silence_is_one_error(pty):
    _master, name = pty
    link = SerialLink(name, 115200, 16, timeout=0.05)
    try:
        with pytest.raises(ToolError, match=r"^serial port: 0 of 2 reply bytes after 0\.05 s"):
            asyncio.run(link.recv(1))
    finally:
        link.close()


def test_messages(tmp_path):
    with pytest.raises(ValueError, match=r"^Baud rate must be one of \[.*\], not 1234$"):
        SerialLink("/dev/null", 1234, 32)
    with pytest.raises(ToolError, match=r"^.*/nope: cannot open: No such file or directory$"):
        SerialLink(str(tmp_path / "nope"), 115200, 32)
