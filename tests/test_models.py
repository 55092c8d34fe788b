"""models/: the YOLOv5 v6+ network layer for layer (counts, key names, strides, anchors), Detect's decode, fuse, TTA."""

import math

import cv2
import numpy as np
import pytest
import torch
import yaml

from models.common import SPP, SPPF, Conv
from models.yolo import Detect, DetectionModel, Model, ModelConfigError, parse_model
from utils.files import ROOT

# Official YOLOv5 v6+ figures for nc=80: parameters and state-dict entries
SIZES = {"n": (1872157, 349), "s": (7235389, 349), "m": (21190557, 481), "l": (46563709, 613), "x": (86749405, 745)}


@pytest.fixture(scope="module")
def yolov5n():
    torch.manual_seed(0)
    return DetectionModel(ROOT / "models/yolov5n.yaml", verbose=False).eval()


@pytest.mark.parametrize("size", list(SIZES))
def test_parameter_count_and_state_dict_names(size):
    model = Model(f"yolov5{size}.yaml", verbose=False)
    n_params, n_entries = SIZES[size]
    assert sum(p.numel() for p in model.parameters()) == n_params
    state = model.state_dict()
    assert len(state) == n_entries
    assert {"model.0.conv.weight", "model.0.bn.running_mean", "model.9.cv2.conv.weight", "model.24.anchors",
            "model.24.m.0.weight", "model.24.m.2.bias"} <= set(state)
    assert state["model.24.m.0.weight"].shape[0] == 3 * 85  # 3 anchors x (5 + 80) outputs, never width-scaled


def test_stem_is_6x6_stride_2_and_backbone_ends_in_sppf(yolov5n):
    stem = yolov5n.model[0].conv
    assert stem.kernel_size == (6, 6) and stem.stride == (2, 2) and stem.padding == (2, 2) and stem.bias is None
    bn = yolov5n.model[0].bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.03)
    assert isinstance(yolov5n.model[9], SPPF) and isinstance(yolov5n.model[-1], Detect)


def test_stride_and_anchors_in_grid_units(yolov5n):
    detect = yolov5n.model[-1]
    assert detect.stride.tolist() == [8, 16, 32] and yolov5n.stride.tolist() == [8, 16, 32]
    pixels = (detect.anchors * detect.stride.view(-1, 1, 1)).view(3, 6).tolist()
    assert pixels == [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


def test_anchors_given_in_reverse_order_are_flipped():
    cfg = yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text())
    cfg["anchors"] = cfg["anchors"][::-1]  # largest anchors on P3: against the stride order
    detect = DetectionModel(cfg, verbose=False).model[-1]
    assert (detect.anchors[0] * 8).view(-1).tolist() == [10, 13, 16, 30, 33, 23]


@pytest.mark.parametrize("nc", [1, 80])
def test_initial_biases(nc):
    """Objectness from 8 objects per 640 image: log(8 / (640 / s)^2); classes log(0.6 / (nc - 0.99999))."""
    detect = DetectionModel("yolov5n.yaml", nc=nc, verbose=False).model[-1]
    for conv, stride in zip(detect.m, (8, 16, 32)):
        b = conv.bias.detach().view(3, -1)
        init_range = 1 / math.sqrt(conv.in_channels)  # PyTorch's default bias init, before YOLOv5's offsets
        obj = math.log(8 / (640 / stride) ** 2)
        assert ((b[:, 4] - obj).abs() <= init_range).all()
        cls = math.log(0.6 / (nc - 0.99999))
        assert ((b[:, 5:] - cls).abs() <= init_range).all()


def test_train_mode_returns_raw_maps(yolov5n):
    yolov5n.train()
    try:
        maps = yolov5n(torch.zeros(2, 3, 64, 96))
    finally:
        yolov5n.eval()
    assert [tuple(m.shape) for m in maps] == [(2, 3, 8, 12, 85), (2, 3, 4, 6, 85), (2, 3, 2, 3, 85)]


