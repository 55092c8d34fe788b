"""The command lines end a user's mistake with one 'Error:' line naming the fix, never a traceback."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.cli import run_cli
from utils.files import ROOT


@pytest.mark.parametrize("script, args, expected", [
    ("val.py", ["--weights", "yolov5s.pt", "--data", "coco128.yaml"], "releases/download/v7.0/yolov5s.pt"),
    ("train.py", ["--weights", "yolov5x.pt", "--data", "tiny.yaml", "--epochs", "1"], "--cfg yolov5x.yaml"),
    ("detect.py", ["--weights", "missing/best.pt"], "missing/best.pt not found"),
    ("train.py", ["--cfg", "yolov5n.yaml", "--weights", "", "--data", "nothere.yaml"], "nothere.yaml not found"),
])
def test_offline_and_missing_files_end_in_one_error_line(tmp_path, script, args, expected):
    """Official weights are fetched from the release URL; offline that fails fast (a dead proxy stands in for no
    network, so the test never downloads even where there is one). tiny.yaml: a one-image dataset, so that train.py
    gets past the dataset to the weights on a machine without coco128."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images/a.jpg"), np.full((32, 32, 3), 128, np.uint8))
    (tmp_path / "tiny.yaml").write_text(f"path: {tmp_path}\ntrain: images\nval: images\nnames: [thing]\n")
    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "Traceback" not in output and "Error:" in output and expected in output


def test_run_cli_lets_bugs_through():
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 / 0)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: (_ for _ in ()).throw(FileNotFoundError("x.pt not found")))
    assert exit_info.value.code == 1
