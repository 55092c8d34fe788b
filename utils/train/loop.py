"""One training epoch: warmup, multi-scale, mixed precision, accumulation, clipping, EMA, and non-finite loss checks."""

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from utils.cpu_threads import ThreadTuner
from utils.distributed import RANK, WORLD_SIZE, is_distributed, is_main
from utils.errors import NonFiniteLossError
from utils.log import LOGGER, TQDM_BAR_FORMAT
from utils.memory import retain_freed_memory
from utils.schedule import accumulate_steps, apply_warmup

MAX_GRAD_NORM = 10.0


class EarlyStopping:
    """Stop after `patience` epochs without a fitness improvement (0 or None: never)."""

    def __init__(self, patience=30):
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience or float("inf")
        self.possible_stop = False  # the next epoch may be the last: validate it even under --noval

    def __call__(self, epoch, fitness):
        if fitness >= self.best_fitness:  # >= so that a run stuck at fitness 0 early is not stopped at once
            self.best_epoch, self.best_fitness = epoch, fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= (self.patience - 1)
        stop = delta >= self.patience
        if stop:
            LOGGER.info(f"Stopping training early as no improvement observed in last {self.patience} epochs. "
                        f"Best results observed at epoch {self.best_epoch}, best model saved as best.pt.\n"
                        f"To update EarlyStopping(patience={self.patience}) pass a new patience value, "
                        "i.e. `python train.py --patience 300` or use `--patience 0` to disable EarlyStopping.")
        return stop


def multi_scale(images, imgsz, stride):
    """--multi-scale: resize the batch to a random size in [0.5, 1.5] x imgsz, a multiple of the stride."""
    size = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + stride) // stride * stride
    factor = size / max(images.shape[2:])
    if factor == 1:
        return images
    new_shape = [math.ceil(x * factor / stride) * stride for x in images.shape[2:]]
    return nn.functional.interpolate(images, size=new_shape, mode="bilinear", align_corners=False)


def _all_finite(loss):
    """Whether the loss is finite here and, under DDP, on every rank (so all ranks stop or go on together)."""
    finite = torch.isfinite(loss).all().float()
    if is_distributed():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


@dataclass(frozen=True)
class EpochSettings:
    """What EpochRunner reads from the options and hyperparameters, built by from_options."""

    epochs: int  # the run's total, for the progress bar
    batch_size: int  # over all ranks: gradients accumulate from it to the nominal batch of 64
    imgsz: int
    stride: int  # --multi-scale sizes are multiples of it
    warmup_iters: int  # iterations 0..warmup_iters warm up (-1: none)
    warmup_bias_lr: float
    warmup_momentum: float
    momentum: float
    multi_scale: bool = False
    quad: bool = False  # --quad collates every 4 images into one: the loss counts 4 times, as in YOLOv5
    verbose: bool = True  # epoch header and progress bar (in the main process)

    @classmethod
    def from_options(cls, opt, hyp, *, epochs, batch_size, imgsz, stride, warmup_iters, verbose=True):
        """The settings of a run: opt.multi_scale, opt.quad and hyp's warmup values, with the run's sizes."""
        return cls(epochs=epochs, batch_size=batch_size, imgsz=imgsz, stride=stride, warmup_iters=warmup_iters,
                   warmup_bias_lr=hyp["warmup_bias_lr"], warmup_momentum=hyp["warmup_momentum"],
                   momentum=hyp["momentum"], multi_scale=bool(opt.multi_scale), quad=bool(opt.quad), verbose=verbose)

    @property
    def warmup_hyp(self):
        """The hyp keys apply_warmup reads."""
        return {"warmup_bias_lr": self.warmup_bias_lr, "warmup_momentum": self.warmup_momentum,
                "momentum": self.momentum}


