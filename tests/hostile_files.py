"""Hostile files and data for :mod:`hostile_cases`: QuantizedModel folders that are torn,
edited or hostile, zoo cache entries that are not the weights they claim, user model files
that exit or pickle, and --data arrays of the wrong kind."""

import json
import re

import numpy as np

from hostile_run import OK, Case, tmp_file

__all__ = ["corrupt_cases", "data_cases", "rewrite_model", "fractional", "drop_last",
           "input_scale"]

_Q = ["quantize", "--model", "digits-mlp", "--method", "minmax"]


def rewrite_model(q, edit_doc=None, edit_arrays=None, fix_digest=True):
    """Change a QuantizedModel folder's model.json and/or tensors, keeping the digest valid
    (a consistent but hostile folder, not a torn one)."""
    from quantflow.serialize import tensor_digest

    doc = json.loads((q / "model.json").read_text())
    with np.load(q / "tensors.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if edit_arrays:
        edit_arrays(arrays)
        with open(q / "tensors.npz", "wb") as f:
            np.savez(f, **arrays)
    if edit_doc:
        edit_doc(doc)
    if fix_digest:
        doc["tensors_sha256"] = tensor_digest(arrays)
    (q / "model.json").write_text(json.dumps(doc))


def _data_file(ctx, edit):
    """A --data .npz from the digits set (small), changed by ``edit(dict)``."""
    from quantflow import data

    ds = data.digits()
    arrays = {"x_train": ds.x_train[:400], "y_train": ds.y_train[:400],
              "x_test": ds.x_test[:100], "y_test": ds.y_test[:100]}
    edit(arrays)
    f = ctx.tmp / "data.npz"
    np.savez(f, **arrays)
    return f


def _zoo_entry(ctx):
    """The warm cache's digits-mlp weights file (in the private copy)."""
    cache = ctx.warm_cache()
    entries = [p for p in (cache / "zoo").glob("digits-mlp-*") if p.suffix == ".pt"]
    assert len(entries) == 1, entries
    return entries[0]


def _user_model(ctx, body, name="user_model.py"):
    f = ctx.tmp / name
    f.write_text("import sys\nimport torch\nfrom torch import nn\n\n" + body)
    return f



def _generate_q(edit):
    def setup(ctx):
        q = ctx.q()
        edit(q)
        return ["generate", str(q), "--out", str(ctx.tmp / "rtl")]
    return setup


def _json_folder(q):
    (q / "model.json").unlink()
    (q / "model.json").mkdir()


def _json_loop(q):
    (q / "model.json").unlink()
    (q / "loop").symlink_to(q / "model.json")
    (q / "model.json").symlink_to(q / "loop")


def _json_nested(q):
    (q / "model.json").write_text("[" * 100000 + "]" * 100000)


def _json_truncated(q):
    text = (q / "model.json").read_text()
    (q / "model.json").write_text(text[:len(text) // 2])


def fractional(q):
    def edit(arrays):
        key = next(k for k in sorted(arrays) if k.endswith(".weight"))
        arrays[key] = arrays[key].astype(np.float64) + 0.5
    rewrite_model(q, edit_arrays=edit)


def drop_last(q):
    rewrite_model(q, edit_doc=lambda doc: doc["layers"].pop())


def input_scale(value):
    def edit(q):
        rewrite_model(q, edit_doc=lambda doc: doc.update(input_scale=value))
    return edit


def corrupt_cases():
    gen = "QuantizedModel files"
    cases = [
        Case("generate/model.json-is-a-folder", gen, _generate_q(_json_folder),
             message=r"model\.json"),
        Case("generate/model.json-symlink-loop", gen, _generate_q(_json_loop),
             message=r"model\.json"),
        Case("generate/model.json-deeply-nested", gen, _generate_q(_json_nested),
             message=r"model\.json.*nest"),
        Case("generate/model.json-truncated", gen, _generate_q(_json_truncated),
             message=r"model\.json: not valid JSON"),
        Case("generate/fractional-weights", gen, _generate_q(fractional),
             message=r"integ"),
        Case("generate/missing-last-layer", gen, _generate_q(drop_last),
             message=r"layer \d+, which model\.json does not describe"),
        Case("generate/negative-input-scale", gen, _generate_q(input_scale(-0.5)),
             message=r"input_scale"),
        Case("generate/nan-input-scale", gen, _generate_q(input_scale(float("nan"))),
             message=r"input_scale"),
        Case("estimate/fractional-weights", gen,
             lambda ctx: (fractional(ctx.q()), ["estimate", str(ctx.q()), "--board",
                                                  "icebreaker"])[1], message=r"integ"),
        Case("synth/missing-last-layer", gen,
             lambda ctx: (drop_last(ctx.q()), ["synth", str(ctx.q()), "--board",
                                                "icebreaker"])[1],
             message=r"layer \d+, which model\.json does not describe"),
        Case("run/nan-input-scale", gen,
             lambda ctx: (input_scale(float("nan"))(ctx.q()),
                          ["run", str(ctx.q()), "--port", "/dev/null"])[1],
             message=r"input_scale"),
        Case("simulate/negative-input-scale", gen,
             lambda ctx: (input_scale(-0.5)(ctx.q()), ["simulate", str(ctx.q())])[1],
             message=r"input_scale"),
    ]
    zoo = "zoo cache and model files"
    cases += [
        Case("quantize/zoo-entry-holds-a-tensor", zoo, _zoo_tensor, expect=OK,
             check=_zoo_healed),
        Case("quantize/zoo-entry-is-a-folder", zoo, _zoo_folder, expect=OK, check=_zoo_healed),
        Case("quantize/zoo-entry-zeroed-weights", zoo, _zoo_zeroed, expect=OK,
             check=_zoo_healed),
        Case("quantize/zoo-entry-truncated", zoo, _zoo_truncated, expect=OK,
             check=_zoo_healed),
        Case("quantize/empty-onnx-file", zoo,
             lambda ctx: ["quantize", "--model", str(tmp_file(ctx, "m.onnx", "")), "--out",
                          str(ctx.tmp / "o")], message=r"m\.onnx.*empty"),
        Case("quantize/pickled-model-refused", zoo, _pickled, message=r"weights_only"),
        Case("quantize/lstm", zoo, _lstm, message=r"unsupported op LSTM|LSTM"),
        Case("quantize/factory-calls-sys-exit", zoo, _sys_exit, message=r"sys\.exit",
             process=True),
    ]
    return cases


def _zoo_tensor(ctx):
    import torch

    torch.save(torch.zeros(3), _zoo_entry(ctx))
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_folder(ctx):
    entry = _zoo_entry(ctx)
    entry.unlink()
    entry.mkdir()
    (entry / "x").write_text("")
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_zeroed(ctx):
    import torch

    entry = _zoo_entry(ctx)
    state = torch.load(entry, weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, entry)
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_truncated(ctx):
    entry = _zoo_entry(ctx)
    entry.write_bytes(entry.read_bytes()[:100])
    return [*_Q, "--json", "--out", str(ctx.tmp / "o")]


def _zoo_healed(ctx, out, err):
    problems = []
    if not re.search(r"discard", err):
        problems.append("no notice that the cache entry was discarded")
    try:
        acc = json.loads(out.strip().splitlines()[-1])["float_accuracy"]
    except (ValueError, IndexError, KeyError):
        return problems + ["no JSON summary"]
    if acc < 0.9:
        problems.append(f"float accuracy {acc:.2f}: the bad entry was served")
    return problems


def _pickled(ctx):
    import torch

    torch.save(torch.nn.Linear(64, 10), ctx.tmp / "whole.pt")
    f = _user_model(ctx, "def make():\n    return torch.load(%r, weights_only=True)\n"
                    % str(ctx.tmp / "whole.pt"))
    return ["quantize", "--model", f"{f}:make", "--out", str(ctx.tmp / "o")]


def _lstm(ctx):
    f = _user_model(ctx, "class Net(nn.Module):\n"
                         "    def __init__(self):\n"
                         "        super().__init__()\n"
                         "        self.lstm = nn.LSTM(8, 10, batch_first=True)\n"
                         "    def forward(self, x):\n"
                         "        return self.lstm(x.reshape(-1, 8, 8))[0][:, -1]\n\n"
                         "def make():\n    return Net()\n")
    return ["quantize", "--model", f"{f}:make", "--method", "minmax", "--out",
            str(ctx.tmp / "o")]


def _sys_exit(ctx):
    f = _user_model(ctx, "def make():\n    sys.exit(3)\n")
    return ["quantize", "--model", f"{f}:make", "--out", str(ctx.tmp / "o")]


def data_cases():
    d = "bad data"

    def one_hot(a):
        a["y_train"] = np.eye(10, dtype=np.int64)[a["y_train"]]
        a["y_test"] = np.eye(10, dtype=np.int64)[a["y_test"]]

    def outside(a):
        a["y_test"] = a["y_test"] + 10

    def complex_x(a):
        a["x_train"] = a["x_train"].astype(np.complex64)
        a["x_test"] = a["x_test"].astype(np.complex64)

    def nan_x(a):
        a["x_test"] = a["x_test"].copy()
        a["x_test"][0, 0] = np.nan

    def object_x(a):
        a["x_test"] = a["x_test"].astype(object)

    def quantize(edit):
        return lambda ctx: [*_Q, "--data", str(_data_file(ctx, edit)), "--out",
                            str(ctx.tmp / "o")]

    def simulate(edit):
        return lambda ctx: ["simulate", str(ctx.q()), "--data", str(_data_file(ctx, edit))]

    return [
        Case("quantize/one-hot-labels", d, quantize(one_hot), message=r"y_train.*one"),
        Case("quantize/labels-outside-classes", d, quantize(outside), message=r"class"),
        Case("quantize/complex-data", d, quantize(complex_x), message=r"complex|real"),
        Case("quantize/object-data", d, quantize(object_x), message=r"data\.npz"),
        Case("quantize/nan-data", d, quantize(nan_x), message=r"finite"),
        Case("simulate/labels-outside-classes", d, simulate(outside), message=r"class"),
        Case("simulate/complex-data", d, simulate(complex_x), message=r"complex|real"),
        Case("simulate/one-hot-labels", d, simulate(one_hot), message=r"y_train.*one"),
    ]


