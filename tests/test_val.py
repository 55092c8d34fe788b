"""val.run end to end: a box-finding fake model on rendered rectangles, outputs on disk, and the official figures."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

import val
from models.common import Conv
from utils.dataloaders import create_dataloader
from utils.files import ROOT
from utils.precision import cpu_bf16_support

SHARED = ROOT.parent / "shared"
COCO128 = SHARED / "datasets/coco128"
YOLOV5N = SHARED / "weights/yolov5n.pt"
IMG = 64
NAMES = {0: "red", 1: "green"}


def _render_dataset(root, n=10, seed=0):
    """n 64x64 images, each with one or two filled rectangles: red (class 0) or green (class 1) on black."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        im = np.zeros((IMG, IMG, 3), dtype=np.uint8)
        lines = []
        for k in range(1 + i % 2):  # rectangles in separate halves, so the fake model can find each
            cls = (i + k) % 2
            x0, y0 = int(rng.integers(2, 10)) + 32 * k, int(rng.integers(2, 20))
            w, h = int(rng.integers(12, 20)), int(rng.integers(16, 40))
            im[y0:y0 + h, x0:x0 + w] = (0, 0, 255) if cls == 0 else (0, 255, 0)  # BGR
            lines.append(f"{cls} {(x0 + w / 2) / IMG} {(y0 + h / 2) / IMG} {w / IMG} {h / IMG}")
        cv2.imwrite(str(root / "images" / f"{i:012d}.bmp"), im)  # lossless: exact box edges
        (root / "labels" / f"{i:012d}.txt").write_text("\n".join(lines) + "\n")
    return {"path": str(root), "train": "images", "val": "images", "names": NAMES, "nc": 2}


