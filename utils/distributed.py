"""DDP bookkeeping: this process's rank and world size (from torch.distributed.run), set-up, tear-down and the
model wrapper (DataParallel or DistributedDataParallel)."""

import contextlib
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

from utils.log import LOGGER

# set by `python -m torch.distributed.run`; -1 / 1 in a plain single process
LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))
RANK = int(os.getenv("RANK", -1))
WORLD_SIZE = int(os.getenv("WORLD_SIZE", 1))


def is_main():
    """True in the process that logs, validates and saves: rank 0, or the only process."""
    return RANK in (-1, 0)


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def barrier():
    """Wait for every rank (no-op outside DDP); NCCL is told this rank's GPU, Gloo needs no device."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl" and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def torch_distributed_zero_first(local_rank: int):
    """Local rank 0 runs the block first (e.g. scanning labels, writing a cache), then the other ranks do."""
    if local_rank not in (-1, 0):
        barrier()
    yield
    if local_rank == 0:
        barrier()


def init_distributed(device, timeout_hours=3):
    """Join the process group: NCCL on CUDA (each rank on GPU LOCAL_RANK), Gloo on CPU. Returns this rank's device."""
    if device.type == "cuda":
        if torch.cuda.device_count() <= LOCAL_RANK:
            raise RuntimeError(f"DDP rank {LOCAL_RANK} has no GPU ({torch.cuda.device_count()} visible): start "
                               "torch.distributed.run with --nproc_per_node at most the GPU count")
        torch.cuda.set_device(LOCAL_RANK)
        device = torch.device("cuda", LOCAL_RANK)
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise RuntimeError(f"DDP is not supported on {device.type}: use CUDA or the CPU")
    if not is_distributed():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=timeout_hours))
    return device


def teardown_distributed():
    """Leave the process group (safe to call when none was joined)."""
    if is_distributed():
        dist.destroy_process_group()


def wrap_parallel(model, device, sync_bn=False):
    """DataParallel for one process with several GPUs (with YOLOv5's warning), DDP under torch.distributed.run."""
    cuda = device.type == "cuda"
    if cuda and RANK == -1 and torch.cuda.device_count() > 1:
        LOGGER.warning("DataParallel (DP) is not recommended: use torch.distributed.run for better multi-GPU "
                       "results, e.g. python -m torch.distributed.run --nproc_per_node 2 train.py ...")
        return nn.DataParallel(model)
    if RANK == -1:
        return model
    if sync_bn:
        if cuda:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
            LOGGER.info("Using SyncBatchNorm()")
        else:
            LOGGER.warning("--sync-bn needs CUDA: ignored on the CPU")
    if cuda:
        return nn.parallel.DistributedDataParallel(model, device_ids=[LOCAL_RANK], output_device=LOCAL_RANK)
    return nn.parallel.DistributedDataParallel(model)
