"""Class weights and per-image sampling weights (--image-weights) against hand-counted values."""

import random

import numpy as np
import pytest
import torch

from utils.sampling import labels_to_class_weights, labels_to_image_weights, resample_image_weights


def test_class_and_image_weights():
    labels = [np.array([[0, .5, .5, .1, .1], [0, .5, .5, .1, .1], [1, .5, .5, .1, .1]]), np.array([[0, .5, .5, .1, .1]]),
              np.zeros((0, 5))]
    w = labels_to_class_weights(labels, nc=3)  # counts 3, 1, 0->1: weights 1/3, 1, 1 normalised by 7/3
    assert w.tolist() == pytest.approx([1 / 7, 3 / 7, 3 / 7])
    iw = labels_to_image_weights(labels, nc=3, class_weights=np.array([1.0, 2.0, 3.0]))
    assert iw.tolist() == [4.0, 1.0, 0.0]


class FakeDataset:
    def __init__(self, labels):
        self.labels, self.n, self.indices = labels, len(labels), list(range(len(labels)))


def test_resample_favours_images_of_poorly_detected_classes():
    """Class 0 at mAP 1 weighs 0 and class 1 at mAP 0 weighs 1: only the image holding class 1 is ever drawn."""
    dataset = FakeDataset([np.array([[0, .5, .5, .1, .1]]), np.array([[1, .5, .5, .1, .1]])])
    random.seed(0)
    resample_image_weights(dataset, torch.ones(2), maps=np.array([1.0, 0.0]), nc=2)
    assert dataset.indices == [1, 1]
