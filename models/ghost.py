"""GhostNet blocks (arXiv:1911.11907) used by yolov5s-ghost.yaml: half the channels from a convolution, the other
half from a cheap depth-wise 5x5 convolution of that half."""

import torch
from torch import nn

from models.blocks import C3, YOLOV5_MODULE, Conv, DWConv, pickled_as


class GhostConv(nn.Module):
    """Conv to c2/2 channels, then a depth-wise 5x5 Conv of them; both halves concatenated."""

    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        hidden = c2 // 2
        self.cv1 = Conv(c1, hidden, k, s, None, g, act=act)
        self.cv2 = Conv(hidden, hidden, 5, 1, None, hidden, act=act)

    def forward(self, x):
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


class GhostBottleneck(nn.Module):
    """GhostConv, (depth-wise k x k Conv when s=2), linear GhostConv; plus a shortcut (a strided one when s=2)."""

    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        hidden = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, hidden, 1, 1),
            DWConv(hidden, hidden, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(hidden, c2, 1, 1, act=False),
        )
        self.shortcut = (nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2
                         else nn.Identity())

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 with n GhostBottlenecks in place of its Bottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(hidden, hidden) for _ in range(n)))


pickled_as(YOLOV5_MODULE, GhostConv, GhostBottleneck, C3Ghost)