def test_detect_decodes_a_hand_computed_cell():
    """Level 0, stride 8, anchor (10, 13) px; logits for cell (x 2, y 1) chosen so sigmoid = 0.75 and 0.25.

    xy = (2 * 0.75 - 0.5 + 2) * 8 = 24, y = (2 * 0.25 - 0.5 + 1) * 8 = 8; wh = (2 * 0.75)^2 * 10 = 22.5,
    (2 * 0.25)^2 * 13 = 3.25; objectness and class are plain sigmoids.
    """
    detect = Detect(nc=2, anchors=([10, 13],), ch=(4,)).eval()
    detect.stride = torch.tensor([8.0])
    detect.anchors /= 8
    with torch.no_grad():
        detect.m[0].weight.zero_()
        detect.m[0].bias.zero_()
        logit = math.log(3)  # sigmoid(log 3) = 0.75
        detect.m[0].bias.copy_(torch.tensor([logit, -logit, logit, -logit, 0.0, logit, -logit]))
        decoded, raw = detect([torch.zeros(1, 4, 3, 4)])
    assert decoded.shape == (1, 12, 7) and raw[0].shape == (1, 1, 3, 4, 7)
    cell = decoded[0].view(3, 4, 7)[1, 2]  # row y=1, column x=2
    assert cell.tolist() == pytest.approx([24.0, 8.0, 22.5, 3.25, 0.5, 0.75, 0.25], abs=1e-5)


def test_fuse_keeps_outputs(yolov5n):
    torch.manual_seed(1)
    model = DetectionModel("yolov5n.yaml", nc=3, verbose=False)
    model.train()
    for _ in range(2):  # move BatchNorm statistics away from their 0/1 start so the fold is not trivial
        model(torch.rand(2, 3, 64, 64))
    model.eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert not any(hasattr(m, "bn") for m in model.modules() if isinstance(m, Conv))
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_tta_output_shape(yolov5n):
    """Three passes: 64 px, then 53 px (flipped) and 42 px, each padded back to 64, so all have grids 8, 4, 2.

    The first pass loses its P5 cells (3 x 2 x 2), the last its P3 cells (3 x 8 x 8).
    """
    with torch.no_grad():
        out, train_out = yolov5n(torch.rand(1, 3, 64, 64), augment=True)
    assert train_out is None
    full = 3 * (8 * 8 + 4 * 4 + 2 * 2)
    assert out.shape == (1, (full - 3 * 4) + full + (full - 3 * 64), 85)


def test_sppf_equals_spp():
    torch.manual_seed(0)
    spp, sppf = SPP(8, 8, k=(5, 9, 13)).eval(), SPPF(8, 8, k=5).eval()
    sppf.load_state_dict(spp.state_dict())
    x = torch.rand(1, 8, 16, 16)
    torch.testing.assert_close(sppf(x), spp(x))


def test_nc_override_and_layer_rows():
    model = DetectionModel("yolov5s.yaml", nc=4, verbose=False)
    assert model.yaml["nc"] == 4 and model.model[-1].no == 9 and model.names == {0: "0", 1: "1", 2: "2", 3: "3"}
    assert [m.f for m in model.model][12] == [-1, 6] and model.save == [4, 6, 10, 14, 17, 20, 23]


def test_anchor_count_from_hyp_makes_placeholders():
    model = DetectionModel("yolov5n.yaml", nc=2, anchors=3, verbose=False)
    assert model.model[-1].anchors.shape == (3, 3, 2)


@pytest.mark.parametrize("change, message", [
    ({"backbone": [[-1, 1, "os.system", ["echo"]]]}, "unknown module 'os.system'"),
    ({"head": [[-1, 1, "Conv"]]}, "expected [from, number, module, args]"),
    ({"activation": "__import__('os')"}, "activation"),
])
def test_bad_model_yaml_is_named(change, message):
    cfg = {**yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text()), **change, "yaml_file": "bad.yaml"}
    with pytest.raises(ModelConfigError, match=rf"bad.yaml.*{message[:12]}".replace("[", r"\[").replace("(", r"\(")):
        parse_model(cfg, [3], verbose=False)


def test_missing_model_yaml():
    with pytest.raises(FileNotFoundError, match="yolov5q.yaml not found"):
        DetectionModel("yolov5q.yaml")


def test_activation_key_applies_to_one_model_only():
    cfg = {**yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text()), "activation": "nn.ReLU()"}
    relu_model = DetectionModel(cfg, verbose=False)
    assert isinstance(relu_model.model[0].act, torch.nn.ReLU)
    assert isinstance(DetectionModel("yolov5n.yaml", verbose=False).model[0].act, torch.nn.SiLU)


