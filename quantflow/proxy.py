"""Proxy data sets for the MLPerf Tiny zoo networks, built deterministically from the embedded
digits (the real data sets cannot be downloaded here).

Each is a :class:`quantflow.data.Dataset` of the benchmark's input shape and class count (or
targets) whose ``note`` says it is a proxy and how it was made. A proxy exercises the network
and the flow at the right shapes and value ranges; its accuracy says nothing about the real
benchmark's (Speech Commands, Visual Wake Words, CIFAR-10, ToyADMOS). Pure numpy, seeded:
the same arrays on every call. Values lie in 0..1, as the flow's unsigned input format wants.
"""

import numpy as np

from .data import Dataset, digits

__all__ = ["kws_proxy", "vww_proxy", "ic_proxy", "ad_proxy", "resize", "KWS_SHAPE",
           "AD_FEATURES", "AD_RANK"]

#: Speech Commands MFCC input of the MLPerf DS-CNN: 49 frames x 10 coefficients.
KWS_SHAPE = (1, 49, 10)
#: Anomaly detection input: 128 log-mel bins x 5 frames, and the proxy signal's rank.
AD_FEATURES = 640
AD_RANK = 8


def _interp(n_in, n_out):
    """(n_out, n_in) bilinear interpolation weights, half-pixel centres (align_corners=False,
    edge clamped), as torch's and OpenCV's resize."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize(x, h, w):
    """Bilinear resize of images ``(N, C, H, W)`` to ``(N, C, h, w)`` (float32)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.einsum("ia,ncab,jb->ncij", _interp(x.shape[2], h), x, _interp(x.shape[3], w))
    return out.astype(np.float32)


def _splits():
    ds = digits()
    return (ds.x_train, ds.y_train), (ds.x_test, ds.y_test)


def kws_proxy():
    """Proxy for the MLPerf keyword-spotting data (Speech Commands v2, 1x49x10 MFCC, 12 classes).

    Digit images resized 8x8 -> 49x10 (rows as time, columns as coefficients); classes 0-9 are
    the digits, 10 'silence' (uniform noise of amplitude 0.15) and 11 'unknown' (digits with
    their 64 pixels shuffled by a per-image random permutation: the same ink, no shape), each
    a tenth of the digits' count in its split. 1347 + 268 training, 450 + 90 test samples."""
    parts = []
    for split, (x, y) in enumerate(_splits()):
        rng = np.random.default_rng(100 + split)
        k = len(x) // 10
        silence = rng.uniform(0, 0.15, (k, 1, 8, 8)).astype(np.float32)
        pick = rng.choice(len(x), k, replace=False)
        flat = x[pick].reshape(k, 64)
        unknown = np.stack([row[rng.permutation(64)] for row in flat]).reshape(k, 1, 8, 8)
        xs = np.concatenate([x, silence, unknown])
        ys = np.concatenate([y, np.full(k, 10), np.full(k, 11)]).astype(np.int64)
        parts += [resize(xs, *KWS_SHAPE[1:]), ys]
    return Dataset("kws-proxy", *parts, note=(
        "PROXY for Speech Commands keyword spotting: digits resized to 49x10, classes 0-9 the"
        " digits, 10 silence (noise), 11 unknown (pixel-shuffled digits); not speech"))


def _colour(x, rng, size):
    """Digit images -> 3 x size x size: resized, each image tinted by a random colour on a
    random dark background (per channel, uniform 0.4..1 and 0..0.2)."""
    g = resize(x, size, size)
    n = len(g)
    fg = rng.uniform(0.4, 1.0, (n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0.0, 0.2, (n, 3, 1, 1)).astype(np.float32)
    return (bg + (fg - bg) * g).astype(np.float32)


def vww_proxy(resolution=32):
    """Proxy for MLPerf visual wake words (COCO person / no person, 96x96x3, 2 classes).

    Digit images resized to ``resolution`` (32 for the zoo's reduced variant, 96 for the
    benchmark's input), tinted in colour (:func:`_colour`, seeded); class 1 ('person') for
    digits 5-9, class 0 for 0-4. 1347 training and 450 test images."""
    parts = []
    for split, (x, y) in enumerate(_splits()):
        rng = np.random.default_rng(200 + split)
        parts += [_colour(x, rng, resolution), (y >= 5).astype(np.int64)]
    return Dataset(f"vww-proxy-{resolution}", *parts, note=(
        f"PROXY for Visual Wake Words: digits resized to {resolution}x{resolution}, tinted in"
        " colour, class 1 = digit 5-9, class 0 = digit 0-4; not COCO persons"))


def ic_proxy():
    """Proxy for MLPerf image classification (CIFAR-10, 32x32x3, 10 classes).

    Digit images resized 8x8 -> 32x32 and tinted in colour (:func:`_colour`, seeded); the 10
    classes are the digits. 1347 training and 450 test images."""
    parts = []
    for split, (x, y) in enumerate(_splits()):
        rng = np.random.default_rng(300 + split)
        parts += [_colour(x, rng, 32), y]
    return Dataset("ic-proxy", *parts, note=(
        "PROXY for CIFAR-10: digits resized to 32x32 and tinted in colour, classes = digits;"
        " not natural images"))


def ad_proxy(n_train=1600, n_test=400):
    """Proxy for MLPerf anomaly detection (ToyADMOS log-mel frames, 640 features).

    Regression: the target is the input itself. A rank-8 signal in 640 dimensions plus noise:
    ``x = clip(0.5 + 0.15 z B / sqrt(8) + 0.02 e, 0, 1)`` with ``z`` and ``e`` standard normal
    per sample and a fixed standard normal basis ``B`` (8 x 640), so every feature has a
    standard deviation of about 0.15 and an ideal 8-dimensional bottleneck leaves the noise,
    a mean squared error of about 4e-4 (the mean predictor's is about 0.0229). Only normal
    data: no anomalies, so no AUC."""
    rng = np.random.default_rng(400)
    basis = rng.normal(size=(AD_RANK, AD_FEATURES))

    def draw(n):
        z = rng.normal(size=(n, AD_RANK))
        x = 0.5 + 0.15 * z @ basis / np.sqrt(AD_RANK) + 0.02 * rng.normal(size=(n, AD_FEATURES))
        return np.clip(x, 0, 1).astype(np.float32)

    x_train, x_test = draw(n_train), draw(n_test)
    return Dataset("ad-proxy", x_train, x_train.copy(), x_test, x_test.copy(), note=(
        "PROXY for ToyADMOS anomaly detection: a seeded rank-8 signal plus noise in 640"
        " dimensions, targets = inputs, normal data only; not machine sound"))
