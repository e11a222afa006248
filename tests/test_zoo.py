"""The model zoo: architectures, deterministic cached training, and user model files."""

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from flowkit import digits, trained
from torch import nn

from quantflow import data, zoo
from quantflow.errors import DataError


def test_architectures():
    cnn = zoo.build(zoo.ZooModel.DIGITS_CNN)
    assert [type(m) for m in cnn] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d,
                                      nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU,
                                      nn.Flatten, nn.Linear]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding)
            for m in cnn if isinstance(m, nn.Conv2d)] == [(1, 16, (3, 3), (1, 1)),
                                                          (16, 32, (3, 3), (1, 1)),
                                                          (32, 32, (3, 3), (1, 1))]
    assert (cnn[-1].in_features, cnn[-1].out_features) == (512, 10)
    mlp = zoo.build(zoo.ZooModel.DIGITS_MLP)
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == [
        (64, 64), (64, 32), (32, 10)]
    assert cnn(torch.zeros(2, 1, 8, 8)).shape == mlp(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_recipes():
    """The CNN keeps the issue's recipe; the MLP's was chosen on the validation split."""
    assert zoo.RECIPES[zoo.ZooModel.DIGITS_CNN] == zoo.Recipe(40, 64, 3e-3, 0.0, 0.0)
    assert zoo.RECIPES[zoo.ZooModel.DIGITS_MLP] == zoo.Recipe(80, 64, 3e-2, 1e-2, 0.1)


def test_build_message():
    with pytest.raises(TypeError, match=r"^Zoo model must be a ZooModel, not 'digits-cnn'$"):
        zoo.build("digits-cnn")


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_trained_accuracy(name):
    ds = digits()
    acc = zoo.accuracy(trained(name), ds.x_test, ds.y_test)
    assert 0.96 <= acc <= 1.0, f"{name}: {acc}"


def test_trained_without_the_validation_split(monkeypatch, tmp_path):
    """The default recipe is chosen on the validation split, so the zoo must not fit it."""
    ds = digits()
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    seen = []

    def spy(model, ds_, recipe, progress=None):
        seen.append(ds_)
        return model

    monkeypatch.setattr(zoo, "train", spy)
    zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    (fit,) = seen
    x_fit, y_fit = data.fit_split(ds)
    assert np.array_equal(fit.x_train, x_fit) and np.array_equal(fit.y_train, y_fit)
    x_val, _ = data.validation_split(ds)
    val_rows = {r.tobytes() for r in x_val}
    assert not any(r.tobytes() in val_rows for r in fit.x_train)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HWGEN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.cache_dir() == tmp_path / ".cache" / "hwgen"


def test_training_is_deterministic_and_cached(monkeypatch, tmp_path):
    """Training the MLP into an empty cache reproduces the session's weights bit for bit;
    a second call loads from the cache; a corrupt entry is retrained and overwritten."""
    ds = digits()
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    fresh = zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    ref = trained("digits-mlp")
    for (k, a), b in zip(fresh.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{k} differs between two trainings"
    files = [f for f in (tmp_path / "zoo").iterdir() if f.suffix == ".pt"]
    assert len(files) == 1 and files[0].name.startswith("digits-mlp-")
    # beside it only its digest and its lock file
    assert sorted(f.name for f in (tmp_path / "zoo").iterdir()) == sorted(
        files[0].name + s for s in ("", ".lock", ".sha256"))

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the cache holds the model")

    monkeypatch.setattr(zoo, "train", no_training)
    again = zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))
    assert not again.training

    files[0].write_bytes(b"not a torch file")
    retrained = []

    def fake_train(model, ds_, recipe, progress=None):
        retrained.append(recipe)
        return model

    monkeypatch.setattr(zoo, "train", fake_train)
    zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, ds)
    assert len(retrained) == 1
    assert set(torch.load(files[0], weights_only=True)) == set(ref.state_dict())
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == sorted(
        files[0].name + s for s in ("", ".lock", ".sha256")), "temp file left"


# -- user model files -------------------------------------------------------------------------

