"""Per-image matching: labels and predictions back in original pixels, correct-at-threshold rows, class metrics."""

import numpy as np
import pytest
import torch

from utils.metrics import ConfusionMatrix
from utils.val_matching import ClassMetrics, MatchingStatistics, labels_native, predictions_native

# a 16 x 32 (h, w) image letterboxed to 64 x 64: gain 2, padded 16 pixels above and below
LETTERBOXED, ORIGINAL = (64, 64), (16, 32)


def test_labels_native_undoes_the_letterbox():
    labels = torch.tensor([[1.0, 32, 32, 20, 10]])  # cls, centre x, y, w, h in letterboxed pixels
    # xyxy (22, 27, 42, 37), less the padding (0, 16): (22, 11, 42, 21), over gain 2
    assert labels_native(labels, LETTERBOXED, ORIGINAL, None).tolist() == [[1.0, 11, 5.5, 21, 10.5]]
    assert labels_native(torch.zeros((0, 5)), LETTERBOXED, ORIGINAL, None).shape == (0, 5)


def test_predictions_native_scales_a_copy():
    predictions = torch.tensor([[22.0, 27, 42, 37, 0.9, 3]])
    native = predictions_native(predictions, LETTERBOXED, ORIGINAL, ((2.0, 2.0), (0.0, 16.0)))
    assert native.tolist() == [[11.0, 5.5, 21, 10.5, pytest.approx(0.9), 3]]
    assert predictions[0, 0] == 22  # the NMS output itself is untouched


def test_add_image_matches_per_threshold_as_yolov5():
    """Label [0, 0, 10, 10]: A (IoU 0.72, conf 0.9) takes it at 0.50-0.70; at 0.75-0.95 A fails, so the less confident
    B (IoU 1.0) takes it. C has the wrong class, D an image of its own with no label."""
    statistics = MatchingStatistics("cpu", ConfusionMatrix(nc=2))
    labels = torch.tensor([[0.0, 0, 0, 10, 10]])
    predictions = torch.tensor([[0.0, 0, 10, 7.2, 0.9, 0], [0, 0, 10, 10, 0.8, 0], [0, 0, 10, 10, 0.7, 1]])
    statistics.add_image(predictions, labels)
    statistics.add_image(torch.zeros((0, 6)), torch.tensor([[1.0, 0, 0, 5, 5], [1, 5, 5, 9, 9]]))  # both missed
    statistics.add_image(torch.zeros((0, 6)), torch.zeros((0, 5)))  # nothing to count
    statistics.add_image(torch.tensor([[0.0, 0, 4, 4, 0.6, 1]]), torch.zeros((0, 5)))
    correct, conf, predicted_class, label_class = statistics.arrays()
    assert correct.astype(int).tolist() == [[1] * 5 + [0] * 5, [0] * 5 + [1] * 5, [0] * 10, [0] * 10]
    assert conf.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert predicted_class.tolist() == [0, 0, 1, 1] and label_class.tolist() == [0, 1, 1]
    assert statistics.images_seen == 4
    # above conf 0.25 and IoU 0.45, any class: A, B and C all overlap the label; the highest IoU (B, then C: a tie,
    # the first wins) keeps it; A and C are background; the second image's two labels are missed
    assert statistics.confusion_matrix.matrix.tolist() == [[1, 0, 1], [0, 0, 1], [0, 2, 0]]


def test_no_correct_prediction_gives_zeros_and_the_mean_for_every_class():
    statistics = MatchingStatistics("cpu")
    statistics.add_image(torch.tensor([[20.0, 20, 30, 30, 0.9, 0]]), torch.tensor([[0.0, 0, 0, 10, 10]]))
    metrics = statistics.class_metrics(num_classes=3, names={0: "a", 1: "b", 2: "c"})
    assert (metrics.mean_precision, metrics.mean_recall, metrics.map50, metrics.map) == (0.0, 0.0, 0.0, 0.0)
    assert metrics.label_counts.tolist() == [1, 0, 0] and len(metrics.classes) == 0
    assert metrics.per_class_map(3).tolist() == [0.0, 0.0, 0.0]
    assert MatchingStatistics("cpu").class_metrics(2, {}).label_counts.tolist() == [0, 0]  # nothing added at all


def test_perfect_match_gives_yolov5s_ceiling():
    statistics = MatchingStatistics("cpu")
    statistics.add_image(torch.tensor([[0.0, 0, 10, 10, 0.9, 1]]), torch.tensor([[1.0, 0, 0, 10, 10]]))
    metrics = statistics.class_metrics(num_classes=3, names={0: "a", 1: "b", 2: "c"})
    assert metrics.classes.tolist() == [1]
    assert (metrics.mean_precision, metrics.mean_recall) == pytest.approx((1.0, 1.0))
    assert (metrics.map50, metrics.map) == pytest.approx((0.995, 0.995))  # 101-point interpolation tops out there


def test_per_class_map_fills_classes_without_labels_with_the_mean():
    metrics = ClassMetrics(label_counts=np.array([0, 0, 3, 0]), ap=np.array([0.5]), classes=np.array([2]), map=0.3)
    assert metrics.per_class_map(4).tolist() == [0.3, 0.3, 0.5, 0.3]
