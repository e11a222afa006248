"""QuantizedModel folders: round trip, atomic writes, and every corruption path's message."""

import json
import os

import numpy as np
import pytest
from factories import digits_cnn, digits_mlp, random_input
from flowkit import node_rng, tiny_model

from quantflow import reference, serialize
from quantflow.errors import ArtifactError, UserError
from quantflow.qmodel import FORMAT_VERSION

_FIELDS = ("name", "kind", "in_shape", "out_shape", "in_fmt", "out_fmt", "in_scale", "kernel",
           "stride", "padding", "w_fmt", "requant", "lo", "hi", "extra")
_ARRAYS = ("weight", "bias", "mult", "shift", "w_scale", "out_scale")


def assert_same_model(a, b):
    assert (a.name, tuple(a.input_shape), a.input_fmt, a.input_scale, a.meta) == \
        (b.name, tuple(b.input_shape), b.input_fmt, b.input_scale, b.meta)
    assert len(a.layers) == len(b.layers)
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        for f in _FIELDS:
            va, vb = getattr(la, f), getattr(lb, f)
            if isinstance(va, (list, tuple)):
                va, vb = tuple(va), tuple(vb)
            assert va == vb, f"layer {i} field {f}: {va!r} != {vb!r}"
        for f in _ARRAYS:
            va, vb = getattr(la, f), getattr(lb, f)
            assert (va is None) == (vb is None), f"layer {i} array {f}"
            if va is not None:
                va, vb = np.asarray(va), np.asarray(vb)
                assert va.shape == vb.shape and np.array_equal(va, vb), f"layer {i} array {f}"
                kind = "i" if f in ("weight", "bias", "mult", "shift") else "f"
                assert vb.dtype.kind == kind, f"layer {i} array {f}: dtype {vb.dtype}"


@pytest.mark.parametrize("build", [tiny_model, "cnn", "mlp"])
def test_round_trip(request, tmp_path, build):
    seed, rng = node_rng(request)
    if build == "cnn":
        model = digits_cnn(rng, wbits=3, abits=5)
    elif build == "mlp":
        model = digits_mlp(rng, wbits=8, abits=2)
    else:
        model = build().validate()
    path = serialize.save(model, tmp_path / "q")
    assert path == tmp_path / "q"
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "tensors.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"], "temporary folder left behind"
    loaded = serialize.load(path)
    assert_same_model(model, loaded)
    x = random_input(rng, model, n=8)
    for i, (a, b) in enumerate(zip(reference.run(model, x), reference.run(loaded, x),
                                   strict=True)):
        assert np.array_equal(a, b), f"seed={seed} layer {i} output differs after reload"
    assert np.array_equal(reference.predict(model, x), reference.predict(loaded, x))


def test_save_is_deterministic_and_replaces(tmp_path):
    m = tiny_model()
    serialize.save(m, tmp_path / "a")
    serialize.save(m, tmp_path / "b")
    assert (tmp_path / "a" / "model.json").read_bytes() == \
        (tmp_path / "b" / "model.json").read_bytes()
    m.name = "renamed"
    serialize.save(m, tmp_path / "a")  # over an existing folder
    assert serialize.load(tmp_path / "a").name == "renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_model_json_is_plain_and_versioned(tmp_path):
    serialize.save(tiny_model(), tmp_path / "q")
    doc = json.loads((tmp_path / "q" / "model.json").read_text())
    assert doc["format"] == "hwgen.quantized-model" and doc["version"] == FORMAT_VERSION
    with np.load(tmp_path / "q" / "tensors.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert doc["tensors_sha256"] == serialize.tensor_digest(arrays)
    assert all(a.dtype != object for a in arrays.values())


def test_save_refuses_an_invalid_model_and_writes_nothing(tmp_path):
    m = tiny_model()
    m.layers[0].hi = 99
    with pytest.raises(ArtifactError, match=r"^layer 0 \('conv', conv2d\): clamp bounds"):
        serialize.save(m, tmp_path / "q")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"^boom$"):
        with serialize.atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half-written")
            assert tmp.parent == tmp_path and tmp != target
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [], "no folder and no temporary may remain"


