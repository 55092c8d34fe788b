"""Training set-up helpers: hyp scaling, class and image weights, freezing, image size, seeds."""

import numpy as np
import pytest
import torch
from torch import nn

from utils.train_setup import (
    check_img_size,
    freeze_layers,
    init_seeds,
    labels_to_class_weights,
    labels_to_image_weights,
    scale_hyp_to_model,
)


@pytest.mark.parametrize("nl, nc, imgsz, box, cls, obj", [
    (3, 80, 640, 0.05, 0.5, 1.0),
    (3, 4, 256, 0.05, 0.5 * 4 / 80, 0.16),
    (4, 80, 640, 0.05 * 3 / 4, 0.5 * 3 / 4, 0.75),
])
def test_scale_hyp_to_model(nl, nc, imgsz, box, cls, obj):
    hyp = {"box": 0.05, "cls": 0.5, "obj": 1.0}
    scaled = scale_hyp_to_model(hyp, nl, nc, imgsz, label_smoothing=0.1)
    assert (scaled["box"], scaled["cls"], scaled["obj"]) == pytest.approx((box, cls, obj))
    assert scaled["label_smoothing"] == 0.1 and hyp["box"] == 0.05  # the input is not modified


def test_class_and_image_weights():
    labels = [np.array([[0, .5, .5, .1, .1], [0, .5, .5, .1, .1], [1, .5, .5, .1, .1]]), np.array([[0, .5, .5, .1, .1]]),
              np.zeros((0, 5))]
    w = labels_to_class_weights(labels, nc=3)  # counts 3, 1, 0->1: weights 1/3, 1, 1 normalised by 7/3
    assert w.tolist() == pytest.approx([1 / 7, 3 / 7, 3 / 7])
    iw = labels_to_image_weights(labels, nc=3, class_weights=np.array([1.0, 2.0, 3.0]))
    assert iw.tolist() == [4.0, 1.0, 0.0]


@pytest.mark.parametrize("imgsz, stride, floor, expected", [(640, 32, 0, 640), (100, 32, 0, 128), (30, 32, 64, 64)])
def test_check_img_size(imgsz, stride, floor, expected):
    assert check_img_size(imgsz, stride, floor) == expected


@pytest.mark.parametrize("freeze, frozen", [([0], []), ([2], ["model.0.weight", "model.1.weight"]),
                                            ([1, 3], ["model.1.weight", "model.3.weight"])])
def test_freeze_layers(freeze, frozen):
    model = nn.Module()
    model.model = nn.Sequential(*[nn.Linear(2, 2, bias=False) for _ in range(4)])
    freeze_layers(model, freeze)
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == frozen


def test_init_seeds_repeats():
    init_seeds(3)
    a = (np.random.rand(), torch.rand(1).item())
    init_seeds(3)
    assert (np.random.rand(), torch.rand(1).item()) == a
