"""The embedded shapes dataset: deterministic bytes, valid YOLO labels that match the drawn pixels, atomic generation."""

import hashlib
import math
import os

import numpy as np
import pytest
import yaml

from utils import synthetic
from utils.dataset_config import DatasetNotFoundError, check_dataset
from utils.files import ROOT
from utils.synthetic import (
    CLASS_NAMES,
    image_rng,
    make_shapes_dataset,
    rasterize,
    render_image,
    shape_polygon,
    unit_polygon,
)


def digest(root):
    """sha256 over every file's relative path and bytes under root."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def pixel_box(owner, i):
    """(x1, y1, x2, y2) pixel edges of object i's pixels."""
    ys, xs = np.nonzero(owner == i)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def label_to_pixels(row, size):
    _, x, y, w, h = row
    return tuple(int(round(v * size)) for v in (x - w / 2, y - h / 2, x + w / 2, y + h / 2))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("gen") / "shapes", train=6, val=3, seed=0, size=128)


def test_layout_and_label_rows(small_dataset):
    for split, count in (("train", 6), ("val", 3)):
        images = sorted((small_dataset / "images" / split).glob("*.jpg"))
        labels = sorted((small_dataset / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels] == [f"{i:06d}" for i in range(count)]
    for f in (small_dataset / "labels").rglob("*.txt"):
        rows = np.loadtxt(f, ndmin=2)
        assert rows.shape[1] == 5 and len(rows) >= 1
        assert np.all(rows[:, 0] == rows[:, 0].astype(int)) and np.all((rows[:, 0] >= 0) & (rows[:, 0] < 5))
        assert np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1))
        assert np.all(rows[:, 3:] > 0)
    # no partial folders are left beside the dataset
    assert [p.name for p in small_dataset.parent.iterdir()] == ["shapes"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small_dataset):
    again = make_shapes_dataset(tmp_path / "a" / "shapes", train=6, val=3, seed=0, size=128, workers=1)
    other = make_shapes_dataset(tmp_path / "b" / "shapes", train=6, val=3, seed=1, size=128)
    assert digest(again) == digest(small_dataset)  # 1 worker or 2: the same bytes
    assert digest(other) != digest(small_dataset)


def test_splits_differ():
    train, _, _ = render_image(image_rng(0, "train", 0), 64)
    val, _, _ = render_image(image_rng(0, "val", 0), 64)
    assert not np.array_equal(train, val)


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("clutter", [True, False])
def test_labels_are_tight_boxes_of_drawn_pixels(index, clutter):
    image, owner, labels = render_image(image_rng(3, "train", index), 128, clutter=clutter)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert len(labels) == owner.max() + 1 >= 1
    for i, row in enumerate(labels):
        assert label_to_pixels(row, 128) == pixel_box(owner, i)
    if not clutter:  # flat background, no noise: the drawn shapes are exactly the pixels that differ from it
        background = image[owner < 0][0]
        assert np.array_equal(np.any(image != background, axis=2), owner >= 0)


def test_objects_overlap_but_stay_visible():
    overlaps = 0
    for index in range(30):
        _, owner, labels = render_image(image_rng(5, "val", index), 96)
        boxes = [label_to_pixels(row, 96) for row in labels]
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            # a half-hidden star still owns over a sixth of its box; a box is never mostly someone else's pixels
            assert (owner[y1:y2, x1:x2] == i).sum() >= (x2 - x1) * (y2 - y1) / 6
            overlaps += sum(x1 < u2 and u1 < x2 and y1 < v2 and v1 < y2 for u1, v1, u2, v2 in boxes[i + 1:])
    assert overlaps >= 5  # partial occlusion happens


@pytest.mark.parametrize("name, diameter, width, height", [
    ("circle", 20, 21, 21),  # a 20 px diameter covers 21 pixel centres, both ends included
    ("square", 20 * math.sqrt(2), 21, 21),  # axis-aligned side 20
    ("cross", 20 * math.sqrt(5) / 2, 21, 21),  # arms reach +-10
    ("triangle", 20, 19, 16),  # width sqrt(3) * 10 = 17.3, height 15
])
def test_rasterized_shape_size(name, diameter, width, height):
    mask, x0, y0 = rasterize(shape_polygon(name, (32, 32), diameter))
    ys, xs = np.nonzero(mask)
    assert abs((xs.max() - xs.min() + 1) - width) <= 1 and abs((ys.max() - ys.min() + 1) - height) <= 1
    assert abs((xs.min() + xs.max()) / 2 + x0 - 32) <= 1  # centred where asked


