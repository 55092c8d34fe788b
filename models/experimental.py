"""Loading trained weights for inference (`attempt_load`), alone or as an `Ensemble` of several checkpoints."""

import torch
from torch import nn

from models.mixed_convs import MixConv2d  # noqa: F401  (YOLOv5's path for it)
from models.yolo import Detect, DetectionModel
from utils.checkpoint import load_checkpoint
from utils.downloads import attempt_download
from utils.log import LOGGER


class Ensemble(nn.ModuleList):
    """Several detectors on the same image: their decoded predictions concatenated for one joint NMS."""

    def forward(self, x, augment=False, profile=False, visualize=False):
        outputs = [module(x, augment, profile, visualize)[0] for module in self]  # each (bs, n_i, 5 + nc)
        return torch.cat(outputs, 1), None


def attempt_load(weights, device=None, inplace=True, fuse=True):
    """The model of a checkpoint (its EMA when saved), fp32, frozen and in eval mode; an Ensemble for several.

    Every file goes through the safe loader (utils.checkpoint.load_checkpoint).
    """
    model = Ensemble()
    for w in weights if isinstance(weights, (list, tuple)) else [weights]:
        ckpt = load_checkpoint(attempt_download(w))
        net = (ckpt.get("ema") or ckpt["model"]).to(device).float().requires_grad_(False)
        if not hasattr(net, "stride"):
            net.stride = torch.tensor([32.0])
        model.append(net.fuse().eval() if fuse and hasattr(net, "fuse") else net.eval())

    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace = inplace
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None  # attribute added in torch 1.11

    if len(model) == 1:
        return model[-1]
    LOGGER.info(f"Ensemble created with {weights}\n")
    for attr in ("names", "nc", "yaml"):
        setattr(model, attr, getattr(model[0], attr))
    model.stride = model[int(torch.argmax(torch.tensor([m.stride.max() for m in model])))].stride
    if not all(model[0].nc == m.nc for m in model):
        raise ValueError(f"the ensemble's models have different class counts: {[m.nc for m in model]}")
    return model


__all__ = ["Ensemble", "attempt_load", "DetectionModel", "MixConv2d"]
