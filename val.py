"""Validate a trained YOLOv5 detector on a detection dataset: P, R, mAP@0.5, mAP@0.5:0.95 and speeds.

Usage:
    python val.py --weights yolov5s.pt --data coco128.yaml --img 640
    python val.py --weights yolov5s.pt --data coco128.yaml --no-amp    # fp32 (default: bf16 autocast on CPUs with it)
    python val.py --weights a.pt b.pt --data coco128.yaml       # several weights: an ensemble
    python val.py --weights yolov5n.pt --task speed             # speed benchmark (conf 0.25, IoU 0.45)
    python val.py --weights yolov5n.pt --task study             # mAP and speed over image sizes 256-1536
    python val.py --weights yolov5n.onnx --data coco128.yaml    # an export: .torchscript, .onnx (--dnn: OpenCV DNN),
                                                                #   yolov5n_openvino_model (see export.py)
From Python (train.py does this every epoch): results, maps, times = val.run(data_dict, model=ema, dataloader=...)
"""

import argparse
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.backends import DetectMultiBackend, is_pytorch_weights
from models.blocks import fuse_convs, unfused_convs
from models.experimental import attempt_load
from utils.background_plots import BackgroundPlots
from utils.cli import ArgumentParser, run_cli
from utils.coco import coco80_to_coco91_class, evaluate_results, validates_on_coco
from utils.dataloaders import create_dataloader
from utils.dataset_config import check_dataset
from utils.device import select_device, smart_inference_mode
from utils.files import ROOT, increment_path
from utils.log import LOGGER, TQDM_BAR_FORMAT, colorstr
from utils.memory import retain_freed_memory
from utils.metrics import ConfusionMatrix
from utils.model_utils import check_img_size
from utils.nms import non_max_suppression
from utils.plot_metrics import plot_confusion_matrix, plot_val_study, warm_up
from utils.precision import Precision, select_precision
from utils.profiling import Profile
from utils.val_matching import MatchingStatistics, labels_native, predictions_native
from utils.val_outputs import ImageOutputs, call_hook, save_one_txt  # noqa: F401 (val.save_one_txt, as in YOLOv5)

HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
ROW_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4
STUDY_SIZES = range(256, 1536 + 128, 128)
SPLITS = ("train", "val", "test")  # --task values that name a split of the dataset YAML; others validate on val


def _load_model(weights, device, half, imgsz, batch_size):
    """The model (an Ensemble for several weights), its stride and the checked image size, ready to run."""
    model = attempt_load(weights, device=device, inplace=True, fuse=True)
    stride = max(int(model.stride.max()), 32)
    imgsz = check_img_size(imgsz, stride)
    model.half() if half else model.float()
    model.eval()
    if device.type == "cuda":  # first CUDA call pays cuDNN set-up: keep it out of the timings
        dtype = next(model.parameters()).dtype
        model(torch.zeros(1, 3, imgsz, imgsz, device=device, dtype=dtype))
    LOGGER.info(f"Validating with batch size {batch_size} at {imgsz} pixels")
    return model, stride, imgsz


def _load_export(weights, device, imgsz, batch_size, amp, dnn):
    """An export (DetectMultiBackend), its stride, image size, batch size and whether batches may be rectangular:
    YOLOv5's rule, batch 1 and square (TorchScript: any batch), unless the export's shapes are dynamic."""
    model = DetectMultiBackend(weights, device=device, dnn=dnn, amp=amp)
    imgsz = check_img_size(imgsz, model.stride)
    if not model.dynamic:
        batch_size = model.static_shape[0] or (batch_size if model.jit else 1)
        LOGGER.info(f"Forcing --batch-size {batch_size} square inference ({batch_size},3,{imgsz},{imgsz}) for "
                    "non-PyTorch models (export with --dynamic for the .pt's rectangular batches)")
        model.check_shape((batch_size, 3, imgsz, imgsz))
    model.warmup(imgsz=(batch_size, 3, imgsz, imgsz))
    return model, model.stride, imgsz, batch_size, model.dynamic


