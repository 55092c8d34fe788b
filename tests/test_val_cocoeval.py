"""val.py's own mAP against pycocotools' on the embedded shapes dataset, for noisy predictions made from its labels.

The predictions must reach a high recall, as a trained detector's do at conf 0.001: YOLOv5's AP (which val.py
reproduces) closes each precision-recall curve with a straight line to recall 1, so where the highest recall is low
it scores above COCO's (by 0.037 here with one class per prediction).
"""

import numpy as np
import pytest
import torch
from torch import nn

import val
from utils.dataloaders import create_dataloader
from utils.synthetic import CLASS_NAMES, make_shapes_dataset

pytest.importorskip("pycocotools")

IMG = 128


def fingerprint(image):
    """An exact, memory-layout independent key of a (3, h, w) image in [0, 1]: a position-weighted pixel sum."""
    pixels = (image.float() * 255).round().long().reshape(-1)
    return int((pixels * (torch.arange(pixels.numel()) % 9973 + 1)).sum())


def noisy_rows(rng, labels, width, height, nc):
    """YOLO output rows [x, y, w, h, obj, class scores...] in pixels, like a trained detector's: each label found with
    a jittered box, a random score (low for 1 in 10), the highest class score now and then on the wrong class, and
    3 low-scored false positives."""
    rows = []
    for cls, x, y, w, h in labels:
        w, h = w * width, h * height
        box = [x * width + rng.normal(0, 0.05) * w, y * height + rng.normal(0, 0.05) * h,
               w * np.exp(rng.normal(0, 0.05)), h * np.exp(rng.normal(0, 0.05))]
        scores = rng.uniform(0.005, 0.1, nc)  # every class a little: multi-label NMS gives each its row
        scores[int(cls) if rng.random() < 0.85 else rng.integers(nc)] = rng.uniform(0.6, 1.0)
        found = rng.random() < 0.9  # the rest only with a low score, as a real detector at conf 0.001
        rows.append(box + [rng.uniform(0.2, 1.0) if found else rng.uniform(0.002, 0.05)] + scores.tolist())
    for _ in range(3):
        scores = np.eye(nc)[rng.integers(nc)]
        box = [rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 60), rng.uniform(8, 60)]
        rows.append(box + [rng.uniform(0.01, 0.4)] + scores.tolist())
    return np.array(rows, dtype=np.float32)


class NoisyOracle(nn.Module):
    """Answers every image of `loader` with noisy_rows of its labels. Images are recognised by fingerprint, since
    val.py may split a batch across threads."""

    def __init__(self, loader, nc, seed=0):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))  # val.py takes the device from the parameters
        self.nc, self.names, self.stride = nc, dict(enumerate(CLASS_NAMES)), torch.tensor([8.0, 16.0, 32.0])
        rng = np.random.default_rng(seed)
        self.answers = {}
        for images, targets, _, _ in loader:
            height, width = images.shape[2:]
            for i, image in enumerate(images.float() / 255):
                labels = targets[targets[:, 0] == i, 1:].numpy()
                self.answers[fingerprint(image)] = noisy_rows(rng, labels, width, height, nc)
        assert len(self.answers) == len(loader.dataset), "two images share a fingerprint"
        self.rows = max(map(len, self.answers.values()))  # one output size, whichever chunk of a batch it sees

    def forward(self, images, augment=False):
        answers = [self.answers[fingerprint(image)] for image in images]
        out = torch.zeros(len(images), self.rows, 5 + self.nc)
        for i, rows in enumerate(answers):
            out[i, :len(rows)] = torch.from_numpy(rows)
        return out.to(images.device) * self.scale, None


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = make_shapes_dataset(tmp_path_factory.mktemp("gen") / "shapes", train=1, val=48, seed=3, size=IMG)
    loader = create_dataloader(str(root / "images/val"), IMG, 16, 32, rect=True, pad=0.5, workers=0)[0]
    data = {"path": str(root), "val": "images/val", "names": dict(enumerate(CLASS_NAMES)), "nc": len(CLASS_NAMES)}
    return data, loader


def test_pycocotools_agrees_with_val_py_on_the_shapes_dataset(shapes, tmp_path):
    data, loader = shapes
    oracle = NoisyOracle(loader, data["nc"]).eval()
    common = dict(model=oracle, dataloader=loader, plots=False, amp=False, half=False)
    own = val.run(data, save_dir=tmp_path / "own", **common)[0]
    coco = val.run(data, save_dir=tmp_path / "coco", save_json=True, **common)[0]  # pycocotools' figures replace
    assert (tmp_path / "coco/annotations.json").exists() and (tmp_path / "coco/model_predictions.json").exists()
    assert 0.2 < own[3] < 0.9  # neither trivial nor hopeless
    assert coco[3] == pytest.approx(own[3], abs=0.02)  # mAP@0.5:0.95
    assert coco[2] == pytest.approx(own[2], abs=0.02)  # mAP@0.5
