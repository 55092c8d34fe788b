"""Exponential moving average of model weights (YOLOv5's ModelEMA), the copy that is validated and saved."""

import math
from copy import deepcopy

from torch import nn


def de_parallel(model):
    """The bare model inside a DataParallel or DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def copy_attr(a, b, include=(), exclude=()):
    """Copy b's public attributes to a (only `include` when given, never `exclude` or _private ones)."""
    for k, v in b.__dict__.items():
        if (include and k not in include) or k.startswith("_") or k in exclude:
            continue
        setattr(a, k, v)


class ModelEMA:
    """Keeps ema = d * ema + (1 - d) * model over every floating-point weight and buffer after each optimizer step.

    d = decay * (1 - exp(-updates / tau)) ramps from 0 so that early, random weights are forgotten quickly.
    Integer buffers (BatchNorm's num_batches_tracked) are copied.
    """

    def __init__(self, model, decay=0.9999, tau=2000, updates=0):
        self.ema = deepcopy(de_parallel(model)).eval()
        self.updates = updates
        self.decay_max, self.tau = decay, tau
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def decay(self, updates):
        return self.decay_max * (1 - math.exp(-updates / self.tau))

    def update(self, model):
        self.updates += 1
        d = self.decay(self.updates)
        model_state = de_parallel(model).state_dict()
        for k, v in self.ema.state_dict().items():
            source = model_state[k].detach()
            if v.dtype.is_floating_point:
                v *= d
                v += (1 - d) * source.to(v.dtype)  # YOLOv5's rounding, not a fused mul-add
            else:
                v.copy_(source)

    def update_attr(self, model, include=(), exclude=("process_group", "reducer")):
        """Copy the model's plain attributes (nc, names, hyp, ...) onto the EMA copy."""
        copy_attr(self.ema, model, include, exclude)
