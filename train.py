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
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim import lr_scheduler

import val as validate
from models.experimental import attempt_load
from utils.cli import ArgumentParser, run_cli
from utils.coco import validates_on_coco
from utils.device import select_device
from utils.distributed import (
    LOCAL_RANK,
    RANK,
    WORLD_SIZE,
    init_distributed,
    is_main,
    teardown_distributed,
    wrap_parallel,
)
from utils.ema import ModelEMA, de_parallel
from utils.evolve.runner import run_evolution
from utils.files import ROOT
from utils.hyp import load_hyp, scale_hyp_to_model
from utils.log import LOGGER, colorstr
from utils.loss import ComputeLoss
from utils.optim import OPTIMIZERS, smart_optimizer
from utils.plots import plot_images, plot_labels, plot_results
from utils.sampling import labels_to_class_weights, resample_image_weights
from utils.schedule import lr_lambda, scaled_weight_decay, warmup_iterations
from utils.train.checkpoints import finish_checkpoints, restore_training_state
from utils.train.epoch_end import EpochEnd
from utils.train.loop import EpochRunner, EpochSettings
from utils.train.options import add_legacy_arguments, apply_legacy_flags, check_train_options
from utils.train.setup import (
    build_dataloaders,
    build_model,
    compiled_forward,
    fit_run_to_model,
    read_dataset,
    settle_anchors,
    start_run,
)


def train(hyp, opt, device, callbacks=None, cache=None):
    """Train one model as `opt` describes; returns (P, R, mAP@0.5, mAP@0.5:0.95, val box, obj, cls loss).

    hyp: a dict or a hyp YAML path. callbacks: optional {'on_train_batch_end': f(epoch, batch_index),
    'on_fit_epoch_end': f(epoch, results_row)} for code that drives train() from Python; an exception raised there
    ends the training (--evolve-prune stops a candidate so). opt.val_epochs (optional): 1-based epochs validated
    under --noval besides the last one. cache: a reuse.TrainingCache shared by successive trainings in this process
    (the --evolve loops pass one): datasets, the built model and the val batches are reused, not rebuilt.
    """
    callbacks, save_dir = callbacks or {}, Path(opt.save_dir)
    plots, verbose = not opt.evolve and not opt.noplots, not opt.evolve  # an evolution logs a line per generation

    # ---- Run folder, hyperparameters, seeds
    hyp = load_hyp(hyp)
    weights_dir, last, best = start_run(hyp, opt, verbose)

    # ---- Data: classes and names
    data_dict, nc, names = read_dataset(opt)

    # ---- Model: from --cfg or --weights; image size, batch size and precision fitted to it
    model, ckpt = build_model(opt, hyp, nc, device, opt.resume, cache)
    imgsz, stride, batch_size, precision = fit_run_to_model(model, opt, device)

    # ---- Optimizer: gradients accumulate to a nominal batch of 64
    weight_decay = scaled_weight_decay(hyp["weight_decay"], batch_size)
    optimizer = smart_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], weight_decay)

    # ---- Schedule, EMA, resume
    lf = lr_lambda(hyp["lrf"], opt.epochs, opt.cos_lr)
    scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    ema = ModelEMA(model) if is_main() else None
    best_fitness, start_epoch, epochs = 0.0, 0, opt.epochs
    if ckpt is not None and opt.resume:
        best_fitness, start_epoch, epochs = restore_training_state(ckpt, optimizer, ema, opt.weights, epochs)
    del ckpt

    # ---- Data loaders, anchors fitted to the labels
    train_loader, dataset, val_loader = build_dataloaders(opt, data_dict, hyp, imgsz, batch_size, stride, nc, cache)
    if is_main() and not opt.resume:
        settle_anchors(model, dataset, not opt.noautoanchor, hyp["anchor_t"], imgsz)
        if plots:
            plot_labels(np.concatenate(dataset.labels, 0), names, save_dir)
    # wrapped after autoanchor, so that DDP broadcasts rank 0's anchors to every rank
    forward = compiled_forward(wrap_parallel(model, device, opt.sync_bn), opt.compile)

    # ---- Model attributes: the loss reads model.hyp, its gains scaled to this model and image size
    scaled_hyp = scale_hyp_to_model(hyp, de_parallel(model).model[-1].nl, nc, imgsz, opt.label_smoothing)
    model.nc, model.hyp, model.names = nc, scaled_hyp, names
    model.class_weights = labels_to_class_weights(dataset.labels, nc).to(device) * nc

    # ---- Loop: train each epoch; the main process validates, logs and saves it
    scheduler.last_epoch = start_epoch - 1  # the LR schedule continues where a resumed run stopped
    compute_loss = ComputeLoss(model)
    validate_run = partial(validate.run, data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz,
                           amp=opt.amp, single_cls=opt.single_cls, dataloader=val_loader, save_dir=save_dir,
                           compute_loss=compute_loss)
    epoch_end = EpochEnd(opt, partial(validate_run, plots=False, verbose=False), model, ema, optimizer, weights_dir,
                         epochs, start_epoch, best_fitness, callbacks.get("on_fit_epoch_end")) if is_main() else None
    settings = EpochSettings.from_options(
        opt, scaled_hyp, epochs=epochs, batch_size=batch_size, imgsz=imgsz, stride=stride, verbose=verbose,
        warmup_iters=warmup_iterations(scaled_hyp["warmup_epochs"], len(train_loader)))
    runner = EpochRunner(forward, model, optimizer, ema, compute_loss, precision, settings, lf, device,
                         on_batch_end=_batch_end_hook(save_dir, names, plots, callbacks),
                         threads=cache.threads if cache is not None else None)
    LOGGER.info(f"Image sizes {imgsz} train, {getattr(opt, 'val_imgsz', None) or imgsz} val\n"
                f"Using {train_loader.num_workers * WORLD_SIZE} dataloader workers\n"
                f"Logging results to {colorstr('bold', save_dir)}\nStarting training for {epochs} epochs...")
    start_time = time.time()
    epochs_run = _train_epochs(runner, epoch_end, scheduler, train_loader, dataset, opt.image_weights, last,
                               start_epoch)
    results = epoch_end.results if epoch_end else (0.0,) * 7

    # ---- Save: strip the optimizers, validate best.pt with plots
    if is_main():
        LOGGER.info(f"\n{epochs_run} epochs completed in {(time.time() - start_time) / 3600:.3f} hours.")
        results = _finish(validate_run, data_dict, last, best, device, save_dir, plots, results)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return tuple(float(x) for x in results)


