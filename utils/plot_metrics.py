"""Figures of validation metrics: PR / F1 / P / R curves, the confusion matrix and the val.py study plot.

Figures are built with matplotlib.figure.Figure and the Agg canvas directly, so nothing here touches pyplot's
global backend or state. matplotlib is imported on the first figure (about 0.4 s), so a run that draws nothing never
pays for it and one that does can pay for it on a background thread (utils/background_plots.py).
"""

from pathlib import Path

import numpy as np

from utils.curves import smooth
from utils.log import LOGGER

PER_CLASS_LEGEND_MAX = 21  # more classes than this: per-class curves drawn without legend entries
# zlib level of the PNGs: the same pixels as the default level 6; on COCO128's curves and confusion matrix, drawing
# and saving took about a quarter less time, for files 8% smaller to 40% larger (0.2-0.9 MB)
PNG_COMPRESS_LEVEL = 1


def _new_figure(figsize, **subplot_kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplot_kw)


def _save(fig, file, dpi=250):
    fig.savefig(file, dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    LOGGER.debug(f"Saved {file}")


def warm_up():
    """Import matplotlib and load the font the figures use, so that a background worker can pay for both while the
    caller still computes the figures' data."""
    fig, ax = _new_figure((1, 1))
    ax.set_title("warm-up")
    fig.canvas.draw()


def plot_pr_curve(px, py, ap, save_dir=Path("pr_curve.png"), names=()):
    """Precision-recall curve per class (grey when many) and for all classes, with mAP@0.5 in the legend."""
    fig, ax = _new_figure((9, 6))
    py = np.stack(py, axis=1) if len(py) else np.zeros((len(px), 0))
    labelled = 0 < len(names) < PER_CLASS_LEGEND_MAX
    for i, y in enumerate(py.T):
        label = f"{names[i]} {ap[i, 0]:.3f}" if labelled else None
        ax.plot(px, y, linewidth=1, color=None if labelled else "grey", label=label)
    mean_ap50 = ap[:, 0].mean() if len(ap) else 0.0
    ax.plot(px, py.mean(1) if py.shape[1] else np.zeros_like(px), linewidth=3, color="blue",
            label=f"all classes {mean_ap50:.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title("Precision-Recall Curve")
    _save(fig, save_dir)


def plot_mc_curve(px, py, save_dir=Path("mc_curve.png"), names=(), xlabel="Confidence", ylabel="Metric"):
    """A metric (F1, P or R) against confidence per class and for all classes (smoothed, with its peak)."""
    fig, ax = _new_figure((9, 6))
    labelled = 0 < len(names) < PER_CLASS_LEGEND_MAX
    for i, y in enumerate(py):
        ax.plot(px, y, linewidth=1, color=None if labelled else "grey", label=names[i] if labelled else None)
    mean = smooth(py.mean(0), 0.05) if len(py) else np.zeros_like(px)
    ax.plot(px, mean, linewidth=3, color="blue", label=f"all classes {mean.max():.2f} at {px[mean.argmax()]:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(f"{ylabel}-Confidence Curve")
    _save(fig, save_dir)


def plot_metric_curves(px, pr_curves, ap, f1, p, r, save_dir=".", names=(), prefix=""):
    """PR_curve.png, F1_curve.png, P_curve.png and R_curve.png (with an optional file-name prefix)."""
    save_dir = Path(save_dir)
    plot_pr_curve(px, pr_curves, ap, save_dir / f"{prefix}PR_curve.png", names)
    plot_mc_curve(px, f1, save_dir / f"{prefix}F1_curve.png", names, ylabel="F1")
    plot_mc_curve(px, p, save_dir / f"{prefix}P_curve.png", names, ylabel="Precision")
    plot_mc_curve(px, r, save_dir / f"{prefix}R_curve.png", names, ylabel="Recall")


def plot_confusion_matrix(matrix, nc, normalize=True, save_dir="", names=()):
    """confusion_matrix.png: columns normalised to the true-class counts, cells annotated when nc < 30."""
    columns = matrix.sum(0).reshape(1, -1) + 1e-9
    shown = matrix / columns if normalize else matrix.copy()
    shown[shown < 0.005] = np.nan  # blank cells rather than a sea of zeros
    names = list(names)
    ticks = names + ["background"] if 0 < len(names) < 99 and len(names) == nc else None

    fig, ax = _new_figure((12, 9))
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if nc < 30:
        fontsize = 8 if nc < 50 else 6
        for (row, col), value in np.ndenumerate(shown):
            if not np.isnan(value):
                ax.text(col, row, f"{value:.2f}" if normalize else f"{value:.0f}", ha="center", va="center",
                        fontsize=fontsize, color="white" if value > 0.5 * np.nanmax(shown) else "black")
    if ticks:
        ax.set_xticks(range(nc + 1), ticks, rotation=90, fontsize=8 if nc < 50 else 6)
        ax.set_yticks(range(nc + 1), ticks, fontsize=8 if nc < 50 else 6)
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix")
    _save(fig, Path(save_dir) / "confusion_matrix.png")


def plot_val_study(files, save_path):
    """study.png from val.py --task study files: mAP@0.5:0.95 against image size, one line per weights file."""
    fig, ax = _new_figure((8, 5))
    for file in files:
        rows = np.loadtxt(file, ndmin=2)  # columns: imgsz, P, R, mAP50, mAP, loss x3, ms pre, inf, nms
        ax.plot(rows[:, 0], rows[:, 4] * 100, ".-", linewidth=2, markersize=8,
                label=Path(file).stem.replace("study_", ""))
    ax.grid(alpha=0.2)
    ax.set_xlabel("Image size (pixels)")
    ax.set_ylabel("COCO AP val (%)")
    ax.legend(loc="lower right")
    _save(fig, save_path, dpi=300)
