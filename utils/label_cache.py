"""Verify every image and its YOLO label file once, in parallel, and keep the outcome in a versioned *.cache file.

The cache is an .npz archive (no pickle) keyed by a hash of the file list, sizes and mtimes; it is written
atomically, and an unreadable, old-version or stale cache is rebuilt, never trusted. The class-count check is applied
after loading, so training and validation with any nc share one cache.
"""

import hashlib
import os
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.boxes import segments2boxes
from utils.files import atomic_open
from utils.log import LOGGER, TQDM_BAR_FORMAT

CACHE_VERSION = 1  # bump whenever the layout below or the verification rules change
IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
EXIF_ORIENTATION = 274  # EXIF tag id
HELP_URL = "https://docs.ultralytics.com/yolov5/tutorials/train_custom_data"
LAYOUT_HELP = ("labels are found by replacing /images/ with /labels/ in each image path and the suffix with .txt, "
               "e.g. datasets/x/images/train/a.jpg -> datasets/x/labels/train/a.txt, one 'class x y w h' row per "
               f"object, normalised to 0-1. See {HELP_URL}")


def num_threads():
    """Threads worth using here: the CPUs this process may run on, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus))


def exif_size(img):
    """(width, height) of a PIL image as displayed, i.e. after its EXIF rotation."""
    width, height = img.size
    try:
        if img.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8):  # transposed or rotated by 90 degrees
            return height, width
    except Exception:  # unreadable EXIF: keep the stored size
        pass
    return width, height


@dataclass
class Verified:
    """The outcome for one image: labels (n, 5) [cls, x, y, w, h] normalised, or None when the image is skipped."""
    im_file: str
    labels: np.ndarray = None
    shape: tuple = (0, 0)  # (width, height) after EXIF rotation
    segments: list = field(default_factory=list)
    found: int = 0  # the label file exists (YOLOv5 counts empty files here too)
    missing: int = 0
    empty: int = 0
    corrupt: int = 0
    msg: str = ""


def _restore_truncated_jpeg(im_file):
    """Re-encode a JPEG whose end marker is missing; returns the warning text."""
    img = cv2.imread(im_file)  # decodes what is there, grey fill for the lost tail; applies EXIF rotation
    if img is None:
        raise ValueError("truncated JPEG that cannot be decoded")
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    try:
        with atomic_open(im_file, "wb") as f:
            f.write(data.tobytes())
        return f"WARNING {im_file}: corrupt JPEG restored and saved"
    except OSError as e:
        return f"WARNING {im_file}: truncated JPEG kept as is, could not rewrite it ({e})"


def _check_image(im_file):
    """(width, height, warning); raises ValueError/OSError for images training cannot use."""
    with Image.open(im_file) as im:
        im.verify()  # must come straight after open, and leaves the image unusable
        fmt = (im.format or "").lower()
    with Image.open(im_file) as im:
        shape = exif_size(im)
    if fmt not in IMG_FORMATS:
        raise ValueError(f"unsupported image format {fmt or 'unknown'} (supported: {', '.join(IMG_FORMATS)})")
    if shape[0] < 10 or shape[1] < 10:
        raise ValueError(f"image size {shape[0]}x{shape[1]} is under 10 pixels")
    msg = ""
    if fmt in ("jpg", "jpeg"):
        with open(im_file, "rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                msg = _restore_truncated_jpeg(im_file)
    return shape, msg


def parse_label_file(lb_file, nc=None):
    """Rows of a YOLO label file -> (labels (n, 5) float32, segments list of (k, 2) arrays, duplicate count).

    Raises ValueError naming the line for a malformed row: wrong column count, non-numeric value, a class that is
    not an integer in [0, nc), or coordinates outside [0, 1].
    """
    with open(lb_file, encoding="utf-8", errors="replace") as f:
        rows = [(n, line.split()) for n, line in enumerate(f.read().splitlines(), 1) if line.strip()]
    if not rows:
        return np.zeros((0, 5), np.float32), [], 0
    line_numbers = np.array([n for n, _ in rows])
    polygons = any(len(values) > 6 for _, values in rows)
    for n, values in rows:
        if len(values) < 5 or (len(values) != 5 and (not polygons or len(values) % 2 == 0)):
            raise ValueError(f"line {n} has {len(values)} values, expected 5 (class x y w h) or a polygon "
                             "(class x1 y1 x2 y2 ... with at least 3 points)")
    try:
        if polygons:  # box rows in a polygon file keep their box, with its corners as the segment
            classes = np.array([float(values[0]) for _, values in rows], np.float32)
            segments = [np.array(values[1:], np.float32).reshape(-1, 2) for _, values in rows]
            segments = [_box_corners(s) if len(s) == 2 else s for s in segments]
            labels = np.concatenate((classes[:, None], segments2boxes(segments)), 1).astype(np.float32)
        else:
            labels, segments = np.array([values for _, values in rows], np.float32), []
    except ValueError as e:
        bad = next(n for n, values in rows if not all(_is_number(v) for v in values))
        raise ValueError(f"line {bad} is not numeric ({e})") from None
    cls = labels[:, 0]
    bad_class = (cls < 0) | (cls != np.round(cls)) | ((cls >= nc) if nc is not None else False)
    if bad_class.any():
        i = int(bad_class.argmax())
        expected = f"an integer in 0-{nc - 1}" if nc is not None else "a non-negative integer"
        raise ValueError(f"line {line_numbers[i]} has class {cls[i]:g}, expected {expected}")
    out = ~((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all(1)  # NaN fails both comparisons
    if out.any():
        i = int(out.argmax())
        raise ValueError(f"line {line_numbers[i]} has coordinates outside 0-1: labels must be normalised by the "
                         "image width and height")
    _, keep = np.unique(labels, axis=0, return_index=True)
    duplicates = len(labels) - len(keep)
    if duplicates:
        labels = labels[keep]
        segments = [segments[i] for i in keep] if segments else segments
    return labels, segments, duplicates


def _box_corners(points):
    """Two (x, y) pairs read from a 5-column row, i.e. a box x y w h -> its 4 corners as a polygon."""
    (x, y), (w, h) = points
    return np.array([[x - w / 2, y - h / 2], [x + w / 2, y - h / 2], [x + w / 2, y + h / 2], [x - w / 2, y + h / 2]],
                    np.float32)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def verify_image_label(im_file, lb_file, nc=None):
    """Check one image and its label file -> Verified (counts and a warning; labels None when skipped)."""
    out = Verified(im_file)
    msgs = []
    try:
        out.shape, msg = _check_image(im_file)
        msgs.append(msg)
        if os.path.isfile(lb_file):
            out.found = 1
            labels, out.segments, duplicates = parse_label_file(lb_file, nc)
            if duplicates:
                msgs.append(f"WARNING {im_file}: {duplicates} duplicate labels removed from {lb_file}")
            if not len(labels):
                out.empty = 1
        else:
            out.missing = 1
            labels = np.zeros((0, 5), np.float32)
        out.labels = labels
    except Exception as e:  # any unreadable image or label skips this image, never the whole scan
        out.corrupt, out.labels, out.segments = 1, None, []
        where = lb_file if out.found else im_file
        msgs.append(f"WARNING {where}: ignoring corrupt image/label: {e or type(e).__name__}")
    out.msg = "\n".join(m for m in msgs if m)
    return out


def dataset_hash(im_files, label_files):
    """sha256 over paths, sizes and mtimes (a touched or edited file changes it) and the cache version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for f in (*label_files, *im_files):
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\0absent\n".encode())
    return h.hexdigest()


