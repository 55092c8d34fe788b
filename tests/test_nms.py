"""non_max_suppression against a brute-force greedy NMS, and its options, on small hand-made and random inputs."""

import pytest
import torch

from utils.boxes import xywh2xyxy
from utils.nms import MAX_WH, non_max_suppression


def _iou(a, b):
    """IoU of two xyxy boxes (python floats)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(pred, conf_thres, iou_thres, multi_label=False, agnostic=False, max_det=300):
    """Greedy NMS one box at a time: the highest remaining score suppresses same-class boxes with IoU > thres."""
    rows = []
    for x in pred.tolist():  # x: [cx, cy, w, h, obj, cls...]
        if x[4] <= conf_thres:
            continue
        box = xywh2xyxy(torch.tensor([x[:4]]))[0].tolist()
        scores = [s * x[4] for s in x[5:]]
        if multi_label:
            rows += [box + [s, c] for c, s in enumerate(scores) if s > conf_thres]
        else:
            c = max(range(len(scores)), key=scores.__getitem__)
            if scores[c] > conf_thres:
                rows.append(box + [scores[c], c])
    rows.sort(key=lambda r: -r[4])
    kept = []
    for r in rows:
        if all(_iou(r, k) <= iou_thres for k in kept if agnostic or k[5] == r[5]):
            kept.append(r)
    return torch.tensor(kept[:max_det]).reshape(-1, 6)


def _random_prediction(seed, n=200, nc=3, size=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 4 + 2
    obj = torch.rand(n, 1, generator=g)
    cls = torch.rand(n, nc, generator=g)
    return torch.cat((xy, wh, obj, cls), 1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("multi_label,agnostic", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("iou_thres", [0.3, 0.6])
def test_matches_brute_force(seed, multi_label, agnostic, iou_thres):
    pred = _random_prediction(seed)
    out = non_max_suppression(pred[None], conf_thres=0.1, iou_thres=iou_thres, multi_label=multi_label,
                              agnostic=agnostic)
    ref = _reference(pred, 0.1, iou_thres, multi_label, agnostic)
    assert len(out) == 1 and out[0].shape == ref.shape
    torch.testing.assert_close(out[0], ref, rtol=1e-5, atol=1e-4)


def test_two_overlapping_boxes_hand_case():
    # boxes [0,0,10,10] and [2,0,12,10]: IoU = 80 / 120 = 0.667; the lower score goes under iou_thres 0.6
    # but survives 0.7, and a box of another class at the same place always survives (offset by MAX_WH)
    pred = torch.tensor([[[5.0, 5, 10, 10, 0.9, 1.0, 0.0],
                          [7.0, 5, 10, 10, 0.8, 1.0, 0.0],
                          [7.0, 5, 10, 10, 0.7, 0.0, 1.0]]])
    kept = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.6)[0]
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert kept[:, 5].tolist() == [0.0, 1.0]
    assert kept[0, :4].tolist() == [0.0, 0.0, 10.0, 10.0]
    assert len(non_max_suppression(pred, conf_thres=0.25, iou_thres=0.7)[0]) == 3
    assert len(non_max_suppression(pred, conf_thres=0.25, iou_thres=0.6, agnostic=True)[0]) == 1
    assert MAX_WH == 7680


def test_confidence_is_obj_times_cls_and_threshold_strict():
    pred = torch.tensor([[[5.0, 5, 4, 4, 0.5, 0.6, 0.2],     # conf 0.30
                          [50.0, 50, 4, 4, 0.5, 0.5, 0.1]]])  # conf 0.25: not above 0.25
    out = non_max_suppression(pred, conf_thres=0.25)[0]
    assert out.shape == (1, 6)
    assert out[0, 4].item() == pytest.approx(0.30)


def test_multi_label_gives_one_row_per_class_above_threshold():
    pred = torch.tensor([[[5.0, 5, 4, 4, 1.0, 0.6, 0.5, 0.1]]])
    out = non_max_suppression(pred, conf_thres=0.25, multi_label=True)[0]
    assert sorted(out[:, 5].tolist()) == [0.0, 1.0]
    assert len(non_max_suppression(pred, conf_thres=0.25, multi_label=False)[0]) == 1


def test_classes_filter_max_det_and_tuple_input():
    pred = _random_prediction(7, n=300, nc=4)[None]
    out = non_max_suppression((pred, ["train output"]), conf_thres=0.05, classes=[2], max_det=5)[0]
    assert len(out) == 5 and (out[:, 5] == 2).all()
    assert (out[:-1, 4] >= out[1:, 4]).all()


def test_batch_and_empty_images():
    pred = torch.cat((_random_prediction(1)[None], torch.zeros(1, 200, 8)), 0)
    out = non_max_suppression(pred, conf_thres=0.1)
    assert len(out) == 2 and len(out[0]) > 0 and out[1].shape == (0, 6)
    assert pred[0, :, 5:].max() <= 1  # the input is not modified in place
    torch.testing.assert_close(pred[0], _random_prediction(1))


def test_hybrid_labels_are_added_with_confidence_one():
    pred = torch.zeros(1, 10, 7)
    labels = [torch.tensor([[1.0, 20, 20, 10, 10]])]  # [cls, x, y, w, h] in pixels
    out = non_max_suppression(pred, conf_thres=0.25, labels=labels)[0]
    assert out.tolist() == [[15.0, 15.0, 25.0, 25.0, 1.0, 1.0]]


def test_mask_columns_are_carried():
    pred = torch.tensor([[[5.0, 5, 4, 4, 0.9, 0.9, 0.1, 0.3, -0.7]]])
    out = non_max_suppression(pred, conf_thres=0.25, nm=2)[0]
    assert out.shape == (1, 8)
    assert out[0, 6:].tolist() == pytest.approx([0.3, -0.7])


@pytest.mark.parametrize("kwargs", [{"conf_thres": 1.5}, {"iou_thres": -0.1}])
def test_bad_thresholds_raise(kwargs):
    with pytest.raises(ValueError, match="not in"):
        non_max_suppression(torch.zeros(1, 3, 6), **kwargs)
