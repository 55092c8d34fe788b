"""YOLOv5's `models.common`: every building block a model YAML or a checkpoint names, gathered from the modules that
define them, so `from models.common import Conv, GhostConv, C3TR, DetectMultiBackend` works as in YOLOv5. Nothing in this
project imports it: it is the path users and their scripts know."""

from models.backends import DetectMultiBackend  # noqa: F401
from models.blocks import (  # noqa: F401
    BN_EPS,
    BN_MOMENTUM,
    C3,
    C3SPP,
    SPP,
    SPPF,
    Bottleneck,
    BottleneckCSP,
    Concat,
    Contract,
    Conv,
    DWConv,
    Expand,
    Focus,
    autopad,
    fuse_convs,
    unfused_convs,
)
from models.ghost import C3Ghost, GhostBottleneck, GhostConv  # noqa: F401
from models.mixed_convs import C3x, CrossConv  # noqa: F401
from models.transformer import C3TR, TransformerBlock, TransformerLayer  # noqa: F401

