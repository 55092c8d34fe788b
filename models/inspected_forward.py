"""The forward pass that profile=True and visualize=<folder> take (`python models/yolo.py --profile`,
`detect.py --visualize`): each layer's time, GFLOPs and parameters logged, and/or its feature maps saved, as YOLOv5
does. Kept apart from the plain pass, which pays nothing per layer for either."""

from pathlib import Path

from utils.log import LOGGER
from utils.plots import feature_visualization
from utils.profiling import layer_cost


def forward_inspected(layers, save, x, profile, visualize):
    """The plain pass over `layers` (each reading the previous output or the kept outputs of the layers in `save`),
    also profiling each layer (profile) and/or saving its feature maps to the folder `visualize`."""
    outputs, times = [], []
    for m in layers:
        if m.f != -1:
            x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
        if profile:
            profile_one_layer(layers, m, x, times)
        x = m(x)
        outputs.append(x if m.i in save else None)
        if visualize:
            feature_visualization(x, m.type, m.i, save_dir=Path(visualize))
    return x


def profile_one_layer(layers, m, x, times):
    """Log layer m's forward time (ms, mean of 10 runs), GFLOPs and parameters, as YOLOv5's profile=True does; a header
    before the first of `layers` and the total time after the last. times: the times logged so far (appended to)."""
    ms, gflops = layer_cost(m, x)
    times.append(ms)
    if m is layers[0]:
        LOGGER.info(f"{'time (ms)':>10s} {'GFLOPs':>10s} {'params':>10s}  module")
    LOGGER.info(f"{ms:10.2f} {gflops:10.2f} {m.np:10.0f}  {m.type}")
    if m is layers[-1]:
        LOGGER.info(f"{sum(times):10.2f} {'-':>10s} {'-':>10s}  Total")