def _model_file(tmp_path, body, name="net.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def test_load_user_model(tmp_path):
    p = _model_file(tmp_path, """
        from torch import nn

        def make():
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    """)
    model = zoo.load_user_model(f"{p}:make")
    assert isinstance(model, nn.Module) and not model.training


@pytest.mark.parametrize("spec", ["digits", "net.py", "net.txt:make", "net.py:1bad", ":make",
                                  "net.py:"])
def test_user_model_spec_message(spec):
    with pytest.raises(DataError, match=rf"^{re.escape(repr(spec))} is not a model spec of the "
                                        rf"form path/to/file\.py:factory$"):
        zoo.load_user_model(spec)


@pytest.mark.parametrize(("body", "factory", "message"), [
    (None, "make", r"no such model file"),
    ("import no_such_module_anywhere\n", "make",
     r"failed to import \(ModuleNotFoundError: No module named 'no_such_module_anywhere'\)"),
    ("def make(:\n", "make", r"failed to import \(SyntaxError: .+\)"),
    ("x = 1\n", "make", r"has no callable 'make'"),
    ("make = 3\n", "make", r"has no callable 'make'"),
    ("def make():\n    raise RuntimeError('no weights')\n", "make",
     r"make\(\) failed \(RuntimeError: no weights\)"),
    ("def make():\n    return 42\n", "make", r"make\(\) must return a torch\.nn\.Module, not int"),
])
def test_user_model_errors(tmp_path, body, factory, message):
    p = tmp_path / "m.py" if body is None else _model_file(tmp_path, body, "m.py")
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}:? ?{message}$"):
        zoo.load_user_model(f"{p}:{factory}")


def test_user_model_file_in_the_repository_fixture():
    path = Path(__file__).parent / "fixtures" / "bad_model.py"
    model = zoo.load_user_model(f"{path}:make")
    assert any(isinstance(m, nn.Sigmoid) for m in model.modules())


# -- the DAG and MLPerf Tiny networks ---------------------------------------------------------

#: zoo name -> (input shape, outputs, Keras-style parameter count, MACs). The counts follow from
#: the MLPerf Tiny Keras references (quantflow/zoo_nets.py): weights and biases plus BatchNorm's
#: gamma, beta, moving mean and variance, as Keras' model.summary() totals them.
SHAPES = {
    "digits-resnet": ((1, 8, 8), 10, 24_938, 538_624),
    "digits-dsconv": ((1, 8, 8), 10, 7_882, 77_312),
    "dscnn-kws": ((1, 49, 10), 12, 24_908, 2_656_768),
    "mobilenetv1-vww": ((3, 96, 96), 2, 221_794, 7_489_664),
    "mobilenetv1-vww-32": ((3, 32, 32), 2, 221_794, 832_640),
    "resnet8-ic": ((3, 32, 32), 10, 78_666, 12_501_632),
    "fc-autoencoder": ((640,), 640, 269_992, 264_192),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_new_network_builds_runs_and_traces(name):
    from quantflow import zoo_nets

    shape, outputs, params, macs = SHAPES[name]
    torch.manual_seed(0)
    net = zoo.build(zoo.ZooModel(name)).eval()
    with torch.no_grad():
        assert net(torch.rand(2, *shape)).shape == (2, outputs)
    assert zoo_nets.keras_param_count(net) == params
    assert zoo_nets.macs(net, shape) == macs
    traced = torch.fx.symbolic_trace(net)
    x = torch.rand(3, *shape)
    with torch.no_grad():
        assert torch.equal(traced(x), net(x))


def _modules(net, kind):
    return [m for m in net.modules() if isinstance(m, kind)]


def test_dscnn_kws_layers():
    """MLPerf Tiny keyword_spotting/keras_model.py, ds_cnn: 64 filters, 10x4 stride-2 stem,
    four depthwise-separable blocks, dropout 0.2 and 0.4, AveragePooling (24, 5), 12 classes."""
    net = zoo.build(zoo.ZooModel.DSCNN_KWS)
    convs = _modules(net, nn.Conv2d)
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding, convs[0].out_channels) == \
        ((10, 4), (2, 2), (5, 1), 64)
    assert [(c.kernel_size, c.groups) for c in convs[1:]] == [((3, 3), 64), ((1, 1), 1)] * 4
    assert all(c.in_channels == c.out_channels == 64 for c in convs[1:])
    assert len(_modules(net, nn.BatchNorm2d)) == 9
    assert [d.p for d in _modules(net, nn.Dropout)] == [0.2, 0.4]
    (pool,) = _modules(net, nn.AvgPool2d)
    assert pool.kernel_size == (24, 5)
    with torch.no_grad():  # the stem's 'same' output: 25 x 5, as in the reference
        assert convs[0](torch.zeros(1, 1, 49, 10)).shape == (1, 64, 25, 5)
    (fc,) = _modules(net, nn.Linear)
    assert (fc.in_features, fc.out_features) == (64, 12)


