"""Hyp files: the shipped ones load complete; old ones get YOLOv5's defaults with a warning; bad keys are errors."""

import pytest
import yaml

from utils.hyp import DEFAULT_HYP, load_hyp, scale_hyp_to_model


@pytest.mark.parametrize("name", ["hyp.scratch-low.yaml", "hyp.scratch-med.yaml", "hyp.scratch-high.yaml"])
def test_shipped_hyps_are_complete(name, log_records):
    hyp = load_hyp(name)  # found in data/hyps by name
    assert set(DEFAULT_HYP) <= set(hyp)
    assert not log_records


def test_old_hyp_gets_defaults_with_warning(tmp_path, log_records):
    old = {k: v for k, v in DEFAULT_HYP.items() if not k.startswith("warmup") and k != "copy_paste"}
    old["giou"] = old.pop("box")
    path = tmp_path / "hyp.old.yaml"
    path.write_text(yaml.safe_dump(old))
    hyp = load_hyp(str(path))
    assert hyp["warmup_epochs"] == 3.0 and hyp["warmup_bias_lr"] == 0.1 and hyp["copy_paste"] == 0.0
    assert hyp["box"] == 0.05 and "giou" not in hyp and "anchors" not in hyp
    text = " ".join(r.getMessage() for r in log_records)
    assert "warmup_epochs" in text and "copy_paste" in text and str(path) in text


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "hyp.bad.yaml"
    path.write_text(yaml.safe_dump({**DEFAULT_HYP, "lr_zero": 0.1}))
    with pytest.raises(ValueError, match=r"hyp.bad.yaml.*'lr_zero'"):
        load_hyp(str(path))


def test_missing_file_and_non_numeric(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_hyp(str(tmp_path / "nope.yaml"))
    with pytest.raises(ValueError, match="lr0"):
        load_hyp({**DEFAULT_HYP, "lr0": "fast"})


def test_anchors_kept_and_dict_not_mutated():
    given = {**DEFAULT_HYP, "anchors": 3}
    hyp = load_hyp(given)
    hyp["lr0"] = 1.0
    assert hyp["anchors"] == 3 and given["lr0"] == 0.01


@pytest.mark.parametrize("nl, nc, imgsz, box, cls, obj", [
    (3, 80, 640, 0.05, 0.5, 1.0),
    (3, 4, 256, 0.05, 0.5 * 4 / 80, 0.16),
    (4, 80, 640, 0.05 * 3 / 4, 0.5 * 3 / 4, 0.75),
])
def test_scale_hyp_to_model(nl, nc, imgsz, box, cls, obj):
    hyp = {"box": 0.05, "cls": 0.5, "obj": 1.0}
    scaled = scale_hyp_to_model(hyp, nl, nc, imgsz, label_smoothing=0.1)
    assert (scaled["box"], scaled["cls"], scaled["obj"]) == pytest.approx((box, cls, obj))
    assert scaled["label_smoothing"] == 0.1 and hyp["box"] == 0.05  # the input is not modified
