"""models/backends.py: the runtime chosen by file name, metadata read back, refusals and missing packages."""

import sys

import pytest
import torch
import yaml

from models import backends
from models.backends import DetectMultiBackend, is_pytorch_weights, model_format
from models.experimental import attempt_load
from utils.optional import MissingPackageError


@pytest.mark.parametrize(("path", "argument"), [
    ("runs/train/exp/weights/best.pt", "-"),
    ("yolov5s.torchscript", "torchscript"),
    ("yolov5s.onnx", "onnx"),
    ("yolov5s_openvino_model", "openvino"),
    ("yolov5s_openvino_model/", "openvino"),
    ("yolov5s_openvino_model/yolov5s.xml", "openvino"),
])
def test_model_format_by_name(path, argument):
    assert model_format(path).argument == argument


@pytest.mark.parametrize(("path", "name"), [
    ("yolov5s.engine", "TensorRT"),
    ("yolov5s.mlmodel", "CoreML"),
    ("yolov5s_saved_model", "TensorFlow SavedModel"),
    ("yolov5s.pb", "TensorFlow GraphDef"),
    ("yolov5s.tflite", "TensorFlow Lite"),
    ("yolov5s_edgetpu.tflite", "TensorFlow Edge TPU"),
    ("yolov5s_web_model", "TensorFlow.js"),
    ("yolov5s_paddle_model", "PaddlePaddle"),
])
def test_other_formats_are_refused_by_name(path, name):
    with pytest.raises(ValueError, match=rf"^{name} \(.*\) is not supported by this toolkit: it needs .*Supported "
                                         "exports: torchscript, onnx, openvino"):
        DetectMultiBackend(path)


def test_unknown_suffix_and_ensembles_of_exports_are_clear_errors():
    with pytest.raises(ValueError, match="model.h5: not a model file this toolkit runs"):
        model_format("model.h5")
    with pytest.raises(ValueError, match="an ensemble of several weights needs .pt files"):
        DetectMultiBackend(["a.onnx", "b.onnx"])
    with pytest.raises(FileNotFoundError, match="missing.onnx not found"):
        DetectMultiBackend("missing.onnx")
    assert is_pytorch_weights(["a.pt", "b.pt"]) and not is_pytorch_weights(["a.pt", "b.onnx"])


def test_importable_from_models_common_as_in_yolov5():
    from models.common import DetectMultiBackend as FromCommon

    assert FromCommon is DetectMultiBackend


def test_pt_weights_run_as_attempt_load(exports):
    model = DetectMultiBackend(exports.pt)
    reference = attempt_load(exports.pt)
    im = torch.rand(2, 3, 64, 96)
    assert model.pt and model.dynamic and model.stride == 32 and model.names == reference.names
    torch.testing.assert_close(model(im)[0], reference(im)[0], rtol=0, atol=0)


def test_opencv_dnn_runs_the_onnx_export(exports):
    im = torch.rand(1, 3, exports.size, exports.size)
    model = DetectMultiBackend(exports.static / "yolov5n.onnx", dnn=True)
    reference = attempt_load(exports.pt)(im)[0]
    assert model.names == attempt_load(exports.pt).names
    y = model(im)[0]
    torch.testing.assert_close(y[..., 4:], reference[..., 4:], rtol=0, atol=1e-4)
    torch.testing.assert_close(y[..., :4], reference[..., :4], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("file", "package"), [("yolov5n.onnx", "onnxruntime"),
                                               ("yolov5n_openvino_model", "openvino")])
def test_missing_runtime_gives_its_pip_command(exports, monkeypatch, file, package):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(MissingPackageError, match=rf"{file} with .* pip install {package} "):
        DetectMultiBackend(exports.static / file)


def test_names_from_the_dataset_when_an_export_has_none(exports, tmp_path):
    folder = tmp_path / "yolov5n_openvino_model"
    folder.mkdir()
    for f in (exports.static / "yolov5n_openvino_model").glob("yolov5n.*"):
        if f.suffix != ".yaml":
            (folder / f.name).write_bytes(f.read_bytes())
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"names": ["a", "b"]}))
    model = DetectMultiBackend(folder / "yolov5n.xml", data=data)
    assert model.names == {0: "a", 1: "b"} and model.nc is None and model.stride == 32


def test_augment_on_an_export_is_a_notice(exports, log_lines):
    model = DetectMultiBackend(exports.dynamic / "yolov5n.onnx")
    backends._warn_once.cache_clear()
    log_lines.clear()
    y, raw = model(torch.zeros(1, 3, 64, 64), augment=True)
    assert y.dtype == torch.float32 and y.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85) and raw is None
    assert log_lines == [f"WARNING ⚠️ --augment and --visualize need a PyTorch model; {model.weights} runs without them"]
