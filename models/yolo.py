"""The YOLOv5 detector: `Detect` head, `DetectionModel` (alias `Model`) and `parse_model`, built from a model YAML.

Usage:
    python models/yolo.py --cfg yolov5s.yaml      # layer table and summary
"""

import argparse
import math
import sys
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # so `python models/yolo.py` finds models/ and utils/

from models.blocks import Concat, Contract, Expand, fuse_convs  # noqa: E402
from models.inspected_forward import forward_inspected  # noqa: E402
from models.model_yaml import (  # noqa: E402
    ACTIVATIONS,
    CHANNEL_MODULES,
    DEFAULT_CHANNEL_MULTIPLE,
    MODULES,
    REPEAT_INSIDE,
    ModelConfigError,
    conv_default_activation,
    load_model_yaml,
    resolve_arg,
)
from utils.autoanchor import check_anchor_order  # noqa: E402
from utils.log import LOGGER  # noqa: E402
from utils.model_utils import initialize_weights, make_divisible, model_info, scale_img  # noqa: E402
from utils.precision import single_threaded  # noqa: E402

TTA_SCALES, TTA_FLIPS = (1, 0.83, 0.67), (None, 3, None)  # test-time augmentation: sizes, and 3 = left-right flip


class Detect(nn.Module):
    """YOLOv3-style head: one 1x1 conv per level predicting, per anchor, (x, y, w, h, objectness, nc class logits).

    Training returns the raw maps [(bs, na, ny, nx, 5 + nc)] per level. Evaluation also decodes them into boxes in
    input pixels: xy = (2 * sigmoid - 0.5 + cell) * stride, wh = (2 * sigmoid)^2 * anchor, returning
    (decoded (bs, na * sum(ny * nx), 5 + nc), raw maps).
    """

    stride = None  # set by DetectionModel from a forward pass
    dynamic = False  # rebuild the grids at every call (export.py --dynamic: traced from the input shape)
    export = False  # export.py: decoded boxes only, traceable ops

    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5  # outputs per anchor
        self.nl = len(anchors)  # detection levels
        self.na = len(anchors[0]) // 2  # anchors per level
        self.grid = [torch.empty(0) for _ in range(self.nl)]  # cached per level, rebuilt when the map shape changes
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))  # (nl, na, 2)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace

    def forward(self, x):
        decoded = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()  # (bs, na, ny, nx, no)
            if not self.training:
                decoded.append(self._decode(x[i], i).view(bs, self.na * ny * nx, self.no))
        if self.training:
            return x
        return (torch.cat(decoded, 1),) if self.export else (torch.cat(decoded, 1), x)

    def _decode(self, p, i):
        """Boxes in input pixels from level i's raw map p (bs, na, ny, nx, no), in the head's own dtype.

        Computed in place on one new tensor (no split-and-concatenate): the same values, and decoding had been 37% of
        yolov5n's bf16 inference on a CPU. p itself is never modified: it is also returned as the raw map.
        """
        if self.export:
            return self._decode_traceable(p, i)
        y = p.to(self.anchors.dtype)  # bf16 autocast output is decoded in fp32: pixel coordinates need the bits
        y = y.sigmoid_() if y is not p else y.sigmoid()
        grid, anchor_grid = self._grids(y, i)
        y[..., :2].mul_(2).add_(grid).mul_(self.stride[i])  # xy = (2 * sigmoid + grid) * stride
        y[..., 2:4].mul_(2).pow_(2).mul_(anchor_grid)  # wh = (2 * sigmoid) ** 2 * anchor
        return y

    def _decode_traceable(self, p, i):
        """The same boxes as _decode for export (export.py): the TorchScript/ONNX tracer drops its chained in-place
        updates of slices, so the formula is written as YOLOv5 writes it, slice assignment with `inplace`, else
        split and concatenate."""
        y = p.sigmoid()
        grid, anchor_grid = self._grids(y, i)
        if self.inplace:
            y[..., :2] = (y[..., :2] * 2 + grid) * self.stride[i]
            y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * anchor_grid
            return y
        xy, wh, conf = y.split((2, 2, self.nc + 1), 4)
        return torch.cat(((xy * 2 + grid) * self.stride[i], (wh * 2) ** 2 * anchor_grid, conf), 4)

    def _grids(self, y, i):
        """Level i's cached (grid, anchor_grid) for map y, rebuilt when its shape, device or dtype changed (or
        always, when `dynamic`, so that an export traces them from the input's shape)."""
        ny, nx = y.shape[2:4]
        # read once and check both: chunks of one batch run in parallel threads (Precision.infer), and another
        # thread may have replaced one grid of the pair but not yet the other
        grid, anchor_grid = self.grid[i], self.anchor_grid[i]
        if (self.dynamic or grid.shape[2:4] != (ny, nx) or anchor_grid.shape[2:4] != (ny, nx)
                or grid.device != y.device or grid.dtype != y.dtype):
            grid, anchor_grid = self._make_grid(nx, ny, i)
            self.grid[i], self.anchor_grid[i] = grid, anchor_grid
        return grid, anchor_grid

    def _make_grid(self, nx, ny, i):
        """(cell corner - 0.5) and anchor size in pixels for every cell of level i, both (1, na, ny, nx, 2)."""
        device, dtype = self.anchors.device, self.anchors.dtype
        shape = 1, self.na, ny, nx, 2
        yv, xv = torch.meshgrid(torch.arange(ny, device=device, dtype=dtype),
                                torch.arange(nx, device=device, dtype=dtype), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape)
        return grid, anchor_grid


