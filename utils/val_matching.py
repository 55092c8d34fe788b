"""Per-image matching of a validation run, as YOLOv5's val.py does it: labels and predictions taken back to the
original image's pixels, which predictions are correct at each IoU threshold, the confusion matrix, and the
dataset-wide precision, recall and AP computed from them at the end."""

from dataclasses import dataclass, field

import numpy as np
import torch

from utils.boxes import scale_boxes, xywh2xyxy
from utils.metrics import ap_per_class, iou_thresholds, match_predictions


def labels_native(labels, letterboxed_shape, original_shape, ratio_pad):
    """(m, 5) [cls, x1, y1, x2, y2] in the original image's pixels from (m, 5) [cls, x, y, w, h] letterboxed pixels."""
    if not len(labels):
        return torch.zeros((0, 5), device=labels.device)
    boxes = scale_boxes(letterboxed_shape, xywh2xyxy(labels[:, 1:5]), original_shape, ratio_pad)
    return torch.cat((labels[:, 0:1], boxes), 1)


def predictions_native(predictions, letterboxed_shape, original_shape, ratio_pad):
    """A copy of NMS output (n, 6) [x1, y1, x2, y2, conf, cls] with its boxes in the original image's pixels."""
    native = predictions.clone()
    scale_boxes(letterboxed_shape, native[:, :4], original_shape, ratio_pad)
    return native


@dataclass
class ClassMetrics:
    """Dataset-wide results: per class (the classes with labels, `classes`) and their means over those classes.

    With no correct prediction at all every figure is 0.0 and the per-class arrays are empty, as in YOLOv5."""

    label_counts: np.ndarray  # (num_classes,) labels of each class in the whole set
    true_positives: object = 0.0
    false_positives: object = 0.0
    precision: object = 0.0
    recall: object = 0.0
    f1: object = 0.0
    ap: object = field(default_factory=list)  # AP@0.5:0.95 per class
    ap50: object = 0.0
    classes: object = field(default_factory=list)
    mean_precision: float = 0.0
    mean_recall: float = 0.0
    map50: float = 0.0
    map: float = 0.0

    def per_class_map(self, num_classes):
        """(num_classes,) mAP@0.5:0.95 of each class; classes without labels get the mean, as YOLOv5 fills them."""
        maps = np.zeros(num_classes) + self.map
        for i, c in enumerate(self.classes):
            maps[c] = self.ap[i]
        return maps


class MatchingStatistics:
    """Gathers, image by image, which predictions are correct at each of the 10 IoU thresholds 0.50:0.05:0.95,
    their confidences and classes, the labels' classes and (optionally) the confusion matrix."""

    def __init__(self, device, confusion_matrix=None):
        self.iou_thresholds = iou_thresholds(device)
        self.device = device
        self.confusion_matrix = confusion_matrix
        self.images_seen = 0
        self._rows = []  # per image with labels or predictions: (correct, confidence, predicted class, label class)

    def add_image(self, predictions, labels):
        """One image: predictions (n, 6) [xyxy, conf, cls] and labels (m, 5) [cls, xyxy], both in original pixels."""
        self.images_seen += 1
        num_labels, num_predictions = labels.shape[0], predictions.shape[0]
        correct = torch.zeros(num_predictions, len(self.iou_thresholds), dtype=torch.bool, device=self.device)
        if num_predictions == 0:
            if num_labels:
                self._rows.append((correct, *torch.zeros((2, 0), device=self.device), labels[:, 0]))
                if self.confusion_matrix is not None:
                    self.confusion_matrix.process_batch(detections=None, labels=labels[:, 0])
            return
        if num_labels:
            correct = match_predictions(predictions, labels, self.iou_thresholds)
        if self.confusion_matrix is not None:
            self.confusion_matrix.process_batch(predictions, labels)
        self._rows.append((correct, predictions[:, 4], predictions[:, 5], labels[:, 0]))

    def arrays(self):
        """[correct (n, 10), confidence (n,), predicted class (n,), label class (m,)] as numpy; [] before any row."""
        return [torch.cat(column, 0).cpu().numpy() for column in zip(*self._rows)]

    def class_metrics(self, num_classes, names, plot=False, save_dir=".", draw=None):
        """ClassMetrics of everything added; plot: the PR, F1, P and R curves too (see ap_per_class's `draw`)."""
        arrays = self.arrays()
        label_classes = arrays[3].astype(int) if len(arrays) else np.zeros(0, dtype=int)
        metrics = ClassMetrics(label_counts=np.bincount(label_classes, minlength=num_classes))
        if len(arrays) and arrays[0].any():
            tp, fp, p, r, f1, ap, classes = ap_per_class(*arrays, plot=plot, save_dir=save_dir, names=names,
                                                         draw=draw)
            ap50, ap = ap[:, 0], ap.mean(1)  # AP@0.5, AP@0.5:0.95
            metrics = ClassMetrics(metrics.label_counts, tp, fp, p, r, f1, ap, ap50, classes,
                                   p.mean(), r.mean(), ap50.mean(), ap.mean())
        return metrics
