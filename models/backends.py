"""Running a detector from any file export.py writes: `DetectMultiBackend` picks the runtime by the file's name.

    weights.pt                 PyTorch (attempt_load)
    weights.torchscript        TorchScript
    weights.onnx               ONNX Runtime, or OpenCV DNN with dnn=True
    weights_openvino_model/    OpenVINO (the folder, or the .xml inside it)

Each exported file carries the stride and class names as YOLOv5 writes them: TorchScript in its `config.txt` extra
file (JSON), ONNX in its metadata_props, OpenVINO in the YAML beside the .xml. The other formats of YOLOv5's
export.py need a GPU or another framework and are refused by name (FORMATS).
"""

import ast
import functools
import json
import warnings
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from models.experimental import attempt_load
from utils.log import LOGGER
from utils.optional import import_optional


class ExportFormat(NamedTuple):
    name: str
    argument: str  # export.py --include
    suffix: str  # end of the exported file or folder name
    refusal: str = ""  # why this toolkit neither writes nor runs it (empty: supported)


FORMATS = (  # YOLOv5's export_formats(), in its order
    ExportFormat("PyTorch", "-", ".pt"),
    ExportFormat("TorchScript", "torchscript", ".torchscript"),
    ExportFormat("ONNX", "onnx", ".onnx"),
    ExportFormat("OpenVINO", "openvino", "_openvino_model"),
    ExportFormat("TensorRT", "engine", ".engine", "needs an NVIDIA GPU and the tensorrt package"),
    ExportFormat("CoreML", "coreml", ".mlmodel", "needs coremltools, and macOS to run the model"),
    ExportFormat("TensorFlow SavedModel", "saved_model", "_saved_model", "needs TensorFlow"),
    ExportFormat("TensorFlow GraphDef", "pb", ".pb", "needs TensorFlow"),
    ExportFormat("TensorFlow Lite", "tflite", ".tflite", "needs TensorFlow"),
    ExportFormat("TensorFlow Edge TPU", "edgetpu", "_edgetpu.tflite",
                 "needs TensorFlow, the Edge TPU compiler and a Coral Edge TPU"),
    ExportFormat("TensorFlow.js", "tfjs", "_web_model", "needs TensorFlow and tensorflowjs"),
    ExportFormat("PaddlePaddle", "paddle", "_paddle_model", "needs PaddlePaddle and X2Paddle"),
)
SUPPORTED = tuple(f.argument for f in FORMATS[1:] if not f.refusal)


def refusal_message(fmt):
    """One line saying that format `fmt` is not supported here, why, and what is."""
    return (f"{fmt.name} ({fmt.suffix}, --include {fmt.argument}) is not supported by this toolkit: it {fmt.refusal}. "
            f"Supported exports: {', '.join(SUPPORTED)}; use YOLOv5's own export.py for {fmt.name}")


def model_format(weights):
    """The ExportFormat of a weights path, found from its name as YOLOv5 does; refused formats raise ValueError."""
    name = Path(str(weights)).name.lower()
    if name.endswith(".xml"):
        name = "_openvino_model"
    matches = [f for f in FORMATS if name.endswith(f.suffix)]
    if not matches:
        raise ValueError(f"--weights {weights}: not a model file this toolkit runs (expected .pt, .torchscript, .onnx "
                         "or a *_openvino_model folder)")
    fmt = max(matches, key=lambda f: len(f.suffix))  # _edgetpu.tflite rather than .tflite
    if fmt.refusal:
        raise ValueError(refusal_message(fmt))
    return fmt


def is_pytorch_weights(weights):
    """True when every path of `weights` (one or a list) is a PyTorch checkpoint, not an export."""
    paths = weights if isinstance(weights, (list, tuple)) else [weights]
    return all(model_format(w).argument == "-" for w in paths)


def _int_keys(d):
    return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in d.items()}


