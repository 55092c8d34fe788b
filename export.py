"""Export a trained YOLOv5 detector to TorchScript, ONNX or OpenVINO, with YOLOv5's flags and file names.

Format        | --include     | Model
PyTorch       | -             | yolov5s.pt
TorchScript   | torchscript   | yolov5s.torchscript
ONNX          | onnx          | yolov5s.onnx
OpenVINO      | openvino      | yolov5s_openvino_model/ (yolov5s.xml, yolov5s.bin, yolov5s.yaml)

Usage:
    python export.py --weights yolov5s.pt --include torchscript onnx openvino
    python export.py --weights yolov5s.pt --include onnx --dynamic --simplify   # any batch and image size
Inference (each file carries its stride and class names):
    python detect.py --weights yolov5s.onnx      # also yolov5s.torchscript, yolov5s_openvino_model, --dnn for OpenCV
    python val.py --weights yolov5s_openvino_model --data coco128.yaml
YOLOv5's other formats (TensorRT, CoreML, TensorFlow, PaddlePaddle) need a GPU or another framework and are refused.
ONNX and OpenVINO need the optional packages onnx / openvino (pip install -r requirements-optional.txt).
"""

import io
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
import yaml
from torch.backends import xnnpack
from torch.utils.mobile_optimizer import optimize_for_mobile

from models.backends import FORMATS, SUPPORTED, refusal_message
from models.experimental import attempt_load
from models.yolo import Detect
from utils.cli import ArgumentParser, run_cli
from utils.device import select_device, smart_inference_mode
from utils.files import ROOT, atomic_open, file_size_mb
from utils.log import LOGGER, colorstr
from utils.model_utils import check_img_size
from utils.optional import MissingPackageError, import_optional

# flags of YOLOv5's export.py that only its refused formats (TensorFlow, CoreML, TensorRT) read
OTHER_FORMAT_FLAGS = {"keras": False, "int8": False, "per_tensor": False, "mlmodel": False, "verbose": False,
                      "workspace": 4, "nms": False, "agnostic_nms": False, "topk_per_class": 100, "topk_all": 100,
                      "iou_thres": 0.45, "conf_thres": 0.25}


def check_include(include):
    """The lower-cased --include list; unknown or refused formats raise ValueError naming them."""
    include = [x.lower() for x in include]
    known = {f.argument: f for f in FORMATS[1:]}
    unknown = [x for x in include if x not in known]
    if unknown:
        raise ValueError(f"--include {' '.join(unknown)}: unknown format; valid: {', '.join(known)}")
    for x in include:
        if known[x].refusal:
            raise ValueError(refusal_message(known[x]))
    return include


def export_torchscript(model, im, file, optimize, metadata, dynamic):
    """file.torchscript: a trace, with {shape, stride, names} in its config.txt extra file (as YOLOv5, plus whether
    the trace was made --dynamic, which its runner needs to allow other image sizes)."""
    prefix = colorstr("TorchScript:")
    LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
    f = file.with_suffix(".torchscript")
    ts = torch.jit.trace(model, im, strict=False)
    extra_files = {"config.txt": json.dumps({"shape": list(im.shape), **metadata, "dynamic": dynamic})}
    if optimize:  # https://pytorch.org/tutorials/recipes/mobile_interpreter.html
        content = optimize_for_mobile(ts)._save_to_buffer_for_lite_interpreter(_extra_files=extra_files)
        with atomic_open(f, "wb") as out:
            out.write(content)
    else:
        with atomic_open(f, "wb") as out:
            torch.jit.save(ts, out, _extra_files=extra_files)
    return f


def export_onnx(model, im, file, opset, dynamic, simplify, metadata):
    """file.onnx: input 'images', output 'output0' (batch, height and width dynamic with --dynamic), checked, with
    stride and names in its metadata_props as YOLOv5 writes them; --simplify runs onnxsim when it is installed."""
    onnx = import_optional("onnx", "onnx", "--include onnx/openvino")
    prefix = colorstr("ONNX:")
    LOGGER.info(f"\n{prefix} starting export with onnx {onnx.__version__} (opset {opset})...")
    f = file.with_suffix(".onnx")
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    buffer = io.BytesIO()
    torch.onnx.export(model.cpu() if dynamic else model, (im.cpu() if dynamic else im,), buffer, dynamo=False,
                      opset_version=opset, do_constant_folding=True, input_names=["images"],
                      output_names=["output0"], dynamic_axes=axes if dynamic else None)
    model_onnx = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model_onnx)
    for key, value in metadata.items():
        prop = model_onnx.metadata_props.add()
        prop.key, prop.value = key, str(value)
    if simplify:
        model_onnx = _simplify(model_onnx, prefix)
    with atomic_open(f, "wb") as out:
        out.write(model_onnx.SerializeToString())
    return f