def test_mobilenetv1_vww_layers():
    """MLPerf Tiny visual_wake_words/vww_model.py: alpha 0.25 (8 filters in the stem), 13
    depthwise-separable blocks, stride 2 in the stem and blocks 2, 4, 6 and 12."""
    for name, res, last in [("mobilenetv1-vww", 96, 3), ("mobilenetv1-vww-32", 32, 1)]:
        net = zoo.build(zoo.ZooModel(name))
        convs = _modules(net, nn.Conv2d)
        dw = [c for c in convs if c.groups > 1]
        pw = [c for c in convs if c.kernel_size == (1, 1)]
        assert len(convs) == 27 and len(dw) == len(pw) == 13
        assert all(c.groups == c.in_channels == c.out_channels for c in dw)
        assert [c.out_channels for c in pw] == [16, 32, 32, 64, 64] + [128] * 6 + [256, 256]
        assert [i for i, c in enumerate(dw, 1) if c.stride == (2, 2)] == [2, 4, 6, 12]
        assert convs[0].out_channels == 8 and convs[0].stride == (2, 2)
        (pool,) = _modules(net, nn.AvgPool2d)
        assert pool.kernel_size == last, (name, res)
        (fc,) = _modules(net, nn.Linear)
        assert (fc.in_features, fc.out_features) == (256, 2)


def test_resnet8_ic_layers():
    """MLPerf Tiny image_classification/keras_model.py (v0.5, 16 filters): stem 16, stacks
    16/32/64, strided 1x1 projection shortcuts (no BatchNorm) in stacks 2 and 3."""
    from quantflow.zoo_nets import ResidualBlock

    net = zoo.build(zoo.ZooModel.RESNET8_IC)
    blocks = _modules(net, ResidualBlock)
    assert [(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride) for b in blocks] == [
        (16, 16, (1, 1)), (16, 32, (2, 2)), (32, 64, (2, 2))]
    assert isinstance(blocks[0].shortcut, nn.Identity)
    for b in blocks[1:]:
        assert isinstance(b.shortcut, nn.Conv2d)
        assert (b.shortcut.kernel_size, b.shortcut.stride) == ((1, 1), (2, 2))
    assert len(_modules(net, nn.Conv2d)) == 9 and len(_modules(net, nn.BatchNorm2d)) == 7


def test_digits_dag_layers():
    from quantflow.zoo_nets import ResidualBlock

    res = zoo.build(zoo.ZooModel.DIGITS_RESNET)
    b1, b2 = _modules(res, ResidualBlock)
    assert isinstance(b1.shortcut, nn.Identity)
    proj, bn = b2.shortcut
    assert (proj.in_channels, proj.out_channels, proj.kernel_size, proj.stride) == (
        16, 32, (1, 1), (2, 2)) and isinstance(bn, nn.BatchNorm2d)
    ds = zoo.build(zoo.ZooModel.DIGITS_DSCONV)
    assert [(c.in_channels, c.out_channels, c.groups, c.stride) for c in _modules(ds, nn.Conv2d)
            ] == [(1, 16, 1, (1, 1)), (16, 16, 16, (1, 1)), (16, 32, 1, (1, 1)),
                  (32, 32, 32, (2, 2)), (32, 32, 1, (1, 1))]


