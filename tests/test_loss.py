"""ComputeLoss, build_targets, smooth_BCE and the focal losses against hand-derived values."""

import math

import pytest
import torch
from torch import nn

from utils.loss import ComputeLoss, FocalLoss, QFocalLoss, smooth_BCE

LOG2 = math.log(2)
HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0}


class FakeDetect(nn.Module):
    """Just what ComputeLoss reads from a Detect head: nl, na, nc, stride and anchors in grid units."""

    def __init__(self, nc, anchors_px, strides=(8, 16, 32)):
        super().__init__()
        self.nc, self.nl, self.na = nc, len(strides), len(anchors_px[0])
        self.stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("anchors", torch.tensor(anchors_px, dtype=torch.float32) / self.stride.view(-1, 1, 1))
        self.conv = nn.Conv2d(1, 1, 1)  # gives the model a parameter (ComputeLoss reads its device)


class FakeModel(nn.Module):
    def __init__(self, nc=3, anchors_px=(((16, 16),), ((64, 64),), ((256, 256),)), **hyp):
        super().__init__()
        self.model = nn.ModuleList([FakeDetect(nc, anchors_px)])
        self.hyp = {**HYP, **hyp}


def zero_preds(bs, nc, na=1, img=64, strides=(8, 16, 32)):
    return [torch.zeros(bs, na, img // s, img // s, 5 + nc, requires_grad=True) for s in strides]


@pytest.mark.parametrize("eps, expected", [(0.0, (1.0, 0.0)), (0.1, (0.95, 0.05)), (0.2, (0.9, 0.1))])
def test_smooth_bce(eps, expected):
    assert smooth_BCE(eps) == pytest.approx(expected)


def test_loss_and_gradients_hand_derived():
    """All-zero logits: sigmoid 0.5, predicted box = anchor centred in its cell.

    One 8x8-px target centred on cell (2, 2) of the stride-8 layer (1x1 grid units, anchor 2x2): ratio 2 < 4,
    so it matches only there (P4: 0.5 vs 4 -> 8, P5: worse), and no neighbour cell (fractions are exactly 0.5).
    IoU of the concentric 2x2 prediction and 1x1 target = 1/4, CIoU adds 0 (same centre, same aspect), so
    lbox = 0.75. Every BCE with logit 0 is log 2 whatever the target: lobj = log2 * (4 + 1 + 0.4), lcls = log2.
    """
    bs, nc = 2, 3
    model = FakeModel(nc=nc)
    preds = zero_preds(bs, nc)
    targets = torch.tensor([[1, 2, 2.5 / 8, 2.5 / 8, 1 / 8, 1 / 8]])
    loss, items = ComputeLoss(model)(preds, targets)

    box, obj, cls = 0.05 * 0.75, 1.0 * LOG2 * 5.4, 0.5 * LOG2
    assert items.tolist() == pytest.approx([box, obj, cls], rel=1e-5)
    assert loss.item() == pytest.approx((box + obj + cls) * bs, rel=1e-5)

    loss.backward()
    g = preds[0].grad  # (bs, na, 8, 8, 5 + nc)
    # objectness: d/dx mean BCE = (sigmoid(x) - t) / N, N = 2*1*8*8, times balance 4, obj gain 1, bs 2
    n_obj = bs * 8 * 8
    assert g[1, 0, 2, 2, 4].item() == pytest.approx(bs * 4.0 * (0.5 - 0.25) / n_obj, rel=1e-5)
    assert g[0, 0, 2, 2, 4].item() == pytest.approx(bs * 4.0 * 0.5 / n_obj, rel=1e-5)
    assert preds[1].grad[0, 0, 0, 0, 4].item() == pytest.approx(bs * 1.0 * 0.5 / (bs * 4 * 4), rel=1e-5)
    # class: mean over 1 target x 3 classes, target 1 for class 2, gain 0.5, bs 2
    assert g[1, 0, 2, 2, 5:].tolist() == pytest.approx([bs * 0.5 * 0.5 / 3] * 2 + [bs * 0.5 * -0.5 / 3], rel=1e-5)
    # box: 1 - IoU = 1 - 1/(pw*ph); d/dpw = 1/(pw^2 ph) = 1/8; pw = (2 sigmoid(x))^2 * 2 -> dpw/dx = 2
    assert g[1, 0, 2, 2, 2:4].tolist() == pytest.approx([bs * 0.05 * 0.25] * 2, rel=1e-4)
    assert g[1, 0, 2, 2, 0:2].abs().max().item() < 1e-6  # centres coincide: no pull
    assert g[:, :, :, :, 5:].abs().sum().item() == pytest.approx(g[1, 0, 2, 2, 5:].abs().sum().item())


def test_single_class_has_no_class_loss_and_empty_targets():
    model = FakeModel(nc=1)
    loss, items = ComputeLoss(model)(zero_preds(2, 1), torch.tensor([[0, 0, 0.3125, 0.3125, 0.125, 0.125]]))
    assert items[2].item() == 0.0
    loss, items = ComputeLoss(model)(zero_preds(2, 1), torch.zeros(0, 6))
    assert items.tolist() == pytest.approx([0.0, LOG2 * 5.4, 0.0], rel=1e-5)


def test_build_targets_worked_example():
    """The docstring's example: target x .30 y .60 w h .25 on an 8x8 grid, YOLOv5's P3 anchors."""
    anchors = (((10, 13), (16, 30), (33, 23)), ((30, 61), (62, 45), (59, 119)), ((116, 90), (156, 198), (373, 326)))
    model = FakeModel(nc=3, anchors_px=anchors)
    loss_fn = ComputeLoss(model)
    preds = [torch.zeros(1, 3, 64 // s, 64 // s, 8) for s in (8, 16, 32)]
    tcls, tbox, indices, anch = loss_fn.build_targets(preds, torch.tensor([[0, 2, 0.30, 0.60, 0.25, 0.25]]))
    b, a, gj, gi = indices[0]
    rows = sorted(zip(a.tolist(), gi.tolist(), gj.tolist(), [tuple(round(v, 4) for v in t) for t in tbox[0].tolist()]))
    expected = sorted((anchor, *cell, box) for anchor in range(3) for cell, box in
                      [((2, 4), (0.4, 0.8, 2, 2)), ((1, 4), (1.4, 0.8, 2, 2)), ((2, 5), (0.4, -0.2, 2, 2))])
    assert rows == expected
    assert tcls[0].tolist() == [2] * 9 and b.tolist() == [0] * 9
    assert anch[0][a == 1][0].tolist() == pytest.approx([2.0, 3.75])
    # P4 (stride 16): w = h = 1 cell; anchors/16 = (1.875, 3.81), (3.875, 2.81), (3.69, 7.44): the first two
    # have max ratio < 4; x 1.2 and y 2.4 add the left and upper neighbours: 2 anchors x 3 cells
    assert sorted(indices[1][1].tolist()) == [0, 0, 0, 1, 1, 1]
    assert sorted(zip(indices[1][3].tolist(), indices[1][2].tolist())) == sorted([(1, 2), (0, 2), (1, 1)] * 2)
    assert len(indices[2][0]) == 0  # P5: w = 0.5 cell against anchors of 3.6 cells and more


def test_targets_at_image_edge_are_clamped_into_the_grid():
    model = FakeModel(nc=3)
    tcls, tbox, indices, _ = ComputeLoss(model).build_targets(zero_preds(1, 3), torch.tensor([[0, 0, 0.999, 0.001, 0.1, 0.1]]))
    _, _, gj, gi = indices[0]
    assert gi.max().item() <= 7 and gj.min().item() >= 0


@pytest.mark.parametrize("true, expected", [(1.0, LOG2 * 0.25 * 0.25), (0.0, LOG2 * 0.75 * 0.25)])
def test_focal_loss(true, expected):
    """Logit 0: BCE log 2, p_t 0.5, (1 - p_t)^2 = 0.25, alpha_t 0.25 for positives, 0.75 for negatives."""
    loss = FocalLoss(nn.BCEWithLogitsLoss(), gamma=2.0, alpha=0.25)(torch.zeros(4), torch.full((4,), true))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_qfocal_loss():
    """Logit 0, target 0.75: |t - p|^1.5 = 0.25^1.5, alpha_t = 0.75*0.25 + 0.25*0.75 = 0.375."""
    pred, true = torch.zeros(3), torch.full((3,), 0.75)
    bce = nn.functional.binary_cross_entropy_with_logits(pred, true).item()
    loss = QFocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5, alpha=0.25)(pred, true)
    assert loss.item() == pytest.approx(bce * 0.375 * 0.25**1.5, rel=1e-6)


def test_focal_gamma_from_hyp_and_label_smoothing():
    model = FakeModel(nc=3, fl_gamma=1.5, label_smoothing=0.1)
    loss_fn = ComputeLoss(model)
    assert isinstance(loss_fn.BCEcls, FocalLoss) and (loss_fn.cp, loss_fn.cn) == pytest.approx((0.95, 0.05))


def test_loss_is_fp32_for_bf16_predictions():
    model = FakeModel(nc=3)
    preds = [p.detach().to(torch.bfloat16) for p in zero_preds(2, 3)]
    loss, items = ComputeLoss(model)(preds, torch.tensor([[1, 2, 2.5 / 8, 2.5 / 8, 1 / 8, 1 / 8]]))
    assert loss.dtype == torch.float32 and items[0].item() == pytest.approx(0.05 * 0.75, rel=1e-4)
