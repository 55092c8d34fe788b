"""models/transformer.py: TransformerLayer, TransformerBlock, C3TR; yolov5s-transformer trains."""

import torch

from models.common import C3TR, TransformerBlock, TransformerLayer
from models.yolo import DetectionModel


def test_transformer_layer_parameters():
    """q, k, v, fc1, fc2: 5 c x c without bias; attention: in-projection 3c x c + 3c bias, out-projection c x c + c."""
    c = 8
    m = TransformerLayer(c, num_heads=4)
    assert sum(p.numel() for p in m.parameters()) == 5 * c * c + (3 * c * c + 3 * c) + (c * c + c)


def test_transformer_block_keeps_the_map_shape():
    torch.manual_seed(0)
    m = TransformerBlock(8, 16, num_heads=4, num_layers=2)
    assert m.conv is not None and len(m.tr) == 2
    assert m(torch.rand(2, 8, 5, 7)).shape == (2, 16, 5, 7)
    assert TransformerBlock(16, 16, 4, 1).conv is None


def test_c3tr_replaces_the_bottlenecks():
    m = C3TR(16, 16, n=3)
    assert isinstance(m.m, TransformerBlock) and len(m.m.tr) == 3 and m.m.c2 == 8
    assert m(torch.rand(1, 16, 4, 4)).shape == (1, 16, 4, 4)


def test_yolov5s_transformer_trains_one_step(train_one_step):
    model = DetectionModel("yolov5s-transformer.yaml", nc=4, verbose=False)
    assert isinstance(model.model[8], C3TR)
    loss = train_one_step(model, model.model[8])
    assert loss > 0