class BaseModel(nn.Module):
    """A sequential graph of layers in which each layer reads the previous output or earlier saved ones (`m.f`)."""

    def forward(self, x, profile=False, visualize=False):
        return self._forward_once(x, profile, visualize)

    def _forward_once(self, x, profile=False, visualize=False):
        if profile or visualize:
            return forward_inspected(self.model, self.save, x, profile, visualize)
        outputs = []  # only the layers in self.save are kept
        for m in self.model:
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        return x

    def fuse(self):
        """Fold every Conv's BatchNorm into its convolution (inference only; outputs unchanged)."""
        LOGGER.info("Fusing layers... ")
        fuse_convs(self.model)
        self.info()
        return self

    def info(self, verbose=False, img_size=640):
        """Log layers, parameters, gradients and GFLOPs; returns (parameters, gradients, GFLOPs)."""
        return model_info(self, verbose, img_size)

    def _apply(self, fn, *args, **kwargs):
        # stride is a plain tensor, not a buffer: move and cast it with the model. The cached grids are dropped
        # (Detect rebuilds them): fn may be a memory-format change that their 5-D shape cannot take (channels_last)
        self = super()._apply(fn, *args, **kwargs)
        m = self.model[-1]
        if isinstance(m, Detect):
            m.stride = fn(m.stride)
            m.grid = [torch.empty(0) for _ in m.grid]
            m.anchor_grid = [torch.empty(0) for _ in m.anchor_grid]
        return self


