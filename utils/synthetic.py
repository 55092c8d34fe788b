"""The embedded `shapes` detection dataset: procedurally drawn, deterministic, generated offline on first use.

Each image holds 3 to 9 filled shapes (circle, square, triangle, star, cross) of random colour, size (about 18 to 128 px
across at 256 px, so strides 8, 16 and 32 all have work) and a slight tilt, over a cluttered background (colour
gradient, soft blobs, stray lines, pixel noise). The shape is the only cue to the class. Every label is the tight box of the pixels its shape still shows, so occlusion and the
image border are accounted for; a shape that would end up more than half hidden is never drawn.

Usage:
    python -m utils.synthetic --out ../datasets/shapes --train 1024 --val 128 --seed 0
    download: "from utils.synthetic import make_shapes_dataset; make_shapes_dataset(yaml['path'])"  # data/shapes.yaml
"""

import argparse
import math
import os
import shutil
import socket
import uuid
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.log import LOGGER, TQDM_BAR_FORMAT

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross")
SPLIT_IDS = {"train": 0, "val": 1}  # mixed into each image's seed so the splits never share an image
DIAMETER_RANGE = (0.07, 0.5)  # an object's outer diameter as a fraction of the image side, drawn log-uniformly
OBJECTS_PER_IMAGE = (3, 9)  # inclusive; fewer when shapes find no room
MAX_TILT = math.radians(15)  # shapes are rotated by up to this much either way
MIN_VISIBLE = 0.5  # the fraction of a shape's pixels that must stay visible (not occluded, not off the image)
PLACEMENT_TRIES = 30  # rejected placements per image before giving up on more objects
MIN_COLOUR_DISTANCE = 100.0  # RGB distance from what a shape covers, so it never melts into its surroundings
NOISE_SIGMA = (3.0, 12.0)  # per-pixel Gaussian noise, drawn per image
JPEG_QUALITY = 85
SUBPIXEL_BITS = 4  # fixed-point vertices for cv2.fillPoly: sub-pixel shapes that still shift by whole pixels exactly


def unit_polygon(name):
    """The vertices (n, 2) of a class's shape, centred on the origin, its farthest vertex at distance 1."""
    def ring(n, radius=1.0, phase=0.0):
        angles = phase + 2 * math.pi * np.arange(n) / n
        return radius * np.stack([np.cos(angles), np.sin(angles)], 1)

    if name == "circle":
        return ring(64)
    if name == "square":
        return ring(4, phase=math.pi / 4)
    if name == "triangle":
        return ring(3, phase=-math.pi / 2)
    if name == "star":
        outer, inner = ring(5, 1.0, -math.pi / 2), ring(5, 0.45, -math.pi / 2 + math.pi / 5)
        return np.stack([outer, inner], 1).reshape(-1, 2)  # alternate outer and inner points
    if name == "cross":
        a, b = 1 / math.sqrt(5), 2 / math.sqrt(5)  # arms 2a wide, reaching b: corners (b, a) lie on the unit circle
        return np.array([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a),
                         (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)])
    raise ValueError(f"unknown shape {name!r}, expected one of {', '.join(CLASS_NAMES)}")


def shape_polygon(name, centre, diameter, angle=0.0):
    """Vertices (n, 2) in pixels of shape `name` with outer `diameter`, rotated by `angle` radians about `centre`."""
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])
    return unit_polygon(name) @ rotation * (diameter / 2) + np.asarray(centre, float)


def rasterize(vertices):
    """Fill a polygon into a small mask: returns (mask bool (h, w), x0, y0), the mask's top-left pixel in the image.

    Pixel (x, y) of the image is covered when mask[y - y0, x - x0]. The vertices are rounded to fixed point once, so the
    same polygon gives the same pixels wherever it lies.
    """
    scale = 1 << SUBPIXEL_BITS
    fixed = np.round(np.asarray(vertices) * scale).astype(np.int64)
    x0, y0 = (fixed.min(0) >> SUBPIXEL_BITS) - 1
    x1, y1 = (fixed.max(0) >> SUBPIXEL_BITS) + 2
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [(fixed - np.array([x0, y0]) * scale).astype(np.int32)], 1, cv2.LINE_8, SUBPIXEL_BITS)
    return mask.astype(bool), int(x0), int(y0)


def random_colour(rng):
    return rng.integers(0, 256, 3).astype(np.float32)


