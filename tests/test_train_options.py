"""train.py's options: 5.x flags mapped with notices, file resolution, --resume restoring a run."""

import argparse

import pytest
import yaml

from utils.files import ROOT
from utils.train.options import (
    ResumeError,
    apply_legacy_flags,
    check_train_options,
    get_latest_run,
    restore_resume_options,
)


def options(**kw):
    base = dict(imgsz=[640], optimizer="SGD", cos_lr=False, noval=False, cache=None, project="runs/train", bucket="",
                adam=False, linear_lr=False, notest=False, cache_images=False, logdir=None, resume=False, evolve=None,
                cfg="", hyp="hyp.scratch-low.yaml", data="data/coco128.yaml", weights="w.pt", name="exp",
                exist_ok=False)
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def notices(log_records):
    return lambda: [r.getMessage() for r in log_records]


@pytest.mark.parametrize("flags, attr, value, current", [
    (dict(adam=True), "optimizer", "Adam", "--optimizer Adam"),
    (dict(notest=True), "noval", True, "--noval"),
    (dict(cache_images=True), "cache", "ram", "--cache ram"),
    (dict(logdir="old_runs"), "project", "old_runs", "--project old_runs"),
    (dict(linear_lr=True, cos_lr=True), "cos_lr", False, "--cos-lr"),
    (dict(imgsz=[320, 416]), "val_imgsz", 416, "--imgsz 320"),
])
def test_legacy_flags(flags, attr, value, current, notices):
    opt = apply_legacy_flags(options(**flags))
    assert getattr(opt, attr) == value
    assert sum(current in m for m in notices()) == 1
    assert not hasattr(opt, "adam") and not hasattr(opt, "notest")


def test_imgsz_single_value_and_too_many():
    assert apply_legacy_flags(options(imgsz=[320])).imgsz == 320
    assert apply_legacy_flags(options(imgsz=256)).imgsz == 256
    with pytest.raises(ValueError, match="--imgsz"):
        apply_legacy_flags(options(imgsz=[1, 2, 3]))


def test_bucket_is_not_supported(notices):
    apply_legacy_flags(options(bucket="gs://b"))
    assert any("--bucket" in m and "not supported" in m for m in notices())


def test_check_options_resolves_hyp_and_run_folder(tmp_path):
    opt = check_train_options(options(project=str(tmp_path), cfg=""))
    assert opt.hyp == str(ROOT / "data/hyps/hyp.scratch-low.yaml")
    assert opt.save_dir == str(tmp_path / "exp")
    with pytest.raises(ValueError, match="--cfg or --weights"):
        check_train_options(options(project=str(tmp_path), weights=""))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        check_train_options(options(project=str(tmp_path), cfg="nope.yaml"))


def test_resume_restores_options(tmp_path):
    run = tmp_path / "exp3"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last.pt").write_bytes(b"x")
    (run / "opt.yaml").write_text(yaml.safe_dump({"epochs": 7, "batch_size": 4, "data": "d.yaml", "cfg": "m.yaml"}))
    opt = restore_resume_options(options(resume=str(run / "weights" / "last.pt"), epochs=100))
    assert opt.epochs == 7 and opt.batch_size == 4 and opt.resume is True and opt.cfg == ""
    assert opt.weights == str(run / "weights" / "last.pt") and opt.save_dir == str(run)
    assert get_latest_run([tmp_path]) == str(run / "weights" / "last.pt")
    with pytest.raises(ResumeError, match="no such checkpoint"):
        restore_resume_options(options(resume=str(tmp_path / "missing.pt")))


@pytest.mark.parametrize("flags, named", [
    (dict(entity="team"), "--entity"),
    (dict(upload_dataset="val"), "--upload_dataset"),
    (dict(bbox_interval=5), "--bbox_interval"),
    (dict(artifact_alias="v3"), "--artifact_alias"),
    (dict(ndjson_console=True, ndjson_file=True), "--ndjson-console, --ndjson-file"),
    (dict(log_imgs=8, log_artifacts=True), "--log-imgs, --log-artifacts"),
])
def test_logger_flags_are_accepted_with_one_notice(flags, named, notices):
    opt = apply_legacy_flags(options(**flags))
    lines = [m for m in notices() if "logger flags are not used" in m]
    assert len(lines) == 1 and named in lines[0]
    assert all(getattr(opt, k) == v for k, v in flags.items())  # kept in opt.yaml, as YOLOv5 keeps them


def test_logger_flags_at_their_defaults_say_nothing(notices):
    apply_legacy_flags(options(entity=None, upload_dataset=False, bbox_interval=-1, artifact_alias="latest"))
    assert not [m for m in notices() if "logger" in m]


@pytest.mark.parametrize("flags, method, said", [
    (dict(evolve_population="seeds"), "population", "--evolve_population: YOLOv5's population GA"),
    (dict(resume_evolve="pop.yaml"), "population", "--resume_evolve: YOLOv5's population GA"),
    (dict(resume_evolve="pop.yaml", evolve_method="gp"), "gp", "only apply to --evolve-method population"),
    (dict(evolve_population="seeds", evolve_method="population"), "population", None),
])
def test_population_flags_select_the_population_method(flags, method, said, notices):
    opt = apply_legacy_flags(options(**{"evolve_method": "mutation", **flags}))
    assert opt.evolve_method == method
    assert any(said in m for m in notices()) if said else not any("population" in m for m in notices())
