"""Matching, AP and the confusion matrix on hand-computed cases; mAP of perfect and shifted predictions."""

import numpy as np
import pytest
import torch

from utils.boxes import box_iou
from utils.metrics import ConfusionMatrix, ap_per_class, compute_ap, fitness, iou_thresholds, process_batch, smooth

IOUV = iou_thresholds()


@pytest.mark.parametrize("row,expected", [
    ([0.5, 0.4, 0.6, 0.3], 0.1 * 0.6 + 0.9 * 0.3),
    ([1.0, 1.0, 0.0, 0.0], 0.0),
    ([0.0, 0.0, 1.0, 1.0, 9.0, 9.0, 9.0], 1.0),  # loss columns are ignored
])
def test_fitness(row, expected):
    assert fitness(np.array([row]))[0] == pytest.approx(expected)


def test_iou_thresholds():
    assert IOUV.tolist() == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])


def test_smooth_constant_and_width():
    assert smooth(np.full(1000, 0.3), 0.1) == pytest.approx(np.full(1000, 0.3))
    y = np.zeros(1000)
    y[500] = 101.0
    assert smooth(y, 0.1).max() == pytest.approx(1.0)  # window of 101 points


@pytest.mark.parametrize("recall,precision,expected", [
    # one perfect point: envelope 1 up to recall 1, then the sentinel (1, 0) costs the last 1/100 half: 0.995
    ([1.0], [1.0], 0.995),
    # envelope 1 on [0, 0.5], then linear from (0.5, 1) to (1.0, 0.5) with the sentinel at x = 1:
    # 0.5 + 0.49 * (1 + 0.51) / 2 + 0.01 * 0.51 / 2 = 0.8725
    ([0.5, 1.0], [1.0, 0.5], 0.8725),
    # envelope 1 on [0, 0.5], then linear down to the sentinel (1, 0): 0.5 + 0.5 * 1 / 2 = 0.75
    ([0.5], [1.0], 0.75),
])
def test_compute_ap_hand_cases(recall, precision, expected):
    ap, mpre, mrec = compute_ap(np.array(recall), np.array(precision))
    assert ap == pytest.approx(expected, abs=1e-9)
    assert (np.diff(mpre) <= 0).all()  # envelope is non-increasing


def test_ap_per_class_hand_case():
    # 3 labels of class 0; predictions by confidence: 0.9 TP, 0.8 FP, 0.7 TP.
    # recall [1/3, 1/3, 2/3], precision [1, 1/2, 2/3] -> envelope 1 on [0, 1/3], 2/3 on (1/3, 2/3], then linear
    # to (1, 0). On the 101-point grid (trapezoids): 0.33 + 0.01 * (1 + 2/3) / 2 + 0.32 * 2/3
    # + 0.01 * (2/3 + 0.66) / 2 + 0.33 * 0.66 / 2 = 0.667200
    tp = np.array([[True], [False], [True]])
    conf = np.array([0.9, 0.8, 0.7])
    tp_out, fp_out, p, r, f1, ap, classes = ap_per_class(tp, conf, np.zeros(3), np.zeros(3))
    expected_ap = 0.33 + 0.01 * (1 + 2 / 3) / 2 + 0.32 * 2 / 3 + 0.01 * (2 / 3 + 0.66) / 2 + 0.33 * 0.66 / 2
    assert ap[0, 0] == pytest.approx(expected_ap, abs=1e-6)
    # best F1 is 2/3 for every confidence below 0.7, where P = R = 2/3
    assert (p[0], r[0], f1[0]) == pytest.approx((2 / 3, 2 / 3, 2 / 3), abs=1e-6)
    assert (tp_out[0], fp_out[0]) == (2, 1)
    assert classes.tolist() == [0]


def test_ap_per_class_sorts_by_confidence_and_skips_classes_without_predictions():
    tp = np.array([[True], [True], [False]])
    conf = np.array([0.7, 0.9, 0.8])  # by confidence: TP, FP, TP as in the hand case
    out = ap_per_class(tp, conf, np.zeros(3), np.array([0, 0, 0, 1]))
    ap, classes = out[5], out[6]
    assert classes.tolist() == [0, 1]
    assert ap[1, 0] == 0.0
    assert ap[0, 0] == pytest.approx(0.6672, abs=1e-4)


