"""Architectures of the zoo's DAG and MLPerf Tiny networks (float PyTorch, torch.fx-traceable).

Two digits-sized DAG networks exercise the capture of residual adds and depthwise convolutions
on data that trains in seconds; four follow the MLPerf Tiny v0.5+ training references
(github.com/mlcommons/tiny, ``benchmark/training/*``, read at commit 1afd2c9 and, for ResNet-8,
at bceb91c, the v0.5 release that ships the 16-filter model):

- :func:`dscnn_kws`: ``keyword_spotting/keras_model.py``, ``ds_cnn`` (Zhang et al., "Hello
  Edge: Keyword Spotting on Microcontrollers", arXiv:1711.07128, 2017: DS-CNN S).
- :func:`mobilenetv1_vww`: ``visual_wake_words/vww_model.py`` (MobileNetV1, Howard et al.
  2017, alpha 0.25, via SiliconLabs' ``mobilenet_v1_eembc.py``).
- :func:`resnet8_ic`: ``image_classification/keras_model.py``, ``resnet_v1_eembc``.
- :func:`fc_autoencoder`: ``anomaly_detection/keras_model.py`` (DCASE 2020 task 2 baseline).

Keras layers keep their biases in front of BatchNorm (``use_bias=True`` by default), so these do
too: the parameter counts equal the references' ``model.summary()`` totals (which count the
BatchNorm moving mean and variance; :func:`keras_param_count`).

**Padding.** Keras ``padding='same'`` pads ``max((out-1)*s + k - in, 0)`` zeros split with the
extra one at the bottom/right. With stride 1 and odd kernels that is symmetric and PyTorch's
``padding=k//2`` is identical. A stride-2 layer on an even input pads (0, 1) in Keras; here it
pads (1, 1), which gives the same output shape and MACs but sees the window one pixel up-left
(the MLCommons PyTorch port of ResNet-8, ``benchmark/experimental/training_torch/
image_classification/utils/model.py``, does the same). The DS-CNN's 10x4 stride-2 stem on 49x10
pads rows (4, 5) and columns (1, 1) in Keras; here rows (5, 5), columns (1, 1): the same 25x5
output, window one row up. The networks are trained from scratch here, so only a port of Keras
weights would notice; the capture supports symmetric padding only.
"""

import torch
from torch import nn

__all__ = ["ResidualBlock", "digits_resnet", "digits_dsconv", "dscnn_kws", "mobilenetv1_vww",
           "resnet8_ic", "fc_autoencoder", "keras_param_count", "macs", "VWW_RESOLUTION",
           "VWW_PROXY_RESOLUTION"]

#: The MLPerf Tiny visual wake words input (96x96x3) and the reduced proxy resolution.
VWW_RESOLUTION = 96
VWW_PROXY_RESOLUTION = 32


