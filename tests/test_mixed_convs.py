"""models/mixed_convs.py: CrossConv, C3x, MixConv2d."""

import pytest
import torch

from models.common import C3x, CrossConv
from models.experimental import MixConv2d


def test_crossconv_is_1xk_then_kx1():
    m = CrossConv(8, 8, k=3, s=2)
    assert m.cv1.conv.kernel_size == (1, 3) and m.cv1.conv.stride == (1, 2)
    assert m.cv2.conv.kernel_size == (3, 1) and m.cv2.conv.stride == (2, 1)
    assert m(torch.rand(1, 8, 8, 8)).shape == (1, 8, 4, 4)


def test_c3x_uses_crossconvs():
    m = C3x(16, 16, n=2)
    assert [type(b) for b in m.m] == [CrossConv, CrossConv] and m.m[0].add
    assert m(torch.rand(1, 16, 6, 6)).shape == (1, 16, 6, 6)


@pytest.mark.parametrize("c2, k, equal_ch, widths", [
    (8, (1, 3), True, [4, 4]),
    (10, (1, 3, 5), True, [4, 3, 3]),  # floor(linspace(0, 3 - 1e-6, 10)): 0,0,0,0,1,1,1,2,2,2
    (34, (3, 5), False, [25, 9]),  # equal weights: 9 w3 = 25 w5 and w3 + w5 = 34
    # w1 = 9 w3 = 25 w5, sum 35: (30.4, 3.4, 1.2) rounds to 34 channels; the first kernel size takes the missing one
    (35, (1, 3, 5), False, [31, 3, 1]),
])
def test_mixconv_channel_split(c2, k, equal_ch, widths):
    m = MixConv2d(4, c2, k, equal_ch=equal_ch)
    assert [conv.out_channels for conv in m.m] == widths
    assert [conv.kernel_size[0] for conv in m.m] == list(k)
    assert m(torch.rand(1, 4, 8, 8)).shape == (1, sum(widths), 8, 8)


def test_mixconv_is_pickled_under_yolov5s_path():
    assert MixConv2d.__module__ == "models.experimental"
