"""Convolutions that mix kernel shapes: CrossConv (1 x k then k x 1) with its C3x, and MixConv2d (several kernel
sizes side by side, arXiv:1907.09595)."""

import math

import numpy as np
import torch
from torch import nn

from models.blocks import C3, YOLOV5_MODULE, Conv, pickled_as


class CrossConv(nn.Module):
    """A 1 x k Conv then a k x 1 Conv (strides (1, s) and (s, 1)), with a residual when `shortcut` and c1 == c2."""

    def __init__(self, c1, c2, k=3, s=1, g=1, e=1.0, shortcut=False):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, (1, k), (1, s))
        self.cv2 = Conv(hidden, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3x(C3):
    """C3 with n CrossConvs in place of its Bottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(hidden, hidden, 3, 1, g, 1.0, shortcut) for _ in range(n)))


class MixConv2d(nn.Module):
    """One grouped convolution per kernel size in k, their outputs concatenated to c2 channels, then BN and SiLU.

    equal_ch: the c2 channels split evenly over the kernel sizes; otherwise split so that each kernel size gets about
    the same number of weights (a least-squares solve, as YOLOv5 does).
    """

    def __init__(self, c1, c2, k=(1, 3), s=1, equal_ch=True):
        super().__init__()
        n = len(k)
        if equal_ch:
            group = torch.linspace(0, n - 1e-6, c2).floor()  # the kernel-size group of each output channel
            widths = [int((group == g).sum()) for g in range(n)]
        else:  # widths w_g with w_0 k_0^2 = w_1 k_1^2 = ... and sum(w) = c2
            b = [c2] + [0] * n
            a = np.eye(n + 1, n, k=-1)
            a -= np.roll(a, 1, axis=1)
            a *= np.array(k) ** 2
            a[0] = 1
            widths = [int(w) for w in np.linalg.lstsq(a, b, rcond=None)[0].round()]
            widths[0] += c2 - sum(widths)  # rounding can miss c2 (YOLOv5 then fails at its BatchNorm): fix the first
        self.m = nn.ModuleList(nn.Conv2d(c1, w, kernel, s, kernel // 2, groups=math.gcd(c1, w), bias=False)
                               for kernel, w in zip(k, widths))
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))


pickled_as(YOLOV5_MODULE, CrossConv, C3x)
pickled_as("models.experimental", MixConv2d)  # where YOLOv5 defines it
