"""evolve.png: the density colours, the figure's size and pixels, the atomic replace, and the empty-csv error."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from utils.evolve.meta import METRIC_KEYS
from utils.evolve.plots import DPI, density, draw_panels, figure_size, plot_evolve
from utils.evolve.store import EvolveStore


def write_evolve_csv(folder, hyp_count, rows, seed=0):
    """An evolve.csv of `rows` generations over hyps h0..h{hyp_count - 1}, h0 frozen, written as an evolution would."""
    store = EvolveStore(folder)
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.01, 5.0, hyp_count)
    for _ in range(rows):
        hyp = {f"h{i}": float(base[i] * (1.0 if i == 0 else rng.normal(1.0, 0.1))) for i in range(hyp_count)}
        store.append(rng.uniform(0.0, 0.6, len(METRIC_KEYS)), hyp)
    return store.csv


def reference_pixels(evolve_csv):
    """evolve.png's pixels as plot_evolve saved them before its speed-ups: the same panels on a tight_layout=True
    figure, which savefig lays out in a draw of its own, saved at 200 dpi with PNG's default compression."""
    from matplotlib.figure import Figure

    keys, values = EvolveStore(evolve_csv.parent).read()
    fig = Figure(figsize=figure_size(keys), tight_layout=True)
    draw_panels(fig, keys, values)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=200)
    return np.asarray(Image.open(buffer))


@pytest.mark.parametrize("x, y, expected", [
    ([0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [math.log(3), math.log(3), math.log(2)]),  # 2 points share a cell, 1 alone
    ([5.0, 5.0, 5.0], [0.0, 0.5, 1.0], [math.log(2), math.log(3), math.log(3)]),  # frozen hyp; the last edge is in
])
def test_density_is_log1p_of_the_cell_count(x, y, expected):
    np.testing.assert_allclose(density(x, y, bins=3), expected)


@pytest.mark.parametrize("hyp_count, rows, grid_rows", [(30, 50, 6), (12, 8, 3), (3, 1, 1)])
def test_evolve_png_keeps_its_pixels(tmp_path, hyp_count, rows, grid_rows):
    csv = write_evolve_csv(tmp_path, hyp_count, rows)
    png = plot_evolve(csv)
    pixels = np.asarray(Image.open(png))
    assert png == tmp_path / "evolve.png" and pixels.shape == (2 * grid_rows * DPI, 2 * 5 * DPI, 4)
    assert np.array_equal(pixels, reference_pixels(csv))


def test_evolve_png_is_replaced_atomically(tmp_path):
    csv = write_evolve_csv(tmp_path, 3, 4)
    (tmp_path / "evolve.png").write_bytes(b"an older plot")
    plot_evolve(csv)
    assert Image.open(tmp_path / "evolve.png").size == (2000, 400)
    assert not list(tmp_path.glob(".evolve.png.*"))  # no temporary file left behind


def test_empty_evolve_csv_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no rows to plot"):
        plot_evolve(tmp_path / "evolve.csv")