def test_rasterize_shifts_by_whole_pixels_exactly():
    vertices = shape_polygon("star", (20.3, 17.8), 23.7, angle=0.4)
    mask, x0, y0 = rasterize(vertices)
    moved, mx0, my0 = rasterize(vertices + (37, -5))
    assert np.array_equal(mask, moved) and (mx0, my0) == (x0 + 37, y0 - 5)


def test_shapes_are_distinct_polygons():
    assert [len(unit_polygon(n)) for n in CLASS_NAMES] == [64, 4, 3, 10, 12]
    for name in CLASS_NAMES:
        assert np.isclose(np.linalg.norm(unit_polygon(name), axis=1).max(), 1)
    with pytest.raises(ValueError, match="hexagon"):
        unit_polygon("hexagon")


def test_sizes_span_small_to_large():
    sides = np.concatenate([render_image(image_rng(0, "train", i), 256)[2][:, 3:].max(1) * 256 for i in range(40)])
    assert sides.min() < 24 and sides.max() > 96  # P3 (stride 8) to P5 (stride 32) objects
    assert 3 <= len(sides) / 40 <= 8  # several objects per image
    classes = np.concatenate([render_image(image_rng(0, "train", i), 64)[2][:, 0] for i in range(20)])
    assert set(classes.astype(int)) == set(range(len(CLASS_NAMES)))


def write_shapes_yaml(tmp_path, download):
    data = yaml.safe_load((ROOT / "data" / "shapes.yaml").read_text())
    assert data["path"] == "../datasets/shapes" and data["names"] == dict(enumerate(CLASS_NAMES))
    data.update(path=str(tmp_path / "datasets" / "shapes"), download=download)
    f = tmp_path / "shapes.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_check_dataset_generates_on_first_use_then_reuses(tmp_path, monkeypatch):
    download = yaml.safe_load((ROOT / "data" / "shapes.yaml").read_text())["download"]
    small = download.replace("make_shapes_dataset(yaml['path'])", "make_shapes_dataset(yaml['path'], 4, 2, size=64)")
    assert small != download
    f = write_shapes_yaml(tmp_path, small)
    data = check_dataset(f)
    assert len(os.listdir(data["train"])) == 4 and len(os.listdir(data["val"])) == 2
    before = digest(data["path"])

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again")
    monkeypatch.setattr(synthetic, "write_image", no_generation)
    assert check_dataset(f)["train"] == data["train"] and digest(data["path"]) == before


def test_another_process_finishing_first_wins(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    first = make_shapes_dataset(tmp_path / "first" / "shapes", 2, 1, seed=0, size=32)
    first_digest = digest(first)
    real_write = synthetic.write_image

    def write_while_the_other_finishes(*args):
        if not root.exists():  # the other process renames its finished copy into place meanwhile
            first.rename(root)
        return real_write(*args)
    monkeypatch.setattr(synthetic, "write_image", write_while_the_other_finishes)
    assert make_shapes_dataset(root, 2, 1, seed=7, size=32, workers=1) == root
    assert digest(root) == first_digest  # the finished copy is kept, this one (seed 7) discarded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "shapes"]
    assert list((tmp_path / "first").iterdir()) == []


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(synthetic, "write_image", broken)
    with pytest.raises(OSError, match="No space left"):
        make_shapes_dataset(tmp_path / "shapes", 2, 1, size=32)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_of_a_dead_process_is_removed(tmp_path):
    import socket
    stale = tmp_path / f".shapes.partial-{socket.gethostname()}-999999999-abcd"
    (stale / "images").mkdir(parents=True)
    make_shapes_dataset(tmp_path / "shapes", 2, 1, size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]


def test_unwritable_location_names_the_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the parent folder should be")
    with pytest.raises(PermissionError, match="not_a_folder"):
        make_shapes_dataset(blocker / "shapes", 2, 1, size=32)
    f = write_shapes_yaml(tmp_path, yaml.safe_load((ROOT / "data" / "shapes.yaml").read_text())["download"])
    f.write_text(f.read_text().replace(str(tmp_path / "datasets"), str(blocker)))
    with pytest.raises(DatasetNotFoundError, match="not_a_folder"):
        check_dataset(f)


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="move it away"):
        make_shapes_dataset(tmp_path / "shapes", 2, 1, size=32)
    assert (tmp_path / "shapes" / "mine.txt").read_text() == "keep"


def test_cli_writes_samples(tmp_path):
    assert synthetic.main(["--out", str(tmp_path), "--samples", "2", "--size", "96"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes1.jpg", "shapes2.jpg"]
