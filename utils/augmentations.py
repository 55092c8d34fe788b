"""Image augmentations as YOLOv5 applies them: letterbox, mosaic tiling, random perspective, HSV, mixup, copy-paste,
and the optional Albumentations pass.

Images are HWC BGR uint8 numpy arrays; labels are (n, 5) [cls, x1, y1, x2, y2] in pixels unless a docstring says
otherwise. Every random draw comes from Python's `random` or numpy's global generator, in YOLOv5's order, so that a
seeded worker reproduces its stream; albumentations draws from its own generator, seeded per process (Albumentations).
"""

import math
import random

import cv2
import numpy as np
import torch

from utils.boxes import bbox_ioa, resample_segments, xyn2xy, xywhn2xyxy
from utils.log import LOGGER, colorstr

GREY = (114, 114, 114)  # padding colour of letterbox and mosaic


def letterbox(im, new_shape=(640, 640), color=GREY, auto=True, scaleFill=False, scaleup=True, stride=32):
    """Resize keeping the aspect ratio, then pad to `new_shape` (h, w). Returns (image, (rw, rh), (pad_w, pad_h)).

    auto pads only up to the next multiple of `stride`; scaleFill stretches without padding; scaleup=False never
    enlarges (better mAP at validation). Padding is split evenly between the two sides.
    """
    shape = im.shape[:2]  # (h, w)
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))  # (w, h)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scaleFill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw, dh = dw / 2, dh / 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))  # an odd pad puts the extra pixel bottom/right
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (dw, dh)


def augment_hsv(im, hgain=0.5, sgain=0.5, vgain=0.5):
    """Random hue, saturation and value gains applied in place through 256-entry lookup tables."""
    if not (hgain or sgain or vgain):
        return
    gains = np.random.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=gains.dtype)
    lut_hue = ((x * gains[0]) % 180).astype(im.dtype)  # OpenCV hue spans 0-179
    lut_sat = np.clip(x * gains[1], 0, 255).astype(im.dtype)
    lut_val = np.clip(x * gains[2], 0, 255).astype(im.dtype)
    im_hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(im_hsv, cv2.COLOR_HSV2BGR, dst=im)


