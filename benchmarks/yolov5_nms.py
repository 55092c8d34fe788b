"""YOLOv5's non_max_suppression, as this project ran it before utils/nms.py was vectorised.

Kept as the reference: benchmarks/speed.py's plain path runs it (it is what YOLOv5 does on a CPU), and
tests/test_nms.py checks that utils/nms.py returns the same boxes.
"""

import time

import torch
import torchvision

from utils.boxes import xywh2xyxy
from utils.log import LOGGER
from utils.nms import MAX_NMS, MAX_WH, checked_prediction, label_rows


def yolov5_non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, classes=None, agnostic=False,
                               multi_label=False, labels=(), max_det=300, nm=0):
    """YOLOv5's NMS, one image at a time with torch's thread count: a list of (n, 6 + nm) detections per image.

    `prediction` is (bs, anchors, 5 + nc + nm) rows [x, y, w, h, obj, cls scores..., mask coefficients...],
    or a (prediction, train_out) pair as the model returns in eval mode. conf = obj * cls; with multi_label
    every class above conf_thres gives a row. Classes are kept apart by offsetting boxes by cls * 7680 so one
    torchvision NMS call handles all of them. Stops with a warning when the batch takes longer than
    0.5 + 0.05 * bs seconds.
    """
    prediction, device = checked_prediction(prediction, conf_thres, iou_thres)

    batch_size = prediction.shape[0]
    nc = prediction.shape[2] - nm - 5
    mask_start = 5 + nc
    multi_label &= nc > 1
    candidates = prediction[..., 4] > conf_thres
    time_limit = 0.5 + 0.05 * batch_size
    class_filter = None if classes is None else torch.tensor(classes, device=prediction.device)

    t0 = time.time()
    output = [torch.zeros((0, 6 + nm), device=prediction.device)] * batch_size
    for xi, x in enumerate(prediction):  # x: (anchors, 5 + nc + nm)
        x = x[candidates[xi]]
        if labels and len(labels[xi]):
            x = torch.cat((x, label_rows(labels[xi], nc, nm, x)), 0)
        if not x.shape[0]:
            continue

        x[:, 5:mask_start] *= x[:, 4:5]  # conf = obj * cls
        box = xywh2xyxy(x[:, :4])
        mask = x[:, mask_start:]
        if multi_label:
            i, j = (x[:, 5:mask_start] > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], x[i, 5 + j, None], j[:, None].float(), mask[i]), 1)
        else:
            conf, j = x[:, 5:mask_start].max(1, keepdim=True)
            x = torch.cat((box, conf, j.float(), mask), 1)[conf.view(-1) > conf_thres]
        if class_filter is not None:
            x = x[(x[:, 5:6] == class_filter).any(1)]
        if not x.shape[0]:
            continue

        x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]
        offsets = x[:, 5:6] * (0 if agnostic else MAX_WH)
        keep = torchvision.ops.nms(x[:, :4] + offsets, x[:, 4], iou_thres)[:max_det]
        output[xi] = x[keep]
        if device.type == "mps":
            output[xi] = output[xi].to(device)
        if time.time() - t0 > time_limit:
            LOGGER.warning(f"WARNING ⚠️ NMS time limit {time_limit:.3f}s exceeded")
            break
    return output
