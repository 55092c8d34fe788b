"""Helpers that act on a whole network: sizes that fit its stride, BN folding, weight init, size/GFLOPs summary,
TTA resizing, state-dict matching."""

import math
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from utils.ema import de_parallel  # noqa: F401  (re-exported: YOLOv5 keeps it beside is_parallel)
from utils.flops import forward_flops
from utils.log import LOGGER

INPLACE_ACTIVATIONS = (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)
TTA_PAD_VALUE = 0.447  # ImageNet mean grey, what YOLOv5 pads rescaled TTA images with


def is_parallel(model):
    """True for a model wrapped in DataParallel or DistributedDataParallel."""
    return isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))


def make_divisible(x, divisor):
    """x rounded up to a multiple of divisor (channel counts after width_multiple)."""
    divisor = int(divisor.max()) if isinstance(divisor, torch.Tensor) else divisor
    return math.ceil(x / divisor) * divisor


def check_img_size(imgsz, stride=32, floor=0):
    """imgsz rounded up to a multiple of the stride (and at least `floor`), with a warning when it changes."""
    fitted = max(math.ceil(int(imgsz) / stride) * stride, floor)
    if fitted != int(imgsz):
        LOGGER.warning(f"--img-size {imgsz} must be a multiple of max stride {stride}, updating to {fitted}")
    return fitted


@torch.no_grad()
def fuse_conv_and_bn(conv, bn):
    """A Conv2d with bias equal to conv followed by bn in eval mode: w' = w * g / s, b' = (b - mean) * g / s + beta,
    with s = sqrt(running_var + eps)."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    fused = fused.requires_grad_(False).to(device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)  # (c2,)
    conv_bias = conv.bias.float() if conv.bias is not None else torch.zeros_like(scale)
    fused.weight.copy_(conv.weight.float() * scale.view(-1, 1, 1, 1))
    fused.bias.copy_((conv_bias - bn.running_mean.float()) * scale + bn.bias.float())
    return fused


def initialize_weights(model):
    """YOLOv5's init: PyTorch's default conv init, BatchNorm eps 1e-3 and momentum 0.03, activations in place."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03
        elif type(m) in INPLACE_ACTIVATIONS:
            m.inplace = True


def model_gflops(model, img_size=640):
    """Forward GFLOPs at img_size (int or [h, w]), counted at the max stride and scaled by area; None if it fails."""
    try:
        p = next(model.parameters())
        stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
        im = torch.zeros((1, p.shape[1], stride, stride), device=p.device)
        flops = forward_flops(deepcopy(model).float().eval(), im)  # eval: BN cannot train on a 1x1 P5 map
        h, w = img_size if isinstance(img_size, (list, tuple)) else (img_size, img_size)
        return flops / 1e9 * (h / stride) * (w / stride)
    except Exception as e:  # a summary line must never stop a build; say why the figure is missing
        LOGGER.debug(f"GFLOPs not computed: {e}")
        return None


def model_info(model, verbose=False, img_size=640):
    """Log '<name> summary: L layers, P parameters, G gradients, F GFLOPs' (and each parameter when verbose)."""
    n_params = sum(p.numel() for p in model.parameters())
    n_grads = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if verbose:
        LOGGER.info(f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20} {'mu':>10} {'sigma':>10}")
        for i, (name, p) in enumerate(model.named_parameters()):
            name = name.replace("module_list.", "")
            LOGGER.info("%5g %40s %9s %12g %20s %10.3g %10.3g %s" %
                        (i, name, p.requires_grad, p.numel(), list(p.shape), p.mean(), p.std(), p.dtype))
    gflops = model_gflops(model, img_size)
    flops_text = f", {gflops:.1f} GFLOPs" if gflops is not None else ""
    name = Path(model.yaml_file).stem.replace("yolov5", "YOLOv5") if hasattr(model, "yaml_file") else "Model"
    LOGGER.info(f"{name} summary: {len(list(model.modules()))} layers, {n_params} parameters, {n_grads} gradients"
                f"{flops_text}")
    return n_params, n_grads, gflops


def scale_img(img, ratio=1.0, same_shape=False, gs=32):
    """Resize a (bs, 3, h, w) batch by ratio; unless same_shape, pad right/bottom with grey up to multiples of gs."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
    if not same_shape:
        h, w = (math.ceil(x * ratio / gs) * gs for x in (h, w))
    return F.pad(img, [0, w - size[1], 0, h - size[0]], value=TTA_PAD_VALUE)


def intersect_dicts(da, db, exclude=()):
    """Entries of da whose key is in db with the same shape and contains none of the `exclude` substrings."""
    return {k: v for k, v in da.items()
            if k in db and all(x not in k for x in exclude) and v.shape == db[k].shape}
