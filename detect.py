"""Run a YOLOv5 detector on images, videos, folders, globs, path lists, webcams and streams.

Usage:
    python detect.py --weights yolov5s.pt --source data/images --img 640 --conf 0.25
    python detect.py --weights a.pt b.pt --source video.mp4 --save-txt --save-crop   # two weights: an ensemble
    python detect.py --weights yolov5s.onnx     # exports too: .torchscript, .onnx (--dnn: OpenCV DNN), _openvino_model
Sources: img.jpg, vid.mp4, path/ (a folder), 'path/*.jpg' (a glob), list.txt (one path per line),
0 (webcam index), rtsp://... (a stream), list.streams (one stream per line).
Results go to runs/detect/exp, exp2, ...: annotated images/videos, labels/*.txt, crops/<class>/*.jpg,
predictions.csv (--save-csv).
"""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from models.backends import DetectMultiBackend, is_pytorch_weights
from models.experimental import attempt_load
from utils.checkpoint import strip_optimizer
from utils.cli import ArgumentParser, run_cli
from utils.detect_outputs import ImageOutputs, OutputOptions
from utils.device import select_device, smart_inference_mode
from utils.files import ROOT, increment_path
from utils.log import LOGGER, colorstr
from utils.model_utils import check_img_size
from utils.nms import non_max_suppression
from utils.precision import Precision, select_precision
from utils.profiling import Profile
from utils.sources import IMG_FORMATS, STREAM_PREFIXES, VID_FORMATS, LoadImages, LoadStreams


def classify_source(source):
    """-> (is_stream, is_url_file): webcam index, .streams list or URL stream; or a URL to an image/video."""
    source = str(source)
    is_file = Path(source).suffix[1:].lower() in (IMG_FORMATS + VID_FORMATS)
    is_url = source.lower().startswith(STREAM_PREFIXES)
    is_stream = source.isnumeric() or source.endswith(".streams") or (is_url and not is_file)
    return is_stream, is_url and is_file


def display_available():
    """True when OpenCV can open a window (a GUI build and a display), which --view-img needs."""
    try:
        cv2.imshow("test", np.zeros((8, 8, 3), np.uint8))
        cv2.waitKey(1)
        cv2.destroyAllWindows()
        return True
    except cv2.error:
        return False


def class_names(model, data):
    """The model's class names; the dataset YAML's when the model carries none."""
    names = getattr(model, "names", None)
    if names:
        return dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
    if data and Path(data).is_file():
        yaml_names = yaml.safe_load(Path(data).read_text()).get("names", [])
        return dict(enumerate(yaml_names)) if isinstance(yaml_names, list) else dict(yaml_names)
    return {i: f"class{i}" for i in range(int(model.nc))}


def load_model(weights, device, half, dnn, data):
    """(model, stride, class names, Precision, fp16 weights?, rectangular letterbox?) for .pt weights or an export.

    --half: fp16 weights on CUDA as YOLOv5; bf16 autocast on CPU (the precision helper warns where unsupported), and
    for OpenVINO its bf16 inference. An export with a fixed input shape gets square letterboxed images, as YOLOv5.
    """
    if not is_pytorch_weights(weights):
        model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data, amp=half)
        return model, model.stride, model.names, Precision(device.type), False, model.dynamic
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    precision = select_precision(device, amp=half and device.type == "cpu")
    half &= device.type == "cuda"
    model = precision.model(model.half() if half else model.float())
    return model, max(int(model.stride.max()), 32), class_names(model, data), precision, half, True


@dataclass
class _Detector:
    """The loaded network, its inference size and how a batch of images reaches it."""

    model: object
    device: torch.device
    precision: Precision
    half: bool  # fp16 inputs (--half on CUDA)
    stride: int
    names: dict
    rectangular: bool  # letterbox each image to its own aspect ratio (False: an export with a fixed input shape)
    imgsz: list  # (h, w), multiples of the stride

    def warm_up(self):
        if isinstance(self.model, DetectMultiBackend):
            self.model.warmup(imgsz=(1, 3, *self.imgsz))
        elif self.device.type != "cpu":  # warm up CUDA kernels so the first image's time is representative
            self.model(torch.zeros(1, 3, *self.imgsz, device=self.device).type_as(next(self.model.parameters())))

    def preprocess(self, images):
        """A loader's uint8 image(s) (3, h, w) or (n, 3, h, w) as a 0-1 batch in the model's dtype and memory format."""
        images = torch.from_numpy(images).to(self.device)
        images = images.half() if self.half else images.float()
        images /= 255  # 0-255 to 0.0-1.0
        if images.ndim == 3:
            images = images[None]
        return self.precision.batch(images)

    def predict(self, images, augment, feature_dir):
        """Decoded predictions (n, anchors, 5 + nc) in fp32 for NMS; feature_dir: --visualize's folder, or False."""
        if feature_dir:
            predictions = self.model(images, augment=augment, visualize=feature_dir)
        else:
            predictions = self.model(images, augment=augment)
        return predictions[0].float() if isinstance(predictions, (list, tuple)) else predictions.float()