class BoxFinder(nn.Module):
    """Finds the red and green rectangles in each half of the image and reports them as YOLO rows.

    Output (bs, 4, 7): for each half and colour [cx, cy, w, h, obj, p(red), p(green)], obj 0 where none.
    `shift` moves every box right by that fraction of its width.
    """

    def __init__(self, shift=0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.shift = shift
        self.names = NAMES
        self.nc = 2
        self.stride = torch.tensor([8.0, 16.0, 32.0])

    def forward(self, im, augment=False):
        bs, _, h, w = im.shape
        rows = torch.zeros(bs, 4, 7)
        pad = (w - IMG) // 2
        for b in range(bs):
            for k in range(2):
                x_lo, x_hi = (0, pad + 32) if k == 0 else (pad + 32, w)  # image halves within the letterbox
                for cls, channel in ((0, 0), (1, 1)):  # RGB input: red is channel 0, green channel 1
                    mask = im[b, channel, :, x_lo:x_hi] > 0.5
                    ys, xs = torch.nonzero(mask, as_tuple=True)
                    if not len(ys):
                        continue
                    x1, x2 = xs.min().float() + x_lo, xs.max().float() + x_lo + 1
                    y1, y2 = ys.min().float(), ys.max().float() + 1
                    bw = x2 - x1
                    row = [(x1 + x2) / 2 + self.shift * bw, (y1 + y2) / 2, bw, y2 - y1, 0.9]
                    rows[b, 2 * k + cls] = torch.tensor(row + [1.0 - cls, float(cls)])
        return rows.to(im.device) * self.scale, None


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rects")
    data = _render_dataset(root / "rects")
    loader = create_dataloader(str(root / "rects/images"), IMG, 4, 32, rect=True, pad=0.5, workers=0)[0]
    return data, loader


def _run(dataset, tmp_path, shift=0.0, **kwargs):
    data, loader = dataset
    return val.run(data, model=BoxFinder(shift).eval(), dataloader=loader, save_dir=tmp_path, half=False, **kwargs)


def test_perfect_predictions(dataset, tmp_path):
    (mp, mr, map50, map_, *losses), maps, times = _run(dataset, tmp_path, plots=True)
    assert (mp, mr) == pytest.approx((1.0, 1.0))
    assert (map50, map_) == pytest.approx((0.995, 0.995))  # YOLOv5's interpolation tops out at 0.995
    assert maps.tolist() == pytest.approx([0.995, 0.995])
    assert losses == [0.0, 0.0, 0.0] and len(times) == 3
    for name in ("val_batch0_labels.jpg", "val_batch0_pred.jpg", "val_batch2_pred.jpg", "PR_curve.png",
                 "F1_curve.png", "confusion_matrix.png"):
        assert (tmp_path / name).exists(), name


PLOT_FILES = ("F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png",
              *(f"val_batch{i}_{kind}.jpg" for i in range(3) for kind in ("labels", "pred")))


def test_plots_are_complete_when_run_returns(dataset, tmp_path):
    """The figures are drawn on a background thread; run() returns only once every file is whole."""
    _run(dataset, tmp_path, plots=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOT_FILES)
    for name in PLOT_FILES:
        assert cv2.imread(str(tmp_path / name)) is not None, name
    for name in PLOT_FILES[:5]:
        assert (tmp_path / name).read_bytes().endswith(b"IEND\xaeB`\x82"), name  # PNG's last chunk: written out


def test_a_plotting_error_is_not_swallowed(dataset, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(val, "plot_confusion_matrix", broken)
    with pytest.raises(OSError, match="disk full"):
        _run(dataset, tmp_path, plots=True)


def test_no_plots_draws_nothing(dataset, tmp_path):
    _run(dataset, tmp_path, plots=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shift,thresholds_passed", [(0.5, 0), (0.2, 4), (0.1, 7)])
def test_shifted_predictions(dataset, tmp_path, shift, thresholds_passed):
    # moving a box right by s of its width leaves IoU (1 - s) / (1 + s): 1/3, 0.667, 0.818
    (_, _, map50, map_, *_), _, _ = _run(dataset, tmp_path, shift=shift, plots=False)
    assert map50 == pytest.approx(0.995 if thresholds_passed else 0.0)
    assert map_ == pytest.approx(0.995 * thresholds_passed / 10)


class ConvBoxFinder(BoxFinder):
    """BoxFinder behind a real YOLOv5 Conv (identity 1x1 conv, BatchNorm in eval mode, no activation), so that
    autocast, the memory format, BN folding and chunked inference all act on it. Records what each forward saw."""

    def __init__(self):
        super().__init__()
        self.conv = Conv(3, 3, 1, act=False)
        with torch.no_grad():
            self.conv.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 2)
            self.conv.bn.weight.fill_(0.5)  # with running mean 0, var 1 (eps 1e-3): y = 2x * 0.5 / sqrt(1.001)
        self.seen = []

    def forward(self, im, augment=False):
        y = self.conv(im)
        self.seen.append((len(im), y.dtype, im.is_contiguous(memory_format=torch.channels_last), "bn" in
                          self.conv._modules))
        return super().forward(y.float() * 1.001 ** 0.5)


@pytest.mark.parametrize("amp", [False, True])
def test_autocast_path_gives_the_fp32_metrics(dataset, tmp_path, amp, monkeypatch):
    data, loader = dataset
    model = ConvBoxFinder().eval()
    validated = []
    real = val._validation_model
    monkeypatch.setattr(val, "_validation_model", lambda m, p: validated.append(real(m, p)) or validated[-1])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results, maps, _ = val.run(data, model=model, dataloader=loader, save_dir=tmp_path, plots=False, amp=amp)
    finally:
        torch.set_num_threads(threads)
    assert results[:4] == pytest.approx((1.0, 1.0, 0.995, 0.995))
    assert maps.tolist() == pytest.approx([0.995, 0.995])
    assert "bn" in model.conv._modules and not model.seen  # validated a fused copy; the model itself untouched
    copy_seen = validated[0].seen
    bf16 = amp and cpu_bf16_support()[0]
    assert {dtype for _, dtype, _, _ in copy_seen} == {torch.bfloat16 if bf16 else torch.float32}
    assert all(cl and not bn for _, _, cl, bn in copy_seen)  # channels_last batches, BatchNorm folded
    assert [n for n, *_ in copy_seen][:2] == [2, 2]  # each batch of 4 in two chunks, one per thread


def test_loss_is_averaged_over_batches(dataset, tmp_path):
    calls = []

    def compute_loss(train_out, targets):
        calls.append(len(targets))
        return torch.ones(1), torch.tensor([1.0, 2.0, 3.0])

    class WithTrainOut(BoxFinder):
        def forward(self, im, augment=False):
            return super().forward(im)[0], ["train out"]

    data, loader = dataset
    results, _, _ = val.run(data, model=WithTrainOut().eval(), dataloader=loader, save_dir=tmp_path, plots=False,
                            compute_loss=compute_loss)
    assert len(calls) == len(loader) == 3 and sum(calls) == 15  # 10 images, 15 rectangles
    assert results[4:] == pytest.approx((1.0, 2.0, 3.0))


def test_cli_path_writes_labels_and_json(dataset, tmp_path, monkeypatch):
    data, _ = dataset
    data_yaml = tmp_path / "rects.yaml"
    data_yaml.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "nc"}))
    monkeypatch.setattr(val, "attempt_load", lambda weights, device=None, inplace=True, fuse=True: BoxFinder(0.1))
    opt = val.parse_opt(["--data", str(data_yaml), "--weights", "fake.pt", "--img", str(IMG), "--batch-size", "4",
                         "--project", str(tmp_path), "--name", "run", "--save-txt", "--save-conf", "--save-json",
                         "--workers", "0", "--device", "cpu"])
    (mp, mr, map50, map_, *_), _, _ = val.main(opt)
    run_dir = tmp_path / "run"
    label_file = run_dir / "labels" / f"{0:012d}.txt"
    cls, x, y, w, h, conf = map(float, label_file.read_text().split())
    truth = [float(v) for v in (Path(data["path"]) / "labels" / label_file.name).read_text().split()]
    assert cls == truth[0] and conf == pytest.approx(0.9)
    assert (x - truth[1], y, w, h) == pytest.approx((0.1 * truth[3], *truth[2:]), abs=1e-4)
    results = json.loads((run_dir / "fake_predictions.json").read_text())
    assert len(results) == 15 and {r["image_id"] for r in results} == set(range(10))
    assert results[0]["bbox"][2] == pytest.approx(truth[3] * IMG, abs=1e-3)
    try:
        import pycocotools  # noqa: F401
    except ImportError:  # val.py's own figures: IoU 0.818 passes 7 of 10 thresholds
        assert (map50, map_) == pytest.approx((0.995, 0.7 * 0.995))
        return
    # with pycocotools its figures replace val.py's (as YOLOv5): COCO's step interpolation reaches 1.0
    assert (map50, map_) == pytest.approx((1.0, 0.7))


