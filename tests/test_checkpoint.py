"""utils/checkpoint.py and attempt_load: official checkpoints load fully, malicious ones are refused unrun."""

import io
import os
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.experimental import Ensemble, attempt_load
from models.yolo import DetectionModel
from utils.augmentations import letterbox
from utils.boxes import box_iou, scale_boxes, xywhn2xyxy
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, strip_optimizer
from utils.nms import non_max_suppression

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = SHARED / "weights" / "yolov5n.pt"
COCO = SHARED / "datasets" / "coco128"
needs_official = pytest.mark.skipif(not OFFICIAL.is_file(), reason="needs ../shared/weights/yolov5n.pt")


def fresh_checkpoint(path, nc=3, **extra):
    torch.manual_seed(0)
    model = DetectionModel("yolov5n.yaml", nc=nc, verbose=False)
    model.names = {i: f"c{i}" for i in range(nc)}
    ckpt = {"epoch": 4, "best_fitness": 0.5, "model": model.half(), "ema": None, "updates": 10, "optimizer": None,
            "opt": {"imgsz": 64}, "date": "2026-11-25", **extra}
    save_checkpoint(ckpt, path)
    return model


@needs_official
def test_official_checkpoint_transfers_all_349_entries():
    ckpt = load_checkpoint(OFFICIAL)
    model = ckpt["model"]
    assert isinstance(model, DetectionModel) and ckpt["ema"] is None and ckpt["epoch"] == -1
    assert next(model.parameters()).dtype == torch.float16  # stored in fp16, kept so
    assert len(model.state_dict()) == 349 and model.nc == 80 and model.names[0] == "person"
    assert model.stride.tolist() == [8, 16, 32]


@needs_official
@pytest.mark.skipif(not COCO.is_dir(), reason="needs ../shared/datasets/coco128")
def test_official_model_finds_the_labelled_people():
    """COCO128 image 192 shows four people: the top four detections are people, each on a labelled person."""
    model = attempt_load(OFFICIAL)
    im0 = cv2.imread(str(COCO / "images/train2017/000000000192.jpg"))
    im = letterbox(im0, 640, stride=32)[0]
    x = torch.from_numpy(im[..., ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        det = non_max_suppression(model(x)[0], 0.25, 0.45)[0]
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape)
    labels = np.loadtxt(COCO / "labels/train2017/000000000192.txt", ndmin=2)
    people = xywhn2xyxy(torch.tensor(labels[labels[:, 0] == 0, 1:]).float(), im0.shape[1], im0.shape[0])
    top = det[:4]
    assert (top[:, 5] == 0).all() and (top[:, 4] > 0.5).all()
    iou = box_iou(top[:, :4], people)
    assert (iou.max(1).values > 0.8).all() and len(set(iou.argmax(1).tolist())) == 4  # four different people


@needs_official
def test_official_outputs_match_a_state_dict_load():
    """Loading the tensors into a freshly built model with strict=True gives the same outputs."""
    model = load_checkpoint(OFFICIAL)["model"].float().eval()
    fresh = DetectionModel("yolov5n.yaml", verbose=False).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], model(x)[0])


