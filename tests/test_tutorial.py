"""The loop of the YOLOv5 tutorials, as users type it, on CPU at a tiny size: train from the official weights and from
scratch, detect and validate with both, and print a model summary. Each command runs as its own process."""

import shutil
import subprocess
import sys

import pytest
import yaml

from utils.files import ROOT

SHARED = ROOT.parent / "shared"
OFFICIAL = SHARED / "weights" / "yolov5n.pt"
COCO128 = SHARED / "datasets" / "coco128"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not OFFICIAL.is_file() or not COCO128.is_dir(),
                                 reason="needs ../shared/weights/yolov5n.pt and ../shared/datasets/coco128")]


def run(*args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the first 16 COCO128 images with its labels and the 80 COCO names, and a place for runs/."""
    root = tmp_path_factory.mktemp("tutorial")
    for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
        (root / "coco16" / kind / "train2017").mkdir(parents=True)
        for f in sorted((COCO128 / kind / "train2017").glob(f"*{suffix}"))[:16]:
            shutil.copy(f, root / "coco16" / kind / "train2017")
    names = yaml.safe_load((ROOT / "data/coco128.yaml").read_text())["names"]
    data = {"path": str(root / "coco16"), "train": "images/train2017", "val": "images/train2017", "names": names}
    (root / "coco16.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(OFFICIAL, root / "yolov5n.pt")
    return root


def test_tutorial_loop(workspace):
    data, runs = workspace / "coco16.yaml", workspace / "runs"
    common = ["--data", data, "--img", 64, "--batch", 8, "--epochs", 1, "--device", "cpu", "--workers", 0]

    out = run(ROOT / "train.py", *common, "--weights", workspace / "yolov5n.pt", "--project", runs / "train",
              "--name", "pretrained", cwd=workspace)
    assert "Transferred 349/349 items" in out
    out = run(ROOT / "train.py", *common, "--cfg", "yolov5n.yaml", "--weights", "", "--project", runs / "train",
              "--name", "scratch", cwd=workspace)
    assert "1 epochs completed" in out
    for name in ("pretrained", "scratch"):
        assert (runs / "train" / name / "weights" / "best.pt").is_file()
        assert (runs / "train" / name / "results.csv").is_file()

    images = ROOT / "data" / "images"
    for name, weights in (("official", workspace / "yolov5n.pt"), ("trained", runs / "train/pretrained/weights/best.pt")):
        out = run(ROOT / "detect.py", "--weights", weights, "--source", images, "--img", 128, "--conf", 0.25,
                  "--device", "cpu", "--save-txt", "--project", runs / "detect", "--name", name, cwd=workspace)
        assert "Speed:" in out
        saved = sorted(p.name for p in (runs / "detect" / name).glob("*.jpg"))
        assert saved == sorted(p.name for p in images.glob("*.jpg"))

        out = run(ROOT / "val.py", "--weights", weights, "--data", data, "--img", 64, "--batch", 8, "--device", "cpu",
                  "--project", runs / "val", "--name", name, cwd=workspace)
        assert "all" in out and "Speed:" in out

    out = run(ROOT / "models" / "yolo.py", "--cfg", "yolov5n.yaml", "--device", "cpu", cwd=workspace)
    assert "YOLOv5n summary: 214 layers, 1872157 parameters" in out