def test_fc_autoencoder_layers():
    """MLPerf Tiny anomaly_detection/keras_model.py: 640 -> 128 x4 -> 8 -> 128 x4 -> 640,
    BatchNorm + ReLU after every dense layer but the linear output."""
    net = zoo.build(zoo.ZooModel.FC_AUTOENCODER)
    sizes = [(m.in_features, m.out_features) for m in _modules(net, nn.Linear)]
    assert sizes == [(640, 128)] + [(128, 128)] * 3 + [(128, 8), (8, 128)] + \
        [(128, 128)] * 3 + [(128, 640)]
    assert len(_modules(net, nn.BatchNorm1d)) == len(_modules(net, nn.ReLU)) == 9
    assert isinstance(net[-1], nn.Linear)


@pytest.mark.parametrize(("name", "x_shape", "classes", "sizes"), [
    ("kws_proxy", (1, 49, 10), 12, (1347 + 268, 450 + 90)),
    ("vww_proxy", (3, 32, 32), 2, (1347, 450)),
    ("ic_proxy", (3, 32, 32), 10, (1347, 450)),
    ("ad_proxy", (640,), None, (1600, 400)),
])
def test_proxy_data_is_deterministic(name, x_shape, classes, sizes):
    from quantflow import proxy

    a, b = getattr(proxy, name)(), getattr(proxy, name)()
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.input_shape == x_shape and a.classes == classes
    assert (len(a.x_train), len(a.x_test)) == sizes
    assert a.x_train.dtype == np.float32 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert a.note.startswith("PROXY for ")
    if classes is None:
        assert a.task is data.Task.REGRESSION and a.output_shape == (640,)
        assert np.array_equal(a.y_train, a.x_train) and a.y_train.dtype == np.float32
    else:
        assert a.task is data.Task.CLASSIFICATION and a.y_train.dtype == np.int64
        assert set(a.y_train) == set(a.y_test) == set(range(classes))


def test_vww_proxy_at_the_benchmark_resolution():
    from quantflow import proxy

    ds = proxy.vww_proxy(96)
    assert ds.input_shape == (3, 96, 96) and ds.name == "vww-proxy-96"
    assert np.array_equal(ds.y_test, proxy.vww_proxy(32).y_test)


def test_default_data():
    assert zoo.default_data(zoo.ZooModel.DIGITS_RESNET).name == "digits"
    for name, data_name in [("dscnn-kws", "kws-proxy"), ("resnet8-ic", "ic-proxy"),
                            ("mobilenetv1-vww-32", "vww-proxy-32"),
                            ("fc-autoencoder", "ad-proxy")]:
        assert zoo.default_data(zoo.ZooModel(name)).name == data_name
        assert flow_load_data(name).name == data_name
    assert flow_load_data("digits-cnn").name == flow_load_data(None).name == "digits"


def test_simulation_images_come_from_the_data_the_model_was_quantized_on():
    """``hwgen simulate``/``build`` without ``--data``: a zoo proxy model runs on its proxy's
    test images (they were digits, whatever the model: every MLPerf flow file failed)."""
    from types import SimpleNamespace

    from hwgen.designs import images_for
    from hwgen.errors import DataError as HwDataError

    assert zoo.embedded_data("dscnn-kws", "kws-proxy").name == "kws-proxy"
    assert zoo.embedded_data("digits-cnn", "digits").name == "digits"
    assert zoo.embedded_data("mine", None).name == "digits"  # folders before the record
    assert zoo.embedded_data("resnet8-ic", None).name == "ic-proxy"
    assert zoo.embedded_data("dscnn-kws", "my-keywords") is None
    assert zoo.embedded_data("file.py:net", "kws-proxy") is None
    ds = zoo.default_data(zoo.ZooModel.DSCNN_KWS)
    model = SimpleNamespace(name="dscnn-kws", meta={"dataset": "kws-proxy"},
                            input_shape=ds.input_shape,
                            layers=[SimpleNamespace(out_shape=(12,))],
                            quantize_input=lambda x: np.rint(x * 10).astype(np.int64))
    xs, ys = images_for(model, 3)
    assert xs.shape == (3, *ds.input_shape) and np.array_equal(ys, ds.y_test[:3])
    user = SimpleNamespace(**(vars(model) | {"meta": {"dataset": "my-keywords"}}))
    with pytest.raises(HwDataError, match=r"quantized on the data 'my-keywords'.*--data"):
        images_for(user, 3)