def _set_up_detector(weights, device, half, dnn, data, imgsz):
    """The model on its device with the inference size (h, w) made a multiple of its stride."""
    device = select_device(device)
    model, stride, names, precision, half, rectangular = load_model(weights, device, half, dnn, data)
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)  # (h, w)
    imgsz = [check_img_size(x, stride) for x in imgsz]
    if isinstance(model, DetectMultiBackend):
        model.check_shape((1, 3, *imgsz))
    return _Detector(model, device, precision, half, stride, names, rectangular, imgsz)


def _display_or_notice(save_dir):
    """True when --view-img can open windows; else a notice that the results are only saved."""
    if display_available():
        return True
    LOGGER.warning("WARNING ⚠️ --view-img needs a display and an OpenCV build with GUI support; none here "
                   f"(opencv-python-headless or no $DISPLAY). Results are saved to {save_dir} instead.")
    return False


def _open_source(source, is_stream, detector, vid_stride):
    """The loader of `source`, letterboxing to the detector's size: streams in batches of one frame each, else files."""
    loader = LoadStreams if is_stream else LoadImages
    return loader(source, img_size=detector.imgsz, stride=detector.stride, auto=detector.rectangular,
                  vid_stride=vid_stride)


def _detect_batches(detector, dataset, is_stream, outputs, nms, augment, visualize, save_dir):
    """Inference, NMS and each image's outputs for every batch of `dataset`, one log line per batch.

    Returns (images seen, (pre-process, inference, NMS) stopwatches)."""
    timers = (Profile(device=detector.device), Profile(device=detector.device), Profile(device=detector.device))
    images_seen = 0
    for path, images, originals, capture, text in dataset:
        with timers[0]:
            images = detector.preprocess(images)
        with timers[1], detector.precision.autocast():
            feature_dir = increment_path(save_dir / Path(path).stem, mkdir=True) if visualize else False
            predictions = detector.predict(images, augment, feature_dir)
        with timers[2]:
            predictions = nms(predictions)
        for slot, det in enumerate(predictions):
            images_seen += 1
            if is_stream:
                image_path, image, frame = path[slot], originals[slot].copy(), dataset.count
                text += f"{slot}: "
            else:
                image_path, image, frame = path, originals.copy(), getattr(dataset, "frame", 0)
            frame = None if dataset.mode == "image" else frame
            text += outputs.add(det, images.shape[2:], image, Path(image_path), frame, slot, capture)
        LOGGER.info(f"{text}{'' if len(det) else '(no detections), '}{timers[1].dt * 1e3:.1f}ms")
    return images_seen, timers


def _log_speed(timers, images_seen, imgsz):
    speeds = tuple(x.t / max(images_seen, 1) * 1e3 for x in timers)  # ms per image
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(1, 3, *imgsz)}"
                % speeds)


def _log_results(save_dir, save_txt):
    n_labels = len(list(save_dir.glob("labels/*.txt")))
    labels = f"\n{n_labels} labels saved to {save_dir / 'labels'}" if save_txt else ""
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{labels}")