def _validation_model(model, precision):
    """The network to validate a training model with: a copy with every Conv's BatchNorm folded in, as YOLOv5 deploys
    it (the EMA that goes on training stays untouched), in the precision's memory format."""
    if unfused_convs(model):
        model = fuse_convs(deepcopy(model))
    return precision.model(model.eval())


def _check_classes(model, num_classes, weights):
    model_classes = getattr(model, "nc", None)
    if model_classes is not None and int(model_classes) != num_classes:
        raise ValueError(f"{weights} ({model_classes} classes) was trained on a different dataset than --data "
                         f"({num_classes} classes). Pass --weights and --data that were trained together.")


def _names(model, data, num_classes, single_cls):
    names = getattr(model, "names", None) or getattr(getattr(model, "module", None), "names", None)
    names = names or data.get("names") or {i: f"class{i}" for i in range(num_classes)}
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
    return {0: "item"} if single_cls and len(names) != 1 else names


@dataclass
class _Setup:
    """What one validation runs on: the network, where and in which precision, its batches, where files go."""

    model: object
    device: torch.device
    precision: Precision
    half: bool  # fp16 weights and inputs (CUDA)
    data: dict
    dataloader: object
    batch_size: int
    imgsz: int


def _set_up_training(model, amp, data, dataloader, batch_size, imgsz):
    """train.py's call: its model, validated as a BN-folded copy, and its loader."""
    device = next(model.parameters()).device
    half = next(model.parameters()).dtype == torch.float16
    precision = select_precision(device, amp=amp and not half)
    return _Setup(_validation_model(model, precision), device, precision, half, data, dataloader, batch_size, imgsz)


def _set_up_standalone(data, weights, device, batch_size, imgsz, half, amp, dnn, task, workers, single_cls):
    """val.py's own run: load the weights (or an export) and the dataset, and build the loader of the task's split."""
    half = half and device.type == "cuda"  # fp16 is for CUDA only, as in YOLOv5
    precision = select_precision(device, amp=amp and not half)
    if weights is None:
        raise ValueError("val.run() needs weights= (a .pt path or a list of them) or model=")
    if rect_ok := is_pytorch_weights(weights):
        model, stride, imgsz = _load_model(weights, device, half, imgsz, batch_size)
        precision.model(model)
    else:  # an export: its own runtime on fp32 inputs, one call per batch
        model, stride, imgsz, batch_size, rect_ok = _load_export(weights, device, imgsz, batch_size, amp, dnn)
        half, precision = False, Precision(device.type)
    data = check_dataset(data)
    num_classes = 1 if single_cls else int(data["nc"])
    if not single_cls:
        _check_classes(model, num_classes, weights)
    pad, rect = (0.0, False) if task == "speed" else (0.5, rect_ok)  # rectangular batches: .pt, dynamic exports
    split = task if task in SPLITS else "val"
    if not data.get(split):
        raise ValueError(f"--task {split}: the dataset YAML has no '{split}:' images; add them or pick another")
    dataloader = create_dataloader(data[split], imgsz, batch_size, stride, single_cls, pad=pad, rect=rect,
                                   workers=workers, prefix=colorstr(f"{split}: "), nc=num_classes)[0]
    return _Setup(model, device, precision, half, data, dataloader, batch_size, imgsz)