class EpochRunner:
    """Runs training epochs and keeps the state that spans them: the step counter, precision, GradScaler and the
    CPU thread count (a ThreadTuner when the precision tunes the CPU, which also keeps freed memory for reuse).

    forward: the callable for the training forward (the model, its DDP/DP wrapper or a compiled version);
    model: the same network, for clipping gradients; ema: ModelEMA in the main process, else None;
    settings: EpochSettings; lr_lambda: the LR factor of an epoch, which warmup ramps to;
    on_batch_end: optional f(epoch, batch index, iteration, images, targets, paths); threads: what makes the
    ThreadTuner when the precision tunes the CPU (reuse.TrainingCache.threads hands out its process's one; default: a
    new one).
    """

    def __init__(self, forward, model, optimizer, ema, compute_loss, precision, settings, lr_lambda, device,
                 on_batch_end=None, threads=None):
        self.forward, self.model, self.optimizer, self.ema = forward, model, optimizer, ema
        self.compute_loss, self.precision, self.settings = compute_loss, precision, settings
        self.lr_lambda, self.device, self.on_batch_end = lr_lambda, device, on_batch_end
        self.scaler = precision.grad_scaler()
        self.threads = (threads or ThreadTuner)() if precision.tune_cpu else None
        if precision.tune_cpu:
            retain_freed_memory()
        self.last_opt_step = -1
        self.verbose = settings.verbose and is_main()

    def _fall_back_to_fp32(self, epoch, i):
        LOGGER.warning(f"WARNING: non-finite loss under {self.precision.name} at epoch {epoch}, batch {i}: "
                       "continuing in fp32 (--no-amp does this from the start)")
        self.precision = self.precision.fp32()
        self.scaler = self.precision.grad_scaler()

    def _loss(self, images, targets):
        with self.precision.autocast():
            pred = self.forward(images)
        loss, items = self.compute_loss(pred, targets)  # fp32 whatever the autocast dtype
        if RANK != -1:
            loss = loss * WORLD_SIZE  # DDP averages gradients over ranks; YOLOv5 sums them
        if self.settings.quad:
            loss = loss * 4.0
        return loss, items

    def run(self, loader, epoch, checkpoint_hint=""):
        """Train one epoch over `loader`; returns the mean (box, obj, cls) losses. Raises NonFiniteLossError."""
        num_batches, settings = len(loader), self.settings
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        mean_loss = torch.zeros(3, device=self.device)
        batches = enumerate(loader)
        if self.verbose:
            LOGGER.info(("\n" + "%11s" * 7) % ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances",
                                                "Size"))
            batches = tqdm(batches, total=num_batches, bar_format=TQDM_BAR_FORMAT)
        self.optimizer.zero_grad()
        if self.threads is not None:
            self.threads.restart()
        for i, (images, targets, paths, _) in batches:
            iteration = i + num_batches * epoch  # counted from the start of training
            images = self.precision.batch(images.to(self.device, non_blocking=True))  # uint8: the cheap copy
            images = images.to(self.precision.input_dtype).div_(255)  # .to() copied the uint8 batch
            targets = targets.to(self.device)

            accumulate = accumulate_steps(iteration, settings.warmup_iters, settings.batch_size)
            if iteration <= settings.warmup_iters:
                apply_warmup(self.optimizer, iteration, settings.warmup_iters, self.lr_lambda(epoch),
                             settings.warmup_hyp)
            if settings.multi_scale:
                images = self.precision.batch(multi_scale(images, settings.imgsz, settings.stride))

            loss, items = self._loss(images, targets)
            if not _all_finite(loss) and self.precision.enabled:
                self._fall_back_to_fp32(epoch, i)
                images = images.float()
                loss, items = self._loss(images, targets)
            if not _all_finite(loss):
                raise NonFiniteLossError(f"loss is {loss.item()} at epoch {epoch}, batch {i} ({paths[0]} ...): "
                                         f"training stopped. {checkpoint_hint}Try a lower --hyp lr0, check the "
                                         "labels, or --no-amp.")
            self.scaler.scale(loss).backward()

            if iteration - self.last_opt_step >= accumulate:
                self._optimizer_step()
                self.last_opt_step = iteration

            mean_loss = (mean_loss * i + items) / (i + 1)
            if self.verbose:
                memory = torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0
                batches.set_description(("%11s" * 2 + "%11.4g" * 5) % (
                    f"{epoch}/{settings.epochs - 1}", f"{memory:.3g}G", *mean_loss, targets.shape[0], images.shape[-1]))
            if self.on_batch_end is not None:
                self.on_batch_end(epoch, i, iteration, images, targets, paths)
            if self.threads is not None:
                self.threads.step(time.perf_counter(), work=images.numel())
        return mean_loss.cpu().numpy().astype(np.float64)

    def _optimizer_step(self):
        # hundreds of per-parameter ops: one thread is as fast on an idle CPU and 80x faster on a busy one (the loss
        # is left to the ThreadTuner's count: its full-map conversions gain from a second idle core)
        with self.precision.small_ops():
            self._clip_step_and_average()

    def _clip_step_and_average(self):
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)