def _simplify(model_onnx, prefix):
    """model_onnx through onnx-simplifier; unchanged, with a notice, when it is missing or fails (as YOLOv5)."""
    try:
        onnxsim = import_optional("onnxsim", "onnxsim", "--simplify")
        LOGGER.info(f"{prefix} simplifying with onnxsim {onnxsim.__version__}...")
        simplified, ok = onnxsim.simplify(model_onnx)
        if not ok:
            raise RuntimeError("onnxsim's check of the simplified model failed")
        return simplified
    except (MissingPackageError, RuntimeError) as e:
        LOGGER.warning(f"{prefix} WARNING ⚠️ not simplified: {e}")
        return model_onnx


def export_openvino(file, metadata, half):
    """file_openvino_model/ with file.xml, file.bin (fp32, fp16 with --half) and file.yaml {stride, names}, converted
    from the ONNX export. Written in a temporary folder that then replaces any previous one."""
    ov = import_optional("openvino", "openvino", "--include openvino")
    prefix = colorstr("OpenVINO:")
    LOGGER.info(f"\n{prefix} starting export with openvino {ov.__version__}...")
    f = file.parent / f"{file.stem}_openvino_model"
    tmp = file.parent / f".{f.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ov_model = ov.convert_model(str(file.with_suffix(".onnx")))
        ov.save_model(ov_model, str(tmp / f"{file.stem}.xml"), compress_to_fp16=half)
        (tmp / f"{file.stem}.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
        if f.exists():
            shutil.rmtree(f)
        os.replace(tmp, f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f


def _prepare_model(weights, device, half, dynamic, inplace, batch_size, imgsz):
    """The fp32 (fp16 with --half) BN-folded model in eval with Detect in export mode, and the input to trace with."""
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    stride = int(max(model.stride))
    imgsz = [check_img_size(x, stride) for x in (imgsz * 2 if len(imgsz) == 1 else imgsz)]
    im = torch.zeros(batch_size, 3, *imgsz, device=device)
    model.eval()
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace, m.dynamic, m.export = inplace, dynamic, True
    for _ in range(2):  # dry runs: grids built, shapes checked
        y = model(im)
    if half:
        im, model = im.half(), model.half()
    return model, im, tuple(y[0].shape)


def _check_flags(device, half, dynamic, optimize, other_flags):
    if half and device.type == "cpu":
        raise ValueError("--half only compatible with GPU export, i.e. use --device 0")
    if half and dynamic:
        raise ValueError("--half not compatible with --dynamic, i.e. use either --half or --dynamic but not both")
    if optimize and device.type != "cpu":
        raise ValueError("--optimize not compatible with cuda devices, i.e. use --device cpu")
    if optimize and not xnnpack.enabled:
        raise ValueError(f"--optimize (TorchScript for mobile) needs a torch build with XNNPACK; torch "
                         f"{torch.__version__} here has none: export without --optimize")
    used = [k for k, v in other_flags.items() if v != OTHER_FORMAT_FLAGS[k]]
    if used:
        LOGGER.info(f"{colorstr('export: ')}--{', --'.join(x.replace('_', '-') for x in used)} not used: they apply "
                    "to TensorFlow, CoreML or TensorRT exports, which this toolkit does not write")


@smart_inference_mode()
def run(
        data=ROOT / "data/coco128.yaml",  # dataset.yaml (YOLOv5 reads it for TFLite int8 calibration only)
        weights=ROOT / "yolov5s.pt",
        imgsz=(640, 640),  # image (height, width)
        batch_size=1,
        device="cpu",  # cuda device, i.e. 0 or 0,1,2,3 or cpu
        include=("torchscript",),
        half=False,  # FP16 half-precision export (CUDA only)
        inplace=False,  # Detect() decodes with slice assignment
        optimize=False,  # TorchScript: optimize for mobile
        dynamic=False,  # ONNX/OpenVINO/TorchScript: any batch and image size
        simplify=False,  # ONNX: simplify with onnxsim
        opset=17,  # ONNX: opset version
        **other_flags,  # YOLOv5's flags for formats refused here (OTHER_FORMAT_FLAGS)
):
    """Export `weights` to each format of `include`; returns the list of written paths."""
    t = time.time()
    include = check_include(include)
    unknown = set(other_flags) - set(OTHER_FORMAT_FLAGS)
    if unknown:
        raise TypeError(f"export.run() got unexpected arguments {sorted(unknown)}")
    weights = Path(weights[0] if isinstance(weights, (list, tuple)) else weights)
    if weights.suffix != ".pt":
        raise ValueError(f"--weights {weights}: export.py exports PyTorch .pt checkpoints")
    device = select_device(device)
    _check_flags(device, half, dynamic, optimize, other_flags)
    for package, formats in (("onnx", ("onnx", "openvino")), ("openvino", ("openvino",))):
        if any(x in include for x in formats):  # before the minutes of loading and tracing, not after
            import_optional(package, package, f"--include {' '.join(x for x in include if x in formats)}")
    model, im, shape = _prepare_model(weights, device, half, dynamic, inplace, batch_size, list(imgsz))
    metadata = {"stride": int(max(model.stride)), "names": model.names}
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {weights} with output shape {shape} "
                f"({file_size_mb(weights):.1f} MB)")

    files = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit's: TorchScript is what YOLOv5 ships
        if "torchscript" in include:
            files.append(export_torchscript(model, im, weights, optimize, metadata, dynamic))
        if "onnx" in include or "openvino" in include:  # OpenVINO converts the ONNX export
            files.append(export_onnx(model, im, weights, opset, dynamic, simplify, metadata))
        if "openvino" in include:
            files.append(export_openvino(weights, metadata, half))
    for f in files:
        LOGGER.info(f"{colorstr('export:')} saved {f} ({file_size_mb(f):.1f} MB)")
    if files:
        h = " --half" if half else ""
        LOGGER.info(f"\nExport complete ({time.time() - t:.1f}s)\nResults saved to "
                    f"{colorstr('bold', weights.parent.resolve())}\nDetect:          python detect.py --weights "
                    f"{files[-1]}{h}\nValidate:        python val.py --weights {files[-1]}{h}\n"
                    "Visualize:       https://netron.app")
    return [str(f) for f in files]


def parse_opt(argv=None):
    parser = ArgumentParser(description="Export a YOLOv5 .pt model to TorchScript, ONNX or OpenVINO")
    parser.add_argument("--data", type=str, default=ROOT / "data/coco128.yaml", help="dataset.yaml path")
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt", help="model.pt path(s)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export")
    parser.add_argument("--inplace", action="store_true", help="set YOLOv5 Detect() inplace=True")
    parser.add_argument("--keras", action="store_true", help="TF: use Keras (not exported here)")
    parser.add_argument("--optimize", action="store_true", help="TorchScript: optimize for mobile")
    parser.add_argument("--int8", action="store_true", help="CoreML/TF/OpenVINO INT8 quantization (not here)")
    parser.add_argument("--per-tensor", action="store_true", help="TF per-tensor quantization (not exported here)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX/TF/TensorRT: dynamic axes")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify model")
    parser.add_argument("--mlmodel", action="store_true", help="CoreML: export in *.mlmodel format (not here)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX: opset version")
    parser.add_argument("--verbose", action="store_true", help="TensorRT: verbose log (not exported here)")
    parser.add_argument("--workspace", type=int, default=4, help="TensorRT: workspace size (GB) (not here)")
    parser.add_argument("--nms", action="store_true", help="TF: add NMS to model (not exported here)")
    parser.add_argument("--agnostic-nms", action="store_true", help="TF: add agnostic NMS to model (not here)")
    parser.add_argument("--topk-per-class", type=int, default=100, help="TF.js NMS: topk per class to keep")
    parser.add_argument("--topk-all", type=int, default=100, help="TF.js NMS: topk for all classes to keep")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="TF.js NMS: IoU threshold")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="TF.js NMS: confidence threshold")
    parser.add_argument("--include", nargs="+", default=["torchscript"],
                        help=f"{', '.join(f.argument for f in FORMATS[1:])} (supported here: {', '.join(SUPPORTED)})")
    opt = parser.parse_args(argv)
    LOGGER.info(f"{colorstr('export: ')}" + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    return opt


def main(opt):
    options = vars(opt)
    weights = options.pop("weights")
    return [f for w in (weights if isinstance(weights, list) else [weights]) for f in run(weights=w, **options)]


if __name__ == "__main__":
    run_cli(main, parse_opt())
