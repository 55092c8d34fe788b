"""Reading a model YAML: finding the file (models/, models/hub/), the module names its rows may use, its arguments."""

import contextlib
from pathlib import Path

import yaml
from torch import nn

from models.blocks import C3, C3SPP, SPP, SPPF, Bottleneck, BottleneckCSP, Concat, Contract, Conv, DWConv, Expand, Focus
from models.ghost import C3Ghost, GhostBottleneck, GhostConv
from models.mixed_convs import C3x, CrossConv, MixConv2d
from models.transformer import C3TR
from utils.files import ROOT

# The module names a model YAML may use. Looked up by name: a YAML is data, never evaluated as code.
CHANNEL_MODULES = (  # args[0] is the output width
    Conv, GhostConv, Bottleneck, GhostBottleneck, SPP, SPPF, DWConv, MixConv2d, Focus, CrossConv, BottleneckCSP, C3,
    C3TR, C3SPP, C3Ghost, C3x)
REPEAT_INSIDE = (BottleneckCSP, C3, C3TR, C3Ghost, C3x)  # `number` becomes their inner repeat count, not n copies
MODULES = {
    **{m.__name__: m for m in (*CHANNEL_MODULES, Concat, Contract, Expand)},
    "nn.Upsample": nn.Upsample, "nn.BatchNorm2d": nn.BatchNorm2d, "nn.Identity": nn.Identity,
    "nn.MaxPool2d": nn.MaxPool2d, "nn.ZeroPad2d": nn.ZeroPad2d,
}
DEFAULT_CHANNEL_MULTIPLE = 8  # widths are rounded up to a multiple of this, unless the YAML's channel_multiple says
ACTIVATIONS = {  # the model YAML's optional `activation:` key
    "nn.SiLU()": nn.SiLU, "nn.ReLU()": nn.ReLU, "nn.Hardswish()": nn.Hardswish, "nn.LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1),
}


class ModelConfigError(ValueError):
    """A model YAML with a missing key, an unknown module or a malformed layer row."""


def load_model_yaml(cfg):
    """A model YAML as a dict; a bare name like 'yolov5s.yaml' or 'yolov5s6.yaml' is found under models/ or models/hub/."""
    path = Path(cfg)
    folders = [ROOT / "models", ROOT / "models/hub"]
    if not path.is_file():
        path = next((folder / path.name for folder in folders if (folder / path.name).is_file()), path)
    if not path.is_file():
        raise FileNotFoundError(f"model YAML {cfg} not found (also looked in {' and '.join(map(str, folders))}): pass "
                                "--cfg with an existing file such as yolov5s.yaml or yolov5s6.yaml")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8", errors="ignore"))
    except yaml.YAMLError as e:
        raise ModelConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(content, dict):
        raise ModelConfigError(f"{path} must be a mapping with nc, depth_multiple, width_multiple, anchors, "
                               "backbone and head")
    content.setdefault("yaml_file", str(path))
    return content


def resolve_arg(arg, names):
    """A layer argument from the YAML: 'nc' and 'anchors' become their values, 'None' becomes None."""
    if isinstance(arg, str):
        if arg == "None":
            return None
        return names.get(arg, arg)  # other strings ('nearest') are literal arguments
    return arg


@contextlib.contextmanager
def conv_default_activation(activation):
    """Conv's default activation replaced for the duration of one build (a YAML's `activation:`), then restored."""
    previous = Conv.default_act
    if activation is not None:
        Conv.default_act = activation
    try:
        yield
    finally:
        Conv.default_act = previous