class TorchScriptRunner:
    """A traced .torchscript; its config.txt gives the stride, names and traced shape."""

    def __init__(self, path, device):
        extra_files = {"config.txt": ""}
        with warnings.catch_warnings():  # torch.jit's deprecation notice: TorchScript is still what YOLOv5 ships
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(path, _extra_files=extra_files, map_location=device).eval()
        meta = json.loads(extra_files["config.txt"] or "{}", object_hook=_int_keys)
        self.metadata = meta
        # a trace fixes the image size (its grids are constants) unless it was exported --dynamic
        self.shape = None if meta.get("dynamic") or "shape" not in meta else (None, 3, *meta["shape"][2:])
        self.dtype = next(self.model.parameters(), torch.empty(0)).dtype

    def __call__(self, im):
        y = self.model(im.to(self.dtype))
        return y[0] if isinstance(y, (list, tuple)) else y


class OnnxRuntimeRunner:
    """An .onnx in ONNX Runtime (CUDA provider on a GPU when installed, else the CPU)."""

    def __init__(self, path, device):
        ort = import_optional("onnxruntime", "onnxruntime", f"Running {path} with ONNX Runtime")
        cuda = device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.metadata = _parse_onnx_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input = self.session.get_inputs()[0]
        self.shape = tuple(d if isinstance(d, int) else None for d in self.input.shape)
        self.dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32

    def __call__(self, im):
        return self.session.run(None, {self.input.name: _to_numpy(im, self.dtype)})[0]


class OpenCVRunner:
    """ONNX through OpenCV DNN (--dnn), as YOLOv5 offers it; metadata is read with the onnx package when present."""

    def __init__(self, path, device):
        self.net = cv2.dnn.readNetFromONNX(str(path))
        self.metadata, self.shape = {}, None
        try:
            onnx = import_optional("onnx", "onnx", "Reading the class names of an ONNX model")
            proto = onnx.load(str(path), load_external_data=False)
            self.metadata = _parse_onnx_metadata({p.key: p.value for p in proto.metadata_props})
            dims = proto.graph.input[0].type.tensor_type.shape.dim
            self.shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        except ImportError as e:
            LOGGER.warning(f"WARNING ⚠️ {e}; using the dataset's class names")

    def __call__(self, im):
        self.net.setInput(_to_numpy(im, np.float32))
        return self.net.forward()


