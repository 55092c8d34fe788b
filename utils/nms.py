"""Non-maximum suppression of raw detector output into per-image (n, 6 + nm) detections."""

import time

import torch

from utils.boxes import xywh2xyxy
from utils.cpu_threads import single_threaded
from utils.log import LOGGER
from utils.torchvision_ops import nms

MAX_WH = 7680  # class offset (pixels) that separates classes in one batched NMS call
MAX_NMS = 30000  # most boxes passed to torchvision.ops.nms per image
FIRST_PREFIX = 2048  # boxes given to the first NMS pass of an image; doubled until max_det boxes are kept


def label_rows(labels, nc, nm, like):
    """Autolabelling rows (save-hybrid): (n, 5 + nc + nm) with obj 1 and a one-hot class, from [cls, xywh]."""
    rows = torch.zeros((len(labels), nc + nm + 5), device=like.device, dtype=like.dtype)
    rows[:, :4] = labels[:, 1:5]
    rows[:, 4] = 1.0
    rows[range(len(labels)), labels[:, 0].long() + 5] = 1.0
    return rows


def _batch_rows(prediction, conf_thres, labels, nc, nm):
    """Every anchor row above conf_thres in the batch, then each image's label rows: (rows, image index of each)."""
    image, anchor = (prediction[..., 4] > conf_thres).nonzero(as_tuple=True)
    rows = prediction[image, anchor]  # a copy: the caller's tensor is never modified
    extra = [(i, label_rows(x, nc, nm, rows)) for i, x in enumerate(labels or ()) if len(x)]
    if extra:
        rows = torch.cat([rows] + [x for _, x in extra])
        image = torch.cat([image] + [torch.full((len(x),), i, device=image.device) for i, x in extra])
    return rows, image


def _greedy_nms(boxes, iou_thres, max_det):
    """Indices of the first max_det boxes that greedy NMS keeps, visiting boxes in their given order.

    Whether a box survives depends only on the boxes before it, so NMS over a prefix that already keeps max_det
    boxes gives the same first max_det as NMS over all of them, at a fraction of the cost (torchvision compares
    every kept box with every later one). Scores are the strictly decreasing ranks, so torchvision's own sort
    cannot reorder equal confidences.
    """
    n = len(boxes)
    ranks = torch.arange(n, 0, -1, device=boxes.device, dtype=boxes.dtype)
    size = min(n, max(FIRST_PREFIX, max_det))
    while True:
        keep = nms(boxes[:size], ranks[:size], iou_thres)
        if len(keep) >= max_det or size == n:
            return keep[:max_det]
        size = min(n, size * 2)


def checked_prediction(prediction, conf_thres, iou_thres):
    """(prediction tensor to run NMS on, device to return detections on), thresholds checked."""
    if not 0 <= conf_thres <= 1:
        raise ValueError(f"conf_thres={conf_thres} is not in [0, 1]")
    if not 0 <= iou_thres <= 1:
        raise ValueError(f"iou_thres={iou_thres} is not in [0, 1]")
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]  # eval-mode model output: (inference out, train out)
    device = prediction.device
    if device.type == "mps":  # torchvision NMS is not implemented on MPS
        prediction = prediction.cpu()
    return prediction, device


def non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, classes=None, agnostic=False,
                        multi_label=False, labels=(), max_det=300, nm=0):
    """YOLOv5 NMS: a list with one (n, 6 + nm) tensor [x1, y1, x2, y2, conf, cls, masks...] per image.

    `prediction` is (bs, anchors, 5 + nc + nm) rows [x, y, w, h, obj, cls scores..., mask coefficients...],
    or a (prediction, train_out) pair as the model returns in eval mode. conf = obj * cls; with multi_label
    every class above conf_thres gives a row. Classes are kept apart by offsetting boxes by cls * 7680 so one
    torchvision NMS call handles all of them. Equal confidences are visited in anchor, then class order. Stops
    with a warning when the batch takes longer than 0.5 + 0.05 * bs seconds.

    The whole batch is filtered and sorted by a handful of tensor ops; only the NMS call itself runs per image.
    """
    prediction, device = checked_prediction(prediction, conf_thres, iou_thres)
    with single_threaded():  # thousands of tiny ops: 37 ms/image on 2 busy cores with 2 threads, 8 ms with one
        return _suppress(prediction, device, conf_thres, iou_thres, classes, agnostic, multi_label, labels, max_det,
                         nm)


def _suppress(prediction, device, conf_thres, iou_thres, classes, agnostic, multi_label, labels, max_det, nm):
    batch_size = prediction.shape[0]
    nc = prediction.shape[2] - nm - 5
    mask_start = 5 + nc
    multi_label &= nc > 1
    time_limit = 0.5 + 0.05 * batch_size
    t0 = time.time()

    x, image = _batch_rows(prediction, conf_thres, labels, nc, nm)
    x[:, 5:mask_start] *= x[:, 4:5]  # conf = obj * cls
    box = xywh2xyxy(x[:, :4])
    mask = x[:, mask_start:]
    if multi_label:
        i, j = (x[:, 5:mask_start] > conf_thres).nonzero(as_tuple=True)
        x = torch.cat((box[i], x[i, 5 + j, None], j[:, None].float(), mask[i]), 1)
        image = image[i]
    else:
        conf, j = x[:, 5:mask_start].max(1, keepdim=True)
        chosen = conf.view(-1) > conf_thres
        x = torch.cat((box, conf, j.float(), mask), 1)[chosen]
        image = image[chosen]
    if classes is not None:
        chosen = (x[:, 5:6] == torch.tensor(classes, device=x.device)).any(1)
        x, image = x[chosen], image[chosen]

    # one stable sort by confidence, then a stable one by image: each image's rows in descending confidence
    order = x[:, 4].sort(descending=True, stable=True)[1]
    order = order[image[order].sort(stable=True)[1]]
    x = x[order]
    counts = torch.bincount(image, minlength=batch_size).tolist()

    output = [torch.zeros((0, 6 + nm), device=device)] * batch_size
    for xi, xi_rows in enumerate(x.split(counts)):
        if not len(xi_rows):
            continue
        xi_rows = xi_rows[:MAX_NMS]
        offsets = xi_rows[:, 5:6].float() * (0 if agnostic else MAX_WH)
        keep = _greedy_nms(xi_rows[:, :4].float() + offsets, iou_thres, max_det)
        output[xi] = xi_rows[keep].to(device)
        if time.time() - t0 > time_limit:
            LOGGER.warning(f"WARNING ⚠️ NMS time limit {time_limit:.3f}s exceeded")
            break
    return output
