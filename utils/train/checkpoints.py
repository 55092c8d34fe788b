"""A run's checkpoints: what last.pt / best.pt / epochN.pt hold, saving them atomically, and resuming from one."""

from copy import deepcopy
from datetime import datetime

import torch

from utils.checkpoint import save_checkpoint, strip_optimizer
from utils.ema import de_parallel
from utils.errors import ResumeError
from utils.log import LOGGER


def _half_copy(model):
    """A contiguous-format fp16 copy of a bare model, as YOLOv5 stores models in checkpoints."""
    return deepcopy(de_parallel(model)).to(memory_format=torch.contiguous_format).half()


def make_checkpoint(epoch, best_fitness, model, ema, optimizer, opt):
    """The dict YOLOv5 saves after each epoch (model and EMA in fp16, optimizer state, options)."""
    return {
        "epoch": epoch,
        "best_fitness": float(best_fitness),
        "model": _half_copy(model),
        "ema": _half_copy(ema.ema),
        "updates": ema.updates,
        "optimizer": optimizer.state_dict(),
        "opt": {k: str(v) if hasattr(v, "__fspath__") else v for k, v in vars(opt).items()},
        "date": datetime.now().isoformat(),
    }


def save_run_checkpoints(ckpt, weights_dir, is_best, epoch, save_period=-1):
    """last.pt always, best.pt when this epoch is the best so far, epochN.pt every save_period epochs; all atomic."""
    save_checkpoint(ckpt, weights_dir / "last.pt")
    if is_best:
        save_checkpoint(ckpt, weights_dir / "best.pt")
    if save_period > 0 and epoch % save_period == 0:
        save_checkpoint(ckpt, weights_dir / f"epoch{epoch}.pt")


def restore_training_state(ckpt, optimizer, ema, weights, epochs, resume=True):
    """Optimizer, EMA, best fitness and start epoch from a checkpoint (YOLOv5's smart_resume).

    Returns (best_fitness, start_epoch, epochs). A finished run (epoch -1 after stripping) cannot be resumed;
    fine-tuning from a checkpoint for fewer epochs than it already ran adds them to its count.
    """
    best_fitness = 0.0
    start_epoch = ckpt["epoch"] + 1
    if ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        best_fitness = float(ckpt.get("best_fitness") or 0.0)
    if ema is not None and ckpt.get("ema") is not None:
        ema.ema.load_state_dict(ckpt["ema"].float().state_dict())
        ema.updates = ckpt["updates"]
    if resume:
        if start_epoch <= 0:
            raise ResumeError(f"{weights} training to {epochs} epochs is finished, nothing to resume.\n"
                              f"Start a new training without --resume, i.e. python train.py --weights {weights}")
        LOGGER.info(f"Resuming training from {weights} from epoch {start_epoch} to {epochs} total epochs")
    if epochs < start_epoch:
        LOGGER.info(f"{weights} has been trained for {ckpt['epoch']} epochs. Fine-tuning for {epochs} more epochs.")
        epochs += ckpt["epoch"]
    return best_fitness, start_epoch, epochs


def finish_checkpoints(*paths):
    """Strip the optimizer from each existing checkpoint (the EMA becomes the model, fp16), as YOLOv5 does."""
    for path in paths:
        if path.exists():
            strip_optimizer(path)
