import subprocess
import sys

import pytest
import torch

from utils.files import ROOT
from utils.torchvision_ops import nms


@pytest.mark.parametrize("iou, kept", [(0.5, [0, 2]), (0.7, [0, 1, 2]), (0.0, [0, 2])])
def test_nms_keeps_by_score_and_overlap(iou, kept):
    # boxes 0 and 1 overlap with IoU 81 / 119 = 0.68; box 2 is apart
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou).tolist() == kept


def test_nms_equals_torchvision():
    torchvision = pytest.importorskip("torchvision")
    xy = torch.rand(300, 2) * 100
    boxes = torch.cat([xy, xy + torch.rand(300, 2) * 40 + 1], 1)
    scores = torch.rand(300)
    assert torch.equal(nms(boxes, scores, 0.45), torchvision.ops.nms(boxes, scores, 0.45))


def test_commands_start_without_torchvision_package_or_dynamo():
    """torchvision's package import (model zoo) and torch._dynamo cost seconds at every start: neither is imported."""
    code = ("import sys, torch, val, detect, train; from utils.general import non_max_suppression; "
            "non_max_suppression(torch.zeros(1, 10, 85)); from models.yolo import Model; Model('yolov5n.yaml').info(); "
            "print(sorted(m for m in sys.modules if m.startswith(('torchvision', 'torch._dynamo'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