def test_info_reports_gflops(yolov5n):
    n_params, n_grads, gflops = yolov5n.info()
    assert n_params == 1872157 and gflops == pytest.approx(4.5, abs=0.1)


def test_cli_prints_the_layer_table():
    import logging

    from models import yolo
    from utils.log import LOGGER

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        yolo.main(["--cfg", "yolov5n.yaml", "--device", "cpu"])
    finally:
        LOGGER.removeHandler(handler)
    text = "\n".join(lines)
    assert "models.common.SPPF" in text and "YOLOv5n summary: 214 layers, 1872157 parameters" in text


def log_messages(run):
    """The messages LOGGER emits while run() runs, and run()'s result."""
    import logging

    from utils.log import LOGGER

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        return lines, run()
    finally:
        LOGGER.removeHandler(handler)


TINY_CFG = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [[10, 13, 16, 30, 33, 23]],
            "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [40, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]],
            "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}


def test_profile_logs_time_gflops_and_parameters_per_layer():
    torch.manual_seed(0)
    model = DetectionModel(TINY_CFG, verbose=False).eval()
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        lines, profiled = log_messages(lambda: model(x, profile=True))
        plain = model(x)
    assert torch.equal(profiled[0], plain[0])  # profiling changes nothing in the result
    assert lines[0].split() == ["time", "(ms)", "GFLOPs", "params", "module"]
    rows = [line.split() for line in lines[1:-1]]
    assert [r[3] for r in rows] == ["models.common.Conv"] * 3 + ["models.yolo.Detect"]
    assert [int(r[2]) for r in rows] == [3 * 8 * 9 + 16, 8 * 40 * 9 + 80, 40 * 16 * 9 + 32, 16 * 21 + 21]
    # 2 x multiply-adds of each conv: 160^2 px x 8 out x 27 in x 2 = 0.011 GFLOPs; 80^2 x 40 x 72 x 2 = 0.037
    assert [float(r[1]) for r in rows[:2]] == [0.01, 0.04]
    assert all(float(r[0]) >= 0 for r in rows)
    assert lines[-1].split()[1:] == ["-", "-", "Total"]
    assert float(lines[-1].split()[0]) == pytest.approx(sum(float(r[0]) for r in rows), abs=0.05 * len(rows))


@pytest.mark.parametrize("size, stages", [(64, [0, 1, 2]), (8, [0, 1])])  # at 8 px layer 2 maps 1x1: skipped
def test_visualize_saves_each_stage_feature_maps(tmp_path, size, stages):
    torch.manual_seed(0)
    model = DetectionModel(TINY_CFG, verbose=False).eval()
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        out = model(x, visualize=tmp_path / "feats")
        assert torch.equal(out[0], model(x)[0])
    names = ["Conv", "Conv", "Conv"]
    expected = {f"stage{i}_{names[i]}_features.{ext}" for i in stages for ext in ("png", "npy")}
    assert {p.name for p in (tmp_path / "feats").iterdir()} == expected
    for i in stages:
        png = cv2.imread(str(tmp_path / "feats" / f"stage{i}_Conv_features.png"))
        assert png is not None and png.std() > 5  # drawn maps, not a blank canvas
        maps = np.load(tmp_path / "feats" / f"stage{i}_Conv_features.npy")
        assert maps.shape == (model.model[i].conv.out_channels, size // 2 ** (i + 1), size // 2 ** (i + 1))


def test_detect_visualize_writes_feature_maps_per_image(tmp_path):
    import detect
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_checkpoint({"model": DetectionModel(TINY_CFG, verbose=False), "epoch": -1}, weights)
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.jpg"), np.random.default_rng(0).integers(0, 255, (40, 40, 3),
                                                                                                 dtype=np.uint8))
    save_dir = detect.run(weights=weights, source=tmp_path / "images", imgsz=(64, 64), device="cpu", visualize=True,
                          project=tmp_path / "runs", name="exp", nosave=True)
    for name in ("a", "b"):
        pngs = sorted((save_dir / name).glob("*.png"))
        assert [p.name for p in pngs] == [f"stage{i}_Conv_features.png" for i in range(3)]
        assert all(p.stat().st_size > 1000 for p in pngs)
