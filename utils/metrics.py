"""Detection metrics as YOLOv5 computes them: matching, AP per class, the confusion matrix and fitness.

The arrays are computed here; utils/plot_metrics.py draws them."""

import numpy as np
import torch

from utils.boxes import box_iou
from utils.curves import compute_ap, smooth
from utils.plot_metrics import plot_confusion_matrix, plot_metric_curves

IOU_THRESHOLDS = (0.5, 0.95, 10)  # torch.linspace arguments of the COCO thresholds 0.50:0.05:0.95
FITNESS_WEIGHTS = (0.0, 0.0, 0.1, 0.9)  # P, R, mAP@0.5, mAP@0.5:0.95


def iou_thresholds(device=None):
    """The 10 IoU thresholds 0.50:0.05:0.95 as a float32 tensor (the exact values YOLOv5 compares against)."""
    return torch.linspace(*IOU_THRESHOLDS, device=device)


def fitness(x):
    """Model fitness, 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95, of each row of an (n, >=4) array of METRIC_KEYS-ordered
    values [P, R, mAP50, mAP, ...]; of one such row, a number. Training picks best.pt by it, evolution ranks by it."""
    return (np.asarray(x, dtype=float)[..., :4] * FITNESS_WEIGHTS).sum(-1)


def ap_per_class(tp, conf, pred_cls, target_cls, plot=False, save_dir=".", names=(), eps=1e-16, prefix="",
                 draw=None):
    """Precision, recall and AP per class from the matched predictions of a whole dataset.

    tp (n, 10) bool: prediction correct at each IoU threshold; conf (n,), pred_cls (n,); target_cls (m,): the
    class of every label. P, R and F1 are read at the confidence that maximises the smoothed mean F1.
    plot: draw the PR, F1, P and R curves, now or, with draw (e.g. a BackgroundPlots' submit), by draw(fn, *args).
    Returns (tp, fp, p, r, f1, ap (nc, 10), unique_classes) for the classes that have labels.
    """
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    unique_classes, label_counts = np.unique(target_cls, return_counts=True)
    num_classes = unique_classes.shape[0]

    px = np.linspace(0, 1, 1000)  # confidence axis of the P, R and F1 curves
    pr_curves = []
    ap = np.zeros((num_classes, tp.shape[1]))
    p, r = np.zeros((num_classes, 1000)), np.zeros((num_classes, 1000))
    for ci, c in enumerate(unique_classes):
        is_class = pred_cls == c
        num_labels, num_preds = label_counts[ci], is_class.sum()
        if num_preds == 0 or num_labels == 0:
            continue
        tpc = tp[is_class].cumsum(0)
        fpc = (1 - tp[is_class]).cumsum(0)
        recall = tpc / (num_labels + eps)
        precision = tpc / (tpc + fpc)
        # np.interp needs increasing x: negate the (descending) confidences
        r[ci] = np.interp(-px, -conf[is_class], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[is_class], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if plot and j == 0:
                pr_curves.append(np.interp(px, mrec, mpre))  # precision at each recall of px, for PR_curve.png

    f1 = 2 * p * r / (p + r + eps)
    if plot:
        names = names if isinstance(names, dict) else dict(enumerate(names))
        present = {i: names.get(int(c), str(int(c))) for i, c in enumerate(unique_classes)}
        (draw or _draw_now)(plot_metric_curves, px, pr_curves, ap.copy(), f1, p, r, save_dir, present, prefix)

    best = smooth(f1.mean(0), 0.1).argmax()  # confidence index of the highest smoothed mean F1
    p, r, f1 = p[:, best], r[:, best], f1[:, best]
    tp = (r * label_counts).round()
    fp = (tp / (p + eps) - tp).round()
    return tp, fp, p, r, f1, ap, unique_classes.astype(int)


def _draw_now(plot, *args):
    plot(*args)


def _best_label(iou):
    """Each prediction's highest IoU and that label's index (ties: the lower label). iou: (labels, predictions)."""
    best_iou = iou.max(0).values
    label_index = torch.arange(iou.shape[0], device=iou.device)[:, None].expand_as(iou)
    return best_iou, torch.where(iou == best_iou, label_index, iou.shape[0]).min(0).values


def process_batch(detections, labels, iouv):
    """Which predictions are correct at each IoU threshold: (n, len(iouv)) bool, as YOLOv5's val.py decides.

    detections (n, 6) [x1, y1, x2, y2, conf, cls] sorted by confidence (as NMS returns them); labels (m, 5)
    [cls, x1, y1, x2, y2]. At threshold t each prediction takes its highest-IoU label of its class if that IoU
    >= t; a label claimed by several keeps the most confident of them. A prediction that loses its label is not
    matched again. Vectorised: prediction d is correct at t iff IoU(d) >= t and every more confident prediction
    with the same best label has IoU < t.
    """
    correct = torch.zeros((detections.shape[0], iouv.shape[0]), dtype=torch.bool, device=iouv.device)
    if not detections.shape[0] or not labels.shape[0]:
        return correct
    iou = box_iou(labels[:, 1:], detections[:, :4])
    iou = iou * (labels[:, 0:1] == detections[:, 5])
    best_iou, best_label = _best_label(iou)
    earlier_same_label = torch.tril(best_label[:, None] == best_label[None], diagonal=-1)  # (n, n): [d, d' < d]
    blocking_iou = torch.where(earlier_same_label, best_iou[None], torch.zeros_like(iou[:1])).max(1).values
    thresholds = iouv.to(iou.device)[None]
    correct = (best_iou[:, None] >= thresholds) & (blocking_iou[:, None] < thresholds) & (best_iou[:, None] > 0)
    return correct.to(iouv.device)


match_predictions = process_batch


class ConfusionMatrix:
    """(nc + 1) x (nc + 1) counts, rows predicted class, columns true class; the last row/column is background.

    Detections above `conf` are matched to labels of any class with IoU > iou_thres: each detection takes its
    highest-IoU label, and a label claimed by several keeps the one with the highest IoU (YOLOv5's rule).
    """

    def __init__(self, nc, conf=0.25, iou_thres=0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def process_batch(self, detections, labels):
        """Add one image: detections (n, 6) [xyxy, conf, cls] or None; labels (m, 5) [cls, xyxy] or (m,) classes."""
        if detections is None:
            gt_classes = (labels if labels.ndim == 1 else labels[:, 0]).int().cpu().numpy()
            np.add.at(self.matrix, (self.nc, gt_classes), 1)  # every label missed
            return
        detections = detections[detections[:, 4] > self.conf]
        gt_classes = labels[:, 0].int().cpu().numpy()
        det_classes = detections[:, 5].int().cpu().numpy()
        matched_label = np.full(len(det_classes), -1)
        any_overlap = False
        if len(gt_classes) and len(det_classes):
            iou = box_iou(labels[:, 1:], detections[:, :4])
            iou = torch.where(iou > self.iou_thres, iou, torch.zeros_like(iou))
            any_overlap = bool((iou > 0).any())
            best_iou, best_label = _best_label(iou)
            kept = (self._keeps_label(best_iou, best_label, len(gt_classes)) & (best_iou > 0)).cpu().numpy()
            matched_label[kept] = best_label.cpu().numpy()[kept]
        is_match = matched_label >= 0
        np.add.at(self.matrix, (det_classes[is_match], gt_classes[matched_label[is_match]]), 1)
        missed = np.ones(len(gt_classes), dtype=bool)
        missed[matched_label[is_match]] = False
        np.add.at(self.matrix, (self.nc, gt_classes[missed]), 1)  # labels no detection matched
        if any_overlap:  # YOLOv5 counts background detections only in images where some pair overlapped
            np.add.at(self.matrix, (det_classes[~is_match], self.nc), 1)

    @staticmethod
    def _keeps_label(best_iou, best_label, num_labels):
        """Whether each prediction has the highest IoU among those whose best label is the same (ties: first)."""
        top_iou = torch.zeros(num_labels, device=best_iou.device, dtype=best_iou.dtype)
        top_iou = top_iou.scatter_reduce(0, best_label, best_iou, reduce="amax")
        contender = best_iou == top_iou[best_label]
        pred_index = torch.arange(len(best_iou), device=best_iou.device)
        first = torch.full((num_labels,), len(best_iou), device=best_iou.device, dtype=torch.long)
        first = first.scatter_reduce(0, best_label[contender], pred_index[contender], reduce="amin")
        return first[best_label] == pred_index

    def tp_fp(self):
        """True and false positives per class (background excluded)."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]

    def plot(self, normalize=True, save_dir="", names=()):
        """Save confusion_matrix.png into save_dir."""
        plot_confusion_matrix(self.matrix, self.nc, normalize=normalize, save_dir=save_dir, names=names)

    def print(self):
        for row in self.matrix:
            print(" ".join(map(str, row)))
