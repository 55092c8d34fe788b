"""Building what one training run needs: its folder, seeds, dataset description, model (frozen layers, image and
batch size, precision, anchors, compiled forward) and data loaders.

Image sizes live in utils/model_utils.py, class and image weights in utils/sampling.py, the hyp scaling in
utils/hyp.py and the DDP wrapper in utils/distributed.py."""

import os
import random
from pathlib import Path

import numpy as np
import torch
import yaml

from models.yolo import Model
from utils.autoanchor import check_anchors
from utils.autobatch import check_train_batch_size
from utils.checkpoint import load_checkpoint
from utils.dataloaders import create_dataloader
from utils.dataset_config import check_dataset
from utils.distributed import LOCAL_RANK, RANK, WORLD_SIZE, is_main, torch_distributed_zero_first
from utils.downloads import attempt_download
from utils.files import atomic_write_text
from utils.log import LOGGER, colorstr
from utils.model_utils import check_img_size, intersect_dicts
from utils.precision import select_precision
from utils.reuse import replayable


def start_run(hyp, opt, verbose=True):
    """Log the hyps, keep them in opt.hyp (opt.yaml and checkpoints carry them, so a resume needs no hyp file), write
    the run folder and seed every generator. Returns (weights dir, last.pt, best.pt)."""
    if verbose:
        LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    opt.hyp = dict(hyp)
    paths = prepare_run_folder(opt.save_dir, hyp, opt)
    init_seeds(opt.seed + 1 + RANK, deterministic=True)
    return paths


def read_dataset(opt):
    """(data dict, nc, names) of --data; --single-cls trains one class, named 'item' unless the dataset names one."""
    with torch_distributed_zero_first(LOCAL_RANK):
        data_dict = check_dataset(opt.data)
    nc = 1 if opt.single_cls else int(data_dict["nc"])
    names = {0: "item"} if opt.single_cls and len(data_dict["names"]) != 1 else data_dict["names"]
    return data_dict, nc, names


def prepare_run_folder(save_dir, hyp, opt):
    """runs/train/expN/weights and, in the main process, hyp.yaml and opt.yaml. Returns (weights dir, last, best)."""
    save_dir = Path(save_dir)
    weights_dir = save_dir / "weights"
    if is_main():
        weights_dir.mkdir(parents=True, exist_ok=True)
        if not opt.evolve:
            atomic_write_text(save_dir / "hyp.yaml", yaml.safe_dump(hyp, sort_keys=False))
            atomic_write_text(save_dir / "opt.yaml", yaml.safe_dump(_plain(vars(opt)), sort_keys=False))
    return weights_dir, weights_dir / "last.pt", weights_dir / "best.pt"


def _plain(options):
    """Options as YAML-safe values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}


def init_seeds(seed=0, deterministic=False):
    """Seed Python, NumPy and torch; with `deterministic`, deterministic algorithms where torch has them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, on ops with no such version
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)


def build_model(opt, hyp, nc, device, resume=False, cache=None):
    """The DetectionModel from --cfg or --weights. Returns (model, checkpoint dict or None).

    From weights, every parameter whose name and shape match is transferred, except the anchors when a cfg or
    hyp anchors redefines them (a fresh run, not a resume). cache: a reuse.TrainingCache; a fresh run then gets a
    copy of the model it built before from the same cfg, weights, classes and anchors (and no checkpoint).
    """
    weights, cfg = str(opt.weights or ""), opt.cfg
    if weights and not weights.endswith(".pt"):
        raise ValueError(f"--weights {weights} is not a .pt checkpoint")
    if cache is not None and not resume:
        key = (str(cfg), weights, nc, repr(hyp.get("anchors")), str(device))
        return cache.model(key, lambda: _model_from(cfg, weights, nc, hyp, device, resume)[0]), None
    return _model_from(cfg, weights, nc, hyp, device, resume)


def _model_from(cfg, weights, nc, hyp, device, resume):
    """build_model's (model, checkpoint or None), built from the files."""
    if not weights:
        return Model(cfg, ch=3, nc=nc, anchors=hyp.get("anchors")).to(device), None
    with torch_distributed_zero_first(LOCAL_RANK):
        ckpt = load_checkpoint(attempt_download(weights))
    model = Model(cfg or ckpt["model"].yaml, ch=3, nc=nc, anchors=hyp.get("anchors")).to(device)
    exclude = ["anchor"] if (cfg or hyp.get("anchors")) and not resume else []
    state = intersect_dicts(ckpt["model"].float().state_dict(), model.state_dict(), exclude=exclude)
    model.load_state_dict(state, strict=False)
    LOGGER.info(f"Transferred {len(state)}/{len(model.state_dict())} items from {weights}")
    return model, ckpt


