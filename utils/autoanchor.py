"""AutoAnchor: measure how well a model's anchors fit a dataset's boxes, and evolve better ones when they do not."""

import contextlib
import random

import numpy as np
import torch
from tqdm import tqdm

from utils.cpu_threads import single_threaded
from utils.dataloaders import LoadImagesAndLabels
from utils.dataset_config import check_dataset
from utils.log import LOGGER, TQDM_BAR_FORMAT, colorstr

PREFIX = colorstr("AutoAnchor: ")
MUTATION_PROB, MUTATION_SIGMA = 0.9, 0.1  # kmean_anchors' evolution: share of values mutated, size of a mutation
# kmean_anchors screens candidates only below this many boxes. Above it, the float32 sum in its fitness may round by
# more than most candidates fall short (the screen must allow n ulp: 0.2% here), and torch splits that sum across its
# threads, so their count decides the rounding. Below it the result is the same on any thread count, so the evolution
# runs on one intra-op thread: a second only spins in OpenMP's barriers between these small ops (60% more CPU time).
SCREENED_BOXES_MAX = 2**15
MIN_BLOCK, MAX_BLOCK = 4, 64  # candidates screened at once: doubling while none improves (improving stales the rest)


def check_anchor_order(m):
    """Flip Detect module m's anchors in place if their size order disagrees with its stride order."""
    area = m.anchors.prod(-1).mean(-1).view(-1)  # mean anchor area per output layer
    da, ds = area[-1] - area[0], m.stride[-1] - m.stride[0]
    if da and (da.sign() != ds.sign()):
        LOGGER.info(f"{PREFIX}Reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)


def _ratio_metric(wh, anchors):
    """Per box and anchor, the worse of the w and h ratios (<= 1): wh (n, 2), anchors (k, 2) -> (n, k), best (n,)."""
    r = wh[:, None] / anchors[None]
    x = torch.min(r, 1 / r).min(2)[0]
    return x, x.max(1)[0]


def dataset_box_sizes(dataset, img_size, scale=None):
    """Label widths/heights in pixels for images resized so their long side is img_size -> (n, 2) numpy."""
    shapes = img_size * dataset.shapes / dataset.shapes.max(1, keepdims=True)
    if scale is not None:
        shapes = shapes * scale
    boxes = [lb[:, 3:5] * s for s, lb in zip(shapes, dataset.labels)]
    return np.concatenate(boxes) if boxes else np.zeros((0, 2))


def check_anchors(dataset, model, thr=4.0, imgsz=640):
    """Log anchors/target and best possible recall (BPR); below 0.98, replace the anchors with k-means evolved ones
    if those recall more. Anchors are updated in place on the model's Detect layer (in stride units).

    Like YOLOv5, a failure here is logged and training goes on with the anchors it has.
    """
    try:
        _check_anchors(dataset, model, thr, imgsz)
    except Exception as e:  # anchors are an optimisation: never lose a training run to them
        LOGGER.warning(f"{PREFIX}ERROR ❌ {type(e).__name__}: {e} (training continues with the current anchors)")


def _check_anchors(dataset, model, thr, imgsz):
    m = model.module.model[-1] if hasattr(model, "module") else model.model[-1]  # Detect
    scale = np.random.uniform(0.9, 1.1, size=(dataset.shapes.shape[0], 1))  # augment the sizes by +/-10%
    wh = torch.tensor(dataset_box_sizes(dataset, imgsz, scale)).float()

    def metric(anchors):
        x, best = _ratio_metric(wh, anchors)
        anchors_per_target = (x > 1 / thr).float().sum(1).mean()
        bpr = (best > 1 / thr).float().mean()
        return bpr, anchors_per_target

    stride = m.stride.to(m.anchors.device).view(-1, 1, 1)  # (nl, 1, 1)
    anchors = m.anchors.clone() * stride  # (nl, na, 2) in pixels
    bpr, aat = metric(anchors.cpu().view(-1, 2))
    s = f"\n{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > 0.98:
        LOGGER.info(f"{s}Current anchors are a good fit to dataset ✅")
        return
    LOGGER.info(f"{s}Anchors are a poor fit to dataset ⚠️, attempting to improve...")
    num_anchors = m.anchors.numel() // 2
    new = kmean_anchors(dataset, n=num_anchors, img_size=imgsz, thr=thr, gen=1000, verbose=False)
    new_bpr = metric(torch.tensor(new))[0]
    if new_bpr > bpr:
        new = torch.tensor(new, device=m.anchors.device).type_as(m.anchors)
        m.anchors[:] = new.clone().view_as(m.anchors)
        check_anchor_order(m)
        m.anchors /= stride
        LOGGER.info(f"{PREFIX}Done ✅ (optional: update model *.yaml to use these anchors in the future)")
    else:
        LOGGER.info(f"{PREFIX}Done ⚠️ (original anchors better than new anchors, proceeding with original anchors)")


def kmean_anchors(dataset="./data/coco128.yaml", n=9, img_size=640, thr=4.0, gen=1000, verbose=True):
    """Anchors (n, 2) in pixels, sorted by area: k-means on the label sizes, then `gen` generations of mutation
    keeping whatever raises the fitness (mean best ratio over boxes whose best ratio passes 1/thr).

    dataset: a LoadImagesAndLabels, or a dataset YAML whose train split is loaded.
    """
    from scipy.cluster.vq import kmeans

    thr = 1 / thr

    def fitness(k):
        _, best = _ratio_metric(wh, torch.tensor(k, dtype=torch.float32))
        return (best * (best > thr).float()).mean()

    def report(k, verbose=True):
        k = k[np.argsort(k.prod(1))]
        x, best = _ratio_metric(wh0, torch.tensor(k, dtype=torch.float32))
        bpr, aat = (best > thr).float().mean(), (x > thr).float().mean() * n
        s = (f"{PREFIX}thr={thr:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr\n"
             f"{PREFIX}n={n}, img_size={img_size}, metric_all={x.mean():.3f}/{best.mean():.3f}-mean/best, "
             f"past_thr={x[x > thr].mean():.3f}-mean: ")
        s += ", ".join(f"{round(a)},{round(b)}" for a, b in k)
        if verbose:
            LOGGER.info(s)
        return k

    if isinstance(dataset, str):
        dataset = LoadImagesAndLabels(check_dataset(dataset)["train"], rect=True)
    wh0 = dataset_box_sizes(dataset, img_size)
    tiny = int((wh0 < 3.0).any(1).sum())
    if tiny:
        LOGGER.info(f"{PREFIX}WARNING ⚠️ Extremely small objects found: {tiny} of {len(wh0)} labels are <3 pixels")
    wh = wh0[(wh0 >= 2.0).any(1)].astype(np.float32)  # k-means on boxes of at least 2 pixels
    try:
        LOGGER.info(f"{PREFIX}Running kmeans for {n} anchors on {len(wh)} points...")
        if n > len(wh):
            raise ValueError(f"{len(wh)} boxes for {n} anchors")
        spread = wh.std(0)
        k = kmeans(wh / spread, n, iter=30)[0] * spread  # whitened k-means
        if len(k) != n:
            raise ValueError(f"k-means returned {len(k)} of {n} centres")
    except ValueError as e:
        LOGGER.warning(f"{PREFIX}WARNING ⚠️ switching strategies from kmeans to random init ({e})")
        k = np.sort(np.random.rand(n * 2)).reshape(n, 2) * img_size
    wh, wh0 = (torch.tensor(x, dtype=torch.float32) for x in (wh, wh0))
    k = report(k, verbose=False)

    # genetic refinement: multiplicative mutations of ~10% on ~90% of the values, kept when fitness improves
    bar = tqdm(total=gen, bar_format=TQDM_BAR_FORMAT)

    def improved(best_fitness, k):
        bar.desc = f"{PREFIX}Evolving anchors with Genetic Algorithm: fitness = {best_fitness:.4f}"
        if verbose:
            report(k, verbose)

    screened = 0 < len(wh) < SCREENED_BOXES_MAX
    with single_threaded() if screened else contextlib.nullcontext():
        bound = _FitnessBound(wh, thr, n) if screened else None
        k = _evolve(k, _mutations(k.shape, gen), fitness, bound, bar.update, improved)
    bar.close()
    return report(k).astype(np.float32)


def _mutation(shape):
    """One generation's multipliers, redrawn while they would change nothing."""
    v = np.ones(shape)
    while (v == 1).all():
        v = ((np.random.random(shape) < MUTATION_PROB) * random.random() * np.random.randn(*shape) * MUTATION_SIGMA + 1)
        v = v.clip(0.3, 3.0)
    return v


def _mutations(shape, generations):
    """(generations, *shape) multipliers: the values, and the global random and np.random states left behind, of
    `generations` calls of _mutation. The draws do not depend on fitness, so they can all be made first, in bulk."""
    if not generations:
        return np.ones((0, *shape))
    np_state, py_state = np.random.get_state(), random.getstate()
    draws = [(np.random.random(shape), random.random(), np.random.randn(*shape)) for _ in range(generations)]
    masks, scales, normals = (np.array(x) for x in zip(*draws))
    v = ((masks < MUTATION_PROB) * scales[:, None, None] * normals * MUTATION_SIGMA + 1).clip(0.3, 3.0)
    if (v == 1).all((1, 2)).any():  # _mutation would have redrawn a no-op generation: replay one at a time
        np.random.set_state(np_state)
        random.setstate(py_state)
        v = np.array([_mutation(shape) for _ in range(generations)])
    return v


class _FitnessBound:
    """Upper bounds on kmean_anchors' fitness for a block of candidate anchor sets, from float32 log-ratios.

    fitness(k) is the float32 mean over boxes of best * (best > thr), best being the box's best ratio over anchors.
    Here best = exp(allowance - min over anchors of max |log box size - log anchor size|): the allowance covers the
    float32 rounding of these logs and their differences, plus 2**-20 for fitness's own rounding of each ratio (two
    roundings: 2**-23 relative at most), so no box's best is below fitness's. `scale` adds the rounding of a float32
    sum of n terms in any order ((n - 1) ulp of the sum at most), of the mean's division, and of this float64 sum. So
    fitness can exceed a value only if this bound does.
    """

    def __init__(self, wh, thr, anchors):  # wh: (0 < n < SCREENED_BOXES_MAX, 2) float32 box sizes
        with np.errstate(divide="ignore", invalid="ignore"):  # zero (or bad) sizes: ratio 0 (or nan), adding nothing
            log_wh = np.log(np.ascontiguousarray(wh.numpy().T, dtype=np.float64))  # (2, n)
        self.largest_log = np.abs(log_wh[np.isfinite(log_wh)]).max(initial=0.0)
        self.log_w, self.log_h = log_wh.astype(np.float32)
        self.thr = min(thr, float(np.float32(thr)))  # fitness compares float32 values with thr
        count_ulp = (len(wh) + 4) * 2.0 ** -24
        self.scale = (1 + 2.0 ** -20) * (1 + count_ulp / (1 - count_ulp)) / len(wh)
        self.buffers = np.empty((2, MAX_BLOCK, anchors, len(wh)), np.float32)  # reused: fresh ones cost page faults

    def __call__(self, candidates):
        """Bounds (b,) for candidates (b <= MAX_BLOCK, anchors, 2) in pixels."""
        log_anchors = np.log(candidates.astype(np.float32).astype(np.float64))  # fitness's float32 anchors
        allowance = 2.0 ** -20 + 2.0 ** -22 * (self.largest_log + np.abs(log_anchors).max())
        log_anchors = log_anchors.astype(np.float32)[..., None]
        width, height = self.buffers[:, : len(candidates)]  # (b, anchors, n) each
        np.abs(np.subtract(self.log_w, log_anchors[:, :, 0], out=width), out=width)
        np.abs(np.subtract(self.log_h, log_anchors[:, :, 1], out=height), out=height)
        distance = np.maximum(width, height, out=width).min(1)  # (b, n): the worse of w and h, best anchor
        best = np.exp(allowance - distance.astype(np.float64))
        return np.where(best > self.thr, best, 0.0).sum(1) * self.scale


def _evolve(k, multipliers, fitness, bound, advance, improved):
    """kmean_anchors' genetic loop: candidate (k * multipliers[g]).clip(min=2.0) replaces k when its fitness beats
    the best so far. Blocks of candidates are screened with bound(); only those it cannot rule out get the exact
    fitness() that decides, so the result is the one-at-a-time loop's, bit for bit (bound None: every candidate gets
    fitness()). advance(generations) reports progress, improved(best_fitness, k) each improvement."""
    best_fitness, generation, block = fitness(k), 0, MIN_BLOCK
    while generation < len(multipliers):
        candidates = (k * multipliers[generation:generation + block]).clip(min=2.0)
        done = len(candidates)
        bounds = bound(candidates) if bound else np.full(len(candidates), np.inf)
        for j in np.flatnonzero(bounds > float(best_fitness)):
            f = fitness(candidates[j])
            if f > best_fitness:
                best_fitness, k, done = f, candidates[j].copy(), j + 1
                improved(best_fitness, k)
                break
        block = MIN_BLOCK if done < len(candidates) else min(2 * block, MAX_BLOCK)
        generation += done
        advance(done)
    return k
