"""models/model_yaml.py and models/hub/: each hub config found by its bare name and built with YOLOv5's counts."""

from pathlib import Path

import pytest
import yaml

from models.yolo import DetectionModel, ModelConfigError, parse_model
from utils.files import ROOT
from utils.train.options import find_file

# Parameters for nc=80. Pinned from YOLOv5 v7 (issue 18): yolov5n6, -p2, -bifpn, s6, -p7, s-ghost, s-transformer,
# yolov3-tiny. The rest come from the same code; m6/l6/x6/yolov3/yolov3-spp agree with YOLOv5's published sizes.
HUB_PARAMS = {
    "yolov5n6": 3246940, "yolov5-p2": 47493372, "yolov5-bifpn": 46825853, "yolov5s6": 12626620,
    "yolov5-p7": 144281723, "yolov5s-ghost": 3897605, "yolov5s-transformer": 7235645, "yolov3-tiny": 8852366,
    "yolov5m6": 35731932, "yolov5l6": 76770172, "yolov5x6": 140794780, "yolov5-p6": 76770172, "yolov5-p34": 5331518,
    "yolov5-fpn": 41117565, "yolov5-panet": 46563709, "yolov5s-LeakyReLU": 7235389, "yolov3": 61949149,
    "yolov3-spp": 62998749,
}


@pytest.mark.parametrize("name, params", list(HUB_PARAMS.items()))
def test_hub_config_builds_by_name_with_yolov5_parameter_count(name, params):
    model = DetectionModel(f"{name}.yaml", verbose=False)
    assert Path(model.yaml["yaml_file"]) == ROOT / "models/hub" / f"{name}.yaml"
    assert sum(p.numel() for p in model.parameters()) == params


def test_every_hub_model_is_pinned():
    assert {f.stem for f in (ROOT / "models/hub").glob("yolo*.yaml")} == set(HUB_PARAMS)


def test_train_cfg_finds_hub_names():
    assert find_file("yolov5s6.yaml", "model cfg") == str(ROOT / "models/hub/yolov5s6.yaml")


def test_missing_yaml_names_both_folders():
    with pytest.raises(FileNotFoundError, match="models/hub"):
        DetectionModel("yolov5q9.yaml", verbose=False)


def test_p6_and_p7_strides_and_anchors():
    p6 = DetectionModel("yolov5n6.yaml", verbose=False).model[-1]
    assert p6.stride.tolist() == [8, 16, 32, 64]
    assert (p6.anchors[3] * 64).view(-1).tolist() == [436, 615, 739, 380, 925, 792]
    tiny = DetectionModel("yolov3-tiny.yaml", verbose=False).model[-1]
    assert tiny.stride.tolist() == [16, 32]


@pytest.mark.parametrize("multiple, width", [(None, 16), (8, 16), (32, 32), (3, 18)])
def test_channel_multiple_rounds_widths(multiple, width):
    """yolov5n's first Conv: 64 x width_multiple 0.25 = 16, rounded up to a multiple of channel_multiple (default 8)."""
    cfg = yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text())
    if multiple:
        cfg["channel_multiple"] = multiple
    layers, _ = parse_model(cfg, [3], verbose=False)
    assert layers[0].conv.out_channels == width


def test_contract_and_expand_channel_bookkeeping():
    """Contract(2) multiplies channels by 4 and Expand(2) divides them by 4: the next layer is built to match."""
    cfg = {"nc": 1, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [[10, 13, 16, 30, 33, 23]],
           "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Contract", [2]], [-1, 1, "Conv", [16, 1, 1]],
                        [-1, 1, "Expand", [2]], [-1, 1, "Conv", [8, 3, 2]]],
           "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}
    layers, _ = parse_model(cfg, [3], verbose=False)
    assert layers[2].conv.in_channels == 32 and layers[4].conv.in_channels == 4


def test_unknown_module_lists_the_hub_modules():
    cfg = yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text())
    cfg["backbone"][1][2] = "GhostConvv"
    with pytest.raises(ModelConfigError, match="'GhostConvv'.*GhostConv.*C3TR.*nn.ZeroPad2d"):
        parse_model(cfg, [3], verbose=False)