def _boxes(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 500
    wh = torch.rand(n, 2, generator=g) * 80 + 20
    return torch.cat((xy, xy + wh), 1)


def _map(shift_fraction, n=20):
    """mAP50 and mAP50-95 of predictions that are the labels moved right by shift_fraction of their width."""
    boxes = _boxes(n)
    classes = torch.arange(n) % 3
    labels = torch.cat((classes[:, None].float(), boxes), 1)
    moved = boxes.clone()
    moved[:, [0, 2]] += shift_fraction * (boxes[:, 2] - boxes[:, 0])[:, None]
    conf = torch.linspace(0.9, 0.5, n)
    detections = torch.cat((moved, conf[:, None], classes[:, None].float()), 1)
    correct = process_batch(detections, labels, IOUV)
    ap = ap_per_class(correct.numpy(), conf.numpy(), classes.numpy(), classes.numpy())[5]
    return ap[:, 0].mean(), ap.mean()


@pytest.mark.parametrize("shift,thresholds_passed", [
    (0.0, 10),   # IoU 1
    (0.02, 10),  # IoU (1 - s) / (1 + s) = 0.961
    (0.1, 7),    # IoU 0.818: 0.50 ... 0.80
    (0.2, 4),    # IoU 0.667: 0.50 ... 0.65
    (0.3, 1),    # IoU 0.538: 0.50 only
    (0.5, 0),    # half a box: IoU 1/3, below every threshold
])
def test_map_of_shifted_predictions(shift, thresholds_passed):
    # every matched class's AP is 0.995 (a perfect PR curve, see test_compute_ap_hand_cases), unmatched 0
    map50, map50_95 = _map(shift)
    assert map50 == pytest.approx(0.995 if thresholds_passed else 0.0, abs=1e-9)
    assert map50_95 == pytest.approx(0.995 * thresholds_passed / 10, abs=1e-9)


def _det(box, conf, cls):
    return [*box, conf, cls]


def test_process_batch_duplicates_ties_and_classes():
    labels = torch.tensor([[0, 0, 0, 10, 10], [0, 20, 0, 30, 10], [1, 40, 0, 50, 10]], dtype=torch.float)
    detections = torch.tensor([
        _det((0, 0, 10, 10), 0.9, 0),    # exact match of label 0
        _det((0, 0, 10, 10), 0.8, 0),    # duplicate of the above: label 0 is taken -> FP
        _det((10, 0, 20, 10), 0.7, 0),   # touches labels 0 and 1 with IoU 0: FP
        _det((40, 0, 50, 10), 0.6, 0),   # right place, wrong class: FP
        _det((21, 0, 31, 10), 0.5, 0),   # IoU 9/11 = 0.818 with label 1: TP at 0.50 ... 0.80
    ])
    correct = process_batch(detections, labels, IOUV)
    assert correct.shape == (5, 10) and correct.dtype == torch.bool
    assert correct[0].all()
    assert not correct[1:4].any()
    assert correct[4].tolist() == [True] * 7 + [False] * 3


def test_process_batch_tie_between_labels_goes_to_first_label_then_first_prediction():
    # prediction [0,0,10,10] vs labels [0,0,10,12] and [0,-2,10,10]: both IoU 10/12 = 0.833 (7 thresholds)
    labels = torch.tensor([[0, 0, 0, 10, 12], [0, 0, -2, 10, 10]], dtype=torch.float)
    detections = torch.tensor([_det((0, 0, 10, 10), 0.9, 0), _det((0, 0, 10, 10), 0.9, 0)])
    correct = process_batch(detections, labels, IOUV)
    # both predictions tie on label 0, the first keeps it; the second is not re-matched to label 1 (YOLOv5)
    assert correct[0].sum() == 7 and not correct[1].any()


def test_process_batch_loser_is_not_rematched():
    # A: IoU 0.9 with label 0; B: IoU 0.818 with label 0 and 0.8 with label 1. B's best label is 0, taken by A
    # at every threshold B passes, and B does not fall back to label 1 (YOLOv5's rule, not a global greedy)
    labels = torch.tensor([[0, 0, 0, 100, 10], [0, 20, 0, 100, 10]], dtype=torch.float)
    detections = torch.tensor([_det((0, 0, 90, 10), 0.9, 0), _det((10, 0, 110, 10), 0.8, 0)])
    iou = box_iou(labels[:, 1:], detections[:, :4])
    assert iou[:, 0].tolist() == pytest.approx([0.9, 0.7]) and iou[:, 1].tolist() == pytest.approx([9 / 11, 0.8])
    correct = process_batch(detections, labels, IOUV)
    assert correct[0].sum() == 9 and not correct[1].any()


def test_process_batch_label_goes_to_most_confident_prediction_passing_each_threshold():
    # label [0,0,100,10]; D0 (conf 0.9) IoU 0.62, D1 (conf 0.8) IoU 0.9. Up to 0.60 the more confident D0 keeps
    # the label; from 0.65 only D1 passes the threshold, so D1 takes it (up to 0.90)
    labels = torch.tensor([[0, 0, 0, 100, 10]], dtype=torch.float)
    detections = torch.tensor([_det((0, 0, 62, 10), 0.9, 0), _det((0, 0, 90, 10), 0.8, 0)])
    correct = process_batch(detections, labels, IOUV)
    assert correct[0].tolist() == [True] * 3 + [False] * 7
    assert correct[1].tolist() == [False] * 3 + [True] * 6 + [False]


def _yolov5_loop_reference(detections, labels, iouv):
    """YOLOv5's matching written out per threshold: candidate pairs sorted by IoU, first per prediction kept, then
    (now in prediction order) first per label kept."""
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    iou = box_iou(labels[:, 1:], detections[:, :4])
    same_class = labels[:, 0:1] == detections[:, 5]
    for k, t in enumerate(iouv):
        li, di = torch.where((iou >= t) & same_class)
        if not len(li):
            continue
        matches = torch.stack((li, di, iou[li, di]), 1).double().numpy()
        matches = matches[matches[:, 2].argsort(kind="stable")[::-1]]
        matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
        matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1].astype(int), k] = True
    return correct