def _match_batch(images, targets, paths, shapes, predictions, statistics, outputs, single_cls):
    """Match each image's predictions to its labels, in the original image's pixels, and hand both to `outputs`.

    targets (n, 6) [image index, cls, x, y, w, h] in letterboxed pixels; predictions: NMS output, one per image."""
    for index, image_predictions in enumerate(predictions):
        letterboxed_shape, (original_shape, ratio_pad) = images[index].shape[1:], shapes[index]
        labels = labels_native(targets[targets[:, 0] == index, 1:], letterboxed_shape, original_shape, ratio_pad)
        path = Path(paths[index])
        outputs.add_labels(path, original_shape, labels)
        if single_cls:
            image_predictions[:, 5] = 0
        in_original = predictions_native(image_predictions, letterboxed_shape, original_shape, ratio_pad)
        statistics.add_image(in_original, labels)
        if len(image_predictions):
            outputs.add_predictions(image_predictions, in_original, path, original_shape, images[index])


def _forward(setup, images, augment, with_train_out):
    """(decoded predictions, the raw maps for the loss or None) of one batch, in the set-up's precision."""
    if with_train_out:
        return setup.precision.infer(setup.model, images)
    # the decoded boxes only: the raw maps would be joined across inference chunks for nothing
    return setup.precision.infer(lambda x: setup.model(x, augment=augment)[0], images), None


def _validate_batches(setup, nms, statistics, outputs, compute_loss, augment, save_hybrid, single_cls):
    """Run every batch (pre-process, inference, loss, NMS, matching); the summed (box, obj, cls) loss and the three
    stopwatches (pre-process, inference, NMS)."""
    device, precision = setup.device, setup.precision
    timers = Profile(device=device), Profile(device=device), Profile(device=device)
    loss = torch.zeros(3, device=device)
    batches = tqdm(setup.dataloader, desc=HEADER, bar_format=TQDM_BAR_FORMAT)
    for batch_index, (images, targets, paths, shapes) in enumerate(batches):
        with timers[0]:
            if device.type != "cpu":
                images = images.to(device, non_blocking=True)
                targets = targets.to(device)
            images = precision.batch(images)  # the uint8 batch takes the memory format: one cheap copy
            images = images.half() if setup.half else images.to(precision.input_dtype)
            images /= 255
            num_images, _, height, width = images.shape
        with timers[1]:
            predictions, train_out = _forward(setup, images, augment, with_train_out=bool(compute_loss))
        with precision.small_ops():  # loss, NMS and matching: thousands of tiny ops, see utils/precision.py
            if compute_loss:
                loss += compute_loss(train_out, targets)[1]  # box, obj, cls
            targets[:, 2:] *= torch.tensor((width, height, width, height), device=targets.device)  # to pixels
            hybrid_labels = [targets[targets[:, 0] == i, 1:] for i in range(num_images)] if save_hybrid else []
            with timers[2]:
                predictions = nms(predictions, labels=hybrid_labels)
            _match_batch(images, targets, paths, shapes, predictions, statistics, outputs, single_cls)
            outputs.end_batch(batch_index, images, targets, paths, shapes, predictions)
    return loss, timers


def _log_metrics(metrics, names, images_seen, num_classes, per_class, split):
    """The 'all' row (P, R, mAP50, mAP50-95) and, with per_class, one row per class with labels."""
    counts = metrics.label_counts
    LOGGER.info(ROW_FORMAT % ("all", images_seen, counts.sum(), metrics.mean_precision, metrics.mean_recall,
                              metrics.map50, metrics.map))
    if counts.sum() == 0:
        LOGGER.warning(f"WARNING ⚠️ no labels found in {split} set, can not compute metrics without labels")
    if per_class and num_classes > 1 and len(metrics.classes):
        for i, c in enumerate(metrics.classes):
            LOGGER.info(ROW_FORMAT % (names.get(c, c), images_seen, counts[c], metrics.precision[i], metrics.recall[i],
                                      metrics.ap50[i], metrics.ap[i]))


