"""Hyp files: the shipped ones load complete; old ones get YOLOv5's defaults with a warning; bad keys are errors."""

import logging

import pytest
import yaml

from utils.hyp import DEFAULT_HYP, load_hyp


@pytest.fixture
def log_records(caplog):
    logger = logging.getLogger("yolov5")
    logger.propagate = True
    caplog.set_level("WARNING", logger="yolov5")
    yield caplog
    logger.propagate = False


@pytest.mark.parametrize("name", ["hyp.scratch-low.yaml", "hyp.scratch-med.yaml", "hyp.scratch-high.yaml"])
def test_shipped_hyps_are_complete(name, log_records):
    hyp = load_hyp(name)  # found in data/hyps by name
    assert set(DEFAULT_HYP) <= set(hyp)
    assert not log_records.records


def test_old_hyp_gets_defaults_with_warning(tmp_path, log_records):
    old = {k: v for k, v in DEFAULT_HYP.items() if not k.startswith("warmup") and k != "copy_paste"}
    old["giou"] = old.pop("box")
    path = tmp_path / "hyp.old.yaml"
    path.write_text(yaml.safe_dump(old))
    hyp = load_hyp(str(path))
    assert hyp["warmup_epochs"] == 3.0 and hyp["warmup_bias_lr"] == 0.1 and hyp["copy_paste"] == 0.0
    assert hyp["box"] == 0.05 and "giou" not in hyp and "anchors" not in hyp
    text = " ".join(r.message for r in log_records.records)
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
