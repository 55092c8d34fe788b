"""models/ghost.py: GhostConv, GhostBottleneck, C3Ghost; yolov5s-ghost trains."""

import torch

from models.common import C3Ghost, GhostBottleneck, GhostConv
from models.yolo import DetectionModel


def test_ghostconv_is_a_conv_then_its_depthwise_5x5():
    torch.manual_seed(0)
    m = GhostConv(8, 16, 3, 2).eval()
    x = torch.rand(1, 8, 16, 16)
    y = m(x)
    assert y.shape == (1, 16, 8, 8)
    half = m.cv1(x)
    assert torch.equal(y[:, :8], half) and torch.equal(y[:, 8:], m.cv2(half))
    assert m.cv2.conv.groups == 8 and m.cv2.conv.kernel_size == (5, 5)


def test_ghost_bottleneck_stride_2_halves_the_map_with_a_strided_shortcut():
    m = GhostBottleneck(16, 32, 3, 2)
    assert m(torch.rand(1, 16, 16, 16)).shape == (1, 32, 8, 8)
    assert isinstance(GhostBottleneck(16, 16).shortcut, torch.nn.Identity)


def test_c3ghost_parameters():
    """C3 convs 8->4, 8->4, 8->8 (with BN) plus one GhostBottleneck(4, 4): GhostConv(4, 2) and GhostConv(2, 4)."""
    m = C3Ghost(8, 8, n=1)
    c3 = (8 * 4 + 8) * 2 + (8 * 8 + 16)
    ghost_1 = (4 * 1 + 2) + (1 * 25 + 2)  # 1x1 conv 4->1 (+BN), depth-wise 5x5 on 1 channel (+BN)
    ghost_2 = (2 * 2 + 4) + (2 * 25 + 4)  # 1x1 conv 2->2 (+BN), depth-wise 5x5 on 2 channels (+BN)
    assert sum(p.numel() for p in m.parameters()) == c3 + ghost_1 + ghost_2


def test_yolov5s_ghost_trains_one_step(train_one_step):
    model = DetectionModel("yolov5s-ghost.yaml", nc=4, verbose=False)
    assert isinstance(model.model[1], GhostConv) and isinstance(model.model[2], C3Ghost)
    loss = train_one_step(model, model.model[1:3])
    assert loss > 0
