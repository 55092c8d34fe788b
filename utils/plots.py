"""Drawing boxes and labels (OpenCV), and the saved figures of a run: image batches, labels.jpg, results.png.

Text is drawn with OpenCV's built-in Hershey font, so no font file is ever needed or downloaded. Figures use
matplotlib.figure.Figure with the Agg canvas directly, leaving pyplot's backend and state untouched.
"""

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.boxes import xywh2xyxy, xyxy2xywh
from utils.log import LOGGER

# YOLOv5's 20-colour palette (RGB hex)
PALETTE_HEX = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
               "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")
MAX_MOSAIC_SIZE = 1920  # longest side of a plot_images mosaic, pixels
MAX_SUBPLOTS = 16  # images per plot_images mosaic
PLOT_CONF_MIN = 0.25  # predictions below this confidence are left out of val_batchN_pred.jpg


class Colors:
    """colors(i) -> the i-th palette colour as an RGB tuple (BGR with bgr=True), cycling through 20 colours."""

    def __init__(self):
        self.palette = [tuple(int(h[k:k + 2], 16) for k in (0, 2, 4)) for h in PALETTE_HEX]
        self.n = len(self.palette)

    def __call__(self, i, bgr=False):
        c = self.palette[int(i) % self.n]
        return (c[2], c[1], c[0]) if bgr else c


colors = Colors()


class Annotator:
    """Draws boxes, labels and text onto a contiguous uint8 HWC image in place; `result()` returns it.

    Colours are in the image's own channel order (pass colors(c, bgr=True) for BGR images). `pil` and `font`
    are accepted for YOLOv5 call compatibility; text is always drawn with OpenCV's Hershey font.
    """

    def __init__(self, im, line_width=None, font_size=None, font="Arial.ttf", pil=False, example="abc"):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3:
            raise TypeError("Annotator needs a uint8 HxWxC numpy image, e.g. cv2.imread(path)")
        self.im = im if im.flags.c_contiguous else np.ascontiguousarray(im)
        self.lw = line_width or max(round(sum(im.shape) / 2 * 0.003), 2)
        self.font_scale = font_size / 30 if font_size else self.lw / 3  # Hershey glyphs are ~30 px at scale 1
        self.font_thickness = max(self.lw - 1, 1)

    def box_label(self, box, label="", color=(128, 128, 128), txt_color=(255, 255, 255)):
        """A box (x1, y1, x2, y2) with its label on a filled tag above it (inside when there is no room above)."""
        p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
        cv2.rectangle(self.im, p1, p2, color, thickness=self.lw, lineType=cv2.LINE_AA)
        if label:
            w, h = cv2.getTextSize(label, 0, fontScale=self.font_scale, thickness=self.font_thickness)[0]
            outside = p1[1] - h >= 3
            tag_end = (p1[0] + w, p1[1] - h - 3 if outside else p1[1] + h + 3)
            cv2.rectangle(self.im, p1, tag_end, color, -1, cv2.LINE_AA)
            cv2.putText(self.im, label, (p1[0], p1[1] - 2 if outside else p1[1] + h + 2), 0, self.font_scale,
                        txt_color, thickness=self.font_thickness, lineType=cv2.LINE_AA)

    def rectangle(self, xy, fill=None, outline=None, width=1):
        """A rectangle (x1, y1, x2, y2), filled with `fill` and/or outlined with `outline`."""
        p1, p2 = (int(xy[0]), int(xy[1])), (int(xy[2]), int(xy[3]))
        if fill is not None:
            cv2.rectangle(self.im, p1, p2, fill, -1)
        if outline is not None:
            cv2.rectangle(self.im, p1, p2, outline, width)

    def text(self, xy, text, txt_color=(255, 255, 255), anchor="top"):
        """Text with its top-left corner (anchor 'top') or bottom-left corner ('bottom') at xy."""
        h = cv2.getTextSize(text, 0, fontScale=self.font_scale, thickness=self.font_thickness)[0][1]
        y = int(xy[1]) + h if anchor == "top" else int(xy[1])
        cv2.putText(self.im, text, (int(xy[0]), y), 0, self.font_scale, txt_color, thickness=self.font_thickness,
                    lineType=cv2.LINE_AA)

    def result(self):
        return self.im


