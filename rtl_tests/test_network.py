"""Whole zoo networks through the generated overlay on Verilator and Icarus, bit-exact.

Default suite: digits-cnn at 4 bits on every test image on Verilator, a subset on Icarus, and
stream stalls on digits-mlp. ``-m slow``: every other width 2..8 likewise (one build per width).
"""

import pytest

from rtl_tests.simulate import PLAYER_TOP, simulate
from rtl_tests.runner import Sim

ICARUS_IMAGES = 2  # Icarus runs the 500 kB netlist at a few thousand cycles per second


def _check(summary, images, seed):
    where = f"seed {seed}, {summary['simulator']}, first mismatches {summary['first_mismatches']}"
    assert summary["images"] == images, where
    assert summary["mismatches"] == 0 and summary["bit_exact"], where
    # Every layer's measured cycles within 3% (or one cycle) of the compiler's analytical model.
    measured = [row["cycles"] for row in summary["layers"]]
    analytical = [row["analytical_cycles"] for row in summary["layers"]]
    assert all(abs(m - a) <= max(1, 0.03 * a) for m, a in zip(measured, analytical,
                                                               strict=True)), \
        f"{where}: cycles {measured} vs model {analytical}"


def _run(folder, sim, images, seed, **kw):
    summary = simulate(folder, sim, images=images, seed=seed, **kw).summary()
    _check(summary, images or 450, seed)
    return summary


@pytest.mark.verilator
def test_digits_cnn_4bit_verilator_every_image(quantized_zoo, seed):
    """Every test image, split between two simulator processes as `hwgen simulate` does."""
    s = _run(quantized_zoo("digits-cnn", 4, 4), Sim.VERILATOR, 0, seed, jobs=2)
    assert s["accuracy"] is not None and s["accuracy"] > 0.9, s["accuracy"]


@pytest.mark.icarus
def test_digits_cnn_4bit_icarus_subset(quantized_zoo, seed):
    _run(quantized_zoo("digits-cnn", 4, 4), Sim.ICARUS, ICARUS_IMAGES, seed)


@pytest.mark.parametrize("sim", [pytest.param(Sim.VERILATOR, marks=pytest.mark.verilator),
                                 pytest.param(Sim.ICARUS, marks=pytest.mark.icarus)])
def test_digits_mlp_stream_stalls(quantized_zoo, sim, seed):
    """30% idle cycles on the input stream and 30% backpressure on the output stream."""
    _run(quantized_zoo("digits-mlp", 4, 4), sim, 3, seed, idle=30, backpressure=30)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("bits", [2, 3, 5, 6, 7, 8])
def test_digits_cnn_verilator_every_image(quantized_zoo, bits, seed):
    _run(quantized_zoo("digits-cnn", bits, bits), Sim.VERILATOR, 0, seed)


@pytest.mark.slow
@pytest.mark.icarus
@pytest.mark.parametrize("bits", [2, 3, 6, 8])
def test_digits_cnn_icarus_subset(quantized_zoo, bits, seed):
    _run(quantized_zoo("digits-cnn", bits, bits), Sim.ICARUS, 1, seed)


@pytest.mark.verilator
def test_a_difference_is_caught(quantized_zoo, tmp_path, seed):
    """Against a reference whose last-layer bias differs by one, the run must fail and name
    the layer, index, expected and got: the comparison can fail."""
    from quantflow import serialize

    model = serialize.load(quantized_zoo("digits-mlp", 4, 4))
    model.layers[-1].bias[3] += 1
    other = serialize.save(model, tmp_path / "other")
    s = simulate(quantized_zoo("digits-mlp", 4, 4), Sim.VERILATOR, images=2, seed=seed,
                 reference=other).summary()
    assert not s["bit_exact"] and s["mismatches"] == 2, s
    first = s["first_mismatches"][0]
    assert (first["layer"], first["index"]) == (len(model.layers) - 1, [3]), first
    assert first["expected"] == first["got"] + 1, first


@pytest.mark.verilator
def test_shards_merge_into_one_report(quantized_zoo, tmp_path, seed):
    """Two simulator processes, 30 images each, against a reference one bias off: every
    image's mismatch counted once, image numbers global, cycles and accuracy as one run's."""
    from quantflow import serialize

    qdir = quantized_zoo("digits-mlp", 4, 4)
    model = serialize.load(qdir)
    model.layers[-1].bias[3] += 1
    other = serialize.save(model, tmp_path / "other")
    one = simulate(qdir, Sim.VERILATOR, images=60, seed=seed).summary()
    two = simulate(qdir, Sim.VERILATOR, images=60, seed=seed, jobs=2).summary()
    assert two["bit_exact"] and two["images"] == 60
    for key in ("accuracy", "cycles_per_inference", "layers"):
        assert two[key] == one[key], key
    bad = simulate(qdir, Sim.VERILATOR, images=60, seed=seed, jobs=2,
                   reference=other).summary()
    assert not bad["bit_exact"] and bad["mismatches"] == 60
    images = [m["image"] for m in bad["first_mismatches"]]
    assert images == sorted(images) and images[0] == 0 and len(images) == 20


@pytest.mark.icarus
def test_waves_are_written(quantized_zoo, tmp_path, seed):
    s = simulate(quantized_zoo("digits-mlp", 4, 4), Sim.ICARUS, images=1, seed=seed,
                 waves=True, test_dir=tmp_path / "waves").summary()
    assert s["bit_exact"], s
    trace = tmp_path / "waves" / f"{PLAYER_TOP}.fst"  # the testbench top around the design
    assert s["waves"] == str(trace) and trace.stat().st_size > 1000, s["waves"]
