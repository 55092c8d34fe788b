"""Detect's in-place decoding: YOLOv5's formula exactly, raw maps left alone, thread-safe grid caches."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from models.yolo import Detect, Model
from utils.precision import cpu_bf16_support


def _reference_decode(head, p, i):
    """YOLOv5's decode: xy = (2 * sigmoid + grid) * stride, wh = (2 * sigmoid) ** 2 * anchor, then concatenated."""
    p = p.to(head.anchors.dtype)
    ny, nx = p.shape[2:4]
    grid, anchor_grid = head._make_grid(nx, ny, i)
    xy, wh, conf = p.sigmoid().split((2, 2, head.nc + 1), 4)
    return torch.cat(((xy * 2 + grid) * head.stride[i], (wh * 2) ** 2 * anchor_grid, conf), 4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Model("yolov5n.yaml", nc=3, verbose=False).eval()


@pytest.mark.parametrize("bf16", [False, True])
def test_decode_matches_yolov5_and_keeps_raw_maps(model, bf16):
    if bf16 and not cpu_bf16_support()[0]:
        pytest.skip("this CPU has no native bf16")
    head = model.model[-1]
    convs = []  # each level's conv output, before Detect reshapes and decodes it
    hooks = [conv.register_forward_hook(lambda module, args, out: convs.append(out)) for conv in head.m]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            decoded, maps = model(torch.rand(2, 3, 96, 128))
    finally:
        for hook in hooks:
            hook.remove()
    expected = torch.cat([_reference_decode(head, m, i).view(2, -1, head.no) for i, m in enumerate(maps)], 1)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, expected)
    for raw, out in zip(maps, convs):  # the raw maps returned beside the boxes are the untouched conv outputs
        bs, _, ny, nx = out.shape
        assert torch.equal(raw, out.view(bs, head.na, head.no, ny, nx).permute(0, 1, 3, 4, 2))


def test_grids_rebuilt_safely_from_parallel_threads(model):
    head = model.model[-1]
    shapes = [(64, 96), (96, 64), (128, 128), (64, 64)] * 4

    def run(shape):
        with torch.no_grad():
            return model(torch.zeros(1, 3, *shape))[0].shape[1]

    with ThreadPoolExecutor(4) as pool:
        cells = list(pool.map(run, shapes))
    assert cells == [3 * sum((h // s) * (w // s) for s in (8, 16, 32)) for h, w in shapes]
    assert isinstance(head, Detect)
