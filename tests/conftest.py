"""Fixtures shared by test modules: the project logger's records, torch's thread count restored, a local Ray, a
tiny dataset cut from COCO128."""

import logging

import pytest
import torch
import yaml

from utils.files import ROOT
from utils.log import LOGGER

SHARED = ROOT.parent / "shared"


@pytest.fixture
def log_records():
    """The records LOGGER ('yolov5') emits during the test, caught by a handler on that logger itself: each counted
    once, whatever pytest's own capture does (LOGGER does not propagate to the root logger)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    yield records
    LOGGER.removeHandler(handler)


@pytest.fixture
def restore_threads():
    """The test may change torch's intra-op thread count: it is set back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine's 2 CPUs for one test module, shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_coco128(tmp_path):
    """A dataset YAML over the first 8 COCO128 images (train = val), with the official yolov5n.pt path.

    Returns (data_yaml, weights); skips when ../shared lacks COCO128 or the weights.
    """
    source, weights = SHARED / "datasets/coco128", SHARED / "weights/yolov5n.pt"
    if not source.exists() or not weights.exists():
        pytest.skip("needs ../shared/datasets/coco128 and ../shared/weights/yolov5n.pt")
    images, labels = tmp_path / "data/images", tmp_path / "data/labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for image in sorted((source / "images/train2017").glob("*.jpg"))[:8]:
        (images / image.name).write_bytes(image.read_bytes())
        label = source / "labels/train2017" / f"{image.stem}.txt"
        if label.exists():
            (labels / label.name).write_text(label.read_text())
    names = yaml.safe_load((ROOT / "data/coco128.yaml").read_text())["names"]
    data = tmp_path / "tiny.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path / "data"), "train": "images", "val": "images",
                                    "names": names}))
    return data, weights
