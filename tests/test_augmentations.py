"""Augmentations: letterbox geometry, perspective/mosaic keep boxes on their objects, HSV, mixup, copy-paste."""

import random
import re
import sys

import cv2
import numpy as np
import pytest
import torch

from utils.augmentations import (
    Albumentations,
    augment_hsv,
    box_candidates,
    copy_paste,
    cutout,
    letterbox,
    mixup,
    random_perspective,
    tile_mosaic,
)
from utils.boxes import scale_boxes, xywhn2xyxy

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # BGR per class, far from grey 114


@pytest.mark.parametrize("hw, new, kwargs, out_hw, ratio, pad", [
    ((480, 640), 640, dict(auto=False), (640, 640), (1.0, 1.0), (0.0, 80.0)),
    ((480, 640), 640, dict(auto=True), (480, 640), (1.0, 1.0), (0.0, 0.0)),
    ((100, 200), 320, dict(auto=True), (160, 320), (1.6, 1.6), (0.0, 0.0)),
    ((100, 210), 320, dict(auto=True), (160, 320), (320 / 210, 320 / 210), (0.0, 4.0)),  # 152 rows + 8 to /32
    ((100, 200), 320, dict(auto=False, scaleup=False), (320, 320), (1.0, 1.0), (60.0, 110.0)),
    ((100, 200), 320, dict(auto=False, scaleFill=True), (320, 320), (1.6, 3.2), (0.0, 0.0)),
    ((100, 201), 320, dict(auto=False), (320, 320), (320 / 201, 320 / 201), (0.0, 80.5)),  # odd pad 80 + 81
])
def test_letterbox_geometry(hw, new, kwargs, out_hw, ratio, pad):
    im = np.zeros((*hw, 3), np.uint8)
    out, r, p = letterbox(im, new, **kwargs)
    assert out.shape[:2] == out_hw
    assert r == pytest.approx(ratio)
    assert p == pytest.approx(pad)


def test_letterbox_pads_grey_and_round_trips_with_scale_boxes():
    im = np.full((100, 201, 3), 114, np.uint8)
    box = np.array([[40.0, 30.0, 120.0, 70.0]])
    im[30:70, 40:120] = (0, 0, 255)
    out, (rw, rh), (pw, ph) = letterbox(im, 320, auto=False)
    assert (out[:80] == 114).all() and (out[-81:] == 114).all()  # 80 rows on top, 81 below
    mapped = box * [rw, rh, rw, rh] + [pw, ph, pw, ph]
    x1, y1, x2, y2 = mapped[0].round().astype(int)
    inside = out[y1 + 2:y2 - 2, x1 + 2:x2 - 2]
    assert (np.abs(inside.astype(int) - (0, 0, 255)) < 3).all()  # the object is where the box says
    exact = scale_boxes(out.shape[:2], mapped.copy(), im.shape[:2], ratio_pad=((rw, rh), (pw, ph)))
    np.testing.assert_allclose(exact, box, atol=1e-6)
    # without ratio_pad the pad is inferred from unrounded sizes, as in YOLOv5: within a tenth of a pixel
    np.testing.assert_allclose(scale_boxes(out.shape[:2], mapped.copy(), im.shape[:2]), box, atol=0.1)


@pytest.mark.parametrize("box2, keep", [
    ((0, 0, 10, 10), True),
    ((0, 0, 2, 10), False),  # not wider than 2 px
    ((0, 0, 3, 3), False),  # 9% of the area left
    ((0, 0, 4, 4), True),  # 16% left
])
def test_box_candidates(box2, keep):
    box1 = np.array([[0, 0, 10, 10]], float).T
    assert box_candidates(box1, np.array([box2], float).T)[0] == keep


def test_box_candidates_aspect_ratio():
    box1 = np.array([[0, 0, 1000, 10]], float).T
    assert not box_candidates(box1, np.array([[0, 0, 1000, 3]], float).T, area_thr=0.0)[0]  # aspect 333 > 100


@pytest.mark.parametrize("translate, expected", [(0.0, (35, 35, 65, 65)), (0.1, (45, 45, 75, 75))])
def test_random_perspective_scale_and_translate(monkeypatch, translate, expected):
    # every draw at its upper bound: scale 1.5 about the centre, translation +translate * size
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    im = np.full((100, 100, 3), 114, np.uint8)
    targets = np.array([[0, 40, 40, 60, 60]], float)
    out, t = random_perspective(im, targets.copy(), degrees=0, translate=translate, scale=0.5, shear=0)
    np.testing.assert_allclose(t[0, 1:], expected, atol=1e-6)
    assert out.shape == im.shape