def box_candidates(box1, box2, wh_thr=2, ar_thr=100, area_thr=0.1, eps=1e-16):
    """Which boxes survive an augmentation: box1 before, box2 after, both (4, n) xyxy.

    Kept when wider and taller than wh_thr pixels, keeping more than area_thr of the area, aspect ratio < ar_thr.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def _perspective_matrix(shape, width, height, degrees, translate, scale, shear, perspective):
    """3x3 warp = translate @ shear @ rotate-scale @ perspective @ centre, drawn in YOLOv5's order; and the scale."""
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -shape[1] / 2, -shape[0] / 2
    persp = np.eye(3)
    persp[2, 0] = random.uniform(-perspective, perspective)
    persp[2, 1] = random.uniform(-perspective, perspective)
    rotate = np.eye(3)
    angle, s = random.uniform(-degrees, degrees), random.uniform(1 - scale, 1 + scale)
    rotate[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
    shear_m = np.eye(3)
    shear_m[0, 1] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    shear_m[1, 0] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    move = np.eye(3)
    move[0, 2] = random.uniform(0.5 - translate, 0.5 + translate) * width
    move[1, 2] = random.uniform(0.5 - translate, 0.5 + translate) * height
    return move @ shear_m @ rotate @ persp @ centre, s


def _apply(points, matrix, perspective):
    """(..., 2) points through a 3x3 warp."""
    xy = points @ matrix[:2, :2].T + matrix[:2, 2]
    if perspective:
        xy /= (points @ matrix[2, :2] + matrix[2, 2])[..., None]
    return xy


def _segment_boxes(segments, width, height):
    """xyxy box of each (k, 2) polygon from its points inside the image; (n, 4), zeros when none are."""
    points = np.stack(segments)  # (n, k, 2): resampled segments share k
    x, y = points[..., 0], points[..., 1]
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    boxes = np.stack([np.where(inside, x, np.inf).min(1), np.where(inside, y, np.inf).min(1),
                      np.where(inside, x, -np.inf).max(1), np.where(inside, y, -np.inf).max(1)], 1)
    boxes[~inside.any(1)] = 0
    return boxes


def random_perspective(im, targets=(), segments=(), degrees=10, translate=0.1, scale=0.1, shear=10, perspective=0.0,
                       border=(0, 0)):
    """Random rotation, scale, shear, translation and perspective of an image and its (n, 5) pixel xyxy targets.

    The output is the input size plus 2 * border (mosaic passes a negative border to crop 2s back to s). Boxes are
    recomputed from their warped corners (or from warped polygons when every target has one) and filtered with
    box_candidates. Returns (image, targets).
    """
    height, width = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    matrix, s = _perspective_matrix(im.shape, width, height, degrees, translate, scale, shear, perspective)
    if border[0] or border[1] or (matrix != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, matrix, dsize=(width, height), borderValue=GREY)
        else:
            im = cv2.warpAffine(im, matrix[:2], dsize=(width, height), borderValue=GREY)
    n = len(targets)
    if not n:
        return im, targets
    use_segments = len(segments) == n and any(x.any() for x in segments)
    if use_segments:
        new = _segment_boxes(_apply(np.stack(resample_segments(segments)), matrix, perspective), width, height)
    else:
        corners = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n, 4, 2)  # x1y1, x2y2, x1y2, x2y1
        xy = _apply(corners, matrix, perspective)
        new = np.concatenate((xy.min(1), xy.max(1)), 1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = box_candidates(box1=targets[:, 1:5].T * s, box2=new.T, area_thr=0.01 if use_segments else 0.10)
    targets = targets[keep]
    targets[:, 1:5] = new[keep]
    return im, targets


def copy_paste(im, labels, segments, p=0.5):
    """Paste a left-right mirrored copy of round(p * n) objects (by their polygons) where it overlaps others < 30%.

    Works in place on `im`; returns (im, labels, segments) with the pasted objects appended.
    """
    n = len(segments)
    if not (p and n):
        return im, labels, segments
    h, w, _ = im.shape
    mask = np.zeros(im.shape, np.uint8)
    for j in random.sample(range(n), k=round(p * n)):
        label, segment = labels[j], segments[j]
        box = w - label[3], label[2], w - label[1], label[4]
        if (bbox_ioa(box, labels[:, 1:5]) < 0.30).all():
            labels = np.concatenate((labels, [[label[0], *box]]), 0)
            segments.append(np.concatenate((w - segment[:, 0:1], segment[:, 1:2]), 1))
            cv2.drawContours(mask, [segment.astype(np.int32)], -1, (1, 1, 1), cv2.FILLED)
    flipped = cv2.flip(im, 1)
    pasted = cv2.flip(mask, 1).astype(bool)
    im[pasted] = flipped[pasted]
    return im, labels, segments


def cutout(im, labels, p=0.5):
    """Grey-ish random rectangles of shrinking sizes (arXiv:1708.04552); drops labels hidden over 60%.

    `labels` are (n, 5) normalised xywh. Works in place on `im`; returns the kept labels.
    """
    if random.random() >= p:
        return labels
    h, w = im.shape[:2]
    for s in [0.5] * 1 + [0.25] * 2 + [0.125] * 4 + [0.0625] * 8 + [0.03125] * 16:  # fraction of the image size
        mask_h, mask_w = random.randint(1, int(h * s)), random.randint(1, int(w * s))
        xmin, ymin = max(0, random.randint(0, w) - mask_w // 2), max(0, random.randint(0, h) - mask_h // 2)
        xmax, ymax = min(w, xmin + mask_w), min(h, ymin + mask_h)
        im[ymin:ymax, xmin:xmax] = [random.randint(64, 191) for _ in range(3)]
        if len(labels) and s > 0.03:
            box = np.array([xmin, ymin, xmax, ymax], dtype=np.float32)
            labels = labels[bbox_ioa(box, xywhn2xyxy(labels[:, 1:5], w, h)) < 0.60]
    return labels


def mixup(im, labels, im2, labels2):
    """Blend two images with a beta(32, 32) ratio (arXiv:1710.09412) and keep both label sets."""
    r = np.random.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)
    return im, np.concatenate((labels, labels2), 0)


def mosaic_centre(size, border):
    """Random mosaic centre (xc, yc) in a 2*size canvas, kept -border from its edges."""
    yc, xc = (int(random.uniform(-x, 2 * size + x)) for x in border)
    return xc, yc


def tile_mosaic(images, labels, segments, size, centre):
    """Four images around `centre` on a 2*size grey canvas (top-left, top-right, bottom-left, bottom-right).

    labels: four (n, 5) normalised xywh arrays; segments: four lists of normalised (k, 2) polygons. Returns
    (canvas, (n, 5) pixel xyxy labels, pixel polygons), boxes and polygons clipped to the canvas.
    """
    xc, yc = centre
    s2 = 2 * size
    canvas = np.full((s2, s2, images[0].shape[2]), GREY[0], dtype=np.uint8)
    out_labels, out_segments = [], []
    for i, (img, lb, segs) in enumerate(zip(images, labels, segments)):
        h, w = img.shape[:2]
        if i == 0:
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif i == 1:
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s2), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif i == 2:
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s2, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s2), min(s2, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        padw, padh = x1a - x1b, y1a - y1b  # where the tile's origin lands on the canvas
        lb = lb.copy()
        if lb.size:
            lb[:, 1:] = xywhn2xyxy(lb[:, 1:], w, h, padw, padh)
        out_labels.append(lb)
        out_segments.extend(xyn2xy(x, w, h, padw, padh) for x in segs)
    out_labels = np.concatenate(out_labels, 0)
    for x in (out_labels[:, 1:], *out_segments):
        np.clip(x, 0, s2, out=x)
    return canvas, out_labels, out_segments


class Albumentations:
    """YOLOv5's optional albumentations pass on training images, applied when the package is installed: blur, median
    blur, grayscale and CLAHE at 1% each (crop, brightness/contrast, gamma and JPEG compression are there at p=0, as
    in YOLOv5). Without the package nothing is applied and nothing is said, as in YOLOv5.

    albumentations 2 draws from its own generator, not Python's or numpy's: it is seeded from torch.initial_seed() in
    each process (each DataLoader worker has its own), so a seeded run repeats and the global streams are untouched.
    """

    def __init__(self, size=640):
        self.transform = None
        self.seed = None  # the torch seed the generator was last seeded from
        prefix = colorstr("albumentations: ")
        try:
            import albumentations as A

            transforms = [
                A.RandomResizedCrop(size=(size, size), scale=(0.8, 1.0), ratio=(0.9, 1.11), p=0.0),
                A.Blur(p=0.01),
                A.MedianBlur(p=0.01),
                A.ToGray(p=0.01),
                A.CLAHE(p=0.01),
                A.RandomBrightnessContrast(p=0.0),
                A.RandomGamma(p=0.0),
                A.ImageCompression(quality_range=(75, 100), p=0.0),
            ]
            self.transform = A.Compose(transforms, bbox_params=A.BboxParams(format="yolo", label_fields=["class_labels"]))
            LOGGER.info(prefix + ", ".join(f"{t}" for t in transforms if t.p))
        except ImportError:
            pass
        except Exception as e:  # e.g. an albumentations 1.x, whose transforms take other arguments
            LOGGER.info(f"{prefix}{e}")

    def __call__(self, im, labels, p=1.0):
        """(image, labels) transformed with probability p; labels (n, 5) [cls, x, y, w, h] normalised."""
        if self.transform is None or (p < 1 and random.random() >= p):
            return im, labels
        if self.seed != torch.initial_seed():
            self.seed = torch.initial_seed()
            self.transform.set_random_seed(self.seed % 2**32)
        new = self.transform(image=im, bboxes=labels[:, 1:], class_labels=labels[:, 0])
        labels = np.array([[c, *b] for c, b in zip(new["class_labels"], new["bboxes"])]).reshape(-1, 5)
        return new["image"], labels