def _train_epochs(runner, epoch_end, scheduler, train_loader, dataset, image_weights, last, start_epoch):
    """Epochs start_epoch.. of the run, each followed by epoch_end (main process, else None) until early stopping.
    Returns the number of epochs run."""
    model, epoch = runner.model, start_epoch - 1
    try:
        for epoch in range(start_epoch, runner.settings.epochs):
            model.train()
            if image_weights:  # one process only (main refuses it under DDP), so epoch_end is there
                resample_image_weights(dataset, model.class_weights, epoch_end.maps, model.nc)
            hint = f"The last good checkpoint is {last}. " if last.exists() else ""
            mean_loss = runner.run(train_loader, epoch, checkpoint_hint=hint)
            lrs = [group["lr"] for group in runner.optimizer.param_groups]
            scheduler.step()
            stop = epoch_end(epoch, mean_loss, lrs) if epoch_end else False
            if _broadcast_stop(stop):
                break
    finally:
        if epoch_end:
            epoch_end.close()
    return epoch - start_epoch + 1


def _finish(validate_run, data_dict, last, best, device, save_dir, plots, results):
    """Strip the optimizers from last.pt and best.pt, validate best.pt (COCO: YOLOv5's IoU 0.65 and a JSON of
    predictions) and plot results.csv. Returns best.pt's results, or `results` (the last epoch's) without a best.pt."""
    finish_checkpoints(last, best)
    if best.exists():
        LOGGER.info(f"\nValidating {best}...")
        is_coco = validates_on_coco(data_dict)
        results, _, _ = validate_run(model=attempt_load(best, device), iou_thres=0.65 if is_coco else 0.60,
                                     save_json=is_coco, verbose=True, plots=plots)
    if plots:
        plot_results(file=save_dir / "results.csv")
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}")
    return results


def quiet_train(hyp, opt, device, callbacks=None, cache=None):
    """train() logging warnings only: one evolve generation prints its summary line, not the whole run's log."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        return train(hyp, opt, device, callbacks, cache)
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