class DetectionModel(BaseModel):
    """YOLOv5 detector built from a model YAML (path or dict), e.g. DetectionModel('yolov5s.yaml', ch=3, nc=80)."""

    def __init__(self, cfg="yolov5s.yaml", ch=3, nc=None, anchors=None, verbose=True):
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = deepcopy(cfg)
        else:
            self.yaml_file = Path(cfg).name
            self.yaml = load_model_yaml(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml["nc"]:
            if verbose:
                LOGGER.info(f"Overriding model.yaml nc={self.yaml['nc']} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            if verbose:
                LOGGER.info(f"Overriding model.yaml anchors with anchors={anchors}")
            self.yaml["anchors"] = round(anchors)  # anchors per level; AutoAnchor computes their sizes
        self.model, self.save = parse_model(deepcopy(self.yaml), [ch], verbose=verbose)
        self.nc = self.yaml["nc"]
        self.names = {i: str(i) for i in range(self.nc)}
        self.inplace = self.yaml.get("inplace", True)

        m = self.model[-1]
        if isinstance(m, Detect):
            probe = 256  # stride of each level = probe size / its map size
            m.inplace = self.inplace
            m.stride = torch.tensor([probe / x.shape[-2] for x in self._probe_forward(ch, probe)])
            check_anchor_order(m)
            m.anchors /= m.stride.view(-1, 1, 1)  # pixels -> grid units of each level
            self.stride = m.stride
            self._initialize_biases()
        initialize_weights(self)
        if verbose:
            self.info()
            LOGGER.info("")

    def _probe_forward(self, ch, size):
        """The raw Detect maps for a zero image, in train mode as YOLOv5 computes them (BatchNorm statistics move)."""
        training = self.training
        self.train()  # train mode: Detect returns the raw maps only
        momenta = [(m, m.momentum) for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        for m, _ in momenta:
            m.momentum = 0.1  # PyTorch's default, which YOLOv5's probe runs with (its running_var becomes 0.9)
        try:
            with torch.no_grad(), single_threaded():  # a 1-image forward of tiny ops: threads only add stalls
                return self._forward_once(torch.zeros(1, ch, size, size))
        finally:
            for m, momentum in momenta:
                m.momentum = momentum
            self.train(training)

    def forward(self, x, augment=False, profile=False, visualize=False):
        """Raw maps in training; (decoded boxes, raw maps) in eval. augment=True: TTA over 3 scales and a flip.

        profile=True logs each layer's time, GFLOPs and parameters; visualize=<folder> saves each layer's feature maps
        there (stage{i}_{module}_features.png and .npy), as YOLOv5 does. Both are ignored with augment.
        """
        if augment:
            return self._forward_augment(x)
        return self._forward_once(x, profile, visualize)

    def _forward_augment(self, x):
        img_size = x.shape[-2:]  # (h, w)
        gs = int(self.stride.max())
        outputs = []
        for scale, flip in zip(TTA_SCALES, TTA_FLIPS):
            xi = scale_img(x.flip(flip) if flip else x, scale, gs=gs)
            yi = self._forward_once(xi)[0]  # (bs, n, no) decoded
            outputs.append(self._descale_pred(yi, flip, scale, img_size))
        outputs = self._clip_augmented(outputs)
        return torch.cat(outputs, 1), None

    @staticmethod
    def _descale_pred(p, flips, scale, img_size):
        """Predictions of a rescaled and/or flipped image back in the original image's pixels."""
        p[..., :4] /= scale
        if flips == 2:  # up-down
            p[..., 1] = img_size[0] - p[..., 1]
        elif flips == 3:  # left-right
            p[..., 0] = img_size[1] - p[..., 0]
        return p

    def _clip_augmented(self, y):
        """Drop the largest-object level of the full-size pass and the smallest-object level of the smallest pass.

        The decoded output lists levels P3, P4, P5 in order, with 4^(nl-1-k) units of cells at level k for every
        unit at P5, so the cell count of one level follows from the total divided by sum(4^k).
        """
        nl = self.model[-1].nl
        units = sum(4**x for x in range(nl))  # e.g. 16 + 4 + 1 = 21 for three levels
        y[0] = y[0][:, : -(y[0].shape[1] // units)]  # the P5 cells (last, 1 unit) of the first pass
        y[-1] = y[-1][:, (y[-1].shape[1] // units) * 4 ** (nl - 1):]  # the P3 cells (first, 16 units) of the last
        return y

    def _initialize_biases(self, class_frequency=None):
        """Objectness bias for 8 objects per 640x640 image; class bias for p=0.6/(nc-0.99999), or class frequencies."""
        m = self.model[-1]
        for conv, stride in zip(m.m, m.stride):
            b = conv.bias.view(m.na, -1)  # (na, no)
            b.data[:, 4] += math.log(8 / (640 / stride) ** 2)
            if class_frequency is None:
                b.data[:, 5:5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))
            else:
                b.data[:, 5:5 + m.nc] += torch.log(class_frequency / class_frequency.sum())
            conv.bias = nn.Parameter(b.view(-1), requires_grad=True)


Model = DetectionModel  # YOLOv5 keeps this name for older code and checkpoints


def parse_model(d, ch, verbose=True):
    """Build the layers of a model dict. ch: [input channels]. Returns (nn.Sequential of layers, saved layer indices).

    Each row [from, number, module, args] makes layer i reading layer(s) `from` (-1 = previous); `number` is scaled
    by depth_multiple, output channels by width_multiple (rounded up to a multiple of channel_multiple, default 8).
    """
    where = d.get("yaml_file", "model YAML")
    missing = [k for k in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head") if k not in d]
    if missing:
        raise ModelConfigError(f"{where} lacks {', '.join(missing)}")
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    channel_multiple = d.get("channel_multiple") or DEFAULT_CHANNEL_MULTIPLE
    activation = d.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise ModelConfigError(f"{where} activation: {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else anchors
    no = na * (nc + 5)  # Detect conv output channels: never scaled by width_multiple
    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")

    layers, save, c2 = [], [], ch[-1]
    context = conv_default_activation(ACTIVATIONS[activation]() if activation else None)
    with context:
        for i, row in enumerate(d["backbone"] + d["head"]):
            if not (isinstance(row, (list, tuple)) and len(row) == 4):
                raise ModelConfigError(f"{where} layer {i}: expected [from, number, module, args], got {row!r}")
            f, n, name, args = row
            m = Detect if name == "Detect" else MODULES.get(name)
            if m is None:
                raise ModelConfigError(f"{where} layer {i}: unknown module {name!r}; known: "
                                       f"{', '.join([*MODULES, 'Detect'])}")
            args = [resolve_arg(a, {"nc": nc, "anchors": anchors}) for a in args]
            n = n_ = max(round(n * gd), 1) if n > 1 else n
            if m in CHANNEL_MODULES:
                c1, c2 = ch[f], args[0]
                if c2 != no:
                    c2 = make_divisible(c2 * gw, channel_multiple)
                args = [c1, c2, *args[1:]]
                if m in REPEAT_INSIDE:
                    args.insert(2, n)
                    n = 1
            elif m is nn.BatchNorm2d:
                args = [ch[f]]
            elif m is Concat:
                c2 = sum(ch[x] for x in f)
            elif m is Detect:
                args.append([ch[x] for x in f])
                if isinstance(args[1], int):  # a count of anchors per level: placeholders that AutoAnchor replaces
                    args[1] = [list(range(args[1] * 2))] * len(f)
            elif m is Contract:
                c2 = ch[f] * args[0] ** 2
            elif m is Expand:
                c2 = ch[f] // args[0] ** 2
            else:
                c2 = ch[f]

            layer = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
            type_name = f"{m.__module__}.{m.__name__}".replace("__main__.", "")  # as YOLOv5 names it when run as a script
            n_params = sum(x.numel() for x in layer.parameters())
            layer.i, layer.f, layer.type, layer.np = i, f, type_name, n_params
            if verbose:
                LOGGER.info(f"{i:>3}{str(f):>18}{n_:>3}{n_params:10.0f}  {type_name:<40}{str(args):<30}")
            save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
            layers.append(layer)
            if i == 0:
                ch = []
            ch.append(c2)
    return nn.Sequential(*layers), sorted(save)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build a YOLOv5 model from its YAML and print its summary")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--batch-size", type=int, default=1, help="total batch size for all GPUs")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--profile", action="store_true", help="profile model speed")
    parser.add_argument("--line-profile", action="store_true", help="profile model speed layer by layer")
    parser.add_argument("--test", action="store_true", help="build every yolo*.yaml under models/")
    opt = parser.parse_args(argv)

    from utils.device import select_device
    from utils.profiling import profile

    device = select_device(opt.device)
    im = torch.rand(opt.batch_size, 3, 640, 640, device=device)
    model = DetectionModel(opt.cfg).to(device)
    if opt.line_profile:
        profile(im, list(model.model), n=3)
    elif opt.profile:
        profile(im, [model], n=3)
    elif opt.test:
        for cfg in sorted((ROOT / "models").rglob("yolo*.yaml")):
            try:
                DetectionModel(cfg, verbose=False)
            except Exception as e:
                LOGGER.error(f"Error in {cfg}: {e}")
    return model


if __name__ == "__main__":
    from utils.cli import run_cli

    run_cli(main)
