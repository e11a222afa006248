"""Data-free quantization: no calibration images (Nagel et al. 2019 DFQ; Nayak et al.).

Weight scales come from the weights alone (per-channel MSE on the weight values). Activation
ranges come from statistics propagated through the network, per channel, as Gaussians:

- after a Conv2d/Linear followed by BatchNorm, the pre-activation of channel ``c`` is
  ``N(beta_c, gamma_c^2)`` (BatchNorm's running statistics normalise it; its affine
  parameters set the mean and spread), read from the model's BatchNorm module;
- after a layer without BatchNorm (digits-cnn's third conv, every MLP layer) the mean and
  variance are propagated analytically: ``mean_o = b_o + sum W m``, ``var_o = sum W^2 v``
  (inputs assumed independent; zero padding at borders is ignored, which slightly
  overestimates border means);
- ReLU: moments of the rectified Gaussian (closed form);
- max pooling of ``n`` values (commutes with ReLU, so it is applied to the pre-ReLU Gaussian):
  mean ``mu + e_n sigma`` and std ``d_n sigma`` with ``e_n``, ``d_n`` the mean and std of the
  maximum of ``n`` independent standard normals (computed by quadrature);
- average pooling of ``n`` values: same mean, variance / n;
- the network input is assumed uniform on ``[0, input_max]`` (the only thing the user states;
  ``1.0`` for images scaled to 0..1).

The clipping threshold of an activation tensor is ``max_c (mu_c + k sigma_c)`` of its pre-ReLU
Gaussians (``k`` = :data:`DEFAULT_K` unless given). Contract: no image is read; the result is
a FakeQuantNet like :func:`quantflow.ptq.quantize` builds, exported by the same path.
"""

from dataclasses import dataclass

import numpy as np

from . import ptq
from .calibrate import RangeMethod, weight_scales
from .errors import UnsupportedOpError
from .importers import Act
from .qmodel import MAC_KINDS, LayerKind

__all__ = ["DEFAULT_K", "Stats", "propagate", "quantize_data_free", "max_normal_moments"]

#: Standard deviations above the mean at which a pre-ReLU activation is clipped.
DEFAULT_K = 3.0


@dataclass
class Stats:
    """Per-channel Gaussian ``N(mu, sigma^2)``; ``relu`` when the tensor is its rectification."""

    mu: np.ndarray
    sigma: np.ndarray
    relu: bool = False

    def moments(self):
        """Mean and variance of the tensor's actual values."""
        if not self.relu:
            return self.mu, self.sigma ** 2
        return _relu_moments(self.mu, self.sigma)


def _phi(z):
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _cdf(z):
    from scipy.special import ndtr

    return ndtr(z)


def _relu_moments(mu, sigma):
    s = np.maximum(sigma, 1e-12)
    a = mu / s
    m1 = mu * _cdf(a) + s * _phi(a)
    m2 = (mu * mu + s * s) * _cdf(a) + mu * s * _phi(a)
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
    w = fl.weight.reshape(fl.weight.shape[0], len(m), -1)
    mu = fl.bias + np.einsum("ock,c->o", w, m)
    var = np.einsum("ock,c->o", w * w, v)
    return Stats(mu, np.sqrt(var))


def propagate(model, layers, input_max=1.0):
    """Pre-activation :class:`Stats` of every MAC layer (``{index: Stats}``) and the input's."""
    c = layers[0].in_shape[0]
    st = Stats(np.full(c, input_max / 2), np.full(c, input_max / np.sqrt(12)))
    out = {}
    for i, fl in enumerate(layers):
        if fl.kind in MAC_KINDS:
            pre = Stats(*_bn_stats(model, fl)) if "bn_folded" in fl.extra else _mac_stats(fl, st)
            out[i] = pre
            st = Stats(pre.mu, pre.sigma, fl.act is not Act.NONE)
            if fl.act is Act.RELU6:
                raise UnsupportedOpError(f"layer {fl.name!r}: data-free ranges support ReLU,"
                                         " not ReLU6")
        elif fl.kind is LayerKind.MAXPOOL:
            e, d = max_normal_moments(fl.kernel[0] * fl.kernel[1])
            st = Stats(st.mu + e * st.sigma, d * st.sigma, st.relu)
        elif fl.kind is LayerKind.AVGPOOL:
            m, v = st.moments()
            st = Stats(m, np.sqrt(v / (fl.kernel[0] * fl.kernel[1])))
        elif fl.kind is LayerKind.FLATTEN and len(fl.in_shape) == 3:
            rep = int(np.prod(fl.in_shape[1:]))
            st = Stats(np.repeat(st.mu, rep), np.repeat(st.sigma, rep), st.relu)
    return out


def quantize_data_free(model, layers, name, input_shape, cfg, input_max=1.0, k=DEFAULT_K):
    """The FakeQuantNet for ``cfg`` without any data: see the module docstring.

    ``model`` is the float ``nn.Module`` the chain was captured from (for its BatchNorm
    statistics); ``cfg.w_method`` must not need data (MSE_OUTPUT does).
    """
    if cfg.w_method is RangeMethod.MSE_OUTPUT:
        raise ValueError("Data-free weight range method must not need data, not mse-out")
    ptq.check_chain(layers)
    stats = propagate(model, layers, input_max)
    w_scales, out_scales = {}, {}
    for i, st in stats.items():
        wb, ab = cfg.bits_for(layers[i].name)
        w_scales[i] = weight_scales(layers[i].weight, wb, cfg.w_method)
        top = float(np.max(st.mu + k * st.sigma))
        out_scales[i] = max(top, 1e-6) / ((1 << ab) - 1)
    input_scale = input_max / ((1 << cfg.input_bits) - 1)
    return ptq.assemble(layers, name, input_shape, cfg, input_scale, w_scales, out_scales)
