"""models/blocks.py (re-exported by models.common): Contract, Expand, C3SPP, and YOLOv5's pickle paths."""

import pickle

import pytest
import torch

import models.common as common
from models.common import C3SPP, SPP, Contract, Expand


def test_contract_stacks_pixel_phases_and_expand_undoes_it():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    y = Contract(2)(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(y[:, 0:3], x[..., ::2, ::2])  # phase (row 0, col 0) first, then (0, 1), (1, 0), (1, 1)
    assert torch.equal(y[:, 3:6], x[..., ::2, 1::2])
    assert torch.equal(y[:, 6:9], x[..., 1::2, ::2])
    assert torch.equal(Expand(2)(y), x)


def test_c3spp_puts_an_spp_in_place_of_the_bottlenecks():
    m = C3SPP(16, 16, k=(3, 5))
    assert isinstance(m.m, SPP) and len(m.m.m) == 2
    assert m(torch.rand(1, 16, 8, 8)).shape == (1, 16, 8, 8)


@pytest.mark.parametrize("name", ["Conv", "C3", "C3SPP", "Contract", "Expand", "GhostConv", "GhostBottleneck",
                                  "C3Ghost", "TransformerLayer", "TransformerBlock", "C3TR", "CrossConv", "C3x"])
def test_blocks_pickle_under_models_common(name):
    """Checkpoints name YOLOv5's path for each block, so YOLOv5's tools and the safe loader find it."""
    cls = getattr(common, name)
    assert cls.__module__ == "models.common"
    assert f"models.common\n{name}".encode() in pickle.dumps(cls, protocol=2)