class ResidualBlock(nn.Module):
    """ResNet v1 basic block: conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut, then ReLU.

    The shortcut is the identity when shape is kept, else a strided 1x1 convolution
    (``shortcut_bn``: followed by BatchNorm, as in He et al. 2016 option B; the MLPerf ResNet-8
    has no BatchNorm there)."""

    def __init__(self, cin, cout, stride=1, shortcut_bn=True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        else:
            proj = [nn.Conv2d(cin, cout, 1, stride, 0)]
            self.shortcut = nn.Sequential(*proj, nn.BatchNorm2d(cout)) if shortcut_bn \
                else proj[0]
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


def _conv_bn_relu(cin, cout, k, stride=1, padding=None, groups=1):
    padding = k // 2 if padding is None else padding
    return [nn.Conv2d(cin, cout, k, stride, padding, groups=groups), nn.BatchNorm2d(cout),
            nn.ReLU()]


def _ds_block(cin, cout, stride=1):
    """Depthwise 3x3 (``groups=cin``) +BN+ReLU, pointwise 1x1 +BN+ReLU."""
    return _conv_bn_relu(cin, cin, 3, stride, groups=cin) + _conv_bn_relu(cin, cout, 1)


def digits_resnet():
    """1x8x8 -> 10: stem conv3x3 1->16, an identity block (16), a stride-2 block 16->32 with a
    1x1 projection +BN, flatten 32x4x4, linear 512->10."""
    return nn.Sequential(
        *_conv_bn_relu(1, 16, 3),
        ResidualBlock(16, 16),
        ResidualBlock(16, 32, stride=2),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


def digits_dsconv():
    """1x8x8 -> 10: stem conv3x3 1->16, depthwise-separable 16->32 (stride 1) and 32->32
    (depthwise stride 2), flatten 32x4x4, linear 512->10."""
    return nn.Sequential(
        *_conv_bn_relu(1, 16, 3),
        *_ds_block(16, 32),
        *_ds_block(32, 32, stride=2),
        nn.Flatten(),
        nn.Linear(512, 10),
    )


def dscnn_kws(classes=12):
    """MLPerf Tiny keyword spotting DS-CNN: 1x49x10 MFCC (49 frames of 10 coefficients) -> 12.

    Conv 10x4 stride 2 -> 64 +BN+ReLU, Dropout 0.2; four depthwise-separable blocks (dw 3x3
    +BN+ReLU, pw 1x1 64 +BN+ReLU); Dropout 0.4; AveragePooling (24, 5) on the 25x5 map (the
    reference's ``int(49/2), int(10/2)``: one window, the last row is not pooled); flatten;
    dense 64->12 (softmax in the reference; logits here). See the module note on padding."""
    layers = _conv_bn_relu(1, 64, (10, 4), 2, padding=(5, 1)) + [nn.Dropout(0.2)]
    for _ in range(4):
        layers += _ds_block(64, 64)
    return nn.Sequential(*layers, nn.Dropout(0.4), nn.AvgPool2d((24, 5)), nn.Flatten(),
                         nn.Linear(64, classes))


def mobilenetv1_vww(classes=2, resolution=VWW_RESOLUTION):
    """MLPerf Tiny visual wake words MobileNetV1, alpha 0.25: 3 x res x res -> 2.

    Conv 3x3 stride 2 -> 8 +BN+ReLU, then 13 depthwise-separable blocks (dw 3x3 +BN+ReLU, pw
    1x1 +BN+ReLU) to 16, 32 (s2), 32, 64 (s2), 64, 128 (s2), 128 x5, 256 (s2), 256; average
    pooling over the whole map; flatten; dense 256->2 (softmax in the reference). ReLU, not
    ReLU6, as in the reference. ``resolution`` 96 is the benchmark's input; the zoo's proxy
    variant uses :data:`VWW_PROXY_RESOLUTION` (32: the last map is 1x1 instead of 3x3)."""
    plan = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + \
        [(256, 2), (256, 1)]
    layers, c = _conv_bn_relu(3, 8, 3, 2), 8
    for cout, s in plan:
        layers += _ds_block(c, cout, s)
        c = cout
    size = resolution
    for _ in range(5):  # the stem and four stride-2 blocks
        size = (size + 1) // 2
    return nn.Sequential(*layers, nn.AvgPool2d(size), nn.Flatten(), nn.Linear(c, classes))


def resnet8_ic(classes=10):
    """MLPerf Tiny image classification ResNet-8 (v0.5 ``resnet_v1_eembc``, 16 filters):
    3x32x32 -> 10.

    Conv 3x3 16 +BN+ReLU; stack 1: basic block 16, identity shortcut; stacks 2 and 3: basic
    blocks 32 and 64 with stride 2 and a strided 1x1 convolution shortcut (no BatchNorm); average
    pooling 8x8; flatten; dense 64->10. (The current reference defaults to 26 filters.)"""
    return nn.Sequential(
        *_conv_bn_relu(3, 16, 3),
        ResidualBlock(16, 16),
        ResidualBlock(16, 32, stride=2, shortcut_bn=False),
        ResidualBlock(32, 64, stride=2, shortcut_bn=False),
        nn.AvgPool2d(8),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def fc_autoencoder(inputs=640, hidden=128, bottleneck=8):
    """MLPerf Tiny anomaly detection autoencoder: 640 (128 log-mel bins x 5 frames) -> 640.

    Dense 128 +BN+ReLU x4, dense 8 +BN+ReLU, dense 128 +BN+ReLU x4, dense 640 (linear output);
    trained with mean squared error on the input itself."""
    sizes = [inputs] + [hidden] * 4 + [bottleneck] + [hidden] * 4
    layers = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(hidden, inputs))


def keras_param_count(model):
    """Parameters as Keras' ``model.summary()`` counts them: weights plus BatchNorm's moving
    mean and variance."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n += m.running_mean.numel() + m.running_var.numel()
    return n


@torch.no_grad()
def macs(model, input_shape):
    """Multiply-accumulates of one inference through the Conv2d and Linear layers."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total += out.numel() * k
        else:
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return total
