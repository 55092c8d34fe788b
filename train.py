"""Train a YOLOv5 detector on a YOLO-format dataset, as Ultralytics YOLOv5's train.py does.

Usage:
    python train.py --data coco128.yaml --weights yolov5s.pt --img 640             # from pretrained weights
    python train.py --data coco128.yaml --cfg yolov5s.yaml --weights '' --img 640  # from scratch
    python train.py --resume                                                       # continue the latest run
    python -m torch.distributed.run --nproc_per_node 2 train.py --data ... --device 0,1   # DDP
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim import lr_scheduler

import val as validate
from models.experimental import attempt_load
from utils.autoanchor import check_anchors
from utils.autobatch import check_train_batch_size
from utils.cli import ArgumentParser, run_cli
from utils.coco import validates_on_coco
from utils.dataset_config import check_dataset
from utils.device import select_device
from utils.distributed import (
    LOCAL_RANK,
    RANK,
    WORLD_SIZE,
    init_distributed,
    is_main,
    teardown_distributed,
    torch_distributed_zero_first,
    wrap_parallel,
)
from utils.ema import ModelEMA, de_parallel
from utils.evolve.runner import run_evolution
from utils.files import ROOT
from utils.hyp import load_hyp, scale_hyp_to_model
from utils.log import LOGGER, colorstr
from utils.loss import ComputeLoss
from utils.metrics import fitness
from utils.model_utils import check_img_size
from utils.optim import OPTIMIZERS, smart_optimizer
from utils.plots import plot_images, plot_labels, plot_results
from utils.precision import select_precision
from utils.results import ResultsWriter
from utils.sampling import labels_to_class_weights, resample_image_weights
from utils.schedule import lr_lambda, scaled_weight_decay, warmup_iterations
from utils.train.checkpoints import finish_checkpoints, make_checkpoint, restore_training_state, save_run_checkpoints
from utils.train.loop import EarlyStopping, EpochRunner
from utils.train.options import add_legacy_arguments, apply_legacy_flags, check_train_options
from utils.train.setup import (
    build_dataloaders,
    build_model,
    compiled_forward,
    freeze_layers,
    init_seeds,
    prepare_run_folder,
)

EMA_ATTRIBUTES = ["yaml", "nc", "hyp", "names", "stride", "class_weights"]


def train(hyp, opt, device, callbacks=None):
    """Train one model as `opt` describes; returns (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls loss).

    hyp: a dict or a hyp YAML path. callbacks: optional {'on_train_batch_end': f(epoch, batch_index),
    'on_fit_epoch_end': f(epoch, results_row)} for code that drives train() from Python; an exception raised there
    ends the training (--evolve-prune stops a candidate so). opt.val_epochs (optional): 1-based epochs validated
    under --noval besides the last one.
    """
    callbacks = callbacks or {}
    save_dir, epochs, batch_size = Path(opt.save_dir), opt.epochs, opt.batch_size
    resume, noval, nosave, evolve = opt.resume, opt.noval, opt.nosave, opt.evolve
    val_epochs = set(getattr(opt, "val_epochs", None) or ())
    plots = not evolve and not opt.noplots
    verbose = not evolve  # an evolution logs one line per generation, not every batch

    # ---- Directories, hyperparameters, seeds
    hyp = load_hyp(hyp)
    if verbose:
        LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    opt.hyp = dict(hyp)  # opt.yaml and checkpoints carry the hyps themselves, so a resume needs no hyp file
    weights_dir, last, best = prepare_run_folder(save_dir, hyp, opt)
    init_seeds(opt.seed + 1 + RANK, deterministic=True)

    # ---- Dataset description
    with torch_distributed_zero_first(LOCAL_RANK):
        data_dict = check_dataset(opt.data)
    nc = 1 if opt.single_cls else int(data_dict["nc"])
    names = {0: "item"} if opt.single_cls and len(data_dict["names"]) != 1 else data_dict["names"]

    # ---- Model
    model, ckpt = build_model(opt, hyp, nc, device, resume)
    freeze_layers(model, opt.freeze)
    stride = max(int(model.stride.max()), 32)
    imgsz = check_img_size(opt.imgsz, stride, floor=stride * 2)
    if batch_size == -1:  # AutoBatch: one process only (main refuses it under DDP)
        batch_size = opt.batch_size = check_train_batch_size(model, imgsz, amp=opt.amp)
    precision = select_precision(device, amp=opt.amp)
    precision.model(model)
    LOGGER.info(f"{colorstr('precision: ')}{precision.name}{', channels_last' if precision.channels_last else ''}")

    # ---- Optimizer: gradients accumulate to a nominal batch of 64
    weight_decay = scaled_weight_decay(hyp["weight_decay"], batch_size)
    optimizer = smart_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], weight_decay)

    # ---- Schedule, EMA, resume
    lf = lr_lambda(hyp["lrf"], epochs, opt.cos_lr)
    scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    ema = ModelEMA(model) if is_main() else None
    best_fitness, start_epoch = 0.0, 0
    if ckpt is not None and resume:
        best_fitness, start_epoch, epochs = restore_training_state(ckpt, optimizer, ema, opt.weights, epochs)
    del ckpt

    # ---- Data
    train_loader, dataset, val_loader = build_dataloaders(opt, data_dict, hyp, imgsz, batch_size, stride, nc)
    if is_main() and not resume:
        if not opt.noautoanchor:
            check_anchors(dataset, model=model, thr=hyp["anchor_t"], imgsz=imgsz)
        model.half().float()  # anchors at fp16 precision, as a saved checkpoint will hold them
        if plots:
            plot_labels(np.concatenate(dataset.labels, 0), names, save_dir)
    # wrapped after autoanchor, so that DDP broadcasts rank 0's anchors to every rank
    forward = compiled_forward(wrap_parallel(model, device, opt.sync_bn), opt.compile)

    # ---- Model attributes scaled to this model and image size
    num_layers = de_parallel(model).model[-1].nl
    hyp = scale_hyp_to_model(hyp, num_layers, nc, imgsz, opt.label_smoothing)
    model.nc, model.hyp, model.names = nc, hyp, names
    model.class_weights = labels_to_class_weights(dataset.labels, nc).to(device) * nc

    # ---- Training loop
    num_batches = len(train_loader)
    warmup_iters = warmup_iterations(hyp["warmup_epochs"], num_batches)
    scheduler.last_epoch = start_epoch - 1  # the LR schedule continues where a resumed run stopped
    stopper, stop = EarlyStopping(patience=opt.patience), False
    compute_loss = ComputeLoss(model)
    maps, results = np.zeros(nc), (0.0,) * 7
    writer = ResultsWriter(save_dir, tensorboard=verbose) if is_main() else None
    if writer:
        writer.truncate(start_epoch - 1)  # on resume, rows written after the checkpoint would repeat epochs
    runner = EpochRunner(forward, model, optimizer, ema, compute_loss, precision, hyp, opt, device, imgsz, stride,
                         warmup_iters, lf, epochs, batch_size, verbose=verbose,
                         on_batch_end=_batch_end_hook(save_dir, names, plots, callbacks))
    LOGGER.info(f"Image sizes {imgsz} train, {getattr(opt, 'val_imgsz', None) or imgsz} val\n"
                f"Using {train_loader.num_workers * WORLD_SIZE} dataloader workers\n"
                f"Logging results to {colorstr('bold', save_dir)}\nStarting training for {epochs} epochs...")
    t0, epoch = time.time(), start_epoch - 1
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            if opt.image_weights:
                resample_image_weights(dataset, model.class_weights, maps, nc)
            hint = f"The last good checkpoint is {last}. " if last.exists() else ""
            mean_loss = runner.run(train_loader, epoch, checkpoint_hint=hint)
            lrs = [group["lr"] for group in optimizer.param_groups]
            scheduler.step()

            if is_main():  # validate, log and save
                final_epoch = epoch + 1 == epochs or stopper.possible_stop
                ema.update_attr(model, include=EMA_ATTRIBUTES)
                if not noval or final_epoch or epoch + 1 in val_epochs:
                    results, maps, _ = validate.run(
                        data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz, amp=opt.amp,
                        model=ema.ema, single_cls=opt.single_cls, dataloader=val_loader, save_dir=save_dir,
                        plots=False, compute_loss=compute_loss, verbose=False)
                fi = float(fitness(np.array(results).reshape(1, -1))[0])
                stop = stopper(epoch=epoch, fitness=fi)
                is_best, best_fitness = fi >= best_fitness, max(best_fitness, fi)
                row = list(mean_loss) + list(results) + lrs
                writer.log(epoch, row)
                if "on_fit_epoch_end" in callbacks:
                    callbacks["on_fit_epoch_end"](epoch, row)
                if not nosave or (final_epoch and not evolve):
                    ckpt = make_checkpoint(epoch, best_fitness, model, ema, optimizer, opt)
                    save_run_checkpoints(ckpt, weights_dir, is_best, epoch, opt.save_period)
                    del ckpt
            if _broadcast_stop(stop):
                break
    finally:
        if writer:
            writer.close()

    # ---- End: validate best.pt with plots, strip optimizers
    if is_main():
        LOGGER.info(f"\n{epoch - start_epoch + 1} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
        finish_checkpoints(last, best)
        if best.exists():
            LOGGER.info(f"\nValidating {best}...")
            is_coco = validates_on_coco(data_dict)
            results, _, _ = validate.run(
                data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz, amp=opt.amp,
                model=attempt_load(best, device), iou_thres=0.65 if is_coco else 0.60, single_cls=opt.single_cls,
                dataloader=val_loader, save_dir=save_dir, save_json=is_coco, verbose=True, plots=plots,
                compute_loss=compute_loss)
        if plots:
            plot_results(file=save_dir / "results.csv")
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return tuple(float(x) for x in results)


def quiet_train(hyp, opt, device, callbacks=None):
    """train() logging warnings only: one evolve generation prints its summary line, not the whole run's log."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        return train(hyp, opt, device, callbacks)
    finally:
        LOGGER.setLevel(level)