def test_atomic_dir_keeps_the_old_folder_on_error(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with serialize.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "out"
    for text in ("first", "second"):
        with serialize.atomic_dir(target) as tmp:
            (tmp / "f.txt").write_text(text)
            assert not (target / "f.txt").exists() or (target / "f.txt").read_text() != text
        assert (target / "f.txt").read_text() == text
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out"]


def test_save_failure_leaves_no_folder(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match=r"^disk full$"):
        serialize.save(tiny_model(), tmp_path / "q")
    assert list(tmp_path.iterdir()) == []


def test_tensor_digest_sees_names_dtypes_shapes_and_bytes():
    a = {"x": np.arange(6, dtype=np.int64)}
    d = serialize.tensor_digest(a)
    assert d == serialize.tensor_digest({"x": np.arange(6, dtype=np.int64)})
    assert d != serialize.tensor_digest({"y": np.arange(6, dtype=np.int64)})
    assert d != serialize.tensor_digest({"x": np.arange(6, dtype=np.int32)})
    assert d != serialize.tensor_digest({"x": np.arange(6, dtype=np.int64).reshape(2, 3)})
    assert d != serialize.tensor_digest({"x": np.arange(1, 7, dtype=np.int64)})


# -- corruption paths -------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    return serialize.save(tiny_model(), tmp_path / "q")


def _esc(path):
    import re

    return re.escape(str(path))


def test_load_missing_folder(tmp_path):
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(tmp_path / 'nope')}: not a QuantizedModel folder "
                             rf"\(no such directory\)$"):
        serialize.load(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match=r"not a QuantizedModel folder \(no such directory\)$"):
        serialize.load(tmp_path / "file")


def test_load_missing_model_json(saved):
    (saved / "model.json").unlink()
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: not a QuantizedModel folder \(no model\.json\)$"):
        serialize.load(saved)


@pytest.mark.parametrize("text", ["{", "", "not json", '{"a": 1,}'])
def test_load_invalid_json(saved, text):
    (saved / "model.json").write_text(text)
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved / 'model.json')}: not valid JSON \(.+\)$"):
        serialize.load(saved)


def test_load_non_utf8_json(saved):
    (saved / "model.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArtifactError, match=r"model\.json: not valid JSON \("):
        serialize.load(saved)


@pytest.mark.parametrize("doc", [[], "x", 3, {"format": "something-else", "version": 1}, {}])
def test_load_wrong_format(saved, doc):
    (saved / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved / 'model.json')}: not a QuantizedModel "
                             rf"description$"):
        serialize.load(saved)


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, "1", None])
def test_load_wrong_version(saved, version):
    doc = json.loads((saved / "model.json").read_text())
    doc["version"] = version
    (saved / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved / 'model.json')}: format version {version!r} is "
                             rf"not supported \(this tool reads versions 1, {FORMAT_VERSION}\)$"):
        serialize.load(saved)


def test_version_1_folder_loads_as_a_chain(saved):
    """A folder written before DAGs (no ``inputs``/``groups``) loads: each layer reads the
    previous one."""
    want = serialize.load(saved)
    doc = json.loads((saved / "model.json").read_text())
    doc["version"] = 1
    for rec in doc["layers"]:
        del rec["inputs"], rec["groups"]
    (saved / "model.json").write_text(json.dumps(doc))
    got = serialize.load(saved)
    assert [layer.inputs for layer in got.layers] == [None] * len(got.layers)
    assert [got.sources(i) for i in range(len(got.layers))] == [
        want.sources(i) for i in range(len(want.layers))]


def test_dag_model_round_trips(tmp_path):
    """inputs, groups, ADD's per-input (M, s) and signed formats survive save and load."""
    import dagnets

    from quantflow import importers, ptq
    from quantflow.calibrate import RangeMethod
    x = np.linspace(-1, 1, 64 * 40).reshape(40, 1, 8, 8)
    for name in ("resnet", "mobile", "concat"):
        layers = importers.capture(dagnets.build(name), (1, 8, 8))
        cfg = ptq.PTQConfig(4, 4, w_method=RangeMethod.MINMAX, a_method=RangeMethod.MINMAX)
        qm = ptq.quantize(layers, name, (1, 8, 8), x, cfg).export()
        got = serialize.load(serialize.save(qm, tmp_path / name))
        for a, b in zip(qm.layers, got.layers, strict=True):
            assert (a.kind, a.inputs, a.groups, a.in_fmt, a.out_fmt, a.lo, a.hi) == (
                b.kind, b.inputs, b.groups, b.in_fmt, b.out_fmt, b.lo, b.hi)
            for attr in ("weight", "bias", "mult", "shift"):
                va, vb = getattr(a, attr), getattr(b, attr)
                assert (va is None and vb is None) or np.array_equal(va, vb)
        assert got.input_fmt.signed


def test_load_missing_tensors(saved):
    (saved / "tensors.npz").unlink()
    with pytest.raises(ArtifactError, match=rf"^{_esc(saved)}: tensors\.npz is missing$"):
        serialize.load(saved)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -1])