def output_to_target(output, max_det=300):
    """NMS output (list of (n, 6) xyxy, conf, cls) -> (N, 7) [image index, cls, x, y, w, h, conf] for plotting."""
    rows = []
    for i, o in enumerate(output):
        box, conf, cls = o[:max_det, :6].detach().cpu().float().split((4, 1, 1), 1)
        rows.append(torch.cat((torch.full_like(conf, i), cls, xyxy2xywh(box), conf), 1))
    return torch.cat(rows, 0).numpy() if rows else np.zeros((0, 7))


def plot_images(images, targets, paths=None, fname="images.jpg", names=None):
    """Save a mosaic of up to 16 RGB images (BCHW, 0-255 or 0-1) with boxes: labels or predictions.

    targets (N, 6) [image index, cls, x, y, w, h] are labels (xywh normalised or in pixels); a 7th column is
    a confidence, which marks them as predictions (drawn when conf > 0.25, label 'name conf').
    """
    images = images[:MAX_SUBPLOTS]  # only these are drawn: convert no more
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = np.asarray(targets, dtype=np.float64)
    targets = targets if targets.ndim == 2 else targets.reshape(-1, 6)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    bs, _, h, w = images.shape
    grid = int(np.ceil(bs ** 0.5))
    if images.size and np.max(images[0]) <= 1:
        images = images * 255

    mosaic = np.full((grid * h, grid * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        x, y = w * (i // grid), h * (i % grid)
        mosaic[y:y + h, x:x + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
    scale = MAX_MOSAIC_SIZE / grid / max(h, w)
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (w * grid, h * grid))

    font_size = int((h + w) * grid * 0.01)
    annotator = Annotator(mosaic, line_width=max(round(font_size / 10), 1), font_size=font_size)
    for i in range(bs):
        x, y = w * (i // grid), h * (i % grid)
        annotator.rectangle([x, y, x + w, y + h], None, (255, 255, 255), width=2)
        if paths:
            annotator.text((x + 5, y + 5), Path(paths[i]).name[:40], txt_color=(220, 220, 220))
        rows = targets[targets[:, 0] == i]
        if not len(rows):
            continue
        boxes = xywh2xyxy(rows[:, 2:6]).T  # (4, n)
        is_labels = rows.shape[1] == 6
        if boxes.max() <= 1.01:  # normalised
            boxes[[0, 2]] *= w
            boxes[[1, 3]] *= h
        elif scale < 1:
            boxes *= scale
        boxes[[0, 2]] += x
        boxes[[1, 3]] += y
        for j, box in enumerate(boxes.T.tolist()):
            cls = int(rows[j, 1])
            name = names.get(cls, cls) if names else cls
            if is_labels:
                annotator.box_label(box, f"{name}", color=colors(cls))
            elif rows[j, 6] > PLOT_CONF_MIN:
                annotator.box_label(box, f"{name} {rows[j, 6]:.1f}", color=colors(cls))
    cv2.imwrite(str(fname), cv2.cvtColor(annotator.result(), cv2.COLOR_RGB2BGR))


def _figure(figsize, **subplot_kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplot_kw)


def plot_results(file="path/to/results.csv", dir=""):
    """results.png beside results.csv (or for every results*.csv in `dir`): losses and metrics per epoch."""
    import pandas as pd
    from scipy.ndimage import gaussian_filter1d

    save_dir = Path(file).parent if file else Path(dir)
    files = list(save_dir.glob("results*.csv"))
    if not files:
        raise FileNotFoundError(f"No results.csv files found in {save_dir.resolve()}, nothing to plot")
    fig, axes = _figure((12, 6), nrows=2, ncols=5)
    axes = axes.ravel()
    for f in files:
        try:
            data = pd.read_csv(f)
            columns = [c.strip() for c in data.columns]
            epochs = data.values[:, 0]
            for k, col in enumerate((1, 2, 3, 4, 5, 8, 9, 10, 6, 7)):  # losses on top, metrics below
                y = data.values[:, col].astype(float)
                axes[k].plot(epochs, y, marker=".", label=f.stem, linewidth=2, markersize=8)
                if len(y) > 1:
                    axes[k].plot(epochs, gaussian_filter1d(y, sigma=3), ":", label="smooth", linewidth=2)
                axes[k].set_title(columns[col], fontsize=12)
        except (OSError, ValueError, IndexError, pd.errors.ParserError) as e:
            LOGGER.warning(f"WARNING ⚠️ Plotting error for {f}: {e}")
    axes[1].legend()
    fig.savefig(save_dir / "results.png", dpi=200)


def plot_labels(labels, names=(), save_dir=Path("")):
    """labels.jpg: class histogram, 1000 sample boxes, centre x-y and width-height histograms.

    labels: (n, 5) [cls, x, y, w, h] normalised, e.g. np.concatenate(dataset.labels, 0).
    """
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    classes, boxes = labels[:, 0].astype(int), labels[:, 1:].T
    nc = int(classes.max() + 1) if len(classes) else 0
    LOGGER.info(f"Plotting labels to {Path(save_dir) / 'labels.jpg'}... ")
    fig, axes = _figure((8, 8), nrows=2, ncols=2)
    axes = axes.ravel()

    counts = np.bincount(classes, minlength=nc)
    bars = axes[0].bar(range(nc), counts, width=0.8)
    for k, bar in enumerate(bars):
        bar.set_color([c / 255 for c in colors(k)])
    axes[0].set_ylabel("instances")
    names = list(names.values()) if isinstance(names, dict) else list(names)
    if 0 < len(names) < 30:
        axes[0].set_xticks(range(len(names)), names, rotation=90, fontsize=10)
    else:
        axes[0].set_xlabel("classes")

    canvas = np.full((2000, 2000, 3), 255, dtype=np.uint8)
    sample = labels[:1000]
    corners = xywh2xyxy(np.concatenate((np.full((len(sample), 2), 0.5), sample[:, 3:5]), 1)) * 2000
    for cls, box in zip(sample[:, 0].astype(int), corners):
        cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), colors(cls), 2)
    axes[1].imshow(canvas)
    axes[1].axis("off")

    for ax, (a, b), (xlabel, ylabel) in ((axes[2], (0, 1), ("x", "y")), (axes[3], (2, 3), ("width", "height"))):
        ax.hist2d(boxes[a], boxes[b], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.savefig(Path(save_dir) / "labels.jpg", dpi=200)


def feature_visualization(x, module_type, stage, n=32, save_dir=Path("runs/detect/exp")):
    """Save the first image's feature maps of one layer as YOLOv5 does: up to n channels, 8 per row, in
    save_dir/stage{stage}_{module}_features.png, and all channels in the .npy beside it.

    Skipped for the Detect head and for maps of one pixel in height or width.
    """
    if "Detect" in module_type or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return
    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return
    f = Path(save_dir) / f"stage{stage}_{module_type.split('.')[-1]}_features.png"
    features = x[0].detach().cpu()
    features = features.float() if features.dtype == torch.bfloat16 else features  # numpy has no bfloat16
    n = min(n, channels)
    fig, axes = _figure((6.4, 4.8), nrows=math.ceil(n / 8), ncols=8, squeeze=False)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    axes = axes.ravel()
    for i, ax in enumerate(axes):
        if i < n:
            ax.imshow(features[i].float().numpy())
        ax.axis("off")
    LOGGER.info(f"Saving {f}... ({n}/{channels})")
    f.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f, dpi=300, bbox_inches="tight")
    np.save(str(f.with_suffix(".npy")), features.numpy())
