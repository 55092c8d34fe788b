"""export.py: YOLOv5's file names and metadata, outputs equal to the PyTorch model's, refusals and missing packages."""

import json
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch.backends import xnnpack

import export
from models.backends import FORMATS, DetectMultiBackend
from models.experimental import attempt_load
from utils.augmentations import letterbox
from utils.files import ROOT
from utils.optional import MissingPackageError

EXPORT_SIZE = 160  # the exports fixture's image size
RUNNABLE = {"torchscript": "yolov5n.torchscript", "onnx": "yolov5n.onnx", "openvino": "yolov5n_openvino_model"}


def real_image(height=EXPORT_SIZE, width=EXPORT_SIZE):
    """data/images/shapes1.jpg letterboxed to (1, 3, height, width), 0-1."""
    im = letterbox(cv2.imread(str(ROOT / "data/images/shapes1.jpg")), (height, width), auto=False)[0]
    return torch.from_numpy(np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1)))[None].float() / 255


def assert_same_detections(y, reference):
    """Within 1e-4: absolute for objectness and class scores (0-1), relative for box pixels (fp32 carries ~7
    digits, so 1e-4 absolute would ask for exact pixel coordinates beyond 100 px)."""
    torch.testing.assert_close(y[..., 4:], reference[..., 4:], rtol=0, atol=1e-4)
    torch.testing.assert_close(y[..., :4], reference[..., :4], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def pytorch_model(exports):
    assert exports.size == EXPORT_SIZE
    return attempt_load(exports.pt, fuse=True)


def test_files_and_metadata_named_as_yolov5(exports, pytorch_model):
    folder = exports.static
    names = pytorch_model.names
    extra = {"config.txt": ""}
    torch.jit.load(folder / "yolov5n.torchscript", _extra_files=extra)
    config = json.loads(extra["config.txt"])
    assert config["shape"] == [1, 3, EXPORT_SIZE, EXPORT_SIZE] and config["stride"] == 32
    assert config["names"] == {str(k): v for k, v in names.items()} and config["dynamic"] is False

    import onnx

    proto = onnx.load(folder / "yolov5n.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta == {"stride": "32", "names": str(names)}
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["output0"]
    assert proto.opset_import[0].version == 17

    openvino = folder / "yolov5n_openvino_model"
    assert sorted(p.name for p in openvino.iterdir()) == ["yolov5n.bin", "yolov5n.xml", "yolov5n.yaml"]
    assert yaml.safe_load((openvino / "yolov5n.yaml").read_text()) == {"stride": 32, "names": names}


@pytest.mark.parametrize("fmt", RUNNABLE)
@pytest.mark.parametrize("image", ["random", "real"])
def test_static_export_equals_pytorch(exports, pytorch_model, fmt, image):
    torch.manual_seed(1)
    im = torch.rand(1, 3, EXPORT_SIZE, EXPORT_SIZE) if image == "random" else real_image()
    model = DetectMultiBackend(exports.static / RUNNABLE[fmt], amp=False)  # OpenVINO in f32
    assert model.names == pytorch_model.names and model.stride == 32 and not model.dynamic
    assert_same_detections(model(im)[0], pytorch_model(im)[0])


@pytest.mark.parametrize("fmt", RUNNABLE)
def test_dynamic_export_takes_any_batch_and_size(exports, pytorch_model, fmt):
    torch.manual_seed(2)
    im = torch.cat([torch.rand(2, 3, 96, 128), real_image(96, 128)])
    model = DetectMultiBackend(exports.dynamic / RUNNABLE[fmt], amp=False)
    assert model.dynamic
    assert_same_detections(model(im)[0], pytorch_model(im)[0])


def test_static_export_refuses_another_shape_clearly(exports):
    model = DetectMultiBackend(exports.static / "yolov5n.onnx")
    with pytest.raises(ValueError, match=rf"exported for input shape \(1, 3, {EXPORT_SIZE}, {EXPORT_SIZE}\).*"
                                         rf"--imgsz {EXPORT_SIZE} {EXPORT_SIZE}.*--dynamic"):
        model(torch.zeros(1, 3, 96, 128))


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.refusal], ids=lambda f: f.argument)
def test_refused_formats_name_themselves(fmt):
    with pytest.raises(ValueError, match=rf"{fmt.name} \({fmt.suffix}, --include {fmt.argument}\) is not supported"):
        export.run(weights="yolov5n.pt", include=["onnx", fmt.argument.upper()])


def test_unknown_format_and_cpu_half_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--include onxx: unknown format; valid: torchscript, onnx, openvino, engine"):
        export.run(weights="yolov5n.pt", include=["onxx"])
    with pytest.raises(ValueError, match="--half only compatible with GPU export"):
        export.run(weights=tmp_path / "any.pt", include=["onnx"], half=True, device="cpu")
    if not xnnpack.enabled:
        with pytest.raises(ValueError, match="--optimize .* needs a torch build with XNNPACK"):
            export.run(weights=tmp_path / "any.pt", include=["torchscript"], optimize=True)
    with pytest.raises(ValueError, match="export.py exports PyTorch .pt checkpoints"):
        export.run(weights=tmp_path / "model.onnx", include=["onnx"])


@pytest.mark.parametrize(("package", "include"), [("onnx", "onnx"), ("openvino", "openvino")])
def test_missing_package_gives_its_pip_command(tmp_path, monkeypatch, package, include):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as when it is not installed
    with pytest.raises(MissingPackageError, match=rf"--include {include} needs .* pip install {package} "):
        export.run(weights=tmp_path / "not_loaded_before_the_check.pt", include=["torchscript", include])


def test_simplify_without_onnxsim_is_a_notice(exports, tmp_path, monkeypatch, log_lines):
    monkeypatch.setitem(sys.modules, "onnxsim", None)
    weights = tmp_path / "yolov5n.pt"
    weights.write_bytes(exports.pt.read_bytes())
    files = export.run(weights=weights, imgsz=[64, 96], include=["onnx"], simplify=True, opset=13)
    assert files == [str(tmp_path / "yolov5n.onnx")]
    assert any("not simplified" in m and "pip install onnxsim" in m for m in log_lines)
    import onnx

    proto = onnx.load(files[0])
    assert proto.opset_import[0].version == 13
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 96]


def test_cli_accepts_every_yolov5_flag():
    opt = export.parse_opt(["--data", "coco128.yaml", "--weights", "a.pt", "b.pt", "--img-size", "320", "--batch-size",
                            "2", "--device", "cpu", "--half", "--inplace", "--keras", "--optimize", "--int8",
                            "--per-tensor", "--dynamic", "--simplify", "--mlmodel", "--opset", "12", "--verbose",
                            "--workspace", "8", "--nms", "--agnostic-nms", "--topk-per-class", "50", "--topk-all",
                            "60", "--iou-thres", "0.5", "--conf-thres", "0.3", "--include", "onnx", "openvino"])
    assert opt.weights == ["a.pt", "b.pt"] and opt.imgsz == [320] and opt.include == ["onnx", "openvino"]
    assert set(export.OTHER_FORMAT_FLAGS) <= set(vars(opt))
    assert export.parse_opt([]).include == ["torchscript"] and export.parse_opt([]).opset == 17
