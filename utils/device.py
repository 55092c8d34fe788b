"""Choosing the torch device from --device ('', 'cpu', '0', '0,1', 'mps'), and inference-mode helpers."""

import os
import platform

import torch

from utils.log import LOGGER
from utils.profiling import time_sync  # noqa: F401  (YOLOv5 users import it from here too)


def _parse(device):
    return str(device if device is not None else "").strip().lower().replace("cuda:", "").replace("none", "")


def select_device(device="", batch_size=0, newline=True):
    """torch.device for --device: '' (first GPU, else CPU), 'cpu', 'mps', or CUDA indices such as '0' or '0,1'.

    CUDA indices become CUDA_VISIBLE_DEVICES (when CUDA is not initialised yet) and the device is cuda:0, as in
    YOLOv5. A batch size that does not divide over several GPUs is an error.
    """
    text = _parse(device)
    summary = f"Python-{platform.python_version()} torch-{torch.__version__} "
    cpu, mps = text == "cpu", text == "mps"
    first = 0
    if text and not (cpu or mps):
        indices = [i for i in text.split(",") if i != ""]
        if not all(i.isdigit() for i in indices):
            raise ValueError(f"--device {device!r} is not 'cpu', 'mps' or CUDA indices such as 0 or 0,1")
        if torch.cuda.is_initialized():  # too late to restrict visibility: address the first chosen GPU directly
            first, needed = int(indices[0]), max(int(i) for i in indices) + 1
        else:  # set before CUDA starts (as YOLOv5 does), so the chosen GPUs become cuda:0, cuda:1, ...
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(indices)
            needed = len(indices)
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible < needed:
            raise ValueError(f"Invalid CUDA '--device {device}' requested ({visible} CUDA device(s) visible): "
                             "use '--device cpu' or pass valid CUDA device indices")
    if not (cpu or mps) and torch.cuda.is_available():
        names = text.split(",") if text else ["0"]
        if len(names) > 1 and batch_size > 0 and batch_size % len(names):
            raise ValueError(f"--batch-size {batch_size} is not a multiple of the GPU count {len(names)}")
        space = " " * (len(summary) + 1)
        for i, name in enumerate(names):
            props = torch.cuda.get_device_properties(first + i)
            summary += f"{'' if i == 0 else space}CUDA:{name} ({props.name}, {props.total_memory / (1 << 20):.0f}MiB)\n"
        arg = f"cuda:{first}"
    elif mps and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        summary += "MPS\n"
        arg = "mps"
    else:
        if mps:
            LOGGER.warning("--device mps requested but MPS is not available here: using the CPU")
        summary += "CPU\n"
        arg = "cpu"
    LOGGER.info(summary if newline else summary.rstrip())
    return torch.device(arg)


def smart_inference_mode(fn=None):
    """torch.inference_mode as a decorator, usable with or without parentheses."""
    if fn is None:
        return torch.inference_mode()
    return torch.inference_mode()(fn)
