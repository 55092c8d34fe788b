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

import csv
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from models.backends import DetectMultiBackend, is_pytorch_weights
from models.experimental import attempt_load
from utils.boxes import scale_boxes, xyxy2xywh
from utils.checkpoint import strip_optimizer
from utils.cli import ArgumentParser, run_cli
from utils.crops import save_one_box
from utils.device import select_device, smart_inference_mode
from utils.files import ROOT, increment_path
from utils.log import LOGGER, colorstr
from utils.model_utils import check_img_size
from utils.nms import non_max_suppression
from utils.plots import Annotator, colors
from utils.precision import Precision, select_precision
from utils.profiling import Profile
from utils.sources import IMG_FORMATS, STREAM_PREFIXES, VID_FORMATS, LoadImages, LoadStreams

VIDEO_FOURCC = "mp4v"  # writes .mp4 with opencv-python-headless's bundled FFmpeg (H.264 encoders are absent)


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


def write_labels(txt_path, det, im0_shape, save_conf):
    """Append one `class x y w h [conf]` line per box (xywh normalised to the original image)."""
    gain = torch.tensor(im0_shape)[[1, 0, 1, 0]]  # w, h, w, h
    with open(f"{txt_path}.txt", "a") as f:
        for *xyxy, conf, cls in reversed(det):
            xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gain).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def append_csv(csv_path, rows):
    """Append rows (image name, class name, confidence) to YOLOv5's predictions.csv, its header first."""
    new = not csv_path.is_file()
    with open(csv_path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(("Image Name", "Prediction", "Confidence"))
        writer.writerows(rows)


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


def describe(det, names):
    """'2 circles, 1 star, ' for the log line."""
    counts = ""
    for c in det[:, 5].unique():
        n = int((det[:, 5] == c).sum())
        counts += f"{n} {names[int(c)]}{'s' * (n > 1)}, "
    return counts


class VideoSinks:
    """One cv2.VideoWriter per batch slot, reopened when that slot's video path changes."""

    def __init__(self, slots):
        self.paths, self.writers = [None] * slots, [None] * slots

    def write(self, slot, save_path, frame, capture):
        """Append `frame` to the video for `save_path` (saved with an .mp4 suffix)."""
        if self.paths[slot] != save_path:
            self.release(slot)
            fps = capture.get(cv2.CAP_PROP_FPS) if capture is not None else 30.0
            fps = fps if fps and fps > 0 else 30.0
            height, width = frame.shape[:2]
            mp4_path = str(Path(save_path).with_suffix(".mp4"))
            writer = cv2.VideoWriter(mp4_path, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (width, height))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write video {mp4_path} with codec {VIDEO_FOURCC}; "
                                   f"use --nosave, or install an OpenCV build with FFmpeg")
            self.paths[slot], self.writers[slot] = save_path, writer
        self.writers[slot].write(frame)

    def release(self, slot=None):
        for i in range(len(self.writers)) if slot is None else [slot]:
            if self.writers[i] is not None:
                self.writers[i].release()
                self.writers[i] = None


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

    device = select_device(device)
    model, stride, names, precision, half, auto = load_model(weights, device, half, dnn, data)
    imgsz = [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)  # (h, w)
    imgsz = [check_img_size(x, stride) for x in imgsz]
    if isinstance(model, DetectMultiBackend):
        model.check_shape((1, 3, *imgsz))

    if view_img and not display_available():
        LOGGER.warning("WARNING ⚠️ --view-img needs a display and an OpenCV build with GUI support; none here "
                       f"(opencv-python-headless or no $DISPLAY). Results are saved to {save_dir} instead.")
        view_img = False
    if is_stream:
        dataset = LoadStreams(source, img_size=imgsz, stride=stride, auto=auto, vid_stride=vid_stride)
    else:
        dataset = LoadImages(source, img_size=imgsz, stride=stride, auto=auto, vid_stride=vid_stride)
    batch_slots = len(dataset) if is_stream else 1
    videos = VideoSinks(batch_slots)

    if isinstance(model, DetectMultiBackend):
        model.warmup(imgsz=(1, 3, *imgsz))
    elif device.type != "cpu":  # warm up CUDA kernels so the first image's time is representative
        model(torch.zeros(1, 3, *imgsz, device=device).type_as(next(model.parameters())))
    seen, windows = 0, []
    dt = (Profile(device=device), Profile(device=device), Profile(device=device))
    try:
        for path, im, im0s, vid_cap, s in dataset:
            with dt[0]:
                im = torch.from_numpy(im).to(device)
                im = im.half() if half else im.float()
                im /= 255  # 0-255 to 0.0-1.0
                if im.ndim == 3:
                    im = im[None]
                im = precision.batch(im)
            with dt[1], precision.autocast():
                feature_dir = increment_path(save_dir / Path(path).stem, mkdir=True) if visualize else False
                pred = model(im, augment=augment, visualize=feature_dir) if visualize else model(im, augment=augment)
                pred = pred[0].float() if isinstance(pred, (list, tuple)) else pred.float()  # NMS in fp32
            with dt[2]:
                pred = non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic_nms, max_det=max_det)

            for i, det in enumerate(pred):
                seen += 1
                if is_stream:
                    p, im0, frame = path[i], im0s[i].copy(), dataset.count
                    s += f"{i}: "
                else:
                    p, im0, frame = path, im0s.copy(), getattr(dataset, "frame", 0)
                p = Path(p)
                save_path = str(save_dir / p.name)
                txt_path = str(save_dir / "labels" / p.stem) + ("" if dataset.mode == "image" else f"_{frame}")
                s += "%gx%g " % im.shape[2:]
                imc = im0.copy() if save_crop else im0
                annotator = Annotator(im0, line_width=line_thickness, example=str(names))
                if len(det):
                    det[:, :4] = scale_boxes(im.shape[2:], det[:, :4], im0.shape).round()
                    s += describe(det, names)
                    if save_txt:
                        write_labels(txt_path, det, im0.shape, save_conf)
                    if save_csv:
                        append_csv(save_dir / "predictions.csv",
                                   [(p.name, names[int(c)], f"{float(conf):.2f}") for *_, conf, c in reversed(det)])
                    for *xyxy, conf, cls in reversed(det):
                        c = int(cls)
                        if save_img or save_crop or view_img:
                            label = None if hide_labels else (names[c] if hide_conf else f"{names[c]} {conf:.2f}")
                            annotator.box_label(xyxy, label, color=colors(c, True))
                        if save_crop:
                            save_one_box(xyxy, imc, file=save_dir / "crops" / names[c] / f"{p.stem}.jpg", BGR=True)
                im0 = annotator.result()
                if view_img:
                    if str(p) not in windows:
                        windows.append(str(p))
                        cv2.namedWindow(str(p), cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
                        cv2.resizeWindow(str(p), im0.shape[1], im0.shape[0])
                    cv2.imshow(str(p), im0)
                    cv2.waitKey(1)
                if save_img:
                    if dataset.mode == "image":
                        cv2.imwrite(save_path, im0)
                    else:
                        videos.write(i, save_path, im0, vid_cap)
            LOGGER.info(f"{s}{'' if len(det) else '(no detections), '}{dt[1].dt * 1e3:.1f}ms")
    finally:
        videos.release()

    speeds = tuple(x.t / max(seen, 1) * 1e3 for x in dt)
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(1, 3, *imgsz)}"
                % speeds)
    if update:
        _update(weights)
    if save_txt or save_img:
        n_labels = len(list(save_dir.glob("labels/*.txt")))
        labels = f"\n{n_labels} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{labels}")
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
