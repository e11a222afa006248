"""The bench plots show what changed between their points: no value clipped, no series hidden
behind an equal one, no point shifted to another W/A tick, and a sensitivity plot that shows
how many points one image is (a drop of one or two images ranks nothing)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accuracy_plot_keeps_every_point_visible(tmp_path):
    acc = _bench("accuracy")
    rows = [{"model": "m", "wbits": w, "abits": w, "method": meth, "quant_accuracy": q,
             "float_accuracy": 0.98}
            for meth, pts in (("minmax", {8: 0.97, 4: 0.9, 2: 0.10}),
                              ("mse", {8: 0.97, 4: 0.9, 2: 0.10}),  # equal to minmax
                              ("auto", {8: 0.97, 2: 0.8}))  # no W4A4 point
            for w, q in pts.items()]
    fig = acc.plot(rows, ["minmax", "mse", "auto"], tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
    ax = fig.axes[0]
    assert ax.get_ylim()[0] <= 10.0  # the 10% point is on the plot
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("minmax", "mse", "auto")]
    styles = {(ln.get_marker(), ln.get_linestyle()) for ln in lines}
    assert len(styles) == 3  # equal series are told apart
    mm, ms, auto = (np.asarray(ln.get_xdata()) for ln in lines)
    assert not np.allclose(mm, ms)  # and nudged apart
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert np.allclose(np.round(auto), [ticks.index("W8A8"), ticks.index("W2A2")])


def test_sensitivity_plot_shows_one_image(tmp_path):
    sens = _bench("sensitivity")
    rows = [{"model": "m", "layer": lyr, "split": split, "drop": d, "base": "W8A8",
             "low": "W2A2", "images": n}
            for lyr, d in (("0", 0.003), ("3", 0.02))
            for split, n in (("validation", 337), ("test", 450))]
    sens.plot(rows, tmp_path / "s.png")
    import matplotlib.pyplot as plt

    ax = plt.gcf().axes[0]
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    assert any("1 validation image (0.30 points)" in lbl for lbl in labels), labels
    assert any("1 test image (0.22 points)" in lbl for lbl in labels), labels