class OpenVinoRunner:
    """An OpenVINO .xml/.bin on the CPU. amp=False asks for f32 inference; otherwise OpenVINO's default, which is
    bf16 on CPUs with native bf16, like the .pt path's autocast. (YOLOv5 compiles for 'AUTO', which picks the CPU
    where there is no Intel GPU; the precision hint is a CPU setting.)"""

    def __init__(self, path, device, amp=True):
        ov = import_optional("openvino", "openvino", f"Running {path} with OpenVINO")
        path = Path(path)
        xml = path if path.suffix == ".xml" else next(path.glob("*.xml"), None)
        if xml is None:
            raise FileNotFoundError(f"{path} holds no .xml model: export it again with export.py --include openvino")
        core = ov.Core()
        model = core.read_model(model=str(xml), weights=str(xml.with_suffix(".bin")))
        config = {} if amp else {"INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(model, "CPU", config)
        meta_file = next((f for f in (xml.with_suffix(".yaml"), xml.parent / "metadata.yaml") if f.is_file()), None)
        self.metadata = yaml.safe_load(meta_file.read_text()) if meta_file else {}
        shape = model.inputs[0].get_partial_shape()
        self.shape = tuple(d.get_length() if d.is_static else None for d in shape)
        self.dtype = np.float16 if model.inputs[0].get_element_type().get_type_name() == "f16" else np.float32

    def __call__(self, im):
        return next(iter(self.compiled(_to_numpy(im, self.dtype)).values()))


def _to_numpy(im, dtype):
    return np.ascontiguousarray(im.detach().cpu().numpy(), dtype=dtype)


def _parse_onnx_metadata(props):
    """stride and names from ONNX metadata_props, which YOLOv5 writes as str() of the values (read without eval)."""
    meta = {}
    if "stride" in props:
        meta["stride"] = int(props["stride"])
    if "names" in props:
        meta["names"] = ast.literal_eval(props["names"])
    return meta


class DetectMultiBackend(nn.Module):
    """A YOLOv5 detector from a .pt, .torchscript, .onnx or OpenVINO export, chosen by the file name.

    forward(im) returns (decoded boxes (bs, n, 5 + nc) as fp32, None) like an Ensemble, so callers index [0] as
    they do for a DetectionModel. An export's stride and class names come from its metadata (else 32 and the
    dataset YAML's names). `dynamic` is True when the export's image size is not fixed; `static_shape` is the
    input shape it was exported for otherwise (None for any size of a dimension).
    """

    def __init__(self, weights="yolov5s.pt", device=torch.device("cpu"), dnn=False, data=None, fp16=False, fuse=True,
                 amp=True):
        super().__init__()
        w = weights[0] if isinstance(weights, (list, tuple)) and len(weights) == 1 else weights
        self.pt = is_pytorch_weights(w)
        if isinstance(w, (list, tuple)) and not self.pt:
            raise ValueError(f"--weights {' '.join(map(str, w))}: an ensemble of several weights needs .pt files")
        fmt = FORMATS[0] if self.pt else model_format(w)
        self.jit, self.onnx, self.xml = (fmt.argument == x for x in ("torchscript", "onnx", "openvino"))
        self.device, self.fp16 = torch.device(device), fp16 and self.pt
        if self.pt:
            self.model = attempt_load(w, device=self.device, inplace=True, fuse=fuse)
            self.model.half() if self.fp16 else self.model.float()
            stride, names, self.static_shape = max(int(self.model.stride.max()), 32), self.model.names, None
        else:
            if not Path(w).exists():
                raise FileNotFoundError(f"weights {w} not found: check the path, or export it with export.py")
            LOGGER.info(f"Loading {w} for {'OpenCV DNN' if dnn and self.onnx else fmt.name} inference...")
            self.runner = self._runner(w, dnn, amp)
            stride = int(self.runner.metadata.get("stride", 32))
            names = self.runner.metadata.get("names")
            self.static_shape = self.runner.shape
        self.stride, self.weights = stride, w
        self.nc = len(names) if names else None  # unknown without metadata: val.py then cannot check --data
        names = names or _data_names(data)
        self.names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
        self.dynamic = self.pt or self.static_shape is None or None in self.static_shape[2:]

    def _runner(self, w, dnn, amp):
        if self.jit:
            return TorchScriptRunner(w, self.device)
        if self.onnx:
            return OpenCVRunner(w, self.device) if dnn else OnnxRuntimeRunner(w, self.device)
        return OpenVinoRunner(w, self.device, amp)

    def forward(self, im, augment=False, visualize=False):
        if self.pt:
            return self.model(im, augment=augment, visualize=visualize) if augment or visualize else self.model(im)
        if augment or visualize:
            _warn_once(f"WARNING ⚠️ --augment and --visualize need a PyTorch model; {self.weights} runs without them")
        self.check_shape(im.shape)
        y = self.runner(im)
        y = torch.from_numpy(y) if isinstance(y, np.ndarray) else y
        return y.to(self.device, torch.float32), None

    def check_shape(self, shape):
        """ValueError unless an input of `shape` fits the export's fixed dimensions."""
        fixed = self.static_shape
        if fixed and any(f is not None and f != s for f, s in zip(fixed, shape)):
            size = f"--imgsz {fixed[2]} {fixed[3]}" if None not in fixed[2:] else "its image size"
            raise ValueError(f"{self.weights} was exported for input shape {tuple(fixed)} (None: any) but got "
                             f"{tuple(shape)}: run it with {size} and batch size {fixed[0] or 'any'}, or export "
                             "again with --dynamic")

    def warmup(self, imgsz=(1, 3, 640, 640)):
        """One inference on zeros on a GPU, where the first call pays for the set-up (not on the CPU, as YOLOv5)."""
        if self.device.type != "cpu":
            self.forward(torch.zeros(*imgsz, device=self.device, dtype=torch.half if self.fp16 else torch.float))


def _data_names(data):
    """Class names from a dataset YAML path (or dict), else the 999 placeholders YOLOv5 uses."""
    if isinstance(data, (str, Path)) and Path(data).is_file():
        data = yaml.safe_load(Path(data).read_text(encoding="utf-8"))
    names = data.get("names") if isinstance(data, dict) else None
    return names or {i: f"class{i}" for i in range(999)}


@functools.cache
def _warn_once(message):
    LOGGER.warning(message)