def test_study_and_speed_tasks(dataset, tmp_path, monkeypatch):
    data, _ = dataset
    data_yaml = tmp_path / "rects.yaml"
    data_yaml.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "nc"}))
    monkeypatch.setattr(val, "attempt_load", lambda *a, **k: BoxFinder())
    monkeypatch.setattr(val, "STUDY_SIZES", (64, 96))
    monkeypatch.chdir(tmp_path)
    common = ["--data", str(data_yaml), "--weights", "fake.pt", "--batch-size", "4", "--project", str(tmp_path),
              "--workers", "0", "--device", "cpu"]
    val.main(val.parse_opt(common + ["--task", "study"]))
    rows = np.loadtxt(tmp_path / "study_rects_fake.txt", ndmin=2)
    assert rows.shape == (2, 11) and rows[:, 0].tolist() == [64, 96]
    assert rows[0, 3:5] == pytest.approx([0.995, 0.995])  # at 64 pixels the fake model is exact
    assert (tmp_path / "study.png").exists()
    val.main(val.parse_opt(common + ["--task", "speed"]))
    with pytest.raises(ValueError, match="--task nonsense"):
        val.main(val.parse_opt(common + ["--task", "nonsense"]))


def test_amp_flag_mirrors_train_py():
    assert val.parse_opt(["--weights", "a.pt"]).amp is True
    assert val.parse_opt(["--weights", "a.pt", "--no-amp"]).amp is False


def test_wrong_number_of_classes_is_a_clear_error(dataset, tmp_path, monkeypatch):
    data, _ = dataset
    data = dict(data, names={0: "a", 1: "b", 2: "c"}, nc=3)
    monkeypatch.setattr(val, "attempt_load", lambda *a, **k: BoxFinder())
    with pytest.raises(ValueError, match="2 classes.*3 classes"):
        val.run(data, weights="fake.pt", imgsz=IMG, project=tmp_path, device="cpu", workers=0)


def test_run_needs_weights_or_model(dataset, tmp_path):
    with pytest.raises(ValueError, match="weights="):
        val.run(dataset[0], project=tmp_path, device="cpu")


