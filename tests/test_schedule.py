"""LR lambdas, warmup values and gradient accumulation at chosen iterations (YOLOv5's numbers)."""

import math

import pytest
import torch

from utils.schedule import (
    accumulate_steps,
    apply_warmup,
    linear,
    lr_lambda,
    one_cycle,
    scaled_weight_decay,
    warmup_iterations,
    warmup_values,
)

HYP = {"warmup_bias_lr": 0.1, "warmup_momentum": 0.8, "momentum": 0.937}


@pytest.mark.parametrize("x, expected", [(0, 1.0), (50, 0.505), (100, 0.01), (25, 1 - 0.99 * (1 - math.cos(math.pi / 4)) / 2)])
def test_one_cycle(x, expected):
    assert one_cycle(1, 0.01, 100)(x) == pytest.approx(expected)


@pytest.mark.parametrize("x, expected", [(0, 1.0), (5, 0.505), (10, 0.01), (2, 0.802)])
def test_linear(x, expected):
    assert linear(1.0, 0.01, 10)(x) == pytest.approx(expected)


def test_lr_lambda_picks_cosine_or_linear():
    assert lr_lambda(0.01, 10, cos_lr=False)(2) == pytest.approx(0.802)
    assert lr_lambda(0.01, 10, cos_lr=True)(5) == pytest.approx(0.505)


@pytest.mark.parametrize("warmup_epochs, batches, expected", [(3.0, 8, 100), (3.0, 100, 300), (0.5, 301, 150), (0, 5, 100)])
def test_warmup_iterations(warmup_epochs, batches, expected):
    assert warmup_iterations(warmup_epochs, batches) == expected


@pytest.mark.parametrize("iteration, batch_size, expected", [
    (0, 16, 1),      # warmup starts at one batch per step
    (50, 16, 2),     # interp(50, [0, 100], [1, 4]) = 2.5 -> 2 (numpy rounds half to even)
    (51, 16, 3),     # 2.53 -> 3
    (100, 16, 4),    # end of warmup: 64 / 16
    (500, 16, 4),
    (500, 64, 1),
    (500, 128, 1),   # never below 1
    (500, 24, 3),    # round(2.67)
    (500, 40, 2),    # round(1.6)
])
def test_accumulate_steps(iteration, batch_size, expected):
    assert accumulate_steps(iteration, 100, batch_size) == expected


@pytest.mark.parametrize("batch_size, expected", [(16, 0.0005), (64, 0.0005), (24, 0.0005 * 72 / 64), (128, 0.001)])
def test_scaled_weight_decay(batch_size, expected):
    assert scaled_weight_decay(0.0005, batch_size) == pytest.approx(expected)


@pytest.mark.parametrize("iteration, lrs, momentum", [
    (0, [0.1, 0.0, 0.0], 0.8),
    (25, [0.1 - 0.25 * (0.1 - 0.008), 0.25 * 0.008, 0.25 * 0.008], 0.8 + 0.25 * 0.137),
    (100, [0.008, 0.008, 0.008], 0.937),
])
def test_warmup_values(iteration, lrs, momentum):
    """lr0 0.01, epoch factor 0.8: groups end at 0.008; bias (group 0) falls from 0.1, others rise from 0."""
    got_lrs, got_momentum = warmup_values(iteration, 100, 0.8, [0.01] * 3, HYP)
    assert got_lrs == pytest.approx(lrs) and got_momentum == pytest.approx(momentum)


def test_apply_warmup_sets_groups_and_only_sgd_momentum():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    sgd = torch.optim.SGD([{"params": [p]} for p in params], lr=0.01, momentum=0.9)
    adam = torch.optim.Adam([{"params": [p]} for p in params], lr=0.01)
    for opt in (sgd, adam):
        for g in opt.param_groups:
            g["initial_lr"] = 0.01
        apply_warmup(opt, 50, 100, 1.0, HYP)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.055, 0.005, 0.005])
    assert sgd.param_groups[0]["momentum"] == pytest.approx(0.8685)
    assert "momentum" not in adam.param_groups[0]