def test_load_truncated_tensors(saved, keep):
    f = saved / "tensors.npz"
    data = f.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) - 1 if keep < 0 else keep)
    f.write_bytes(data[:n])
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(f)}: unreadable or truncated \(.*\)$"):
        serialize.load(saved)


def test_load_not_a_zip(saved):
    (saved / "tensors.npz").write_text("hello")
    with pytest.raises(ArtifactError, match=r"tensors\.npz: unreadable or truncated \("):
        serialize.load(saved)


def test_load_corrupt_bytes_inside_tensors(saved):
    f = saved / "tensors.npz"
    data = bytearray(f.read_bytes())
    # flip bytes in the middle of the first stored array (past its local header)
    for i in range(200, 220):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"^.+: (unreadable or truncated|tensors\.npz does "
                                            r"not match model\.json)"):
        serialize.load(saved)


def test_load_pickled_tensors_refused(saved):
    f = saved / "tensors.npz"
    with open(f, "wb") as out:
        np.savez(out, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match=r"tensors\.npz: unreadable or truncated \("):
        serialize.load(saved)


def test_load_tensors_from_another_model(request, tmp_path, saved):
    seed, rng = node_rng(request)
    other = serialize.save(digits_mlp(rng), tmp_path / "other")
    os.replace(other / "tensors.npz", saved / "tensors.npz")
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: tensors\.npz does not match model\.json "
                             rf"\(digest differs\)$"):
        serialize.load(saved)


def test_load_tensors_edited_in_place(saved):
    f = saved / "tensors.npz"
    with np.load(f) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"] = arrays["0.weight"].copy()
    arrays["0.weight"][0, 0, 0, 0] ^= 1
    with open(f, "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(ArtifactError, match=r"digest differs\)$"):
        serialize.load(saved)


def _rewrite(saved, edit, arrays_edit=None):
    """Edit model.json (and optionally the arrays, re-signing the digest) consistently."""
    doc = json.loads((saved / "model.json").read_text())
    edit(doc)
    if arrays_edit is not None:
        with np.load(saved / "tensors.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays_edit(arrays)
        with open(saved / "tensors.npz", "wb") as out:
            np.savez(out, **arrays)
        doc["tensors_sha256"] = serialize.tensor_digest(arrays)
    (saved / "model.json").write_text(json.dumps(doc))


def test_load_inconsistent_shapes(saved):
    def edit(doc):
        doc["layers"][1]["out_shape"] = [2, 3, 3]
        doc["layers"][2]["in_shape"] = [2, 3, 3]
    _rewrite(saved, edit)
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: layer 1 \('pool', maxpool\): output shape "
                             rf"\(2, 3, 3\) != expected \(2, 2, 2\)$"):
        serialize.load(saved)


def test_load_weight_shape_mismatch(saved):
    def arrays_edit(arrays):
        arrays["4.weight"] = arrays["4.weight"][:, :1]
    _rewrite(saved, lambda doc: None, arrays_edit)
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: layer 4 \('fc', linear\): weight shape \(3, 1\)"
                             rf" != expected \(3, 2\)$"):
        serialize.load(saved)


def test_load_input_shape_mismatch(saved):
    _rewrite(saved, lambda doc: doc.update(input_shape=[1, 5, 5]))
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: layer 0 \('conv'\) expects input shape "
                             rf"\(1, 4, 4\), gets \(1, 5, 5\)$"):
        serialize.load(saved)


@pytest.mark.parametrize(("where", "value", "exc"), [
    (("layers", 0, "kind"), "sigmoid", "ValueError"),
    (("layers", 0, "in_fmt"), {"bits": 0, "signed": False}, "ValueError"),
    (("layers", 0, "in_fmt"), {"bits": 4}, "KeyError"),
    (("layers", 0, "w_fmt"), {"bits": "4", "signed": True}, "TypeError"),
    (("layers", 0), None, "AttributeError"),
    (("layers",), None, "TypeError"),
    (("name",), None, None),
])
def test_load_malformed_records(saved, where, value, exc):
    def edit(doc):
        obj = doc
        for k in where[:-1]:
            obj = obj[k]
        if value is None and where == ("name",):
            del obj[where[-1]]
        else:
            obj[where[-1]] = value
    _rewrite(saved, edit)
    expect = exc or "KeyError"
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(saved)}: malformed model\.json \({expect}: .*\)$"):
        serialize.load(saved)


def _json_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, (*prefix, i))
    if prefix:
        yield prefix