def flow_load_data(model):
    from quantflow import flow

    return flow.load_data(model=model)


def test_old_cache_keys_unchanged():
    """The new networks and Dataset fields leave the digits-cnn/mlp weights where they were
    (keys computed at aa1d2e4, before the new zoo)."""
    ds = digits()
    x_fit, y_fit = data.fit_split(ds)
    fit = data.Dataset(ds.name, x_fit, y_fit, ds.x_test, ds.y_test)
    if torch.__version__.split("+")[0] != "2.13.0":
        pytest.skip("the recorded keys are for torch 2.13.0")
    assert zoo._cache_key(zoo.ZooModel.DIGITS_CNN, zoo.RECIPES[zoo.ZooModel.DIGITS_CNN],
                          fit) == "f1aa767d9aaef582"
    assert zoo._cache_key(zoo.ZooModel.DIGITS_MLP, zoo.RECIPES[zoo.ZooModel.DIGITS_MLP],
                          fit) == "3ec55cee8be120f9"


@pytest.mark.parametrize(("name", "arrays", "message"), [
    ("dscnn-kws", {"x": (6, 1, 8, 8)}, r"zoo model 'dscnn-kws' takes inputs of shape "
                                       r"\(1, 49, 10\), the data 'mine' has \(1, 8, 8\) "
                                       r"\(its default data set is 'kws-proxy'\)"),
    ("digits-resnet", {"y": np.array([0, 1, 2, 0, 1, 12])},
     r"zoo model 'digits-resnet' has 10 classes, the data 'mine' has labels up to 12"),
    ("fc-autoencoder", {"x": (6, 640)}, r"zoo model 'fc-autoencoder' is a regression model; "
                                        r"the data 'mine' holds classification labels"),
    ("fc-autoencoder", {"x": (6, 640), "y": np.zeros((6, 3), np.float32)},
     r"zoo model 'fc-autoencoder' outputs shape \(640,\), the data 'mine' has targets of "
     r"shape \(3,\)"),
])
def test_zoo_model_refuses_data_of_other_shapes(name, arrays, message):
    from quantflow import flow

    x = np.zeros(arrays.get("x", (6, 1, 8, 8)), np.float32)
    y = arrays.get("y", np.array([0, 1, 2, 0, 1, 2]))
    ds = data.Dataset("mine", x, y, x, y)
    with pytest.raises(DataError, match=rf"^{message}$"):
        flow.load_model(name, ds)


def test_zoo_model_trains_on_user_data(monkeypatch, tmp_path):
    """A user's data of the right shape is what a zoo network is trained on (cached apart)."""
    from quantflow import flow

    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    monkeypatch.setitem(zoo.RECIPES, zoo.ZooModel.DIGITS_DSCONV, zoo.Recipe(epochs=1))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 4
    seen = []
    real_train = zoo.train
    monkeypatch.setattr(zoo, "train", lambda m, d, r, p=None: seen.append(d) or real_train(
        m, d, r, p))
    name, net = flow.load_model("digits-dsconv", data.Dataset("mine", x, y, x, y))
    assert name == "digits-dsconv" and not net.training
    (fit,) = seen
    assert len(fit.x_train) == 30 and set(fit.y_train) == {0, 1, 2, 3}


def test_autoencoder_regression_end_to_end(monkeypatch, tmp_path):
    """Trained (briefly) with MSE on its proxy, the autoencoder is scored by mean squared
    error, float and quantized (the chain captures today: Linear/BN/ReLU only)."""
    from quantflow import flow, metrics, ptq, reference

    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    monkeypatch.setitem(zoo.RECIPES, zoo.ZooModel.FC_AUTOENCODER, zoo.Recipe(epochs=3))
    ds = flow.load_data(model="fc-autoencoder")
    name, net = flow.load_model("fc-autoencoder", ds)
    float_mse = zoo.accuracy(net, ds.x_test, ds.y_test)
    with torch.no_grad():
        want = float(((net(torch.from_numpy(ds.x_test)) - torch.from_numpy(ds.y_test)) ** 2)
                     .mean())
    assert float_mse == pytest.approx(want, rel=1e-5)
    assert 0 < float_mse < 0.05
    r = flow.quantize_model(name, net, ds, ptq.PTQConfig(8, 8), flow.Method.MINMAX)
    assert r.summary("minmax")["metric"] == "mse" and r.float_accuracy == float_mse
    out = reference.run(r.qmodel, r.qmodel.quantize_input(ds.x_test))[-1] * \
        r.qmodel.output_scale
    assert r.quant_accuracy == pytest.approx(float(np.mean((out - ds.y_test) ** 2)))
    assert abs(r.quant_accuracy - float_mse) < 0.1 * float_mse
    x_val, y_val = data.validation_split(ds)
    assert ptq.val_score(r.qmodel, x_val, y_val) == (
        -metrics.quant_mse(r.qmodel, x_val, y_val),) * 2


