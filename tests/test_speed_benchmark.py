"""benchmarks/speed.py end to end at toy sizes: every figure for both modes, and the plain path left undone."""

import pytest
import torch
import yaml

import val
from benchmarks import speed
from utils.precision import cpu_bf16_support
from utils.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = make_shapes_dataset(tmp_path_factory.mktemp("bench") / "shapes", train=8, val=4, size=64)
    data = root.parent / "shapes.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": {0: "circle", 1: "square", 2: "triangle", 3: "star", 4: "cross"}}))
    return data


def test_smoke_run_reports_every_figure_for_both_modes(tiny_shapes, capsys):
    threads = torch.get_num_threads()
    opt, argv = speed.parse_opt(["--cfg", "yolov5n.yaml", "--data", str(tiny_shapes), "--img", "64", "--batch", "2",
                                 "--val-batch", "2", "--steps", "2", "--warmup", "2", "--repeats", "2",
                                 "--workers", "0", "--device", "cpu", "--compare-fp32"])
    assert "--compare-fp32" not in argv  # each child process runs one mode
    try:
        results = speed.main(opt, argv)
    finally:
        torch.set_num_threads(threads)
    for mode in ("amp", "fp32"):
        r = results[mode]
        for key in ("train e2e img/s", "train step img/s", "train peak MB", "val img/s", "val s", "infer ms/img"):
            assert len(r[key]) == 2 and min(r[key]) > 0, (mode, key)
        assert len(r["val first s"]) == 1 and len(r["val P R mAP50 mAP50-95"][0].split()) == 4
    assert results["amp"]["train precision"] == ["bf16 autocast" if cpu_bf16_support()[0] else "fp32"] * 2
    assert results["fp32"]["train precision"] == ["fp32"] * 2
    out = capsys.readouterr().out
    assert "train e2e img/s" in out and "amp / fp32" in out


def test_plain_val_patches_are_undone():
    with speed.plain_val():
        assert val.non_max_suppression is speed.yolov5_non_max_suppression
        assert val.select_precision("cpu") == speed.Precision("cpu")
    assert val.select_precision is speed.select_precision


def test_needs_a_model():
    with pytest.raises(SystemExit):
        speed.parse_opt(["--data", "coco128.yaml"])