def _batch_end_hook(save_dir, names, plots, callbacks):
    """After each batch: train_batch0..2.jpg on the first three iterations, then the caller's callback."""
    user_hook = callbacks.get("on_train_batch_end")

    def hook(epoch, i, iteration, images, targets, paths):
        if plots and iteration < 3 and is_main():
            plot_images(images, targets, paths, save_dir / f"train_batch{iteration}.jpg", names=names)
        if user_hook is not None:
            user_hook(epoch, i)

    return hook


def _broadcast_stop(stop):
    """Early stopping decided by rank 0, shared with every DDP rank."""
    if RANK == -1:
        return stop
    flag = [stop if RANK == 0 else None]
    dist.broadcast_object_list(flag, 0)
    return flag[0]


def parse_opt(known=False):
    """train.py's command line: YOLOv5 v7's flags, this project's additions and the 5.x flags it maps."""
    parser = ArgumentParser()
    parser.add_argument("--weights", type=str, default=str(ROOT / "yolov5s.pt"), help="initial weights path")
    parser.add_argument("--cfg", type=str, default="", help="model.yaml path")
    parser.add_argument("--data", type=str, default=str(ROOT / "data/coco128.yaml"), help="dataset.yaml path")
    parser.add_argument("--hyp", type=str, default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="hyps path")
    parser.add_argument("--epochs", type=int, default=100, help="total training epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs, -1 for autobatch")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, nargs="+", default=[640],
                        help="train, val image size (pixels); a second value is the 5.x validation size")
    parser.add_argument("--rect", action="store_true", help="rectangular training")
    parser.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training")
    parser.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    parser.add_argument("--noval", action="store_true", help="only validate final epoch")
    parser.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    parser.add_argument("--noplots", action="store_true", help="save no plot files")
    parser.add_argument("--evolve", type=int, nargs="?", const=300, help="evolve hyperparameters for x generations")
    parser.add_argument("--bucket", type=str, default="", help="gsutil bucket (not supported: see the notice)")
    parser.add_argument("--cache", type=str, nargs="?", const="ram", help="image --cache ram/disk")
    parser.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    parser.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    parser.add_argument("--optimizer", type=str, choices=OPTIMIZERS, default="SGD", help="optimizer")
    parser.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm, only available in DDP mode")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers (per RANK in DDP mode)")
    parser.add_argument("--project", default=str(ROOT / "runs/train"), help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--quad", action="store_true", help="quad dataloader")
    parser.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="Label smoothing epsilon")
    parser.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    parser.add_argument("--freeze", nargs="+", type=int, default=[0], help="Freeze layers: backbone=10, first3=0 1 2")
    parser.add_argument("--save-period", type=int, default=-1, help="Save checkpoint every x epochs (disabled if < 1)")
    parser.add_argument("--seed", type=int, default=0, help="Global training seed")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="Automatic DDP Multi-GPU argument")
    # beyond YOLOv5: precision and speed
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="mixed precision: fp16 AMP on CUDA, bf16 autocast on CPUs with native bf16 (--no-amp: fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    # beyond YOLOv5: evolution
    parser.add_argument("--evolve-method", choices=("mutation", "population", "gp", "tpe", "cmaes"),
                        default="mutation", help="hyperparameter search method for --evolve")
    parser.add_argument("--evolve-population", type=str, default=None, help="folder of seed hyp YAMLs (population)")
    parser.add_argument("--resume-evolve", type=str, default=None, help="evolve_population.yaml to continue")
    parser.add_argument("--ray", action="store_true", help="run --evolve candidates as Ray tasks")
    parser.add_argument("--ray-address", type=str, default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--evolve-verify", type=int, default=0,
                        help="retrain the best rows on K unseen seeds to pick, the pick on K more to report its gain")
    parser.add_argument("--evolve-verify-epochs", type=int, default=None,
                        help="epochs of each --evolve-verify training (default: --epochs)")
    parser.add_argument("--evolve-prune", action="store_true", help="stop weak --evolve candidates early (ASHA)")
    parser.add_argument("--evolve-prune-min-epochs", type=int, default=1, help="first rung R: epochs R, R*eta, ...")
    parser.add_argument("--evolve-prune-eta", type=int, default=3, help="the best 1/eta of each rung go on")
    parser.add_argument("--evolve-claim-grace", type=float, default=5.0,
                        help="minutes without a heartbeat after which a candidate in flight counts as lost and is redone")
    add_legacy_arguments(parser)
    return parser.parse_known_args()[0] if known else parser.parse_args()


