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


def spelled(argv, sep):
    """argv with every long flag's word separator replaced by sep."""
    return [("--" + a[2:].replace("-", "_").replace("_", sep)) if a.startswith("--") else a for a in argv]


def test_argument_parser_takes_either_spelling():
    from utils.cli import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--save-period", type=int, default=-1)
    parser.add_argument("--upload_dataset", action="store_true")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1)
    parser.add_argument("rest", nargs="*")
    opt = parser.parse_args(["--save_period=3", "--upload-dataset", "--local_rank", "1", "--", "--not_a_flag"])
    assert (opt.save_period, opt.upload_dataset, opt.local_rank, opt.rest) == (3, True, 1, ["--not_a_flag"])
    assert parser.parse_args(["--save-period", "2", "--local-rank", "0"]).local_rank == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--save_periods", "2"])


TRAIN_FLAGS = ["--batch-size", "8", "--img-size", "320", "--save-period", "2", "--image-weights", "--multi-scale",
               "--single-cls", "--sync-bn", "--exist-ok", "--cos-lr", "--label-smoothing", "0.1",
               "--evolve-population", "seeds", "--resume-evolve", "pop.yaml", "--upload-dataset", "val",
               "--bbox-interval", "3", "--artifact-alias", "v2", "--ndjson-console", "--ndjson-file", "--log-imgs",
               "8", "--log-artifacts", "--local-rank", "0", "--cache-images", "--linear-lr", "--evolve-method", "gp",
               "--ray-address", "auto"]
VAL_FLAGS = ["--batch-size", "4", "--img-size", "320", "--conf-thres", "0.1", "--iou-thres", "0.5", "--max-det", "9",
             "--single-cls", "--save-txt", "--save-hybrid", "--save-conf", "--save-json", "--exist-ok"]
DETECT_FLAGS = ["--img-size", "320", "--conf-thres", "0.1", "--iou-thres", "0.5", "--max-det", "9", "--view-img",
                "--save-txt", "--save-conf", "--save-crop", "--agnostic-nms", "--exist-ok", "--line-thickness", "2",
                "--hide-labels", "--hide-conf", "--vid-stride", "2", "--save-csv"]
EXPORT_FLAGS = ["--img-size", "320", "--batch-size", "2", "--per-tensor", "--agnostic-nms", "--topk-per-class", "5",
                "--topk-all", "6", "--iou-thres", "0.5", "--conf-thres", "0.3"]


@pytest.mark.parametrize("script, argv", [("train", TRAIN_FLAGS), ("val", VAL_FLAGS), ("detect", DETECT_FLAGS),
                                          ("export", EXPORT_FLAGS)])
def test_every_flag_parses_with_hyphens_or_underscores(monkeypatch, script, argv):
    import importlib

    module = importlib.import_module(script)

    def parse(args):
        if script == "train":
            monkeypatch.setattr(sys, "argv", ["train.py", *args])
            return vars(module.parse_opt())
        return vars(module.parse_opt(args))

    hyphens, underscores = parse(spelled(argv, "-")), parse(spelled(argv, "_"))
    assert hyphens == underscores
    assert hyphens != parse([])  # the flags were taken, not ignored
