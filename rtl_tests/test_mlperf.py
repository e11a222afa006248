"""The four MLPerf Tiny reference architectures through the overlay, every layer compared.

DS-CNN (keyword spotting: depthwise separable), MobileNetV1 alpha 0.25 (visual wake words, at
the reduced 32x32 resolution), ResNet-8 (image classification: strided 1x1 projection
shortcuts) and the fully connected autoencoder (anomaly detection: 640 regression outputs),
with the zoo's layer shapes (quantflow/zoo_nets.py). Bit-exactness does not depend on what
the weights learned, so the tests use seeded initial weights and BatchNorm statistics (training
all four takes about five minutes) quantized on each network's proxy data; `bench/cycles.py`
and the README give the trained networks' figures. The four share one configuration (the
largest depths any of them needs), so one Verilator build serves each width.

Default: W8A8, one input each, on Verilator (ResNet-8 behind ``slow``: two minutes for one
input). ``-m slow``: W4A4 and 8-bit first/last layers around a 2-bit body (2-bit weight
lanes), three inputs each, and W8A8 on Icarus.
"""

import pytest
import torch

from rtl_tests.simulate import simulate
from quantflow import importers, ptq, serialize, zoo
from rtl_tests.runner import Sim
from tests import dagnets

MLPERF = ["dscnn-kws", "mobilenetv1-vww-32", "resnet8-ic", "fc-autoencoder"]
#: One configuration for all four (what the largest of them needs), so they share a build.
SHARED = dict(act_depth=4096, weight_depth=8192, param_depth=4096, acc_depth=1024,
              max_layers=32)


def _quantize(name, wbits, abits, mixed=False):
    which = zoo.ZooModel(name)
    torch.manual_seed(0)
    net = dagnets.seed_batchnorm(zoo.build(which), 1, mean=0.1, affine=False)
    ds = zoo.default_data(which)
    layers = importers.capture(net, ds.input_shape)
    bits = {}
    if mixed:
        macs = [lyr.name for lyr in layers if lyr.kind.value in ("conv2d", "linear")]
        bits = {macs[0]: (8, abits), macs[-1]: (8, abits)}
    cfg = ptq.PTQConfig(wbits, abits, layer_bits=bits)
    qm = ptq.quantize(layers, name, ds.input_shape, ds.x_train[:128], cfg).export()
    return qm, qm.quantize_input(ds.x_test[:3])


def _check(sim, name, wbits, abits, images, seed, tmp_path, mixed=False):
    qm, xs = _quantize(name, wbits, abits, mixed)
    folder = serialize.save(qm, tmp_path / name)
    s = simulate(folder, sim, inputs=xs[:images], seed=seed, quiet=True,
                 overrides=SHARED).summary()
    where = f"seed {seed}, {name} W{wbits}A{abits}{' mixed' if mixed else ''}, {sim.value}"
    assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == images, (
        f"{where}: {s['mismatches']} mismatches, first {s['first_mismatches'][:3]}")
    measured = [row["cycles"] for row in s["layers"]]
    analytical = [row["analytical_cycles"] for row in s["layers"]]
    assert measured == analytical, f"{where}: cycles {measured} vs model {analytical}"
    return s


@pytest.mark.verilator
@pytest.mark.parametrize("name", [
    "dscnn-kws", "mobilenetv1-vww-32", "fc-autoencoder",
    # 277k cycles and every layer read back over the simulated host stream: about two minutes
    pytest.param("resnet8-ic", marks=pytest.mark.slow)])
def test_mlperf_w8a8_verilator(name, seed, tmp_path):
    _check(Sim.VERILATOR, name, 8, 8, 1, seed, tmp_path)


@pytest.mark.verilator
def test_autoencoder_reports_its_mse_from_its_own_data(tmp_path):
    """Without --data a zoo model runs its own proxy's test images (the autoencoder's 640
    targets: a mean squared error, no top-1), as ``hwgen build`` of its flow file does."""
    from quantflow import metrics

    qm, _ = _quantize("fc-autoencoder", 8, 8)
    folder = serialize.save(qm, tmp_path / "ae")
    s = simulate(folder, Sim.VERILATOR, images=2, quiet=True, overrides=SHARED).summary()
    assert s["bit_exact"] and s["images"] == 2 and s["accuracy"] is None
    ds = zoo.default_data(zoo.ZooModel.FC_AUTOENCODER)
    want = metrics.quant_mse(qm, ds.x_test[:2], ds.y_test[:2])
    assert s["mse"] == pytest.approx(want, rel=1e-12), (s["mse"], want)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_w4a4_verilator(name, seed, tmp_path):
    _check(Sim.VERILATOR, name, 4, 4, 3, seed, tmp_path)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_mixed_verilator(name, seed, tmp_path):
    s = _check(Sim.VERILATOR, name, 2, 2, 3, seed, tmp_path, mixed=True)
    assert s["config_digest"]


@pytest.mark.slow
@pytest.mark.icarus
@pytest.mark.parametrize("name", ["fc-autoencoder", "mobilenetv1-vww-32"])
def test_mlperf_icarus(name, seed, tmp_path):
    _check(Sim.ICARUS, name, 8, 8, 1, seed, tmp_path)