@dataclass
class LabelScan:
    """Verified images (corrupt ones dropped), their labels, shapes and segments, and the counts."""
    im_files: list
    labels: list
    shapes: np.ndarray  # (n, 2) width, height
    segments: list
    found: int
    missing: int
    empty: int
    corrupt: int
    total: int
    msgs: list
    key: str = ""
    from_cache: bool = False

    def summary(self):
        return f"{self.found} images, {self.missing + self.empty} backgrounds, {self.corrupt} corrupt"


def scan_labels(im_files, label_files, prefix="", desc="", workers=None):
    """Verify all pairs with a thread pool and a progress bar -> LabelScan."""
    kept, counts, msgs = [], np.zeros(4, int), []
    bar_desc = f"{prefix}Scanning {desc}..."
    with ThreadPool(workers or num_threads()) as pool:
        results = pool.imap(lambda pair: verify_image_label(*pair), zip(im_files, label_files))
        bar = tqdm(results, desc=bar_desc, total=len(im_files), bar_format=TQDM_BAR_FORMAT)
        for v in bar:
            counts += (v.found, v.missing, v.empty, v.corrupt)
            if v.labels is not None:
                kept.append(v)
            if v.msg:
                msgs.append(v.msg)
            bar.desc = f"{bar_desc} {counts[0]} images, {counts[1] + counts[2]} backgrounds, {counts[3]} corrupt"
        bar.close()
    return LabelScan([v.im_file for v in kept], [v.labels for v in kept],
                     np.array([v.shape for v in kept], np.int64).reshape(-1, 2), [v.segments for v in kept],
                     *map(int, counts), len(im_files), msgs)


