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
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.backends import DetectMultiBackend, is_pytorch_weights
from models.blocks import fuse_convs, unfused_convs
from models.experimental import attempt_load
from utils.boxes import scale_boxes, xywh2xyxy, xyxy2xywh
from utils.cli import ArgumentParser, run_cli
from utils.coco import GroundTruthJSON, coco80_to_coco91_class, evaluate, save_one_json, validates_on_coco
from utils.dataloaders import create_dataloader
from utils.dataset_config import check_dataset
from utils.device import select_device, smart_inference_mode
from utils.files import ROOT, increment_path
from utils.log import LOGGER, TQDM_BAR_FORMAT, colorstr
from utils.memory import retain_freed_memory
from utils.metrics import ConfusionMatrix, ap_per_class, iou_thresholds, process_batch
from utils.model_utils import check_img_size
from utils.nms import non_max_suppression
from utils.plot_metrics import plot_val_study
from utils.plots import output_to_target, plot_images
from utils.precision import Precision, select_precision
from utils.profiling import Profile

HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
ROW_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4
PLOTTED_BATCHES = 3  # val_batch0..2_labels/pred.jpg
STUDY_SIZES = range(256, 1536 + 128, 128)


def save_one_txt(predn, save_conf, shape, file):
    """Append detections (n, 6) [xyxy in original pixels, conf, cls] to a YOLO label file: cls xywhn [conf]."""
    gain = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]  # (w, h, w, h) of the original image
    xywhn = (xyxy2xywh(predn[:, :4].float().cpu()) / gain).tolist()
    with open(file, "a") as f:
        for (conf, cls), box in zip(predn[:, 4:6].tolist(), xywhn):
            line = (cls, *box, conf) if save_conf else (cls, *box)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def _hook(callbacks, name, *args):
    """Call callbacks[name](*args) when the caller registered one (callbacks: a dict of callables)."""
    if callbacks and callbacks.get(name) is not None:
        callbacks[name](*args)


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


def _check_classes(model, nc, weights):
    model_nc = getattr(model, "nc", None)
    if model_nc is not None and int(model_nc) != nc:
        raise ValueError(f"{weights} ({model_nc} classes) was trained on a different dataset than --data "
                         f"({nc} classes). Pass --weights and --data that were trained together.")


