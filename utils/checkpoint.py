"""Checkpoints: loading YOLOv5 `.pt` files without running pickled code, atomic saving, stripping optimizers.

A YOLOv5 checkpoint pickles whole model objects (`models.yolo.Model`, `models.common.Conv`, torch.nn modules). It is
unpickled here by torch's weights-only unpickler, with every module class it may name mapped onto an inert stand-in:
a plain object that only receives the pickled attributes. Nothing else may be named, so a checkpoint asking for
`os.system` (or any other callable) is refused before anything runs. The model is then rebuilt from the stand-in's
`yaml` and its tensors are loaded into it.
"""

import pickle
from copy import deepcopy
from pathlib import Path

import torch

from models.yolo import DetectionModel
from utils.errors import CheckpointError
from utils.files import atomic_open
from utils.log import LOGGER

# Classes an official (v6.0-v7.0) or our own checkpoint may name, besides what torch's weights-only loader allows
MODEL_CLASSES = [f"models.yolo.{n}" for n in ("Model", "DetectionModel", "Detect", "BaseModel")] + [
    f"models.common.{n}" for n in (
        "Conv", "DWConv", "Bottleneck", "BottleneckCSP", "C3", "SPP", "SPPF", "Focus", "Concat",
        "GhostConv", "GhostBottleneck", "C3Ghost", "TransformerLayer", "TransformerBlock", "C3TR", "CrossConv", "C3x",
        "C3SPP", "Contract", "Expand")] + ["models.experimental.MixConv2d"]
TORCH_CLASSES = [f"torch.nn.modules.{n}" for n in (
    "container.Sequential", "container.ModuleList", "conv.Conv2d", "batchnorm.BatchNorm2d", "activation.SiLU",
    "activation.ReLU", "activation.LeakyReLU", "activation.Hardswish", "pooling.MaxPool2d",
    "upsampling.Upsample", "linear.Identity", "linear.Linear", "linear.NonDynamicallyQuantizableLinear",
    "activation.MultiheadAttention", "padding.ZeroPad2d")]


class PickledModule:
    """An inert stand-in for a pickled module: it only holds the attributes the pickle gives it."""

    pickled_class = "?"


def _stand_ins():
    """(stand-in class, pickled name) pairs for torch.serialization.safe_globals, one class per name."""
    return [(type(name.rsplit(".", 1)[-1], (PickledModule,), {"pickled_class": name}), name)
            for name in MODEL_CLASSES + TORCH_CLASSES]


def _safe_load(path):
    """torch.load with weights_only=True and the model classes mapped to stand-ins; refusals name the file."""
    try:
        with torch.serialization.safe_globals(_stand_ins()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _loader_reason(e)
        if "GLOBAL" in reason or "allowlisted" in reason:
            raise CheckpointError(f"{path} was refused by the safe loader: its pickle asks for something other than "
                                  f"YOLOv5 model classes and tensors ({reason}), so it was not loaded and nothing in "
                                  "it ran. Only load checkpoints from sources you trust.") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason}): it may be truncated or "
                              "corrupt; use another copy") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}): it may be "
                              "truncated or corrupt; use another copy") from None


def _loader_reason(error):
    """The specific sentence of torch's weights-only error, without its general advice paragraphs."""
    paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
    specific = [p for p in paragraphs if not p.startswith(("Weights only load failed", "Check the documentation"))]
    return " ".join(specific) or paragraphs[0] if paragraphs else type(error).__name__


def _state_dict(module, prefix=""):
    """The state dict (persistent parameters and buffers) of a tree of stand-ins, as nn.Module.state_dict names it."""
    state = {}
    attrs = module.__dict__
    for name, p in (attrs.get("_parameters") or {}).items():
        if p is not None:
            state[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for name, b in (attrs.get("_buffers") or {}).items():
        if b is not None and name not in skip:
            state[prefix + name] = b
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            state.update(_state_dict(child, f"{prefix}{name}."))
    return state


def _rebuild(pickled, path):
    """Our DetectionModel with the stand-in's architecture, tensors, dtype and attributes (names, nc, hyp, ...)."""
    if not isinstance(pickled, PickledModule) or not isinstance(pickled.__dict__.get("yaml"), dict):
        raise CheckpointError(f"{path} holds no YOLOv5 model under 'model' (found {type(pickled).__name__}): "
                              "expected a checkpoint written by YOLOv5 or this toolkit's train.py")
    attrs = pickled.__dict__
    state = _state_dict(pickled)
    cfg = deepcopy(attrs["yaml"])
    model = DetectionModel(cfg, ch=cfg.get("ch", 3), nc=cfg.get("nc"), verbose=False)
    if _is_fused(state):
        model.fuse()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: its tensors do not fit the model its own 'yaml' describes (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}): the file is damaged or not YOLOv5's")
    for key in ("names", "nc", "hyp", "class_weights", "yaml_file"):
        if key in attrs:
            setattr(model, key, attrs[key])
    if isinstance(getattr(model, "names", None), (list, tuple)):
        model.names = dict(enumerate(model.names))
    dtype = next(iter(state.values())).dtype if state else torch.float32
    return model.to(dtype) if dtype.is_floating_point else model


def _is_fused(state):
    """True when the BatchNorms were folded into the convs before saving (conv biases, no bn entries)."""
    return "model.0.conv.bias" in state and "model.0.bn.weight" not in state


def load_checkpoint(path):
    """A checkpoint dict with 'model' (and 'ema', when present) rebuilt as DetectionModels on the CPU.

    Raises CheckpointError for a refused, unreadable or model-less file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found: check the path")
    ckpt = _safe_load(path)
    if isinstance(ckpt, PickledModule):  # a bare pickled model, as torch.save(model) writes
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, dict) or ckpt.get("model") is None and ckpt.get("ema") is None:
        raise CheckpointError(f"{path} holds no 'model' or 'ema' entry: expected a YOLOv5 training checkpoint")
    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            ckpt[key] = _rebuild(ckpt[key], path)
    return ckpt


def save_checkpoint(ckpt, path):
    """torch.save `ckpt` to `path` atomically: a kill mid-write leaves the previous file intact."""
    with atomic_open(path, "wb") as f:
        torch.save(ckpt, f)


def strip_optimizer(path, saved_as=None):
    """Make a finished checkpoint small: the EMA (if any) becomes the model, fp16, no optimizer; epoch -1."""
    ckpt = load_checkpoint(path)
    if ckpt.get("ema") is not None:
        ckpt["model"] = ckpt["ema"]
    for key in ("optimizer", "best_fitness", "ema", "updates"):
        ckpt[key] = None
    ckpt["epoch"] = -1
    ckpt["model"].half()
    for p in ckpt["model"].parameters():
        p.requires_grad = False
    save_checkpoint(ckpt, saved_as or path)
    size_mb = Path(saved_as or path).stat().st_size / 1e6
    LOGGER.info(f"Optimizer stripped from {path},{f' saved as {saved_as},' if saved_as else ''} {size_mb:.1f}MB")