def test_random_perspective_identity_keeps_everything():
    im = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    targets = np.array([[1, 10, 10, 30, 40]], float)
    out, t = random_perspective(im, targets.copy(), degrees=0, translate=0, scale=0, shear=0)
    assert (out == im).all()
    np.testing.assert_allclose(t, targets)


def _scene(h, w, boxes, rng):
    """Noisy dark background with solid class-coloured rectangles; returns image and normalised xywh labels."""
    im = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    labels = []
    for cls, (x1, y1, x2, y2) in boxes:
        im[y1:y2, x1:x2] = COLOURS[cls]
        labels.append([cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
    return im, np.array(labels, np.float32)


def _assert_boxes_on_objects(im, labels, min_fill):
    """Each pixel box holds mostly its class colour, and its centre pixel is that colour."""
    for cls, x1, y1, x2, y2 in labels:
        colour = np.array(COLOURS[int(cls)])
        region = im[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)].astype(int)
        match = (np.abs(region - colour).max(-1) < 40).mean()
        assert match >= min_fill, f"box {cls, x1, y1, x2, y2} holds {match:.0%} of its colour"
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        assert np.abs(im[cy, cx].astype(int) - colour).max() < 40


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("degrees, shear, min_fill", [(0.0, 0.0, 0.9), (10.0, 2.0, 0.5)])
def test_mosaic_and_perspective_keep_boxes_on_objects(seed, degrees, shear, min_fill):
    rng = np.random.default_rng(seed)
    random.seed(seed)
    size = 128
    scenes = [_scene(96, 128, [(0, (10, 10, 50, 40)), (1, (70, 40, 120, 90))], rng),
              _scene(128, 96, [(2, (20, 20, 80, 60)), (3, (10, 80, 40, 120))], rng),
              _scene(128, 128, [(1, (30, 30, 100, 100))], rng),
              _scene(64, 128, [(3, (0, 0, 40, 30)), (0, (60, 20, 125, 60))], rng)]
    centre = (int(random.uniform(size * 0.5, size * 1.5)), int(random.uniform(size * 0.5, size * 1.5)))
    canvas, labels, segments = tile_mosaic([s[0] for s in scenes], [s[1] for s in scenes], [[]] * 4, size, centre)
    if degrees == 0:  # tiles are pasted unwarped: every box is its clipped rectangle
        _assert_boxes_on_objects(canvas, labels[(labels[:, 3] - labels[:, 1] > 2) & (labels[:, 4] - labels[:, 2] > 2)],
                                 0.99)
    out, kept = random_perspective(canvas, labels, segments, degrees=degrees, translate=0.1, scale=0.5, shear=shear,
                                   border=(-size // 2, -size // 2))
    assert out.shape == (size, size, 3)
    assert len(kept) > 0 or len(labels) == 0
    if degrees:  # a rotated object cut by the image edge no longer fills its clipped box: check whole ones
        kept = kept[(kept[:, 1:3] > 0).all(1) & (kept[:, 3:5] < size).all(1)]
    _assert_boxes_on_objects(out, kept, min_fill)


def test_tile_mosaic_places_quadrants():
    tiles = [np.full((64, 64, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    label = np.array([[0, 0.5, 0.5, 0.5, 0.5]], np.float32)  # a 32 px box in the middle of each tile
    canvas, labels, _ = tile_mosaic(tiles, [label] * 4, [[]] * 4, 64, (64, 64))
    assert canvas[0, 0, 0] == 10 and canvas[0, 127, 0] == 20 and canvas[127, 0, 0] == 30 and canvas[127, 127, 0] == 40
    np.testing.assert_allclose(labels[:, 1:], [[16, 16, 48, 48], [80, 16, 112, 48], [16, 80, 48, 112],
                                               [80, 80, 112, 112]])


def test_tile_mosaic_crops_and_clips():
    tiles = [np.full((64, 64, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    label = np.array([[0, 0.5, 0.5, 1.0, 1.0]], np.float32)  # the whole tile
    canvas, labels, _ = tile_mosaic(tiles, [label] * 4, [[]] * 4, 64, (80, 50))
    # top-left tile ends at the centre: columns 16-80, rows 0-50 (its top 14 rows cut off)
    assert (canvas[:50, 16:80] == 10).all() and (canvas[:50, :16] == 114).all()
    np.testing.assert_allclose(labels[0, 1:], [16, 0, 80, 50])
    np.testing.assert_allclose(labels[3, 1:], [80, 50, 128, 114])  # bottom-right clipped at the canvas edge


def test_augment_hsv_lookup_tables():
    im = np.full((4, 4, 3), 100, np.uint8)  # grey: hue 0, saturation 0, value 100
    np.random.seed(3)
    gains = np.random.uniform(-1, 1, 3) * [0.5, 0.5, 0.5] + 1
    np.random.seed(3)
    augment_hsv(im, 0.5, 0.5, 0.5)
    assert (im == int(100 * gains[2])).all()  # only the value channel moves a grey image


def test_augment_hsv_zero_gain_is_identity():
    im = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    before = im.copy()
    augment_hsv(im, 0, 0, 0)
    assert (im == before).all()


def test_mixup_blends_with_beta_ratio():
    a, b = np.full((4, 4, 3), 200, np.uint8), np.full((4, 4, 3), 0, np.uint8)
    np.random.seed(0)
    r = np.random.beta(32.0, 32.0)
    np.random.seed(0)
    im, labels = mixup(a, np.ones((2, 5)), b, np.zeros((1, 5)))
    assert (im == int(200 * r)).all() and 0.3 < r < 0.7
    assert labels.shape == (3, 5)


def test_copy_paste_mirrors_object_and_label():
    im = np.zeros((50, 100, 3), np.uint8)
    im[10:30, 10:30] = (0, 200, 0)
    labels = np.array([[2, 10, 10, 30, 30]], float)
    segments = [np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)]
    random.seed(0)
    im, labels, segments = copy_paste(im, labels, segments, p=1.0)
    np.testing.assert_allclose(labels[1], [2, 70, 10, 90, 30])
    assert len(segments) == 2
    assert (im[12:28, 72:88] == (0, 200, 0)).all()


def test_cutout_drops_hidden_labels():
    random.seed(1)
    im = np.zeros((64, 64, 3), np.uint8)
    labels = np.array([[0, 0.5, 0.5, 0.1, 0.1]] * 3, np.float32)
    kept = cutout(im, labels, p=1.0)
    assert len(kept) in (0, 3) and (im != 0).any()
    boxes = xywhn2xyxy(labels[:, 1:], 64, 64)
    assert boxes.shape == (3, 4)


def test_letterbox_resize_matches_cv2():
    im = np.random.default_rng(2).integers(0, 255, (50, 100, 3), dtype=np.uint8)
    out, _, _ = letterbox(im, (100, 200), auto=False)
    assert (out == cv2.resize(im, (200, 100), interpolation=cv2.INTER_LINEAR)).all()


@pytest.fixture
def log_lines(log_records):
    return lambda: [r.getMessage() for r in log_records]


def always(albumentations):
    """The transforms YOLOv5 applies 1% of the time forced to every time (the p=0 ones stay off)."""
    for t in albumentations.transform.transforms:
        if t.p:
            t.p = 1.0
    return albumentations


def test_albumentations_as_yolov5_applies_it(log_lines):
    pytest.importorskip("albumentations")
    alb = Albumentations(64)
    lines = [m for m in log_lines() if "albumentations: " in m]
    assert len(lines) == 1
    applied = re.findall(r"([A-Z]\w+)\(p=([\d.]+)", lines[0])
    assert applied == [("Blur", "0.01"), ("MedianBlur", "0.01"), ("ToGray", "0.01"), ("CLAHE", "0.01")]
    assert [type(t).__name__ for t in alb.transform.transforms if t.p == 0] == \
        ["RandomResizedCrop", "RandomBrightnessContrast", "RandomGamma", "ImageCompression"]

    im = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    labels = np.array([[1, 0.5, 0.5, 0.2, 0.2], [0, 0.3, 0.3, 0.1, 0.1]], np.float32)
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    outputs = []
    for _ in range(2):  # a fresh instance in a process seeded alike gives the same image
        torch.manual_seed(0)
        outputs.append(always(Albumentations(64))(im.copy(), labels))
    (out, out_labels), (again, _) = outputs
    assert np.array_equal(out, again) and out.shape == im.shape and (out != im).mean() > 0.9
    assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 1  # ToGray: the channels agree
    assert out_labels == pytest.approx(labels)  # pixel-level transforms leave the boxes
    assert random.getstate() == python_state and np.array_equal(np.random.get_state()[1], numpy_state)
    empty_im, empty = always(Albumentations(64))(im.copy(), np.zeros((0, 5), np.float32))
    assert empty.shape == (0, 5)


def test_albumentations_absent_is_skipped_silently(monkeypatch, log_lines):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # import albumentations -> ImportError
    alb = Albumentations(64)
    im, labels = np.zeros((8, 8, 3), np.uint8), np.zeros((1, 5), np.float32)
    assert alb.transform is None and alb(im, labels) == (im, labels)
    assert not [m for m in log_lines() if "albumentations" in m]