def _names(model, data, nc, single_cls):
    names = getattr(model, "names", None) or getattr(getattr(model, "module", None), "names", None)
    names = names or data.get("names") or {i: f"class{i}" for i in range(nc)}
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
    return {0: "item"} if single_cls and len(names) != 1 else names


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
    (pre-process, inference, NMS) milliseconds per image)."""
    training = model is not None
    if training:  # called by train.py: its model (BN folded into a copy) and loader
        device = next(model.parameters()).device
        half = next(model.parameters()).dtype == torch.float16
        precision = select_precision(device, amp=amp and not half)
        model = _validation_model(model, precision)
    else:
        device = select_device(device, batch_size=batch_size)
        half = half and device.type == "cuda"  # fp16 is for CUDA only, as in YOLOv5
        precision = select_precision(device, amp=amp and not half)
        save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
        (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
        if weights is None:
            raise ValueError("val.run() needs weights= (a .pt path or a list of them) or model=")
        if rect_ok := is_pytorch_weights(weights):
            model, stride, imgsz = _load_model(weights, device, half, imgsz, batch_size)
            precision.model(model)
        else:  # an export: its own runtime on fp32 inputs, one call per batch
            model, stride, imgsz, batch_size, rect_ok = _load_export(weights, device, imgsz, batch_size, amp, dnn)
            half, precision = False, Precision(device.type)
        data = check_dataset(data)

    model.eval()
    if precision.tune_cpu:
        retain_freed_memory()
    cuda = device.type != "cpu"
    is_coco = validates_on_coco(data)
    nc = 1 if single_cls else int(data["nc"])
    iouv = iou_thresholds(device)
    niou = iouv.numel()

    if not training:
        if not single_cls:
            _check_classes(model, nc, weights)
        pad, rect = (0.0, False) if task == "speed" else (0.5, rect_ok)  # rectangular batches: .pt, dynamic exports
        task = task if task in ("train", "val", "test") else "val"
        if not data.get(task):
            raise ValueError(f"--task {task}: the dataset YAML has no '{task}:' images; add them or pick another")
        dataloader = create_dataloader(data[task], imgsz, batch_size, stride, single_cls, pad=pad, rect=rect,
                                       workers=workers, prefix=colorstr(f"{task}: "), nc=nc)[0]

    seen = 0
    confusion_matrix = ConfusionMatrix(nc=nc)
    names = _names(model, data, nc, single_cls)
    class_map = coco80_to_coco91_class() if is_coco else list(range(1000))
    ground_truth = GroundTruthJSON(names, class_map) if save_json else None
    tp = fp = p = r = f1 = ap50 = mp = mr = map50 = map_ = 0.0
    dt = Profile(device=device), Profile(device=device), Profile(device=device)
    loss = torch.zeros(3, device=device)
    jdict, stats, ap, ap_class = [], [], [], []
    pbar = tqdm(dataloader, desc=HEADER, bar_format=TQDM_BAR_FORMAT)
    for batch_i, (im, targets, paths, shapes) in enumerate(pbar):
        with dt[0]:
            if cuda:
                im = im.to(device, non_blocking=True)
                targets = targets.to(device)
            im = precision.batch(im)  # the uint8 batch takes the memory format: one cheap copy
            im = im.half() if half else im.to(precision.input_dtype)
            im /= 255
            nb, _, height, width = im.shape

        with dt[1]:
            if compute_loss:
                preds, train_out = precision.infer(model, im)
            else:  # the decoded boxes only: the raw maps would be joined across inference chunks for nothing
                preds, train_out = precision.infer(lambda x: model(x, augment=augment)[0], im), None

        with precision.small_ops():  # loss, NMS and matching: thousands of tiny ops, see utils/precision.py
            if compute_loss:
                loss += compute_loss(train_out, targets)[1]  # box, obj, cls

            targets[:, 2:] *= torch.tensor((width, height, width, height), device=targets.device)  # to pixels
            hybrid_labels = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if save_hybrid else []
            with dt[2]:
                preds = non_max_suppression(preds, conf_thres, iou_thres, labels=hybrid_labels, multi_label=True,
                                            agnostic=single_cls, max_det=max_det)

            for si, pred in enumerate(preds):
                labels = targets[targets[:, 0] == si, 1:]  # (nl, 5) [cls, x, y, w, h] in letterboxed pixels
                nl, npr = labels.shape[0], pred.shape[0]
                path, shape = Path(paths[si]), shapes[si][0]
                correct = torch.zeros(npr, niou, dtype=torch.bool, device=device)
                seen += 1
                labelsn = torch.zeros((0, 5), device=device)
                if nl:
                    tbox = scale_boxes(im[si].shape[1:], xywh2xyxy(labels[:, 1:5]), shape, shapes[si][1])
                    labelsn = torch.cat((labels[:, 0:1], tbox), 1)  # [cls, xyxy] in original pixels
                if ground_truth is not None:
                    ground_truth.add(path, shape, labelsn)

                if npr == 0:
                    if nl:
                        stats.append((correct, *torch.zeros((2, 0), device=device), labels[:, 0]))
                        if plots:
                            confusion_matrix.process_batch(detections=None, labels=labels[:, 0])
                    continue

                if single_cls:
                    pred[:, 5] = 0
                predn = pred.clone()
                scale_boxes(im[si].shape[1:], predn[:, :4], shape, shapes[si][1])  # to original pixels
                if nl:
                    correct = process_batch(predn, labelsn, iouv)
                if plots:
                    confusion_matrix.process_batch(predn, labelsn)
                stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))

                if save_txt:
                    save_one_txt(predn, save_conf, shape, file=save_dir / "labels" / f"{path.stem}.txt")
                if save_json:
                    save_one_json(predn, jdict, path, class_map)
                _hook(callbacks, "on_val_image_end", pred, predn, path, names, im[si])

            if plots and batch_i < PLOTTED_BATCHES:
                plot_images(im, targets, paths, save_dir / f"val_batch{batch_i}_labels.jpg", names)
                plot_images(im, output_to_target(preds), paths, save_dir / f"val_batch{batch_i}_pred.jpg", names)
            _hook(callbacks, "on_val_batch_end", batch_i, im, targets, paths, shapes, preds)

    # ---- Metrics
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]  # correct, conf, pred cls, target cls
    if len(stats) and stats[0].any():
        tp, fp, p, r, f1, ap, ap_class = ap_per_class(*stats, plot=plots, save_dir=save_dir, names=names)
        ap50, ap = ap[:, 0], ap.mean(1)  # AP@0.5, AP@0.5:0.95
        mp, mr, map50, map_ = p.mean(), r.mean(), ap50.mean(), ap.mean()
    target_classes = stats[3].astype(int) if len(stats) else np.zeros(0, dtype=int)
    nt = np.bincount(target_classes, minlength=nc)

    LOGGER.info(ROW_FORMAT % ("all", seen, nt.sum(), mp, mr, map50, map_))
    if nt.sum() == 0:
        LOGGER.warning(f"WARNING ⚠️ no labels found in {task} set, can not compute metrics without labels")
    if (verbose or (nc < 50 and not training)) and nc > 1 and len(ap_class):
        for i, c in enumerate(ap_class):
            LOGGER.info(ROW_FORMAT % (names.get(c, c), seen, nt[c], p[i], r[i], ap50[i], ap[i]))

    t = tuple(x.t / max(seen, 1) * 1e3 for x in dt)  # ms per image
    if not training:
        shape = (batch_size, 3, imgsz, imgsz)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % t)

    if plots:
        confusion_matrix.plot(save_dir=save_dir, names=list(names.values()))
        _hook(callbacks, "on_val_end", nt, tp, fp, p, r, f1, ap, ap50, ap_class, confusion_matrix)

    if save_json and len(jdict):
        coco_map = _coco_eval(jdict, weights, data, save_dir, ground_truth, is_coco, dataloader)
        if coco_map is not None:
            LOGGER.info(f"mAP@0.5:0.95 val.py {map_:.4f}, pycocotools {coco_map[0]:.4f}; "
                        f"mAP@0.5 val.py {map50:.4f}, pycocotools {coco_map[1]:.4f}")
            map_, map50 = coco_map  # YOLOv5 reports the pycocotools figures when it has them

    if not training:
        model.float()
        saved = f"\n{len(list(save_dir.glob('labels/*.txt')))} labels saved to {save_dir / 'labels'}" if save_txt \
            else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{saved}")
    maps = np.zeros(nc) + map_
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    return (mp, mr, map50, map_, *(loss.cpu() / max(len(dataloader), 1)).tolist()), maps, t


def _coco_eval(jdict, weights, data, save_dir, ground_truth, is_coco, dataloader):
    """Write the COCO results JSON and evaluate it with pycocotools; (mAP, mAP50) or None."""
    import json

    stem = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem if weights else "model"
    pred_json = Path(save_dir) / f"{stem}_predictions.json"
    pred_json.parent.mkdir(parents=True, exist_ok=True)  # train.py's folder exists; a caller's may not yet
    LOGGER.info(f"\nWriting {pred_json}...")
    with open(pred_json, "w") as f:
        json.dump(jdict, f)
    coco_annotations = Path(data.get("path", "../coco")) / "annotations/instances_val2017.json"
    if is_coco and coco_annotations.exists():
        anno_json = coco_annotations
        img_ids = [int(Path(x).stem) for x in dataloader.dataset.im_files]
    else:  # no official annotation file: evaluate against the labels val.py itself used
        anno_json = Path(save_dir) / "annotations.json"
        ground_truth.save(anno_json)
        img_ids = None
    LOGGER.info(f"Evaluating pycocotools mAP with {anno_json}...")
    try:
        return evaluate(anno_json, pred_json, img_ids)
    except Exception as e:  # the validation figures above stand; only the COCO cross-check failed
        LOGGER.warning(f"WARNING ⚠️ pycocotools unable to evaluate {pred_json}: {e}")
        return None


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
