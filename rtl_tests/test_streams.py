"""The testbench's stream drivers, run on each simulator against a FIFO.

A failure here means the verification infrastructure itself is wrong, so it runs first.
"""

from amaranth.back import verilog

from rtl_tests import runner
from rtl_tests.streamfifo import StreamFIFO


def test_stream_drivers(sim, seed, tmp_path):
    src = tmp_path / "streamfifo.v"
    src.write_text(verilog.convert(StreamFIFO(8, 4), name="streamfifo"))
    r, build_dir = runner.build(src, "streamfifo", sim)
    passed, failed, _ = runner.run(r, build_dir, "streamfifo", "rtl_tests.tb.tb_streams",
                                   env={"HWGEN_SEED": seed, "HWGEN_WIDTH": 8}, seed=seed)
    assert failed == 0 and passed == 4, f"seed {seed}: {failed} of {passed + failed} failed"