@pytest.mark.parametrize("seed", range(5))
def test_process_batch_equals_per_threshold_loop(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat((torch.randint(0, 3, (15, 1), generator=g).float(), _boxes(15, seed)), 1)
    jitter = torch.randn(40, 4, generator=g) * 8
    boxes = labels[torch.randint(0, 15, (40,), generator=g), 1:] + jitter
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    detections = torch.cat((boxes, torch.rand(40, 1, generator=g), torch.randint(0, 3, (40, 1), generator=g)), 1)
    detections = detections[detections[:, 4].argsort(descending=True)]
    expected = _yolov5_loop_reference(detections, labels, IOUV)
    assert expected.any()
    assert (process_batch(detections, labels, IOUV).numpy() == expected).all()


def test_process_batch_empty_inputs():
    assert process_batch(torch.zeros(0, 6), torch.zeros(3, 5), IOUV).shape == (0, 10)
    assert not process_batch(torch.tensor([_det((0, 0, 1, 1), 0.5, 0)]), torch.zeros(0, 5), IOUV).any()


def test_confusion_matrix_hand_case():
    cm = ConfusionMatrix(nc=2)
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 0, 30, 10], [1, 60, 0, 70, 10]], dtype=torch.float)
    detections = torch.tensor([
        _det((0, 0, 10, 10), 0.9, 0),    # true 0, predicted 0
        _det((20, 0, 30, 10), 0.8, 0),   # true 1, predicted 0
        _det((80, 0, 90, 10), 0.7, 1),   # nothing there: background predicted as 1
        _det((60, 0, 70, 10), 0.2, 1),   # under conf 0.25: ignored, so label 2 is missed
    ])
    cm.process_batch(detections, labels)
    expected = np.array([[1, 1, 0],
                         [0, 0, 1],
                         [0, 1, 0]])
    assert (cm.matrix == expected).all()
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 1]
    cm.process_batch(None, torch.tensor([0.0, 0.0]))  # an image with no detections: both labels missed
    assert cm.matrix[2, 0] == 2
    # YOLOv5 counts background detections only in images where some detection overlaps some label
    cm.process_batch(torch.tensor([_det((0, 0, 5, 5), 0.5, 1)]), torch.zeros(0, 5))  # no labels at all
    assert cm.matrix[1, 2] == 1
    cm.process_batch(torch.tensor([_det((100, 100, 150, 150), 0.9, 1)]), labels[:1])  # one label, missed by all
    assert cm.matrix[1, 2] == 1 and cm.matrix[2, 0] == 3
