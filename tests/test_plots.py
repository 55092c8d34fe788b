"""Box drawing and the saved figures: batches, labels.jpg, results.png, metric curves, confusion matrix."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from utils.files import ROOT
from utils.metrics import ConfusionMatrix, ap_per_class
from utils.plot_metrics import plot_val_study
from utils.plots import Annotator, colors, output_to_target, plot_images, plot_labels, plot_results
from utils.results import RESULT_KEYS, format_row


@pytest.mark.parametrize("index,rgb", [(0, (255, 56, 56)), (1, (255, 157, 151)), (20, (255, 56, 56)),
                                       (19, (255, 55, 199))])
def test_colors_palette(index, rgb):
    assert colors(index) == rgb
    assert colors(index, bgr=True) == rgb[::-1]


def test_annotator_draws_box_and_label_in_place():
    im = np.zeros((100, 200, 3), dtype=np.uint8)
    annotator = Annotator(im, line_width=2)
    annotator.box_label((50, 40, 150, 90), "person 0.87", color=(0, 0, 255))
    out = annotator.result()
    assert out is im
    assert (out[60, 50] == (0, 0, 255)).all()  # left edge of the box
    assert out[60, 100].sum() == 0  # inside the box untouched
    assert (out[30:40, 50:60] != 0).any()  # the label tag above the box
    assert annotator.lw == 2


def test_annotator_label_goes_inside_at_top_edge_and_rejects_bad_images():
    im = np.zeros((100, 200, 3), dtype=np.uint8)
    Annotator(im, line_width=2).box_label((10, 0, 150, 90), "cat", color=(0, 255, 0))
    assert (im[5:15, 12:20] != 0).any()
    with pytest.raises(TypeError, match="uint8"):
        Annotator(np.zeros((10, 10, 3), dtype=np.float32))


def test_output_to_target():
    preds = [torch.tensor([[0.0, 0, 10, 20, 0.9, 3]]), torch.zeros(0, 6), torch.tensor([[10.0, 10, 20, 20, 0.5, 1]])]
    target = output_to_target(preds)
    assert target.tolist() == [[0, 3, 5, 10, 10, 20, pytest.approx(0.9)], [2, 1, 15, 15, 10, 10, 0.5]]


def _batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (3, 3, 64, 96), dtype=torch.uint8, generator=g)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.4, 0.4], [2, 5, 0.3, 0.6, 0.2, 0.3]])
    return images, targets, [f"/tmp/img{i}.jpg" for i in range(3)]


def test_plot_images_labels_and_predictions(tmp_path):
    images, targets, paths = _batch()
    plot_images(images, targets, paths, tmp_path / "val_batch0_labels.jpg", names={0: "person", 5: "bus"})
    preds = [torch.tensor([[10.0, 10, 50, 40, 0.9, 0], [0, 0, 5, 5, 0.1, 0]]), torch.zeros(0, 6), torch.zeros(0, 6)]
    plot_images(images.float() / 255, output_to_target(preds), paths, tmp_path / "val_batch0_pred.jpg",
                names=["person"])
    for name in ("val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        im = cv2.imread(str(tmp_path / name))
        assert im.shape == (2 * 64, 2 * 96, 3)  # 3 images on a 2 x 2 grid
        assert (im[64:, 96:] > 240).all()  # the empty fourth cell stays white


def test_plot_images_scales_large_mosaics(tmp_path):
    images = torch.zeros(1, 3, 2400, 1200, dtype=torch.uint8)
    plot_images(images, np.zeros((0, 6)), None, tmp_path / "big.jpg")
    assert cv2.imread(str(tmp_path / "big.jpg")).shape == (1920, 960, 3)


def test_plot_labels(tmp_path):
    g = np.random.default_rng(0)
    labels = np.concatenate((g.integers(0, 4, (50, 1)), g.uniform(0.05, 0.5, (50, 4))), 1)
    plot_labels(labels, names=["a", "b", "c", "d"], save_dir=tmp_path)
    assert cv2.imread(str(tmp_path / "labels.jpg")) is not None


def test_plot_results(tmp_path):
    header = ",".join(f"{k:>20s}" for k in ("epoch",) + RESULT_KEYS)
    rows = [format_row([e] + [1.0 / (e + 1)] * len(RESULT_KEYS)) for e in range(5)]
    (tmp_path / "results.csv").write_text("\n".join([header] + rows) + "\n")
    plot_results(file=tmp_path / "results.csv")
    assert cv2.imread(str(tmp_path / "results.png")) is not None
    with pytest.raises(FileNotFoundError, match="results.csv"):
        plot_results(file=tmp_path / "empty" / "results.csv")


def test_metric_curves_and_confusion_matrix(tmp_path):
    g = np.random.default_rng(1)
    tp = g.random((60, 10)) > 0.4
    ap_per_class(tp, g.random(60), g.integers(0, 3, 60), g.integers(0, 3, 40), plot=True, save_dir=tmp_path,
                 names={0: "a", 1: "b", 2: "c"})
    cm = ConfusionMatrix(nc=3)
    cm.matrix[:] = g.integers(0, 5, (4, 4))
    cm.plot(save_dir=tmp_path, names=["a", "b", "c"])
    for name in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png"):
        assert cv2.imread(str(tmp_path / name)) is not None, name


def test_plot_val_study(tmp_path):
    file = tmp_path / "study_coco128_yolov5n.txt"
    np.savetxt(file, [[256, 0.5, 0.4, 0.3, 0.2, 0, 0, 0, 1, 2, 3], [320, 0.5, 0.4, 0.35, 0.25, 0, 0, 0, 1, 2, 3]])
    plot_val_study([file], tmp_path / "study.png")
    assert cv2.imread(str(tmp_path / "study.png")) is not None


def test_import_leaves_matplotlib_backend_alone():
    code = ("import sys, utils.plots, utils.plot_metrics, utils.metrics; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_matplotlib_is_imported_only_to_draw():
    """val.py, train.py's metrics and the plotting modules load without matplotlib (about 0.4 s): a run that draws
    nothing never pays for it, and val.py imports it on its drawing thread."""
    code = ("import sys, val, utils.plots, utils.plot_metrics, utils.metrics; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
            "utils.plot_metrics.warm_up(); assert 'matplotlib.figure' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
