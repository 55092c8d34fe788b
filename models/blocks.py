"""The basic blocks of the YOLOv5 network (Conv, C3, SPPF, ...), with YOLOv5's attribute names so state dicts match.

Import them from models.common, YOLOv5's path for every block.
"""

import math

import torch
from torch import nn

from utils.model_utils import fuse_conv_and_bn

BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # YOLOv5's BatchNorm settings
YOLOV5_MODULE = "models.common"  # where YOLOv5 defines its blocks


def pickled_as(module, *classes):
    """Name `module` as the home of `classes` for pickle, which records a class by its module path.

    Checkpoints then name YOLOv5's paths (models.common.Conv, ...), so they load in YOLOv5's own tools and in this
    toolkit's safe loader; the module re-exports the classes, so the path resolves here too.
    """
    for cls in classes:
        cls.__module__ = module


def autopad(k, p=None, d=1):
    """'Same' padding for kernel k (int or list) with dilation d, unless p is given."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation. After fuse() the BN is folded into the conv and removed."""

    default_act = nn.SiLU()  # one shared instance, as YOLOv5 v7.0 (it holds no state)

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        if "bn" in self._modules:
            return self.act(self.bn(self.conv(x)))
        return self.forward_fuse(x)

    def forward_fuse(self, x):
        return self.act(self.conv(x))


def unfused_convs(model):
    """The Conv layers of `model` whose BatchNorm is not folded into the convolution yet."""
    return [m for m in model.modules() if isinstance(m, Conv) and "bn" in m._modules]


def fuse_convs(model):
    """Fold every Conv's BatchNorm into its convolution, in place (outputs unchanged); returns `model`."""
    for m in unfused_convs(model):
        m.conv = fuse_conv_and_bn(m.conv, m.bn)
        del m.bn
    return model


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1, c2, k=1, s=1, d=1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class Bottleneck(nn.Module):
    """1x1 then 3x3 Conv, with a residual connection when `shortcut` and the channel counts agree."""

    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """CSP bottleneck of YOLOv5 v1-v5 (https://github.com/WongKinYiu/CrossStagePartialNetworks)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * hidden)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions: n Bottlenecks on one half, a 1x1 Conv on the other, fused by a 1x1 Conv."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOv3-SPP): max-pools of sizes k in parallel, concatenated with the input."""

    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], 1))


class C3SPP(C3):
    """C3 with an SPP block in place of its Bottlenecks."""

    def __init__(self, c1, c2, k=(5, 9, 13), n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = SPP(hidden, hidden, k)


class SPPF(nn.Module):
    """SPP-Fast: one k x k max-pool applied three times in series; for k=5 it equals SPP(k=(5, 9, 13)), but faster."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Focus(nn.Module):
    """Space-to-depth stem of YOLOv5 v1-v5: the four pixel phases stacked as channels (x(b,c,w,h) -> y(b,4c,w/2,h/2))."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, 1))


class Concat(nn.Module):
    """Concatenate a list of tensors along dimension d."""

    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class Contract(nn.Module):
    """Space to depth by `gain`: (b, c, h, w) -> (b, c * gain^2, h / gain, w / gain), channels ordered by pixel phase."""

    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).contiguous()  # (b, s, s, c, h/s, w/s)
        return x.view(b, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """Depth to space by `gain`, Contract's inverse: (b, c, h, w) -> (b, c / gain^2, h * gain, w * gain)."""

    def __init__(self, gain=2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2).contiguous()  # (b, c/s^2, h, s, w, s)
        return x.view(b, c // s**2, h * s, w * s)


pickled_as(YOLOV5_MODULE, Conv, DWConv, Bottleneck, BottleneckCSP, C3, C3SPP, SPP, SPPF, Focus, Concat, Contract, Expand)