@pytest.mark.parametrize("name", ["digits-resnet", "digits-dsconv"])
def test_digits_dag_trained_accuracy(name):
    ds = digits()
    acc = zoo.accuracy(trained(name), ds.x_test, ds.y_test)
    assert acc >= (0.97 if name == "digits-resnet" else 0.96), f"{name}: {acc}"


# -- hostile user code and cache entries (issue 12) -----------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ("import sys\ndef make():\n    sys.exit(3)\n",
     r":make\(\) failed \(it called sys\.exit\(3\)\)"),
    ("import sys\nsys.exit()\ndef make():\n    pass\n",
     r": failed to import \(it called sys\.exit\(None\)\)"),
    ("import torch\ndef make():\n    return torch.load(PICKLE, weights_only=True)\n",
     r":make\(\) failed \(UnpicklingError: torch\.load\(\.\.\., weights_only=True\) refused a"
     r" pickled object; save the model's state_dict\(\) and load it into the network instead\)"),
])
def test_user_code_failures_are_one_line(tmp_path, body, message):
    torch.save(nn.Linear(64, 10), tmp_path / "whole.pt")
    p = _model_file(tmp_path, body.replace("PICKLE", repr(str(tmp_path / "whole.pt"))))
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))}{message}$"):
        zoo.load_user_model(f"{p}:make")


def test_user_model_labels_beyond_its_outputs():
    ds = digits()
    with pytest.raises(DataError, match=r"^net\.py:make: the network has 4 classes, the data"
                                        r" 'digits' has labels up to 9$"):
        zoo.check_user_data(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), ds, "net.py:make")
    with pytest.raises(DataError, match=r"^net\.py:make: the network does not take the data's"
                                        r" inputs of shape \(1, 8, 8\) \(RuntimeError: "):
        zoo.check_user_data(nn.Sequential(nn.Flatten(), nn.Linear(5, 4)), ds, "net.py:make")


@pytest.mark.parametrize("damage", ["zeroed", "tensor", "folder", "truncated", "no-digest"])
def test_a_bad_cache_entry_is_discarded_and_retrained(monkeypatch, tmp_path, capsys, damage):
    """Never served: a zeroed state dict with no matching digest, another object, a folder, a
    truncated file, an entry whose digest is missing; a notice, then training."""
    import shutil

    warm = zoo.cache_dir() / "zoo"
    monkeypatch.setenv("HWGEN_CACHE", str(tmp_path))
    (tmp_path / "zoo").mkdir()
    for f in warm.glob("digits-mlp-*"):
        shutil.copy2(f, tmp_path / "zoo" / f.name)
    entry = next(f for f in (tmp_path / "zoo").iterdir() if f.suffix == ".pt")
    ref = trained("digits-mlp")
    if damage == "zeroed":
        torch.save({k: torch.zeros_like(v) for k, v in ref.state_dict().items()}, entry)
    elif damage == "tensor":
        torch.save(torch.zeros(3), entry)
    elif damage == "folder":
        entry.unlink()
        entry.mkdir()
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    else:
        entry.with_name(entry.name + ".sha256").unlink()
    net = zoo.load_or_train(zoo.ZooModel.DIGITS_MLP, digits())
    assert re.search(rf"^hwgen: notice: zoo cache entry {re.escape(str(entry))} discarded \(",
                     capsys.readouterr().err, re.M)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))
    assert entry.is_file()
