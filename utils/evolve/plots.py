"""evolve.png: one panel per hyp, fitness against the hyp's value, points coloured by density, the best marked."""

import math
from pathlib import Path

import numpy as np

from utils.evolve.meta import METRIC_KEYS, fitness
from utils.evolve.store import EvolveStore
from utils.files import atomic_open
from utils.log import LOGGER
from utils.plot_metrics import PNG_COMPRESS_LEVEL

DPI = 200


def _edges(values, bins):
    low, high = float(values.min()), float(values.max())
    return np.linspace(low, high if high > low else low + 1.0, bins)  # a constant column (frozen hyp) is one cell


def density(x, y, bins=20):
    """log(1 + count) of the 2-D histogram cell each point (x, y) falls in: the colour of each dot."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x_edges, y_edges = _edges(x, bins), _edges(y, bins)
    counts = np.histogram2d(x, y, (x_edges, y_edges))[0]
    ix = np.clip(np.digitize(x, x_edges) - 1, 0, counts.shape[0] - 1)
    iy = np.clip(np.digitize(y, y_edges) - 1, 0, counts.shape[1] - 1)
    return np.log1p(counts[ix, iy])


def draw_panels(fig, keys, values, columns=5):
    """One panel per hyp of evolve.csv's (keys, values) on `fig`: fitness against the hyp, coloured by density, the
    best row marked. Returns the best row's index."""
    metric_count = len(METRIC_KEYS)
    scores = fitness(values[:, :metric_count])
    best = int(np.argmax(scores))
    hyp_keys = keys[metric_count:]
    for i, ax in enumerate(fig.subplots(_grid_rows(keys, columns), columns, squeeze=False).ravel()):
        if i >= len(hyp_keys):
            ax.axis("off")
            continue
        key, column = hyp_keys[i], values[:, metric_count + i]
        ax.scatter(column, scores, c=density(column, scores), cmap="viridis", alpha=0.8, edgecolors="none", s=12)
        ax.plot(column[best], scores[best], "k+", markersize=15)
        ax.set_title(f"{key} = {column[best]:.3g}", fontsize=9)
        ax.tick_params(labelsize=7)
        if i % columns:
            ax.set_yticklabels([])
    return best


def _grid_rows(keys, columns):
    """Rows of panels for evolve.csv's keys: one panel per hyp, `columns` a row."""
    return max(1, math.ceil((len(keys) - len(METRIC_KEYS)) / columns))


def figure_size(keys, columns=5):
    """evolve.png's (width, height) in inches: 2 per panel, `columns` panels a row."""
    return 2 * columns, 2 * _grid_rows(keys, columns)


def plot_evolve(evolve_csv, columns=5):
    """Draw evolve.png beside `evolve_csv` (replaced atomically) and log the best row's hyps; returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the process's backend and open figures stay untouched
    from matplotlib.layout_engine import TightLayoutEngine

    evolve_csv = Path(evolve_csv)
    keys, values = EvolveStore(evolve_csv.parent).read()
    if not len(values):
        raise ValueError(f"{evolve_csv} has no rows to plot")
    fig = Figure(figsize=figure_size(keys, columns), dpi=DPI)
    FigureCanvasAgg(fig)
    best = draw_panels(fig, keys, values, columns)
    LOGGER.info(f"Best results from row {best} of {evolve_csv}:")
    for key, value in zip(keys[len(METRIC_KEYS):], values[best, len(METRIC_KEYS):]):
        LOGGER.info(f"{key:>15}: {value:.3g}")
    # tight_layout=True would have savefig lay out in a draw of its own before the real one: lay out once, here, at
    # the saving dpi (the layout measures text in pixels, and the figure is drawn at DPI)
    TightLayoutEngine().execute(fig)
    out = evolve_csv.with_suffix(".png")
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    LOGGER.info(f"Saved {out}")
    return out
