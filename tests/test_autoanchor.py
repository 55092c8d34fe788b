"""AutoAnchor: the ratio metric, anchor order, k-means + evolution, and check_anchors improving a bad fit."""

import importlib.util
import random
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.cluster.vq import kmeans
from torch import nn

import utils.autoanchor as autoanchor
from utils.autoanchor import (
    _evolve,
    _FitnessBound,
    _mutations,
    _ratio_metric,
    check_anchor_order,
    check_anchors,
    dataset_box_sizes,
    kmean_anchors,
)
from utils.dataloaders import LoadImagesAndLabels
from utils.files import ROOT

COCO128_TRAIN = ROOT.parent / "datasets" / "coco128" / "images" / "train2017"
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


def lognormal_dataset(n_images=30, boxes=8, imgsz=640, seed=0, zero_width=False):
    """COCO-like boxes: log-normal sizes of ~5-300 px (1.5 px at least), optionally one 0-px-wide (but tall) box."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n_images):
        wh = np.exp(rng.normal(3.5, 1.0, (boxes, 2))).clip(1.5, imgsz) / imgsz
        labels.append(np.concatenate([np.zeros((boxes, 1)), np.full((boxes, 2), 0.5), wh], 1).astype(np.float32))
    if zero_width:
        labels[0][0, 3:5] = 0.0, 0.1
    return SimpleNamespace(shapes=np.full((n_images, 2), imgsz), labels=labels)


def reference_mutation(shape):
    """One generation's multipliers, as kmean_anchors drew them (frozen copy)."""
    v = np.ones(shape)
    while (v == 1).all():
        v = ((np.random.random(shape) < 0.9) * random.random() * np.random.randn(*shape) * 0.1 + 1).clip(0.3, 3.0)
    return v


def reference_kmean_anchors(dataset, n, img_size, thr, gen):
    """kmean_anchors before its evolution screened candidates in blocks (frozen copy, no logging): k-means, then one
    mutation and one float32 fitness per generation."""
    thr = 1 / thr
    wh = dataset_box_sizes(dataset, img_size)
    wh = wh[(wh >= 2.0).any(1)].astype(np.float32)
    if n > len(wh):
        k = np.sort(np.random.rand(n * 2)).reshape(n, 2) * img_size
    else:
        k = kmeans(wh / wh.std(0), n, iter=30)[0] * wh.std(0)
    k, wh = k[np.argsort(k.prod(1))], torch.tensor(wh)

    def fitness(k):
        best = _ratio_metric(wh, torch.tensor(k, dtype=torch.float32))[1]
        return (best * (best > thr).float()).mean()

    best_fitness = fitness(k)
    for _ in range(gen):
        candidate = (k.copy() * reference_mutation(k.shape)).clip(min=2.0)
        f = fitness(candidate)
        if f > best_fitness:
            best_fitness, k = f, candidate.copy()
    return k[np.argsort(k.prod(1))].astype(np.float32)


def rng_states():
    return random.getstate(), np.random.get_state()


def assert_same_rng_states(a, b):
    assert a[0] == b[0]
    assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))


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


def assert_same_as_reference(dataset, n, img_size, thr, seed, gen):
    """kmean_anchors gives reference_kmean_anchors' anchors, bit for bit, leaves random and np.random as it does, and
    the intra-op thread count as it found it."""
    results, threads = [], torch.get_num_threads()
    for evolve in (reference_kmean_anchors, kmean_anchors):
        random.seed(seed)
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # zero sizes must not leak numpy warnings
            results.append((evolve(dataset, n=n, img_size=img_size, thr=thr, gen=gen), rng_states()))
    (expected, expected_states), (anchors, states) = results
    assert anchors.dtype == expected.dtype and np.array_equal(anchors, expected)
    assert_same_rng_states(states, expected_states)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("dataset, n, thr, seed", [
    (lognormal_dataset(), 9, 4.0, 0),
    (lognormal_dataset(), 9, 2.0, 1),
    (lognormal_dataset(seed=1), 6, 6.0, 2),
    (lognormal_dataset(seed=2, zero_width=True), 9, 3.0, 3),
    (fake_dataset([(240, 8), (8, 240), (400, 16)]), 9, 4.0, 4),  # few distinct sizes: many equal ratios
    (lognormal_dataset(n_images=1, boxes=5), 9, 4.0, 5),  # fewer boxes than anchors: random start
    (fake_dataset([(1, 1)], n_images=2), 3, 4.0, 6),  # no box of 2 px: nan fitness, nothing kept
])
def test_kmean_anchors_equal_one_candidate_at_a_time(dataset, n, thr, seed):
    assert_same_as_reference(dataset, n, 640, thr, seed, gen=400)


