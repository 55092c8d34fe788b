"""Which files a dataset split names: its images (a folder, a .txt list of paths, or a list of either) and, for each
image, the label file YOLO's layout puts beside it."""

import glob
import os
from pathlib import Path

from utils.dataset_config import DatasetNotFoundError
from utils.label_cache import IMG_FORMATS


def img2label_paths(img_paths):
    """.../images/x/a.jpg -> .../labels/x/a.txt (the last /images/ in the path becomes /labels/)."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [labels.join(x.rsplit(images, 1)).rsplit(".", 1)[0] + ".txt" for x in img_paths]


def _listed_path(entry, parent):
    """A path from a .txt image list: './x' is beside the list (YOLOv5); another relative path is beside the list
    when it exists there, else taken from the working folder (YOLOv5)."""
    if entry.startswith("./"):
        return parent + entry[2:]
    if os.path.isabs(entry) or not os.path.exists(parent + entry):
        return entry
    return parent + entry


def list_image_files(path, prefix=""):
    """Image files from a folder (recursive), a .txt list of paths, or a list of either; sorted.
    Raises DatasetNotFoundError naming what is missing or empty."""
    files = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.is_dir():
            files += glob.glob(str(p / "**" / "*.*"), recursive=True)
        elif p.is_file():
            parent = str(p.parent) + os.sep
            with open(p, encoding="utf-8") as f:
                lines = [x.strip() for x in f.read().strip().splitlines() if x.strip()]
            files += [_listed_path(x, parent) for x in lines]
        else:
            raise DatasetNotFoundError(f"{prefix}{p} does not exist: give a folder of images, a .txt list of image "
                                       "paths, or a list of either")
    images = sorted(x.replace("/", os.sep) for x in files if x.split(".")[-1].lower() in IMG_FORMATS)
    if not images:
        raise DatasetNotFoundError(f"{prefix}no images found in {path} (supported: {', '.join(IMG_FORMATS)})")
    return images
