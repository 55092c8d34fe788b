"""Forward FLOPs of a module, counted with forward hooks: 2 x the multiply-adds of its convolutions, linear layers and
attention, the convention of torch.utils.flop_counter (and of YOLOv5's thop figure x 2).

torch's FlopCounterMode imports torch._dynamo on first use, about 1.5 s of every command that prints a model summary;
hooks count the same layers for nothing. Plain functions and elementwise layers count 0, as with thop.
"""

import math

import torch
from torch import nn


def _conv_flops(module, inputs, output):
    kernel_taps = math.prod(module.kernel_size) * module.in_channels // module.groups
    if isinstance(module, nn.modules.conv._ConvTransposeNd):  # every input pixel is spread over the kernel
        return 2 * inputs[0].numel() // module.in_channels * module.out_channels * kernel_taps
    return 2 * output.numel() * kernel_taps


def _linear_flops(module, inputs, output):
    return 2 * inputs[0].numel() * module.out_features


def _attention_flops(module, inputs, output):
    """Input projections, the two attention products (QK^T and AV) and the output projection of MultiheadAttention."""
    query, key = inputs[0], inputs[1]
    embed = module.embed_dim
    tokens_q, tokens_k = query.numel() // embed, key.numel() // module.kdim
    projections = 2 * tokens_q * embed * embed + 2 * tokens_k * embed * (module.kdim + module.vdim)
    length_k = key.shape[1] if module.batch_first else key.shape[0]
    products = 4 * tokens_q * length_k * embed  # each query token: length_k scores and a mix of length_k values
    return projections + products + 2 * tokens_q * embed * embed


COUNTERS = {nn.Conv1d: _conv_flops, nn.Conv2d: _conv_flops, nn.Conv3d: _conv_flops,
            nn.ConvTranspose1d: _conv_flops, nn.ConvTranspose2d: _conv_flops, nn.ConvTranspose3d: _conv_flops,
            nn.Linear: _linear_flops, nn.MultiheadAttention: _attention_flops}


def forward_flops(module, *inputs):
    """FLOPs of module(*inputs) under no_grad; 0 for a plain function, as thop gives. The caller's module runs:
    pass a copy when its state must not change (BatchNorm statistics in train mode)."""
    if not isinstance(module, nn.Module):
        return 0
    total = 0

    def count(layer, layer_inputs, output):
        nonlocal total
        total += COUNTERS[type(layer)](layer, layer_inputs, output)

    hooks = [m.register_forward_hook(count) for m in _counted_layers(module)]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _counted_layers(module):
    """The layers with a counter, skipping those inside a MultiheadAttention (it counts its own projections)."""
    if type(module) in COUNTERS:
        yield module
        if isinstance(module, nn.MultiheadAttention):
            return
    for child in module.children():
        yield from _counted_layers(child)