class _Exploit:
    """Unpickling this runs os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker), "epoch": 0}, path)
    with pytest.raises(CheckpointError, match="refused by the safe loader.*os.system|refused.*system"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        attempt_load(path)
    assert not marker.exists()


def test_malicious_global_hidden_in_a_model_attribute(tmp_path):
    """A real model whose pickle also carries a callable: the whole file is refused, nothing runs."""
    marker = tmp_path / "pwned"
    model = DetectionModel("yolov5n.yaml", nc=1, verbose=False)
    model.hook = _Exploit(marker)
    save_checkpoint({"model": model}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_own_checkpoint_round_trip(tmp_path):
    saved = fresh_checkpoint(tmp_path / "a.pt", nc=3)
    ckpt = load_checkpoint(tmp_path / "a.pt")
    assert set(ckpt) >= {"epoch", "best_fitness", "model", "ema", "updates", "optimizer", "opt", "date"}
    assert ckpt["epoch"] == 4 and ckpt["opt"] == {"imgsz": 64} and ckpt["model"].names == {0: "c0", 1: "c1", 2: "c2"}
    for k, v in saved.state_dict().items():
        assert torch.equal(ckpt["model"].state_dict()[k], v), k


@pytest.mark.parametrize("cfg", ["yolov5s-ghost.yaml", "yolov5s-transformer.yaml", "yolov3-tiny.yaml",
                                 "yolov5n6.yaml"])
def test_hub_model_checkpoints_pass_the_safe_loader(tmp_path, cfg):
    """Pickles naming GhostConv, C3TR, TransformerLayer, MultiheadAttention, ZeroPad2d, ... are allowed and rebuilt."""
    from models.model_yaml import load_model_yaml

    torch.manual_seed(0)
    config = load_model_yaml(cfg)
    config["width_multiple"] = 0.125  # the same layer types, at a fraction of the size
    model = DetectionModel(config, nc=2, verbose=False).half()
    save_checkpoint({"model": model, "epoch": -1}, tmp_path / "hub.pt")
    loaded = load_checkpoint(tmp_path / "hub.pt")["model"]
    assert [m.type for m in loaded.model] == [m.type for m in model.model]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_fused_checkpoint_loads(tmp_path):
    model = DetectionModel("yolov5n.yaml", nc=2, verbose=False).eval().fuse()
    save_checkpoint({"model": model}, tmp_path / "fused.pt")
    loaded = load_checkpoint(tmp_path / "fused.pt")["model"].eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable PyTorch checkpoint"),
    (b"garbage" * 100, "not a readable PyTorch checkpoint"),
])
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    fresh_checkpoint(tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_checkpoint_without_a_model(tmp_path):
    torch.save({"epoch": 1, "weights": torch.zeros(3)}, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match="no 'model'"):
        load_checkpoint(tmp_path / "nomodel.pt")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint("nothere.pt")


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    """A save that dies mid-write leaves the previous checkpoint whole and no temporary file behind."""
    fresh_checkpoint(tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": None}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_strip_optimizer_keeps_the_ema_in_fp16(tmp_path):
    model = DetectionModel("yolov5n.yaml", nc=2, verbose=False)
    ema = DetectionModel("yolov5n.yaml", nc=2, verbose=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint({"epoch": 3, "best_fitness": 0.2, "model": model, "ema": ema, "updates": 7,
                     "optimizer": optimizer.state_dict(), "opt": {}, "date": ""}, tmp_path / "last.pt")
    strip_optimizer(tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["optimizer"] is None and ckpt["ema"] is None and ckpt["epoch"] == -1
    stripped = ckpt["model"]
    assert next(stripped.parameters()).dtype == torch.float16
    torch.testing.assert_close(stripped.float().state_dict()["model.24.m.0.bias"], ema.state_dict()["model.24.m.0.bias"],
                               atol=1e-3, rtol=1e-3)


def test_attempt_load_ensemble_of_two(tmp_path):
    fresh_checkpoint(tmp_path / "a.pt")
    single = attempt_load(tmp_path / "a.pt")
    ensemble = attempt_load([tmp_path / "a.pt", tmp_path / "a.pt"])
    assert isinstance(ensemble, Ensemble) and len(ensemble) == 2 and ensemble.nc == 3
    assert ensemble.stride.tolist() == [8, 16, 32]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        one, both = single(x)[0], ensemble(x)[0]
    assert both.shape[1] == 2 * one.shape[1]
    torch.testing.assert_close(both[:, : one.shape[1]], one)


def test_checkpoint_is_a_zip_with_yolov5_class_names(tmp_path):
    """What we write names models.yolo / models.common classes, as YOLOv5's own checkpoints do."""
    fresh_checkpoint(tmp_path / "a.pt")
    with zipfile.ZipFile(tmp_path / "a.pt") as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    names = {op[1] for op in _globals(pickled)}
    assert {"models.yolo DetectionModel", "models.common Conv", "models.common C3"} <= names


def _globals(data):
    import pickletools

    ops = []
    strings = []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        if op.name == "STACK_GLOBAL" and len(strings) >= 2:
            ops.append((op.name, f"{strings[-2]} {strings[-1]}"))
        elif op.name == "GLOBAL":
            ops.append((op.name, arg.replace("\n", " ")))
    return ops


def test_pickle_module_unused():
    assert pickle.HIGHEST_PROTOCOL >= 2  # the stand-in approach relies on protocol-2 NEWOBJ for modules
