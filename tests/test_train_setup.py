"""Training set-up helpers: freezing layers, seeds."""

import numpy as np
import pytest
import torch
from torch import nn

from utils.train.setup import freeze_layers, init_seeds


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
