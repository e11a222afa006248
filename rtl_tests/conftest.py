"""pytest options and fixtures for the cocotb tier.

``--sim`` restricts the simulators (default: both); ``--seed`` fixes the random seed (default:
derived from the test's node id, so every test has its own reproducible stream). A simulator
that is not installed gives a skip with the reason, never a pass.
"""

import hashlib

import pytest

from rtl_tests.runner import Sim, available


def pytest_addoption(parser):
    parser.addoption("--sim", action="append", choices=[s.value for s in Sim],
                     help="simulator(s) to run the cocotb tests on (default: all)")
    parser.addoption("--seed", type=int, default=None, help="random seed for rtl tests")


def pytest_generate_tests(metafunc):
    if "sim" in metafunc.fixturenames and not any(
            "sim" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")):
        chosen = metafunc.config.getoption("--sim") or [s.value for s in Sim]
        params = [pytest.param(Sim(s), id=s, marks=getattr(pytest.mark, s)) for s in chosen]
        metafunc.parametrize("sim", params)


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption("--sim")
    if not chosen:
        return
    for item in items:
        sim = getattr(item, "callspec", None) and item.callspec.params.get("sim")
        if isinstance(sim, Sim) and sim.value not in chosen:
            item.add_marker(pytest.mark.skip(reason=f"--sim excludes {sim.value}"))


@pytest.fixture
def seed(request):
    fixed = request.config.getoption("--seed")
    if fixed is not None:
        return fixed
    return int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:4], "little")


@pytest.fixture(autouse=True)
def _skip_missing_simulator(request):
    sim = request.node.callspec.params.get("sim") if hasattr(request.node, "callspec") else None
    if isinstance(sim, Sim):
        reason = available(sim)
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def quantized_zoo(tmp_path_factory):
    """``get(model, wbits, abits, ends=None, qat=0)`` -> a QuantizedModel folder of a zoo
    network (MSE ranges), quantized once per session; ``ends`` gives the first and last MAC
    layers ``ends``-bit weights around the ``wbits`` body (the common mixed-precision recipe);
    ``qat`` epochs of QAT follow (a binary network's accuracy needs them); ``head`` widens the
    tensor that feeds the classifier to ``head`` bits."""
    from quantflow import importers, ptq, serialize
    from quantflow.flow import Method, load_data, load_model, quantize_model

    ds = load_data()
    folders = {}

    def get(model, wbits, abits, ends=None, qat=0, head=None):
        key = (model, wbits, abits, ends, qat, head)
        if key not in folders:
            name, net = load_model(model, ds)
            bits = {}
            layers = importers.capture(net, ds.input_shape)
            if ends:
                macs = [lyr.name for lyr in layers if lyr.kind.value in ("conv2d", "linear")]
                bits = {macs[0]: (ends, abits), macs[-1]: (ends, abits)}
            if head:  # the tensor feeding the classifier at ``head`` bits (--wide-head's trial)
                bits[layers[ptq.classifier_input(layers)].name] = (wbits, head)
            cfg = ptq.PTQConfig(wbits, abits, layer_bits=bits)
            result = quantize_model(name, net, ds, cfg, Method.MSE)
            if qat:
                from quantflow.flow import finetune
                from quantflow.qat import QATConfig

                # one learning rate: a working network, not the best (tests/test_qat.py
                # checks QAT's choice among its learning rates and starts)
                result = finetune(result, net, ds, QATConfig(epochs=qat), lrs=(3e-3,))
            tag = (f"-e{ends}" if ends else "") + (f"-qat{qat}" if qat else "") + (
                f"-h{head}" if head else "")
            folders[key] = serialize.save(
                result.qmodel, tmp_path_factory.mktemp("q") / f"{model}-w{wbits}a{abits}{tag}")
        return folders[key]

    return get


@pytest.fixture(scope="session")
def zoo_bit_exact():
    """``check(folder, sim, images, seed, lanes=None, where="")`` -> the simulation summary of
    a zoo QuantizedModel folder on for_model's overlay, asserting every layer of every image
    bit-exact, the design's digest and measured cycles equal to the model (and, given
    ``lanes``, the (weight, activation) lanes for_model chose)."""
    from hwgen.config import AccelConfig
    from quantflow.serialize import load
    from rtl_tests.simulate import simulate

    def check(folder, sim, images, seed, lanes=None, where=""):
        cfg = AccelConfig.for_model(load(folder))
        if lanes is not None:
            assert (cfg.weight_bits, cfg.act_bits) == lanes, (cfg.weight_bits, cfg.act_bits)
        s = simulate(folder, sim, images=images, seed=seed, quiet=True).summary()
        assert s["bit_exact"] and s["mismatches"] == 0 and s["images"] == images, (
            f"seed {seed}, {where or folder.name} on {sim.value}: {s['first_mismatches'][:3]}")
        assert s["config_digest"] == cfg.digest
        measured = [row["cycles"] for row in s["layers"]]
        assert measured == [row["analytical_cycles"] for row in s["layers"]]
        return s

    return check
