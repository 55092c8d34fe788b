"""Learning-rate schedule, warmup and gradient accumulation as pure functions of the epoch or iteration."""

import math

import numpy as np

NOMINAL_BATCH_SIZE = 64  # YOLOv5 accumulates gradients to behave like batch 64
MIN_WARMUP_ITERS = 100


def one_cycle(y1=0.0, y2=1.0, steps=100):
    """Half-cosine ramp from y1 (x=0) to y2 (x=steps), as a function of x."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def linear(y1=1.0, y2=0.01, steps=100):
    """Straight line from y1 (x=0) to y2 (x=steps)."""
    return lambda x: (1 - x / steps) * (y1 - y2) + y2


def lr_lambda(lrf, epochs, cos_lr=False):
    """LambdaLR factor of the epoch: 1 -> lrf over `epochs`, cosine with --cos-lr, else linear (YOLOv5's default)."""
    return one_cycle(1, lrf, epochs) if cos_lr else linear(1.0, lrf, epochs)


def warmup_iterations(warmup_epochs, batches_per_epoch, minimum=MIN_WARMUP_ITERS):
    """Warmup length in iterations: warmup_epochs worth of batches, at least `minimum` (YOLOv5: 100)."""
    return max(round(warmup_epochs * batches_per_epoch), minimum)


def accumulate_steps(iteration, warmup_iters, batch_size, nominal_batch_size=NOMINAL_BATCH_SIZE):
    """Batches per optimizer step: ramps from 1 during warmup to round(64 / batch_size) after it."""
    target = nominal_batch_size / batch_size
    if iteration <= warmup_iters:
        return max(1, int(np.interp(iteration, [0, warmup_iters], [1, target]).round()))
    return max(int(np.round(target)), 1)


def scaled_weight_decay(weight_decay, batch_size, nominal_batch_size=NOMINAL_BATCH_SIZE):
    """weight_decay * batch * accumulate / 64, so the decay per image seen stays that of batch 64."""
    accumulate = max(int(np.round(nominal_batch_size / batch_size)), 1)
    return weight_decay * batch_size * accumulate / nominal_batch_size


def warmup_values(iteration, warmup_iters, epoch_factor, initial_lrs, hyp):
    """Learning rate of each parameter group and the momentum at a warmup iteration.

    initial_lrs: the groups' lr0 in optimizer order; group 0 holds the biases (see smart_optimizer), whose lr
    falls from warmup_bias_lr while the others rise from 0; both end at lr0 * lf(epoch) = lr0 * epoch_factor.
    Momentum rises from warmup_momentum to momentum.
    """
    xp = [0, warmup_iters]
    lrs = [float(np.interp(iteration, xp, [hyp["warmup_bias_lr"] if j == 0 else 0.0, lr0 * epoch_factor]))
           for j, lr0 in enumerate(initial_lrs)]
    momentum = float(np.interp(iteration, xp, [hyp["warmup_momentum"], hyp["momentum"]]))
    return lrs, momentum


def apply_warmup(optimizer, iteration, warmup_iters, epoch_factor, hyp):
    """Write warmup_values into the optimizer's groups (momentum only where the optimizer has it, i.e. SGD)."""
    groups = optimizer.param_groups
    lrs, momentum = warmup_values(iteration, warmup_iters, epoch_factor, [g["initial_lr"] for g in groups], hyp)
    for group, lr in zip(groups, lrs):
        group["lr"] = lr
        if "momentum" in group:
            group["momentum"] = momentum
