"""quantflow/accesses.py against an independent count: nested loops over each descriptor's
tiles, pixels, taps and groups, and a layer counted by hand."""

import numpy as np
import pytest

from quantflow.accesses import ACCESS_KEYS, layer_accesses, program_accesses
from quantflow.program import Op, compile_program


def _naive_act_reads(d):
    """Activation reads by brute force: every issue step whose tap is inside the map."""
    n = 0
    for _t in range(d.tiles):
        for oy in range(d.out_h):
            for ox in range(d.out_w):
                for ky in range(d.kh):
                    for kx in range(d.kw):
                        iy, ix = oy * d.sy - d.py + ky, ox * d.sx - d.px + kx
                        if 0 <= iy < d.in_h and 0 <= ix < d.in_w:
                            groups = d.in_g * d.wdigits if d.op is Op.MAC else 1
                            n += groups
    return n


@pytest.mark.parametrize("array", [(2, 4), (4, 4), (3, 5)])
@pytest.mark.parametrize("net", ["cnn", "mlp"])
def test_counts_match_nested_loops(array, net):
    from factories import digits_cnn, digits_mlp
    from hwgen.config import AccelConfig

    model = (digits_cnn if net == "cnn" else digits_mlp)(np.random.default_rng(1), 4, 4)
    cfg = AccelConfig.for_model(model, array=array)
    prog = compile_program(model, cfg)
    rows, total = program_accesses(prog, cfg)
    for d, r in zip(prog.descs, rows, strict=True):
        expect_reads = _naive_act_reads(d) if d.op is not Op.ADD else 2 * d.tiles * d.pixels
        assert r["act_reads"] == expect_reads
        writes = r["act_writes"] + r["acc_writes"]
        assert writes == d.out_h * d.out_w * d.out_ch
        if d.op is Op.MAC:
            assert r["weight_reads"] == d.tiles * d.pixels * d.steps
            assert r["array_macs"] == r["weight_reads"] * cfg.rows * cfg.cols
    assert total["useful_macs"] == sum(prog.macs)
    assert total["weight_reads"] <= sum(prog.cycles)  # at most one weight word per cycle
    assert set(total) == set(ACCESS_KEYS)


def test_a_conv_counted_by_hand():
    """conv3x3, padding 1, on a 1x4x4 map, 3 output channels, 2x4 array: 10 of the 12 tap
    positions per axis fall inside, so 10 x 10 = 100 activation reads per tile, 2 tiles; one
    weight word per step: 2 tiles x 16 pixels x 9 steps."""
    from factories import random_model
    from hwgen.config import AccelConfig

    model = random_model(np.random.default_rng(0), [("conv", 3, 3, 1, 1), ("flatten",),
                                                    ("linear", 2)], (1, 4, 4))
    cfg = AccelConfig.for_model(model, array=(2, 4))
    prog = compile_program(model, cfg)
    conv = prog.descs[0]
    assert (conv.tiles, conv.pixels, conv.steps, conv.in_g) == (2, 16, 9, 1)
    r = layer_accesses(conv, cfg, prog.macs[0])
    assert r["act_reads"] == 2 * 100
    assert r["weight_reads"] == 2 * 16 * 9
    assert r["act_writes"] == 16 * 3 and r["acc_writes"] == 0
    assert r["bias_reads"] == 16 * 3 and r["rq_reads"] == 16 * 3
    assert r["prog_reads"] == cfg.desc_words
    last = layer_accesses(prog.descs[-1], cfg, prog.macs[-1])
    assert last["acc_writes"] == 2 and last["rq_reads"] == 0  # logits: no requantization
