"""Data-free quantization: no calibration images (Nagel et al. 2019 DFQ; Nayak et al.).

Weight scales come from the weights alone (per-channel MSE on the weight values). Activation
ranges come from statistics propagated through the graph, per channel, as Gaussians:

- after a Conv2d/Linear followed by BatchNorm, the pre-activation of channel ``c`` is
  ``N(beta_c, gamma_c^2)`` (BatchNorm's running statistics normalise it; its affine
  parameters set the mean and spread), read from the model's BatchNorm module;
- after a layer without BatchNorm (digits-cnn's third conv, every MLP layer) the mean and
  variance are propagated analytically: ``mean_o = b_o + sum W m``, ``var_o = sum W^2 v``
  over the input channels the output's group reads (grouped and depthwise convs; inputs
  assumed independent; zero padding at borders is ignored, which slightly overestimates
  border means);
- ReLU and ReLU6: moments of the rectified (clipped at 6) Gaussian (closed form);
- a residual add: its inputs taken as independent, means and variances add; a concat joins
  its inputs' channels;
- max pooling of ``n`` values (commutes with ReLU, so it is applied to the pre-ReLU Gaussian):
  mean ``mu + e_n sigma`` and std ``d_n sigma`` with ``e_n``, ``d_n`` the mean and std of the
  maximum of ``n`` independent standard normals (computed by quadrature);
- average pooling of ``n`` values: same mean, variance / n;
- the network input is assumed uniform on ``[input_min, input_max]`` (the only thing the user
  states; ``[0, 1]`` for images scaled to 0..1; signed when ``input_min < 0``).

The clipping threshold of an unsigned tensor (after a ReLU) is ``max_c (mu_c + k sigma_c)`` of
its pre-ReLU Gaussians (``k`` = :data:`DEFAULT_K` unless given; at most 6 after ReLU6) over
``2**b - 1`` steps; a signed tensor (no ReLU) gets the symmetric ``max_c |mu_c -+ k sigma_c|``
over ``2**(b-1) - 1`` steps; a concat's producers share the widest of theirs. Contract: no
image is read; the result is a FakeQuantNet like :func:`quantflow.ptq.quantize` builds,
exported by the same path.
"""

from dataclasses import dataclass

import numpy as np

from . import ptq
from .calibrate import RangeMethod, weight_scales
from .importers import Act, dense_weight, sources
from .numerics import QFormat
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["DEFAULT_K", "Stats", "propagate", "quantize_data_free", "max_normal_moments"]

#: Standard deviations above the mean at which a pre-ReLU activation is clipped.
DEFAULT_K = 3.0


@dataclass
class Stats:
    """Per-channel Gaussian ``N(mu, sigma^2)``; ``relu`` (one flag, or one per channel) when the
    tensor is its rectification, clipped above at ``hi`` (ReLU6: 6; a concat mixes channels)."""

    mu: np.ndarray
    sigma: np.ndarray
    relu: np.ndarray | bool = False
    hi: np.ndarray | float = np.inf

    def moments(self):
        """Mean and variance of the tensor's actual values."""
        relu = np.broadcast_to(self.relu, self.mu.shape)
        if not relu.any():
            return self.mu, self.sigma ** 2
        m, v = _clip_moments(self.mu, self.sigma, np.broadcast_to(self.hi, self.mu.shape))
        return np.where(relu, m, self.mu), np.where(relu, v, self.sigma ** 2)

    def channels(self):
        """The per-channel fields broadcast to arrays (to concatenate or repeat them)."""
        n = self.mu.shape
        return (self.mu, self.sigma, np.broadcast_to(self.relu, n).copy(),
                np.broadcast_to(np.asarray(self.hi, dtype=np.float64), n).copy())


def _phi(z):
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _cdf(z):
    from scipy.special import ndtr

    return ndtr(z)


def _relu_moments(mu, sigma):
    return _clip_moments(mu, sigma, np.inf)


def _clip_moments(mu, sigma, hi):
    """Mean and variance of ``clip(X, 0, hi)`` for ``X ~ N(mu, sigma^2)`` (closed form; a
    huge finite ``hi`` stands for no upper clip, its terms vanish)."""
    s = np.maximum(sigma, 1e-12)
    hi = np.minimum(hi, 1e30)
    a, b = -mu / s, (hi - mu) / s
    pa, pb, fa, fb = _cdf(a), _cdf(b), _phi(a), _phi(b)
    mid = pb - pa  # P(0 < X < hi)
    m1 = mu * mid + s * (fa - fb) + hi * (1 - pb)
    m2 = ((mu * mu + s * s) * mid + 2 * mu * s * (fa - fb) + s * s * (a * fa - b * fb)
          + hi * hi * (1 - pb))
    return m1, np.maximum(m2 - m1 * m1, 0.0)


def max_normal_moments(n):
    """Mean and std of the maximum of ``n`` independent standard normals (quadrature)."""
    z = np.linspace(-8, 8, 16001)
    pdf = n * _phi(z) * _cdf(z) ** (n - 1)
    dz = z[1] - z[0]
    mean = float(np.sum(z * pdf) * dz)
    var = float(np.sum((z - mean) ** 2 * pdf) * dz)
    return mean, float(np.sqrt(var))


def _bn_stats(model, fl):
    modules = dict(model.named_modules())
    bn = modules[fl.extra["bn_folded"]]
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(var)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(var)
    return beta.copy(), np.abs(gamma) * np.sqrt(var / (var + bn.eps))


def _mac_stats(fl, st):
    m, v = st.moments()
    w = dense_weight(fl)  # grouped/depthwise: zero where a group does not read a channel
    w = w.reshape(w.shape[0], len(m), -1)
    mu = fl.bias + np.einsum("ock,c->o", w, m)
    var = np.einsum("ock,c->o", w * w, v)
    return Stats(mu, np.sqrt(var))


