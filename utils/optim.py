"""smart_optimizer: SGD (Nesterov), Adam, AdamW or RMSProp over YOLOv5's three parameter groups."""

import torch
from torch import nn

from utils.log import LOGGER, colorstr

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSProp")
# every normalisation layer type torch.nn defines (BatchNorm2d, LayerNorm, GroupNorm, ...): their weights never decay
NORM_LAYERS = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))


def parameter_groups(model):
    """(decaying weights, normalisation weights, biases): YOLOv5's g[0], g[1], g[2]."""
    decay, no_decay, biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif name == "weight" and isinstance(module, NORM_LAYERS):
                no_decay.append(p)
            else:
                decay.append(p)
    return decay, no_decay, biases


def smart_optimizer(model, name="SGD", lr=0.001, momentum=0.9, decay=1e-5):
    """The optimizer with param_groups in YOLOv5's order: [biases, decaying weights (decay), norm weights (0)].

    Biases come first because warmup gives group 0 its own learning rate (warmup_bias_lr). `momentum` is SGD's
    momentum (Nesterov) or Adam's beta1.
    """
    decay_w, no_decay_w, biases = parameter_groups(model)
    if name == "Adam":
        optimizer = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "RMSProp":
        optimizer = torch.optim.RMSprop(biases, lr=lr, momentum=momentum)
    elif name == "SGD":
        optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    else:
        raise ValueError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)} (--optimizer)")
    optimizer.add_param_group({"params": decay_w, "weight_decay": decay})
    optimizer.add_param_group({"params": no_decay_w, "weight_decay": 0.0})
    LOGGER.info(f"{colorstr('optimizer:')} {type(optimizer).__name__}(lr={lr}) with parameter groups "
                f"{len(no_decay_w)} weight(decay=0.0), {len(decay_w)} weight(decay={decay}), {len(biases)} bias")
    return optimizer