def draw_background(rng, size, clutter=True):
    """A float32 (size, size, 3) background: one flat colour, or with clutter a gradient, soft blobs and stray lines."""
    if not clutter:
        return np.broadcast_to(random_colour(rng), (size, size, 3)).copy()
    start, end, angle = random_colour(rng), random_colour(rng), rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    image = start + (end - start) * ramp[..., None]
    low_frequency = rng.normal(0, 20, (4, 4, 3)).astype(np.float32)  # broad uneven lighting
    image += cv2.resize(low_frequency, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(0, 4)):  # blurred ellipses: colour patches with no edges a shape could have
        alpha = np.zeros((size, size), np.float32)
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 10, size // 3, 2))
        cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 0.7, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(axes) / 3)[..., None]
        image = image * (1 - alpha) + random_colour(rng) * alpha
    for _ in range(rng.integers(1, 7)):  # stray straight lines, never labelled
        start_point, end_point = rng.integers(-size // 4, size * 5 // 4, (2, 2))
        cv2.line(image, tuple(int(v) for v in start_point), tuple(int(v) for v in end_point),
                 tuple(float(v) for v in random_colour(rng)), int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def pick_colour(rng, covered_colours):
    """A random colour at least MIN_COLOUR_DISTANCE from every colour in `covered_colours` (k, 3), else the farthest."""
    best, best_distance = None, -1.0
    for _ in range(20):
        colour = random_colour(rng)
        distance = np.linalg.norm(covered_colours - colour, axis=1).min()
        if distance >= MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def render_image(rng, size=256, clutter=True):
    """Draw one image. Returns (image uint8 (size, size, 3) BGR, owner int16 (size, size), labels float (n, 5)).

    owner[y, x] is the index of the object whose pixel it is (-1 for background); labels[i] = (class, x_centre,
    y_centre, width, height), normalised, the tight box of owner == i. Without clutter the background is one flat
    colour and there is no noise, so the drawn shapes are exactly the pixels that differ from it.
    """
    image = draw_background(rng, size, clutter)
    owner = np.full((size, size), -1, np.int16)
    classes, colours, areas, visible, regions = [], [], [], [], []  # per placed object
    wanted = rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)
    low, high = np.log(np.array(DIAMETER_RANGE) * size)
    for _ in range(PLACEMENT_TRIES):
        if len(classes) == wanted:
            break
        class_id = int(rng.integers(len(CLASS_NAMES)))
        diameter, angle = float(np.exp(rng.uniform(low, high))), rng.uniform(-MAX_TILT, MAX_TILT)
        mask, x0, y0 = rasterize(shape_polygon(CLASS_NAMES[class_id], rng.uniform(0, size, 2), diameter, angle))
        # The part of the mask inside the image
        left, top = max(x0, 0), max(y0, 0)
        right, bottom = min(x0 + mask.shape[1], size), min(y0 + mask.shape[0], size)
        if right <= left or bottom <= top:
            continue
        inside = mask[top - y0:bottom - y0, left - x0:right - x0]
        region = (slice(top, bottom), slice(left, right))
        if inside.sum() < MIN_VISIBLE * mask.sum():
            continue  # mostly off the image
        covered = owner[region][inside]
        lost = np.bincount(covered + 1, minlength=len(classes) + 1)[1:]
        if len(classes) and (np.array(visible) - lost < MIN_VISIBLE * np.array(areas)).any():
            continue  # it would hide too much of an earlier shape
        covered_colours = [colours[j] for j in np.flatnonzero(lost)]
        colour = pick_colour(rng, np.stack([image[region][inside].mean(0), *covered_colours]))
        owner[region][inside] = len(classes)
        image[region][inside] = colour
        visible = [v - n for v, n in zip(visible, lost)] + [int(inside.sum())]
        classes.append(class_id)
        colours.append(colour)
        areas.append(int(mask.sum()))
        regions.append(region)
    if clutter:
        image += rng.normal(0, rng.uniform(*NOISE_SIGMA), image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    labels = np.zeros((len(classes), 5))
    for i, (class_id, (rows, cols)) in enumerate(zip(classes, regions)):
        ys, xs = np.nonzero(owner[rows, cols] == i)
        x1, y1 = xs.min() + cols.start, ys.min() + rows.start
        x2, y2 = xs.max() + cols.start + 1, ys.max() + rows.start + 1  # pixel edges: the box covers whole pixels
        labels[i] = class_id, (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size
    return image, owner, labels


def image_rng(seed, split, index):
    """The generator for one image: independent of every other image, so any order or number of workers gives the
    same bytes."""
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def write_image(root, split, index, seed, size):
    """Render image `index` of `split` and write images/<split>/<index>.jpg and labels/<split>/<index>.txt."""
    image, _, labels = render_image(image_rng(seed, split, index), size)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode image {index} of {split} as JPEG")
    (root / "images" / split / f"{index:06d}.jpg").write_bytes(encoded.tobytes())
    rows = "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
    (root / "labels" / split / f"{index:06d}.txt").write_text(rows)
    return len(labels)


def _is_complete(root):
    """True when root holds both splits: only a finished generation is ever renamed into place."""
    return all((root / "images" / split).is_dir() and (root / "labels" / split).is_dir() for split in SPLIT_IDS)


def _remove_stale_partials(root):
    """Delete partial copies left by generations on this host whose process no longer exists (killed mid-way)."""
    prefix = f".{root.name}.partial-{socket.gethostname()}-"
    for partial in root.parent.glob(f"{prefix}*"):
        try:
            os.kill(int(partial.name[len(prefix):].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except (ValueError, PermissionError):  # not ours to judge
            pass


def make_shapes_dataset(path, train=1024, val=128, seed=0, size=256, workers=2):
    """Generate the shapes dataset into `path` (images/ and labels/, train and val splits) unless it is there already.

    It is built in a hidden sibling folder and renamed into place at the end, so a killed run never leaves a half
    dataset at `path`, and of two runs at once the later one finds the finished copy and discards its own.
    Returns `path` as a Path.
    """
    root = Path(path).expanduser().resolve()
    if _is_complete(root):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists but is not a complete shapes dataset (images/train, images/val, "
                              "labels/train, labels/val): move it away or delete it to generate the dataset there")
    partial = root.parent / f".{root.name}.partial-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(root)
        for kind in ("images", "labels"):
            for split in SPLIT_IDS:
                (partial / kind / split).mkdir(parents=True)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise PermissionError(f"cannot write the shapes dataset to {root.parent}: {e.strerror or e}. Make that folder "
                              "writable, or point 'path:' in data/shapes.yaml (or --out) somewhere writable") from e
    LOGGER.info(f"Generating the shapes dataset ({train} train + {val} val images, {size} px, seed {seed}) in {root}")
    try:
        jobs = [(split, i) for split, count in (("train", train), ("val", val)) for i in range(count)]
        with ThreadPool(max(1, workers)) as pool:  # cv2 and numpy release the GIL for the heavy parts
            counts = list(tqdm(pool.imap(lambda job: write_image(partial, job[0], job[1], seed, size), jobs),
                               total=len(jobs), desc="shapes", bar_format=TQDM_BAR_FORMAT))
        try:
            os.rename(partial, root)  # atomic; fails when another run has put a dataset there meanwhile
        except OSError:
            if not _is_complete(root):
                raise
            LOGGER.info(f"{root} was generated meanwhile by another process, discarding this copy")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    LOGGER.info(f"shapes: {len(jobs)} images, {sum(counts)} objects, classes {', '.join(CLASS_NAMES)}")
    return root


def main(argv=None):
    """`python -m utils.synthetic --out DIR`: generate the shapes dataset, or with --samples N write N sample images."""
    parser = argparse.ArgumentParser(description="Generate the embedded shapes detection dataset (offline)")
    parser.add_argument("--out", type=str, default="../datasets/shapes", help="dataset folder to create")
    parser.add_argument("--train", type=int, default=1024, help="train images")
    parser.add_argument("--val", type=int, default=128, help="val images")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="threads")
    parser.add_argument("--samples", type=int, default=0, help="write this many sample JPEGs into --out instead")
    opt = parser.parse_args(argv)
    if opt.samples:
        out = Path(opt.out)
        out.mkdir(parents=True, exist_ok=True)
        for i in range(opt.samples):
            image, _, _ = render_image(np.random.default_rng([opt.seed, 2, i]), opt.size)
            cv2.imwrite(str(out / f"shapes{i + 1}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return 0
    make_shapes_dataset(opt.out, opt.train, opt.val, opt.seed, opt.size, opt.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
