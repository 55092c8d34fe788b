"""Box formats, IoU variants, and mapping boxes between letterboxed and original images.

Formats: xyxy = (x1, y1, x2, y2) corners; xywh = (x centre, y centre, width, height); a trailing `n`
means normalised to [0, 1] by the image width and height. Functions accept numpy arrays or torch tensors.
"""

import math

import numpy as np
import torch


def _clone(x):
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xyxy2xywh(x):
    """(n, 4) corners -> centre, width, height."""
    y = _clone(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywh2xyxy(x):
    """(n, 4) centre, width, height -> corners."""
    y = _clone(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xywhn2xyxy(x, w=640, h=640, padw=0, padh=0):
    """Normalised centre boxes -> pixel corners in a w x h image placed at offset (padw, padh)."""
    y = _clone(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x, w=640, h=640, clip=False, eps=0.0):
    """Pixel corners -> normalised centre boxes, optionally clipped to the image first."""
    if clip:
        x = _clone(x)
        clip_boxes(x, (h - eps, w - eps))
    y = _clone(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def xyn2xy(x, w=640, h=640, padw=0, padh=0):
    """Normalised (n, 2) points -> pixel points."""
    y = _clone(x)
    y[..., 0] = w * x[..., 0] + padw
    y[..., 1] = h * x[..., 1] + padh
    return y


def segment2box(segment, width=640, height=640):
    """One polygon (n, 2) -> one xyxy box (4,), keeping only points inside the image."""
    x, y = segment.T
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    x, y = x[inside], y[inside]
    return np.array([x.min(), y.min(), x.max(), y.max()]) if x.size else np.zeros(4)


def segments2boxes(segments):
    """List of polygons (each (n, 2), normalised) -> (m, 4) xywh boxes."""
    boxes = [[s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()] for s in segments]
    return xyxy2xywh(np.array(boxes, dtype=np.float32).reshape(-1, 4))


def resample_segments(segments, n=1000):
    """Resample each closed polygon to n points by linear interpolation along its vertices."""
    out = []
    for s in segments:
        s = np.concatenate((s, s[0:1, :]), axis=0)
        x = np.linspace(0, len(s) - 1, n)
        xp = np.arange(len(s))
        out.append(np.stack([np.interp(x, xp, s[:, i]) for i in range(2)], axis=1))  # float64, as YOLOv5
    return out


def clip_boxes(boxes, shape):
    """Clip xyxy boxes in place to an image of shape (height, width)."""
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, shape[1])
        boxes[..., 1].clamp_(0, shape[0])
        boxes[..., 2].clamp_(0, shape[1])
        boxes[..., 3].clamp_(0, shape[0])
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, shape[1])
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, shape[0])
    return boxes


def clip_segments(segments, shape):
    """Clip (n, 2) points in place to an image of shape (height, width)."""
    if isinstance(segments, torch.Tensor):
        segments[:, 0].clamp_(0, shape[1])
        segments[:, 1].clamp_(0, shape[0])
    else:
        segments[:, 0] = segments[:, 0].clip(0, shape[1])
        segments[:, 1] = segments[:, 1].clip(0, shape[0])
    return segments


def _ratio_pad(img1_shape, img0_shape, ratio_pad):
    """Gain and (pad w, pad h) that took an img0_shape image to img1_shape by letterbox."""
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = (img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2
        return gain, pad
    return ratio_pad[0][0], ratio_pad[1]


def scale_boxes(img1_shape, boxes, img0_shape, ratio_pad=None):
    """Map xyxy boxes in place from a letterboxed img1_shape (h, w) back to the original img0_shape."""
    gain, pad = _ratio_pad(img1_shape, img0_shape, ratio_pad)
    boxes[..., [0, 2]] -= pad[0]
    boxes[..., [1, 3]] -= pad[1]
    boxes[..., :4] /= gain
    clip_boxes(boxes, img0_shape)
    return boxes


def scale_segments(img1_shape, segments, img0_shape, ratio_pad=None, normalize=False):
    """Map (n, 2) points from a letterboxed img1_shape back to img0_shape (optionally normalised)."""
    gain, pad = _ratio_pad(img1_shape, img0_shape, ratio_pad)
    segments[:, 0] -= pad[0]
    segments[:, 1] -= pad[1]
    segments /= gain
    clip_segments(segments, img0_shape)
    if normalize:
        segments[:, 0] /= img0_shape[1]
        segments[:, 1] /= img0_shape[0]
    return segments


def box_area(box):
    """Area of (n, 4) xyxy boxes."""
    return (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])


def box_iou(box1, box2, eps=1e-7):
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M) tensor."""
    (a1, a2), (b1, b2) = box1.unsqueeze(1).chunk(2, 2), box2.unsqueeze(0).chunk(2, 2)
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(2)
    return inter / (box_area(box1)[:, None] + box_area(box2)[None] - inter + eps)


def bbox_ioa(box1, box2, eps=1e-7):
    """Intersection of one xyxy box (4,) with each of (n, 4) boxes, over box2's area (numpy)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.T
    inter = (np.minimum(b1_x2, b2_x2) - np.maximum(b1_x1, b2_x1)).clip(0) * \
            (np.minimum(b1_y2, b2_y2) - np.maximum(b1_y1, b2_y1)).clip(0)
    return inter / ((b2_x2 - b2_x1) * (b2_y2 - b2_y1) + eps)


def wh_iou(wh1, wh2, eps=1e-7):
    """IoU of widths/heights aligned at a common corner: (N, 2) x (M, 2) -> (N, M)."""
    wh1, wh2 = wh1[:, None], wh2[None]
    inter = torch.min(wh1, wh2).prod(2)
    return inter / (wh1.prod(2) + wh2.prod(2) - inter + eps)


def bbox_iou(box1, box2, xywh=True, GIoU=False, DIoU=False, CIoU=False, eps=1e-7):
    """Element-wise IoU of box1 (n, 4) and box2 (n, 4) (broadcastable), optionally GIoU, DIoU or CIoU.

    Returns shape (n, 1). CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v, where v measures
    the aspect-ratio mismatch and alpha = v / (v - IoU + 1), as in Zheng et al. (2020).
    """
    if xywh:
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
        half_w1, half_h1, half_w2, half_h2 = w1 / 2, h1 / 2, w2 / 2, h2 / 2  # once each: YOLOv5's gradients bit for bit
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - half_w1, x1 + half_w1, y1 - half_h1, y1 + half_h1
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - half_w2, x2 + half_w2, y2 - half_h2, y2 + half_h2
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
        w1, h1 = b1_x2 - b1_x1, (b1_y2 - b1_y1).clamp(eps)
        w2, h2 = b2_x2 - b2_x1, (b2_y2 - b2_y1).clamp(eps)

    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * \
            (b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not (CIoU or DIoU or GIoU):
        return iou
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)  # enclosing box width
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)  # enclosing box height
    if CIoU or DIoU:
        c2 = cw**2 + ch**2 + eps  # enclosing diagonal squared
        rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
        if CIoU:
            v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
            with torch.no_grad():
                alpha = v / (v - iou + (1 + eps))
            return iou - (rho2 / c2 + v * alpha)
        return iou - rho2 / c2
    c_area = cw * ch + eps
    return iou - (c_area - union) / c_area
