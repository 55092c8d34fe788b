"""AutoAnchor: the ratio metric, anchor order, k-means + evolution, and check_anchors improving a bad fit."""

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from utils.autoanchor import _ratio_metric, check_anchor_order, check_anchors, kmean_anchors
from utils.files import ROOT

P5_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]  # pixels
STRIDES = [8.0, 16.0, 32.0]


class FakeDetect(nn.Module):
    """What autoanchor reads from YOLOv5's Detect: anchors (nl, na, 2) in stride units, stride, na, nl."""

    def __init__(self, anchors_px=P5_ANCHORS, strides=STRIDES):
        super().__init__()
        self.stride = torch.tensor(strides)
        self.register_buffer("anchors", torch.tensor(anchors_px, dtype=torch.float32).view(3, -1, 2)
                             / self.stride.view(-1, 1, 1))
        self.nl, self.na = self.anchors.shape[:2]


def fake_model(detect):
    return SimpleNamespace(model=[nn.Identity(), detect])


def fake_dataset(box_px, n_images=40, imgsz=640, seed=0):
    """Square imgsz images whose labels have the given pixel sizes (with 5% jitter)."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n_images):
        wh = np.array([box_px[i] for i in rng.integers(0, len(box_px), 6)], float)
        wh *= rng.uniform(0.95, 1.05, wh.shape)
        labels.append(np.concatenate([np.zeros((6, 1)), np.full((6, 2), 0.5), wh / imgsz], 1).astype(np.float32))
    return SimpleNamespace(shapes=np.full((n_images, 2), imgsz), labels=labels)


def best_possible_recall(dataset, anchors_px, thr=4.0):
    """Share of boxes with some anchor whose w and h ratios are both within thr (hand-rolled, no jitter)."""
    wh = np.concatenate([x[:, 3:5] * 640 for x in dataset.labels])
    r = wh[:, None] / np.asarray(anchors_px).reshape(-1, 2)[None]
    worst = np.minimum(r, 1 / r).min(2)
    return float((worst.max(1) > 1 / thr).mean())


@pytest.mark.parametrize("wh, anchor, expected", [
    ((20, 40), (10, 10), 0.25),  # ratios 2 and 4: the worse is 1/4
    ((10, 10), (10, 10), 1.0),
    ((5, 20), (10, 10), 0.5),  # 0.5 and 2 -> both 0.5
    ((30, 10), (10, 30), 1 / 3),
])
def test_ratio_metric(wh, anchor, expected):
    x, best = _ratio_metric(torch.tensor([wh], dtype=torch.float32), torch.tensor([anchor], dtype=torch.float32))
    assert x.item() == pytest.approx(expected) and best.item() == pytest.approx(expected)


@pytest.mark.parametrize("anchors_reversed, strides_reversed, expect_flip", [
    (False, False, False),
    (True, False, True),  # large anchors on the fine stride: flipped back
    (True, True, False),  # both descending: consistent, left alone
])
def test_check_anchor_order(anchors_reversed, strides_reversed, expect_flip):
    m = FakeDetect()
    if strides_reversed:
        m.stride = m.stride.flip(0)
    if anchors_reversed:
        m.anchors[:] = m.anchors.flip(0)
    before = m.anchors.clone()
    check_anchor_order(m)
    assert torch.equal(m.anchors, before.flip(0) if expect_flip else before)


def test_kmean_anchors_find_clusters():
    centres = [(20, 20), (60, 30), (150, 150)]
    np.random.seed(0)
    dataset = fake_dataset(centres, n_images=60)
    anchors = kmean_anchors(dataset, n=3, img_size=640, thr=4.0, gen=200, verbose=False)
    assert anchors.shape == (3, 2) and anchors.dtype == np.float32
    assert (np.diff(anchors.prod(1)) > 0).all()  # sorted by area
    np.testing.assert_allclose(anchors, centres, rtol=0.2)


def test_check_anchors_keeps_good_anchors():
    np.random.seed(0)
    dataset = fake_dataset([(12, 14), (35, 25), (60, 110), (150, 190)])
    detect = FakeDetect()
    before = detect.anchors.clone()
    check_anchors(dataset, fake_model(detect), thr=4.0, imgsz=640)
    assert torch.equal(detect.anchors, before)


def test_check_anchors_improves_far_off_anchors():
    np.random.seed(0)
    torch.manual_seed(0)
    dataset = fake_dataset([(240, 8), (8, 240), (400, 16), (16, 400)])  # thin boxes no default anchor fits
    detect = FakeDetect()
    assert best_possible_recall(dataset, P5_ANCHORS) < 0.5
    check_anchors(dataset, fake_model(detect), thr=4.0, imgsz=640)
    new_px = (detect.anchors * detect.stride.view(-1, 1, 1)).view(-1, 2).numpy()
    assert best_possible_recall(dataset, new_px) > 0.98
    area = detect.anchors.prod(-1).mean(-1) * detect.stride ** 2
    assert (area.diff() >= 0).all()  # small anchors on the fine stride


@pytest.mark.skipif(importlib.util.find_spec("models.yolo") is None or not (ROOT / "models" / "yolov5n.yaml").is_file(),
                    reason="needs models/yolo.py and models/yolov5n.yaml")
def test_check_anchors_on_real_model():
    from models.yolo import Model

    model = Model(str(ROOT / "models" / "yolov5n.yaml"), ch=3, nc=1)
    np.random.seed(0)
    dataset = fake_dataset([(240, 8), (8, 240), (400, 16), (16, 400)])
    m = model.model[-1]
    check_anchors(dataset, model, thr=4.0, imgsz=640)
    new_px = (m.anchors * m.stride.view(-1, 1, 1)).view(-1, 2).numpy()
    assert best_possible_recall(dataset, new_px) > 0.98