def test_load_never_raises_anything_but_artifact_error(request, saved, monkeypatch):
    """Every field of model.json replaced by values of the wrong type or range: load either
    succeeds with a model the reference can run, or raises ArtifactError; never a traceback."""
    seed, rng = node_rng(request)
    text = (saved / "model.json").read_text()
    doc = json.loads(text)
    arrays = serialize._read_npz(saved / "tensors.npz")
    monkeypatch.setattr(serialize, "_read_npz", lambda file: dict(arrays))  # json is the target
    values = [None, "x", -1, 0, 10 ** 30, [], {}, [1], 1.5, True, [0, 0], [-1, -1]]
    x = rng.integers(0, 16, size=(2, 1, 4, 4))
    for where in _json_paths(doc):
        if where[-1] == "tensors_sha256":
            continue
        for value in values:
            bad = json.loads(text)  # a fresh deep copy, faster than copy.deepcopy
            obj = bad
            for k in where[:-1]:
                obj = obj[k]
            obj[where[-1]] = value
            (saved / "model.json").write_text(json.dumps(bad))
            try:
                model = serialize.load(saved)
            except ArtifactError:
                continue
            outs = reference.run(model, x)  # a model that loads must also run
            for layer, out in zip(model.layers, outs, strict=True):
                assert out.shape[1:] == tuple(layer.out_shape), (
                    f"seed={seed} {where}={value!r}: layer {layer.name} shape")


def test_save_refuses_to_replace_a_foreign_folder(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError,
                       match=rf"^{_esc(precious)}: exists and is not a QuantizedModel folder "
                             rf"\(refusing to replace it\)$"):
        serialize.save(tiny_model(), precious)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ArtifactError, match=r"exists and is not a QuantizedModel folder"):
        serialize.save(tiny_model(), a_file)
    assert a_file.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert serialize.load(serialize.save(tiny_model(), empty)).name == "tiny"


# -- hostile folders (issue 12): consistent digests, wrong contents ------------------------------

def test_load_refuses_arrays_of_layers_model_json_lost(saved):
    _rewrite(saved, lambda doc: doc["layers"].pop())
    with pytest.raises(ArtifactError, match=rf"^{_esc(saved)}: tensors\.npz holds arrays of"
                                            r" layer 4, which model\.json does not describe"
                                            r" \(4 layers\): model\.json is truncated or"
                                            r" edited$"):
        serialize.load(saved)


def test_load_refuses_fractional_integers(saved):
    def edit(arrays):
        arrays["0.weight"] = arrays["0.weight"] + 0.5
    _rewrite(saved, lambda doc: None, edit)
    with pytest.raises(ArtifactError, match=rf"^{_esc(saved)}: layer 0 weight must hold"
                                            r" integers, not float64 values$"):
        serialize.load(saved)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda doc: doc.update(input_scale=-0.5),
     r"input_scale must be a finite positive number, not -0\.5"),
    (lambda doc: doc.update(input_scale=float("nan")),
     r"input_scale must be a finite positive number, not nan"),
    (lambda doc: doc["layers"][1].update(in_scale=0.0),
     r"layer 1 \('pool'\): in_scale must be a finite positive number, not 0\.0"),
])
def test_load_refuses_bad_scales(saved, edit, message):
    _rewrite(saved, edit)
    with pytest.raises(ArtifactError, match=rf"^{_esc(saved)}: {message}$"):
        serialize.load(saved)


def test_load_refuses_a_negative_out_scale(saved):
    def edit(arrays):
        arrays["0.out_scale"] = -arrays["0.out_scale"]
    _rewrite(saved, lambda doc: None, edit)
    with pytest.raises(ArtifactError, match=rf"^{_esc(saved)}: layer 0 \('conv'\): out_scale"
                                            r" must hold finite positive numbers$"):
        serialize.load(saved)


@pytest.mark.parametrize(("damage", "message"), [
    ("folder", r"model\.json: cannot read it \(Is a directory\)"),
    ("loop", r"model\.json: cannot read it \(Too many levels of symbolic links\)"),
    ("nested", r"model\.json: not a QuantizedModel description \(nested too deeply\)"),
])
def test_load_hostile_model_json(saved, damage, message):
    f = saved / "model.json"
    f.unlink()
    if damage == "folder":
        f.mkdir()
    elif damage == "loop":
        (saved / "loop").symlink_to(f)
        f.symlink_to(saved / "loop")
    else:
        f.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ArtifactError, match=rf"^{_esc(f)}: {message.split(': ', 1)[1]}$"):
        serialize.load(saved)


def test_save_refuses_to_delete_a_user_file_in_its_own_output(saved):
    (saved / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=rf"^{_esc(saved)}: holds notes\.txt that this run does"
                                        r" not write \(refusing to delete it: move it away or"
                                        r" choose another output folder\)$"):
        serialize.save(tiny_model(), saved)
    assert (saved / "notes.txt").read_text() == "keep me"
    serialize.load(saved)