@smart_inference_mode()
def run(
        data,
        weights=None,  # model.pt path(s)
        batch_size=32,
        imgsz=640,  # inference size (pixels)
        conf_thres=0.001,
        iou_thres=0.6,  # NMS IoU threshold
        max_det=300,  # detections per image
        task="val",  # train, val, test, speed or study
        device="",  # cuda device, i.e. 0 or 0,1,2,3 or cpu
        workers=8,  # max dataloader workers
        single_cls=False,  # treat as single-class dataset
        augment=False,  # augmented (test-time) inference
        verbose=False,  # per-class rows
        save_txt=False,  # predictions to labels/*.txt
        save_hybrid=False,  # labels plus predictions to *.txt
        save_conf=False,  # confidences in --save-txt labels
        save_json=False,  # COCO results JSON
        project=ROOT / "runs/val",
        name="exp",
        exist_ok=False,
        half=True,  # fp16 weights on CUDA (loaded weights only; a passed model keeps its own dtype)
        amp=True,  # autocast: bf16 on CPUs with native bf16, fp16 on CUDA; False: fp32 (YOLOv5's figures exactly)
        dnn=False,  # run .onnx weights with OpenCV DNN instead of ONNX Runtime
        model=None,
        dataloader=None,
        save_dir=Path(""),
        plots=True,
        compute_loss=None,
        callbacks=None,  # {'on_val_image_end' | 'on_val_batch_end' | 'on_val_end': callable}
):
    """Validate; returns ((P, R, mAP@0.5, mAP@0.5:0.95, box, obj, cls loss), per-class mAP@0.5:0.95 (nc,),
    (pre-process, inference, NMS) milliseconds per image). With plots, the figures are drawn on a background thread
    while validation goes on (the confusion matrix in a forked process, beside the curves), and are all written when
    run() returns."""
    training = model is not None
    if training:
        setup = _set_up_training(model, amp, data, dataloader, batch_size, imgsz)
    else:
        device = select_device(device, batch_size=batch_size)
        save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
        (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
        setup = _set_up_standalone(data, weights, device, batch_size, imgsz, half, amp, dnn, task, workers, single_cls)
    setup.model.eval()
    if setup.precision.tune_cpu:
        retain_freed_memory()
    is_coco = validates_on_coco(setup.data)
    num_classes = 1 if single_cls else int(setup.data["nc"])
    names = _names(setup.model, setup.data, num_classes, single_cls)
    class_map = coco80_to_coco91_class() if is_coco else list(range(1000))
    nms = partial(non_max_suppression, conf_thres=conf_thres, iou_thres=iou_thres, multi_label=True,
                  agnostic=single_cls, max_det=max_det)
    with BackgroundPlots(enabled=plots) as drawer:
        drawer.submit(warm_up)  # matplotlib's import and fonts, paid while the batches run
        outputs = ImageOutputs(save_dir, names, class_map, save_txt, save_conf, save_json, drawer, callbacks)
        statistics = MatchingStatistics(setup.device, ConfusionMatrix(nc=num_classes) if plots else None)
        loss, timers = _validate_batches(setup, nms, statistics, outputs, compute_loss, augment, save_hybrid,
                                         single_cls)
        if plots:
            drawer.submit_forked(plot_confusion_matrix, statistics.confusion_matrix.matrix.copy(), num_classes,
                                 save_dir=save_dir, names=list(names.values()))
        metrics = statistics.class_metrics(num_classes, names, plot=plots, save_dir=save_dir, draw=drawer.submit)
        seen = statistics.images_seen
        split = task if task in SPLITS else "val"
        _log_metrics(metrics, names, seen, num_classes, verbose or (num_classes < 50 and not training), split)
        speeds = tuple(timer.t / max(seen, 1) * 1e3 for timer in timers)  # ms per image
        if not training:
            shape = (setup.batch_size, 3, setup.imgsz, setup.imgsz)
            LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % speeds)
        if plots:
            call_hook(callbacks, "on_val_end", metrics.label_counts, metrics.true_positives,
                      metrics.false_positives, metrics.precision, metrics.recall, metrics.f1, metrics.ap, metrics.ap50,
                      metrics.classes, statistics.confusion_matrix)
        if save_json and len(outputs.json_rows):
            _replace_with_coco_map(metrics, outputs, weights, setup, save_dir, is_coco)

    if not training:
        setup.model.float()
        saved = f"\n{len(list(save_dir.glob('labels/*.txt')))} labels saved to {save_dir / 'labels'}" if save_txt \
            else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{saved}")
    losses = (loss.cpu() / max(len(setup.dataloader), 1)).tolist()
    results = (metrics.mean_precision, metrics.mean_recall, metrics.map50, metrics.map, *losses)
    return results, metrics.per_class_map(num_classes), speeds