def main(opt, callbacks=None):
    """Check options, pick the device (joining DDP under torch.distributed.run), then train or evolve."""
    if is_main():
        LOGGER.info(colorstr("train: ") + ", ".join(f"{k}={v}" for k, v in vars(opt).items()))
    opt = check_train_options(apply_legacy_flags(opt))
    device = select_device(opt.device, batch_size=opt.batch_size)
    if LOCAL_RANK != -1:
        for flag, value in (("--image-weights", opt.image_weights), ("--evolve", opt.evolve),
                            ("AutoBatch with --batch-size -1", opt.batch_size == -1)):
            if value:
                raise ValueError(f"{flag} is not compatible with DDP training")
        if opt.batch_size % WORLD_SIZE:
            raise ValueError(f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE {WORLD_SIZE}")
        device = init_distributed(device)
        shared = [opt.save_dir]
        dist.broadcast_object_list(shared, 0)  # one run folder for all ranks: rank 0's
        opt.save_dir = shared[0]
    try:
        if not opt.evolve:
            return train(opt.hyp, opt, device, callbacks)
        return run_evolution(opt, device, quiet_train)
    finally:
        teardown_distributed()


def run(**kwargs):
    """Train from Python: train.run(data='coco128.yaml', imgsz=320, weights='yolov5n.pt'); returns opt."""
    opt = parse_opt(True)
    for k, v in kwargs.items():
        setattr(opt, k, v)
    main(opt)
    return opt


if __name__ == "__main__":
    run_cli(main, parse_opt())
