"""non_max_suppression against a brute-force greedy NMS, and its options, on small hand-made and random inputs."""

import numpy as np
import pytest
import torch

from utils import nms as nms_module
from utils.boxes import xywh2xyxy
from utils.nms import MAX_WH, non_max_suppression
from utils.precision import single_threaded


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


def _random_batch(seed, bs=3, n=1500, nc=4, nm=0, clusters=40, size=640.0):
    """(bs, n, 5 + nc + nm) raw predictions: boxes jittered around `clusters` objects, as a detector's neighbouring
    anchors give them, so NMS suppresses most; confidences spread down to conf 0.001."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(bs, clusters, 2, generator=g) * size
    side = torch.rand(bs, clusters, 2, generator=g) * size / 5 + 8
    which = torch.randint(0, clusters, (bs, n), generator=g)
    pick = torch.stack([which, which], 2)
    xy = centre.gather(1, pick) + torch.randn(bs, n, 2, generator=g) * 4
    wh = side.gather(1, pick) * (1 + torch.randn(bs, n, 2, generator=g) * 0.1)
    obj = torch.rand(bs, n, 1, generator=g) ** 3
    cls = torch.rand(bs, n, nc, generator=g)
    masks = torch.randn(bs, n, nm, generator=g)
    return torch.cat((xy, wh, obj, cls, masks), 2)


def _previous(pred, *args, **kwargs):
    """The previous implementation, on one thread so that a busy machine cannot push it past its time limit."""
    from benchmarks.yolov5_nms import yolov5_non_max_suppression

    with single_threaded():
        return yolov5_non_max_suppression(pred.clone(), *args, **kwargs)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kwargs", [
    dict(conf_thres=0.001, iou_thres=0.6, multi_label=True),  # val.py's settings
    dict(conf_thres=0.001, iou_thres=0.6, multi_label=True, max_det=100),  # the first prefix is enough
    dict(conf_thres=0.001, iou_thres=0.6, multi_label=True, max_det=5000),  # never reaches max_det: all boxes
    dict(conf_thres=0.25, iou_thres=0.45),
    dict(conf_thres=0.01, iou_thres=0.5, agnostic=True, max_det=50),
    dict(conf_thres=0.01, iou_thres=0.7, classes=[1, 3], multi_label=True),
])
def test_same_boxes_as_the_previous_implementation(seed, kwargs, monkeypatch):
    monkeypatch.setattr(nms_module, "FIRST_PREFIX", 256)  # so that the prefix doubles on these inputs
    pred = _random_batch(seed)
    pred[1, :, 4] = 0  # an image without candidates
    new = non_max_suppression(pred, **kwargs)
    old = _previous(pred, **kwargs)
    assert len(new) == len(old) == 3 and len(old[0]) > 0
    for a, b in zip(new, old):
        assert torch.equal(a, b)


def test_prefix_doubles_until_max_det_boxes_are_kept(monkeypatch):
    monkeypatch.setattr(nms_module, "FIRST_PREFIX", 64)
    calls = []
    real = nms_module.nms
    monkeypatch.setattr(nms_module, "nms", lambda b, s, t: (calls.append(len(b)), real(b, s, t))[1])
    pred = _random_batch(0, bs=1)
    out = non_max_suppression(pred, 0.001, 0.6, multi_label=True, max_det=120)[0]
    assert calls[:2] == [120, 240] and len(out) == 120  # max(FIRST_PREFIX, max_det) boxes first, then doubled
    assert torch.equal(out, _previous(pred, 0.001, 0.6, multi_label=True, max_det=120)[0])


def test_same_boxes_with_masks_and_hybrid_labels():
    pred = _random_batch(5, bs=2, n=500, nc=3, nm=4)
    labels = [torch.tensor([[2.0, 100, 100, 50, 40], [0.0, 300, 200, 80, 60]]), torch.zeros((0, 5))]
    new = non_max_suppression(pred, 0.01, 0.6, multi_label=True, labels=labels, nm=4)
    old = _previous(pred, 0.01, 0.6, multi_label=True, labels=labels, nm=4)
    # the label rows tie at confidence 1: the previous sort put them in no particular order, this one keeps theirs
    assert new[0][:2, :6].tolist() == [[75.0, 80.0, 125.0, 120.0, 1.0, 2.0], [260.0, 170.0, 340.0, 230.0, 1.0, 0.0]]
    for a, b in zip(new, old):
        assert a.shape[1] == 10 and torch.equal(_sorted_rows(a), _sorted_rows(b))


def _sorted_rows(x):
    return x[torch.from_numpy(np.lexsort(x.T.flip(0).numpy()))]


def test_nms_runs_single_threaded_and_restores_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        non_max_suppression(_random_batch(0, bs=1, n=100), 0.01, 0.6)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
