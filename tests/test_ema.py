"""ModelEMA: the decay ramp, the update formula on weights and buffers, attributes."""

import math

import pytest
import torch
from torch import nn

from utils.ema import ModelEMA


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


@pytest.mark.parametrize("updates, expected", [(0, 0.0), (2000, 0.9999 * (1 - math.exp(-1))), (1, 0.9999 * (1 - math.exp(-1 / 2000)))])
def test_decay(updates, expected):
    assert ModelEMA(tiny()).decay(updates) == pytest.approx(expected)


def test_update_formula_and_buffers():
    model = tiny()
    ema = ModelEMA(model, updates=1999)
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked += 7
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1))
    assert ema.updates == 2000
    state = ema.ema.state_dict()
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(state[k], d * before[k] + (1 - d) * v)
    assert state["1.num_batches_tracked"].item() == 7
    assert not any(p.requires_grad for p in ema.ema.parameters()) and not ema.ema.training


def test_first_update_copies_the_model():
    """updates=0 -> first update has d = 0.9999 * (1 - e^-1/2000) ~ 5e-4: almost a copy."""
    model = tiny()
    ema = ModelEMA(model)
    with torch.no_grad():
        model[0].weight.mul_(3)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    torch.testing.assert_close(ema.ema[0].weight, model[0].weight * (1 - d) + model[0].weight / 3 * d)


def test_update_attr_copies_public_attributes_only():
    model = tiny()
    ema = ModelEMA(model)
    model.names, model.nc, model._secret, model.reducer = ["a"], 1, 5, object()
    ema.update_attr(model, include=["names", "nc", "_secret"])
    assert ema.ema.names == ["a"] and ema.ema.nc == 1
    assert not hasattr(ema.ema, "_secret") and not hasattr(ema.ema, "reducer")