def test_kmean_anchors_screen_nothing_above_the_box_limit(monkeypatch):
    monkeypatch.setattr(autoanchor, "SCREENED_BOXES_MAX", 100)
    monkeypatch.setattr(autoanchor, "_FitnessBound", None)  # never built
    assert_same_as_reference(lognormal_dataset(), 9, 640, 4.0, 0, gen=200)


@pytest.mark.skipif(not COCO128_TRAIN.is_dir(), reason="needs ../datasets/coco128 (staged COCO128)")
def test_kmean_anchors_equal_one_candidate_at_a_time_on_coco128():
    dataset = LoadImagesAndLabels(str(COCO128_TRAIN), img_size=320)
    for thr, seed in ((4.0, 0), (2.5, 1)):
        assert_same_as_reference(dataset, 9, 320, thr, seed, gen=1000)


@pytest.mark.parametrize("noop_below", [0.0, 0.05])  # 0.05: random.random() gives 0 (a no-op generation) at times
def test_mutations_draw_as_one_generation_at_a_time(monkeypatch, noop_below):
    draw = random.random
    monkeypatch.setattr(random, "random", lambda: 0.0 if (x := draw()) < noop_below else x)
    random.seed(0)
    np.random.seed(0)
    expected = [reference_mutation((9, 2)) for _ in range(200)]
    expected_states = rng_states()
    random.seed(0)
    np.random.seed(0)
    multipliers = _mutations((9, 2), 200)
    assert np.array_equal(multipliers, expected)
    assert_same_rng_states(rng_states(), expected_states)
    assert _mutations((9, 2), 0).shape == (0, 9, 2)


def exact_fitness(wh, thr):
    def fitness(k):
        best = _ratio_metric(wh, torch.tensor(k, dtype=torch.float32))[1]
        return (best * (best > thr).float()).mean()
    return fitness


@pytest.mark.parametrize("thr", [0.25, 1 / 3, 0.5])
def test_fitness_bound_is_a_tight_upper_bound(thr):
    dataset = lognormal_dataset(zero_width=True)
    wh = torch.tensor(dataset_box_sizes(dataset, 640), dtype=torch.float32)
    rng = np.random.default_rng(0)
    candidates = np.exp(rng.normal(3.5, 1.0, (64, 9, 2))).clip(min=2.0)
    candidates[0] = wh[:9].numpy().clip(min=2.0)  # ratios of exactly 1
    candidates[1] = candidates[0] * np.float32(1 / thr)  # ratios on thr's edge, where the bound counts the box
    fitness = exact_fitness(wh, thr)
    exact = np.array([float(fitness(k)) for k in candidates])
    bounds = _FitnessBound(wh, thr, anchors=9)(candidates)
    assert (bounds >= exact).all()
    np.testing.assert_allclose(bounds[2:], exact[2:], rtol=1e-4)  # tight enough to rule out nearly all worse ones


def test_evolve_reports_progress_and_each_improvement():
    wh = torch.tensor(dataset_box_sizes(lognormal_dataset(), 640), dtype=torch.float32)
    fitness, k = exact_fitness(wh, 0.25), np.array([[10.0, 10.0], [40.0, 30.0], [100.0, 120.0]])
    np.random.seed(0)
    random.seed(0)
    multipliers = _mutations(k.shape, 300)
    expected, best_fitness, best = [], fitness(k), k
    for v in multipliers:
        candidate = (best * v).clip(min=2.0)
        if (f := fitness(candidate)) > best_fitness:
            best_fitness, best = f, candidate
            expected.append((float(f), candidate))
    advances, improvements = [], []
    result = _evolve(k, multipliers, fitness, _FitnessBound(wh, 0.25, anchors=3), advances.append,
                     lambda f, k: improvements.append((float(f), k)))
    assert sum(advances) == 300 and len(expected) > 5
    assert len(improvements) == len(expected) and np.array_equal(result, expected[-1][1])
    assert all(f == g and np.array_equal(a, b) for (f, a), (g, b) in zip(improvements, expected))
