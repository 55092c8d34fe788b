"""AutoBatch (`--batch-size -1`): the training batch size that fills a fraction of the free CUDA memory, as YOLOv5
sizes it. On CPUs (and other devices) the default batch size is used, with a notice.

The memory of a training step is profiled at batch sizes 1, 2, 4, 8 and 16 and fitted by a line; the batch size
is where that line reaches `fraction` of the memory free before profiling.
"""

from copy import deepcopy

import numpy as np
import torch

from utils.log import LOGGER, colorstr
from utils.profiling import profile

PREFIX = colorstr("AutoBatch: ")
TRIAL_BATCH_SIZES = (1, 2, 4, 8, 16)
GIB = 1 << 30


def check_train_batch_size(model, imgsz=640, amp=True):
    """The batch size for training `model` at `imgsz` px, profiled on a training-mode copy (under fp16 autocast
    when amp)."""
    with torch.autocast("cuda", enabled=amp and torch.cuda.is_available()):
        return autobatch(deepcopy(model).train(), imgsz)


def autobatch(model, imgsz=640, fraction=0.8, batch_size=16):
    """The batch size using `fraction` of model's CUDA device's free memory; `batch_size` off CUDA or when unsure."""
    LOGGER.info(f"{PREFIX}Computing optimal batch size for --imgsz {imgsz}")
    device = next(model.parameters()).device
    if device.type != "cuda":
        LOGGER.info(f"{PREFIX}CUDA not detected, using default CPU batch-size {batch_size}")
        return batch_size
    if torch.backends.cudnn.benchmark:
        LOGGER.info(f"{PREFIX} ⚠️ Requires torch.backends.cudnn.benchmark=False, using default batch-size {batch_size}")
        return batch_size

    name = str(device).upper()  # 'CUDA:0'
    properties = torch.cuda.get_device_properties(device)
    total = properties.total_memory / GIB
    reserved = torch.cuda.memory_reserved(device) / GIB
    allocated = torch.cuda.memory_allocated(device) / GIB
    free = total - (reserved + allocated)
    LOGGER.info(f"{PREFIX}{name} ({properties.name}) {total:.2f}G total, {reserved:.2f}G reserved, "
                f"{allocated:.2f}G allocated, {free:.2f}G free")
    try:
        images = [torch.empty(b, 3, imgsz, imgsz) for b in TRIAL_BATCH_SIZES]
        results = profile(images, model, n=3, device=device)
    except Exception as e:  # YOLOv5 stops here with an undefined result; the default size is the safe answer
        LOGGER.warning(f"{PREFIX}{e}, using default batch-size {batch_size}")
        return batch_size

    b, line = fit_batch_size(results, free * fraction, batch_size)
    used = (np.polyval(line, b) + reserved + allocated) / total  # the fraction of memory predicted at b
    LOGGER.info(f"{PREFIX}Using batch-size {b} for {name} {total * used:.2f}G/{total:.2f}G ({used * 100:.0f}%) ✅")
    return b


def fit_batch_size(results, budget_gb, default):
    """(batch size, line) from profile rows (memory at index 2; None where a trial size failed): where a line fitted
    to memory against batch size reaches budget_gb, kept below the first failed size, and `default` (with a
    warning) when outside 1-1024.
    """
    memory = [row[2] for row in results if row]
    line = np.polyfit(TRIAL_BATCH_SIZES[:len(memory)], memory, deg=1)  # memory = slope * batch + intercept
    b = int((budget_gb - line[1]) / line[0])
    if None in results:
        first_failed = results.index(None)
        if b >= TRIAL_BATCH_SIZES[first_failed]:
            b = TRIAL_BATCH_SIZES[max(first_failed - 1, 0)]  # the largest size that still ran
    if b < 1 or b > 1024:
        b = default
        LOGGER.warning(f"{PREFIX}WARNING ⚠️ CUDA anomaly detected, recommend restart environment and retry command.")
    return b, line
