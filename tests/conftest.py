"""Fixtures shared by test modules: the project logger's records and lines, torch's thread count restored, a local Ray,
a tiny dataset cut from the shared COCO128, exported models."""

import contextlib
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch
import yaml

from utils.files import ROOT
from utils.log import LOGGER

SHARED = ROOT.parent / "shared"


@contextlib.contextmanager
def captured_logs(convert):
    """convert(record) of every record LOGGER ('yolov5') emits in the block, caught by a handler on that logger itself:
    each counted once, whatever pytest's own capture does (LOGGER does not propagate to the root logger)."""
    items = []
    handler = logging.Handler()
    handler.emit = lambda record: items.append(convert(record))
    LOGGER.addHandler(handler)
    try:
        yield items
    finally:
        LOGGER.removeHandler(handler)


@pytest.fixture
def log_records():
    """The records LOGGER emits during the test, in order."""
    with captured_logs(lambda record: record) as records:
        yield records


@pytest.fixture
def log_lines():
    """The messages LOGGER emits during the test, in order."""
    with captured_logs(logging.LogRecord.getMessage) as lines:
        yield lines


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


EXPORT_SIZE = 160


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """yolov5n exported at 160 px to TorchScript, ONNX and OpenVINO, once with a fixed shape (1, 3, 160, 160) and once
    --dynamic: SimpleNamespace(pt, size, static, dynamic), the .pt, 160 and the two folders, each holding yolov5n.pt and its
    exports. The official weights when ../shared has them (real detections), else a fresh yolov5n. Skips without
    onnx, onnxruntime or openvino."""
    for package in ("onnx", "onnxruntime", "openvino"):
        pytest.importorskip(package)
    import export
    from models.yolo import DetectionModel
    from utils.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("exports")
    pt = root / "yolov5n.pt"
    if (SHARED / "weights/yolov5n.pt").exists():
        shutil.copyfile(SHARED / "weights/yolov5n.pt", pt)
    else:
        torch.manual_seed(0)
        model = DetectionModel(ROOT / "models/yolov5n.yaml", verbose=False)
        model.names = {i: f"class{i}" for i in range(model.nc)}
        save_checkpoint({"model": model, "ema": None, "optimizer": None, "epoch": -1}, pt)
    folders = {}
    for kind, dynamic in (("static", False), ("dynamic", True)):
        folders[kind] = root / kind
        folders[kind].mkdir()
        shutil.copyfile(pt, folders[kind] / pt.name)
        export.run(weights=folders[kind] / pt.name, imgsz=[EXPORT_SIZE], include=["torchscript", "onnx", "openvino"],
                   dynamic=dynamic)
    return SimpleNamespace(pt=pt, size=EXPORT_SIZE, **folders)


@pytest.fixture
def train_one_step():
    """train_one_step(model, block) -> the loss of one SGD step on two random 64 px images with 2 boxes, after
    checking that every parameter of `block` got a finite, non-zero gradient and was updated."""
    import torch

    from utils.hyp import load_hyp
    from utils.loss import ComputeLoss

    def step(model, block):
        torch.manual_seed(0)
        model.train()
        model.hyp = load_hyp(ROOT / "data/hyps/hyp.scratch-low.yaml")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        images = torch.rand(2, 3, 64, 64)
        targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.3], [1, 3, 0.3, 0.6, 0.2, 0.4]])
        before = [p.detach().clone() for p in block.parameters()]
        loss, _ = ComputeLoss(model)(model(images), targets)
        loss.backward()
        optimizer.step()
        for p, old in zip(block.parameters(), before):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
            assert not torch.equal(p, old)
        return loss.item()

    return step