def _act_stats(pre, fl):
    """The tensor after ``fl``'s fused activation, from its pre-activation Gaussian."""
    relu = fl.act is not Act.NONE
    return Stats(pre.mu, pre.sigma, relu, 6.0 if fl.act is Act.RELU6 else np.inf)


def _input_stats(layers, input_min, input_max):
    c = layers[0].in_shape[0]  # layer 0 reads the network input (topological order)
    return Stats(np.full(c, (input_min + input_max) / 2),
                 np.full(c, (input_max - input_min) / np.sqrt(12)))


def _pass_stats(fl, st):
    """Max pooling, average pooling, flatten."""
    if fl.kind is LayerKind.MAXPOOL:  # commutes with ReLU: applied to the pre-ReLU Gaussian
        e, d = max_normal_moments(fl.kernel[0] * fl.kernel[1])
        return Stats(st.mu + e * st.sigma, d * st.sigma, st.relu, st.hi)
    if fl.kind is LayerKind.AVGPOOL:
        m, v = st.moments()
        return Stats(m, np.sqrt(v / (fl.kernel[0] * fl.kernel[1])))
    if len(fl.in_shape) == 3:
        rep = int(np.prod(fl.in_shape[1:]))
        return Stats(*(np.repeat(f, rep) for f in st.channels()))
    return st


def propagate(model, layers, input_max=1.0, input_min=0.0):
    """Pre-activation :class:`Stats` of every Conv2d/Linear and add (``{index: Stats}``).

    On the graph: a layer reads the statistics of its sources; an add's inputs are taken as
    independent (means and variances add); a concat joins its inputs' channels."""
    tensors = {-1: _input_stats(layers, input_min, input_max)}
    out = {}
    for i, fl in enumerate(layers):
        src = [tensors[j] for j in sources(layers, i)]
        if fl.kind in MAC_KINDS:
            pre = Stats(*_bn_stats(model, fl)) if "bn_folded" in fl.extra else _mac_stats(
                fl, src[0])
            out[i], tensors[i] = pre, _act_stats(pre, fl)
        elif fl.kind is LayerKind.ADD:
            moments = [st.moments() for st in src]
            pre = Stats(sum(m for m, _ in moments), np.sqrt(sum(v for _, v in moments)))
            out[i], tensors[i] = pre, _act_stats(pre, fl)
        elif fl.kind is LayerKind.CONCAT:
            tensors[i] = Stats(*(np.concatenate(f) for f in zip(*(st.channels() for st in src),
                                                                  strict=True)))
        else:
            tensors[i] = _pass_stats(fl, src[0])
    return out


def _threshold(st, fl, fmt, k):
    """The clipping threshold of a tensor with pre-activation ``st``: ``max(mu + k sigma)``
    when unsigned (at most 6 after ReLU6), ``max |mu -+ k sigma|`` when signed."""
    if fmt.signed:
        return float(np.max(np.maximum(np.abs(st.mu - k * st.sigma),
                                       np.abs(st.mu + k * st.sigma))))
    top = st.mu + k * st.sigma
    return float(np.max(np.minimum(top, 6.0) if fl.act is Act.RELU6 else top))


def _levels(fmt):
    return (1 << (fmt.bits - 1)) - 1 if fmt.signed else (1 << fmt.bits) - 1


def quantize_data_free(model, layers, name, input_shape, cfg, input_max=1.0, k=DEFAULT_K,
                       input_min=0.0):
    """The FakeQuantNet for ``cfg`` without any data: see the module docstring.

    ``model`` is the float ``nn.Module`` the graph was captured from (for its BatchNorm
    statistics); ``cfg.w_method`` must not need data (MSE_OUTPUT does). The input is taken as
    uniform on ``[input_min, input_max]`` (signed when ``input_min < 0``). Signed tensors
    get symmetric ranges, and a concat's producers one shared scale from the concat's channels.
    """
    if cfg.w_method is RangeMethod.MSE_OUTPUT:
        raise ValueError("Data-free weight range method must not need data, not mse-out")
    if not input_min < input_max:
        raise ValueError(f"Data-free input range must have input_min < input_max, not"
                         f" {input_min!r}..{input_max!r}")
    input_fmt = QFormat(cfg.input_bits, input_min < 0)
    fmts = ptq.plan_formats(layers, cfg, input_fmt)
    stats = propagate(model, layers, input_max, input_min)
    w_scales, out_scales = {}, {}
    for i, st in stats.items():
        fl = layers[i]
        if fl.kind in MAC_KINDS:
            w_scales[i] = weight_scales(fl.weight, cfg.bits_for(fl.name)[0], cfg.w_method,
                                        grid=cfg.grid)
        if fmts[i] is not None:
            out_scales[i] = max(_threshold(st, fl, fmts[i], k), 1e-6) / _levels(fmts[i])
    _share_concat_scales(layers, fmts, stats, out_scales, k)
    input_scale = max(abs(input_min), abs(input_max)) / _levels(input_fmt)
    return ptq.assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales,
                        input_fmt)


def _share_concat_scales(layers, fmts, stats, out_scales, k):
    """A concat's producers share the widest of their scales (each set on its own channels)."""
    for i, fl in enumerate(layers):
        if fl.kind is LayerKind.CONCAT:
            src = [j for j in sources(layers, i) if j in out_scales]
            shared = max(max(_threshold(stats[j], layers[j], fmts[i], k), 1e-6) for j in src) \
                / _levels(fmts[i]) if src else None
            for j in src:
                out_scales[j] = shared