def save_cache(path, scan):
    """Write `scan` to `path` atomically as an .npz archive; returns False (with a warning) if it cannot."""
    segments = [s for image_segments in scan.segments for s in image_segments]
    arrays = dict(
        version=np.array(CACHE_VERSION), key=np.array(scan.key), im_files=np.array(scan.im_files, dtype=str),
        shapes=scan.shapes, label_counts=np.array([len(x) for x in scan.labels], np.int64),
        labels=np.concatenate(scan.labels, 0) if scan.labels else np.zeros((0, 5), np.float32),
        segment_counts=np.array([len(x) for x in scan.segments], np.int64),
        segment_points=np.array([len(s) for s in segments], np.int64),
        points=np.concatenate(segments, 0) if segments else np.zeros((0, 2), np.float32),
        counts=np.array([scan.found, scan.missing, scan.empty, scan.corrupt, scan.total], np.int64),
        msgs=np.array(scan.msgs, dtype=str))
    try:
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        return True
    except OSError as e:
        LOGGER.warning(f"WARNING cache directory {Path(path).parent} is not writeable, labels not cached: {e}")
        return False


def load_cache(path, key):
    """LabelScan from `path`, or None when it is absent, unreadable, of another version or for other files."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["key"]) != key:
                return None
            counts = z["counts"].tolist()
            labels = np.split(z["labels"], np.cumsum(z["label_counts"])[:-1]) if len(z["label_counts"]) else []
            points = np.split(z["points"], np.cumsum(z["segment_points"])[:-1]) if len(z["segment_points"]) else []
            bounds = np.cumsum(np.concatenate(([0], z["segment_counts"])))
            segments = [points[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            return LabelScan(z["im_files"].tolist(), labels, z["shapes"], segments, *counts,
                             msgs=z["msgs"].tolist(), key=key, from_cache=True)
    except Exception as e:  # a torn, foreign (e.g. a pickled YOLOv5 cache) or damaged file is rebuilt
        LOGGER.warning(f"WARNING {path}: unreadable label cache rebuilt ({type(e).__name__}: {e})")
        return None


def drop_classes_beyond(scan, nc, label_files):
    """Remove images whose labels name a class >= nc from `scan` (counted corrupt, with a warning naming the line).

    label_files maps each image path to its label path.
    """
    counts = np.array([len(x) for x in scan.labels], np.int64)
    if not counts.sum():
        return
    image_of_row = np.repeat(np.arange(len(counts)), counts)
    bad = np.unique(image_of_row[np.concatenate(scan.labels, 0)[:, 0] >= nc])
    for i in bad:
        lb_file = label_files[scan.im_files[i]]
        try:
            parse_label_file(lb_file, nc)
            reason = f"a class id >= nc={nc}"
        except ValueError as e:
            reason = str(e)
        scan.msgs.append(f"WARNING {lb_file}: ignoring corrupt image/label: {reason}")
    keep = np.setdiff1d(np.arange(len(counts)), bad)
    scan.im_files = [scan.im_files[i] for i in keep]
    scan.labels = [scan.labels[i] for i in keep]
    scan.segments = [scan.segments[i] for i in keep]
    scan.shapes = scan.shapes[keep]
    scan.corrupt += len(bad)


def load_or_scan(im_files, label_files, cache_path, nc=None, prefix="", workers=None):
    """Labels for `im_files` from a valid cache at `cache_path`, else scanned and cached there; images with a class
    id >= nc (when given) are dropped. Logs the summary and a warning per skipped file."""
    cache_path = Path(cache_path)
    key = dataset_hash(im_files, label_files)
    scan = load_cache(cache_path, key)
    desc = cache_path.parent / cache_path.stem
    if scan is not None:
        tqdm(None, desc=f"{prefix}Scanning {cache_path}... {scan.summary()}", total=scan.total, initial=scan.total,
             bar_format=TQDM_BAR_FORMAT).close()
    else:
        scan = scan_labels(im_files, label_files, prefix=prefix, desc=desc, workers=workers)
        scan.key = key
        if save_cache(cache_path, scan):
            LOGGER.info(f"{prefix}New cache created: {cache_path}")
    if nc is not None:
        drop_classes_beyond(scan, nc, dict(zip(im_files, label_files)))
    if scan.msgs:
        LOGGER.warning("\n".join(scan.msgs))
    if scan.corrupt:
        LOGGER.warning(f"{prefix}WARNING {scan.corrupt} of {scan.total} images skipped as corrupt: see the warnings "
                       "above for each file and the fix")
    if scan.found == 0:
        LOGGER.warning(f"{prefix}WARNING no labels found for {desc}: {LAYOUT_HELP}")
    return scan