@smart_inference_mode()
def run(
    weights=ROOT / "yolov5s.pt",  # model path(s); several make an ensemble
    source=ROOT / "data/images",  # file/dir/glob/.txt list/video/0 (webcam)/URL stream/.streams
    data=ROOT / "data/coco128.yaml",  # dataset.yaml, for class names when the weights carry none
    imgsz=(640, 640),  # inference size (height, width)
    conf_thres=0.25,  # confidence threshold
    iou_thres=0.45,  # NMS IoU threshold
    max_det=1000,  # maximum detections per image
    device="",  # cuda device, i.e. 0 or 0,1,2,3 or cpu
    view_img=False,  # show results
    save_txt=False,  # save results to *.txt
    save_csv=False,  # save results in predictions.csv
    save_conf=False,  # save confidences in --save-txt labels
    save_crop=False,  # save cropped prediction boxes
    nosave=False,  # do not save images/videos
    classes=None,  # filter by class: --classes 0, or --classes 0 2 3
    agnostic_nms=False,  # class-agnostic NMS
    augment=False,  # augmented inference (TTA)
    visualize=False,  # save feature maps
    update=False,  # strip the optimizer from the .pt weights (YOLOv5's strip_optimizer)
    project=ROOT / "runs/detect",  # save results to project/name
    name="exp",  # save results to project/name
    exist_ok=False,  # existing project/name ok, do not increment
    line_thickness=3,  # bounding box thickness (pixels)
    hide_labels=False,  # hide labels
    hide_conf=False,  # hide confidences
    half=False,  # reduced precision: FP16 weights on CUDA, bf16 autocast on CPUs with native bf16
    dnn=False,  # run .onnx weights with OpenCV DNN instead of ONNX Runtime
    vid_stride=1,  # video frame-rate stride
):
    """Detect objects in `source`, log one line per image and the speed, save results; returns the save dir."""
    source = str(source)
    save_img = not nosave
    is_stream, is_url_file = classify_source(source)
    if is_url_file:
        raise FileNotFoundError(f"{source} is a URL and nothing is downloaded here: download it by hand "
                                f"and pass the local path with --source")

    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    detector = _set_up_detector(weights, device, half, dnn, data, imgsz)
    view_img = view_img and _display_or_notice(save_dir)
    dataset = _open_source(source, is_stream, detector, vid_stride)
    options = OutputOptions(save_img, view_img, save_txt, save_csv, save_conf, save_crop, line_thickness,
                            hide_labels, hide_conf)
    outputs = ImageOutputs(save_dir, detector.names, options, video_slots=len(dataset) if is_stream else 1)

    detector.warm_up()
    nms = partial(non_max_suppression, conf_thres=conf_thres, iou_thres=iou_thres, classes=classes,
                  agnostic=agnostic_nms, max_det=max_det)
    try:
        images_seen, timers = _detect_batches(detector, dataset, is_stream, outputs, nms, augment, visualize,
                                              save_dir)
    finally:
        outputs.close()
    _log_speed(timers, images_seen, detector.imgsz)
    if update:
        _update(weights)
    if save_txt or save_img:
        _log_results(save_dir, save_txt)
    return save_dir


def _update(weights):
    """--update: strip the optimizer from the first .pt weights in place, as YOLOv5 does."""
    first = weights[0] if isinstance(weights, (list, tuple)) else weights
    if is_pytorch_weights(first):
        strip_optimizer(first)
    else:
        LOGGER.warning(f"WARNING ⚠️ --update strips optimizers from .pt weights; {first} is an export, left as it is")


def parse_opt(argv=None):
    parser = ArgumentParser(description="YOLOv5 inference on images, videos, folders and streams")
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt", help="model path(s)")
    parser.add_argument("--source", type=str, default=ROOT / "data/images", help="file/dir/glob/.txt/URL/0(webcam)")
    parser.add_argument("--data", type=str, default=ROOT / "data/coco128.yaml", help="(optional) dataset.yaml path")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference size h,w")
    parser.add_argument("--conf-thres", "--conf", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--iou-thres", "--iou", type=float, default=0.45, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--view-img", action="store_true", help="show results")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-csv", action="store_true", help="save results in CSV format")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference")
    parser.add_argument("--visualize", action="store_true", help="visualize features")
    parser.add_argument("--update", action="store_true", help="update all models")
    parser.add_argument("--project", default=ROOT / "runs/detect", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save results to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", default=False, action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", default=False, action="store_true", help="hide confidences")
    parser.add_argument("--half", action="store_true", help="FP16 inference on CUDA, bf16 autocast on CPU")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    opt = parser.parse_args(argv)
    opt.imgsz *= 2 if len(opt.imgsz) == 1 else 1  # expand
    LOGGER.info(f"{colorstr('detect: ')}" + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    return opt


def main(opt):
    return run(**vars(opt))


if __name__ == "__main__":
    run_cli(main, parse_opt())
