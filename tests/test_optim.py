"""smart_optimizer: YOLOv5's three parameter groups, their order and decay, each optimizer kind."""

import pytest
import torch
from torch import nn

from utils.optim import parameter_groups, smart_optimizer


def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 4, 1),
                         nn.LayerNorm(4))


def test_groups():
    model = tiny()
    decay, no_decay, biases = parameter_groups(model)
    assert [p.shape for p in decay] == [(8, 3, 3, 3), (4, 8, 1, 1)]
    assert [p.shape for p in no_decay] == [(8,), (4,)]  # BatchNorm and LayerNorm weights
    assert [p.shape for p in biases] == [(8,), (4,), (4,)]  # BN, conv, LayerNorm biases
    assert len(decay) + len(no_decay) + len(biases) == len(list(model.parameters()))


@pytest.mark.parametrize("name, cls", [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam),
                                       ("AdamW", torch.optim.AdamW), ("RMSProp", torch.optim.RMSprop)])
def test_order_and_decay(name, cls):
    opt = smart_optimizer(tiny(), name, lr=0.01, momentum=0.937, decay=5e-4)
    assert isinstance(opt, cls)
    sizes = [len(g["params"]) for g in opt.param_groups]
    assert sizes == [3, 2, 2]  # biases, decaying weights, norm weights
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]
    if name == "SGD":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.937
    if name in ("Adam", "AdamW"):
        assert opt.param_groups[0]["betas"] == (0.937, 0.999)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="LAMB"):
        smart_optimizer(tiny(), "LAMB")
