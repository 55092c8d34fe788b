import numpy as np
import pytest
import torch
from PIL import Image

from utils.crops import save_one_box


@pytest.mark.parametrize("xyxy, square, crop_hw", [
    ([50, 20, 90, 60], False, (51, 51)),  # 40x40 box centred (70, 40): side 40*1.02+10 = 50.8 -> x 44..95, y 14..65
    ([0, 0, 10, 10], False, (15, 15)),  # side 20.2 about (5, 5): -5.1..15.1 -> truncated -5..15, clipped 0..15
    ([10, 10, 30, 50], True, (51, 45)),  # 20x40 squared to 40x40 about (20, 30): x -5.4..45.4 -> 0..45, y 4..55
])
def test_crop_geometry(xyxy, square, crop_hw):
    im = np.zeros((100, 200, 3), np.uint8)
    crop = save_one_box(torch.tensor(xyxy), im, square=square, save=False)
    assert crop.shape[:2] == crop_hw


def test_crop_saved_rgb_and_incremented(tmp_path):
    im = np.zeros((60, 80, 3), np.uint8)
    im[..., 2] = 255  # red in BGR
    xyxy = [torch.tensor(v) for v in (10.0, 10.0, 50.0, 40.0)]  # as detect.py passes it: a list of 0-d tensors
    file = tmp_path / "crops" / "star" / "x.jpg"
    crop = save_one_box(xyxy, im, file=file, BGR=True)
    save_one_box(xyxy, im, file=file, BGR=True)
    assert (crop[..., 2] == 255).all()  # BGR in, BGR out
    saved = np.asarray(Image.open(file))
    assert saved.shape[:2] == crop.shape[:2]
    assert saved[..., 0].min() > 240 and saved[..., 1:].max() < 15  # stored as red, not blue
    assert (tmp_path / "crops" / "star" / "x2.jpg").exists()