def test_save_one_txt(tmp_path):
    predn = torch.tensor([[10.0, 20, 30, 60, 0.5, 2]])
    val.save_one_txt(predn, True, (100, 200), tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "2 0.1 0.4 0.1 0.4 0.5\n"


@pytest.mark.slow
@pytest.mark.skipif(not (COCO128.exists() and YOLOV5N.exists()), reason="needs ../shared coco128 and yolov5n.pt")
def test_official_yolov5n_on_coco128(tmp_path):
    """YOLOv5's own val.py gives P 0.626, R 0.481, mAP50 0.545, mAP50-95 0.350 on 128 images, 929 instances: so does
    the fp32 path; bf16 autocast (the default on CPUs with native bf16) stays within 0.003 mAP of it."""
    root = tmp_path / "datasets/coco128"
    shutil.copytree(COCO128, root)  # label caches go here, never into ../shared
    data = yaml.safe_load((ROOT / "data/coco128.yaml").read_text())
    data["path"] = str(root)
    instances = []
    callbacks = {"on_val_end": lambda nt, *args: instances.append(int(nt.sum()))}
    results = {}
    for amp in (False, True):
        (mp, mr, map50, map_, *_), maps, _ = val.run(data, weights=str(YOLOV5N), batch_size=32, imgsz=640,
                                                     project=tmp_path, device="cpu", workers=2, callbacks=callbacks,
                                                     amp=amp)
        results[amp] = mp, mr, map50, map_
    assert instances == [929, 929]
    assert results[False] == pytest.approx((0.626, 0.481, 0.545, 0.350), abs=0.0006)  # YOLOv5's figures, rounded
    assert results[True][2:] == pytest.approx(results[False][2:], abs=0.003)
    assert maps.shape == (80,)


@pytest.mark.parametrize("export_name", ["yolov5n.torchscript", "yolov5n.onnx", "yolov5n_openvino_model"])
def test_dynamic_export_gives_the_pt_metrics(exports, tiny_coco128, tmp_path, export_name):
    """An export with dynamic shapes runs the .pt's rectangular batches: the same P, R and mAPs to the third decimal
    (fp32 on both sides: --no-amp; OpenVINO then runs f32)."""
    data, _ = tiny_coco128
    common = dict(data=data, imgsz=exports.size, batch_size=4, amp=False, device="cpu", plots=False,
                  project=tmp_path)
    reference = val.run(weights=exports.pt, **common)[0][:4]
    results = val.run(weights=exports.dynamic / export_name, **common)[0][:4]
    assert reference[2] > 0.3  # real detections, not an empty comparison
    assert results == pytest.approx(reference, abs=5e-4)


def test_static_export_runs_batch_1_square(exports, tiny_coco128, tmp_path, log_lines):
    data, _ = tiny_coco128
    results, _, _ = val.run(data=data, weights=exports.static / "yolov5n.onnx", imgsz=exports.size, batch_size=4,
                            device="cpu", plots=False, project=tmp_path)
    size = exports.size
    forcing = f"Forcing --batch-size 1 square inference (1,3,{size},{size}) for non-PyTorch models"
    assert any(line.startswith(forcing) for line in log_lines)
    assert any(line.endswith(f"per image at shape (1, 3, {size}, {size})") for line in log_lines)
    assert results[2] > 0.3
    with pytest.raises(ValueError, match=rf"exported for input shape \(1, 3, {size}, {size}\)"):
        val.run(data=data, weights=exports.static / "yolov5n.onnx", imgsz=2 * size, device="cpu", plots=False,
                project=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (COCO128.exists() and YOLOV5N.exists()), reason="needs ../shared coco128 and yolov5n.pt")
def test_static_onnx_gives_yolov5s_figures_on_coco128(tmp_path):
    """YOLOv5's export.py and val.py, yolov5n.onnx (static 640) on COCO128: P 0.647 R 0.468 mAP50 0.546 mAP 0.349."""
    export = pytest.importorskip("export")
    pytest.importorskip("onnxruntime")
    root = tmp_path / "datasets/coco128"
    shutil.copytree(COCO128, root)
    data = yaml.safe_load((ROOT / "data/coco128.yaml").read_text())
    data["path"] = str(root)
    weights = tmp_path / "yolov5n.pt"
    shutil.copyfile(YOLOV5N, weights)
    onnx_file = export.run(weights=weights, include=["onnx"])[0]
    results = val.run(data, weights=onnx_file, batch_size=32, imgsz=640, device="cpu", project=tmp_path)[0][:4]
    assert results == pytest.approx((0.647, 0.468, 0.546, 0.349), abs=0.0006)