def freeze_layers(model, freeze):
    """--freeze N (first N layers) or --freeze i j k (those layers): their parameters get no gradient."""
    freeze = list(freeze or [0])
    prefixes = [f"model.{x}." for x in (freeze if len(freeze) > 1 else range(freeze[0]))]
    for name, p in model.named_parameters():
        p.requires_grad = True
        if any(prefix in name for prefix in prefixes):
            LOGGER.info(f"freezing {name}")
            p.requires_grad = False


def fit_run_to_model(model, opt, device):
    """Freeze the --freeze layers, round the image size to the model's stride, run AutoBatch for --batch-size -1
    (setting opt.batch_size) and put the model in the device's precision. Returns (imgsz, stride, batch size,
    precision)."""
    freeze_layers(model, opt.freeze)
    stride = max(int(model.stride.max()), 32)
    imgsz = check_img_size(opt.imgsz, stride, floor=stride * 2)
    if opt.batch_size == -1:  # AutoBatch: one process only (main refuses it under DDP)
        opt.batch_size = check_train_batch_size(model, imgsz, amp=opt.amp)
    precision = select_precision(device, amp=opt.amp)
    precision.model(model)
    LOGGER.info(f"{colorstr('precision: ')}{precision.name}{', channels_last' if precision.channels_last else ''}")
    return imgsz, stride, opt.batch_size, precision


def settle_anchors(model, dataset, autoanchor, anchor_t, imgsz):
    """A new run's anchors: AutoAnchor's check (unless --noautoanchor), then rounded to fp16 as a checkpoint will hold
    them."""
    if autoanchor:
        check_anchors(dataset, model=model, thr=anchor_t, imgsz=imgsz)
    model.half().float()


def build_dataloaders(opt, data_dict, hyp, imgsz, batch_size, stride, nc, cache=None):
    """(train loader, train dataset, val loader or None): the val loader is built in the main process only.

    The val loader replays its batches from memory after its first pass when they fit (reuse.replayable). cache: a
    reuse.TrainingCache whose datasets and val loaders successive trainings share.
    """
    datasets = cache.datasets if cache is not None else None
    train_loader, dataset = create_dataloader(
        data_dict["train"], imgsz, batch_size // WORLD_SIZE, stride, opt.single_cls, hyp=hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache, rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers,
        image_weights=opt.image_weights, quad=opt.quad, prefix=colorstr("train: "), shuffle=True, seed=opt.seed,
        nc=nc, datasets=datasets)
    labels = [x for x in dataset.labels if len(x)]
    if labels:
        top = int(np.concatenate(labels, 0)[:, 0].max())
        if top >= nc:
            raise ValueError(f"label class {top} exceeds nc={nc} in {opt.data}: class labels must be 0-{nc - 1}")
    if not is_main():
        return train_loader, dataset, None
    val_imgsz = getattr(opt, "val_imgsz", None) or imgsz
    val_args = dict(path=data_dict["val"], imgsz=val_imgsz, batch_size=batch_size // WORLD_SIZE * 2, stride=stride,
                    single_cls=opt.single_cls, cache=None if opt.noval else opt.cache, rect=True, rank=-1,
                    workers=opt.workers * 2, pad=0.5, prefix=colorstr("val: "), nc=nc)

    def build_val_loader():  # unaugmented, so any hyp gives the same batches
        return replayable(create_dataloader(**val_args, hyp=hyp, datasets=datasets)[0])

    if cache is None:
        return train_loader, dataset, build_val_loader()
    return train_loader, dataset, cache.val_loader(repr(sorted(val_args.items())), build_val_loader)


class CompiledForward:
    """torch.compile(model) for the training forward; on a compile error (no C++ compiler, unsupported op) it warns
    once and runs the model eagerly from then on."""

    def __init__(self, model):
        self.model = model
        self.compiled = torch.compile(model)

    def __call__(self, images):
        if self.compiled is not None:
            try:
                return self.compiled(images)
            except Exception as e:  # compilation happens at the first call, so this is where it fails
                LOGGER.warning(f"--compile failed ({type(e).__name__}: {str(e)[:200]}): training without it")
                self.compiled = None
        return self.model(images)


def compiled_forward(model, enabled):
    """The callable that runs the training forward: a CompiledForward with --compile, else the model."""
    return CompiledForward(model) if enabled else model