def _replace_with_coco_map(metrics, outputs, weights, setup, save_dir, is_coco):
    """Evaluate the COCO results JSON; YOLOv5 reports pycocotools' mAPs in place of its own when it has them."""
    coco_map = evaluate_results(outputs.json_rows, weights, setup.data, save_dir, outputs.ground_truth, is_coco,
                                setup.dataloader)
    if coco_map is not None:
        LOGGER.info(f"mAP@0.5:0.95 val.py {metrics.map:.4f}, pycocotools {coco_map[0]:.4f}; "
                    f"mAP@0.5 val.py {metrics.map50:.4f}, pycocotools {coco_map[1]:.4f}")
        metrics.map, metrics.map50 = coco_map


def parse_opt(argv=None):
    parser = ArgumentParser(description="Validate a YOLOv5 model on a detection dataset")
    parser.add_argument("--data", type=str, default=ROOT / "data/coco128.yaml", help="dataset.yaml path")
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt", help="model path(s)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    parser.add_argument("--task", default="val", help="train, val, test, speed or study")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    parser.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    parser.add_argument("--augment", action="store_true", help="augmented inference")
    parser.add_argument("--verbose", action="store_true", help="report mAP by class")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file")
    parser.add_argument("--project", default=ROOT / "runs/val", help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="autocast: bf16 on CPUs with native bf16, fp16 on CUDA (--no-amp: fp32, YOLOv5's figures)")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    opt = parser.parse_args(argv)
    opt.save_json |= str(opt.data).endswith("coco.yaml")
    opt.save_txt |= opt.save_hybrid
    LOGGER.info(f"{colorstr('val: ')}" + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    return opt


def main(opt):
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:  # https://github.com/ultralytics/yolov5/issues/1466
            LOGGER.warning(f"WARNING ⚠️ confidence threshold {opt.conf_thres} > 0.001 produces invalid results")
        if opt.save_hybrid:
            LOGGER.warning("WARNING ⚠️ --save-hybrid will return high mAP from hybrid labels, not from predictions")
        return run(**vars(opt))

    weights = opt.weights if isinstance(opt.weights, list) else [opt.weights]
    opt.half = torch.cuda.is_available() and opt.device != "cpu"  # fp16 for the fastest results
    if opt.task == "speed":
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
        for opt.weights in weights:
            run(**vars(opt), plots=False)
    elif opt.task == "study":  # mAP and speed against image size for each weights file
        files = []
        for opt.weights in weights:
            file = Path(f"study_{Path(opt.data).stem}_{Path(opt.weights).stem}.txt")
            rows = []
            for opt.imgsz in STUDY_SIZES:
                LOGGER.info(f"\nRunning {file} --imgsz {opt.imgsz}...")
                results, _, times = run(**vars(opt), plots=False)
                rows.append([opt.imgsz, *results, *times])
            np.savetxt(file, rows, fmt="%10.4g")  # imgsz, P, R, mAP50, mAP, 3 losses, 3 speeds (ms)
            files.append(file)
        plot_val_study(files, Path("study.png"))
        LOGGER.info(f"Study results: {', '.join(map(str, files))} and study.png")
    else:
        raise ValueError(f"--task {opt.task} is not one of train, val, test, speed, study")


if __name__ == "__main__":
    run_cli(main, parse_opt())
