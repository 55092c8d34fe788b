"""LoadImagesAndLabels / create_dataloader: batch layout, alignment of boxes and pixels, options, bad input."""

import logging
import os
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from utils import dataloaders
from utils.dataloaders import (
    InfiniteDataLoader,
    LoadImagesAndLabels,
    create_dataloader,
    img2label_paths,
    list_image_files,
    rect_batch_shapes,
)
from utils.dataset_config import DatasetNotFoundError
from utils.files import ROOT
from utils.log import LOGGER

SHARED_COCO128 = ROOT.parent / "shared" / "datasets" / "coco128"
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # BGR per class


@pytest.fixture(scope="module")
def hyp():
    with open(ROOT / "data" / "hyps" / "hyp.scratch-low.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture
def still_hyp(hyp):
    """Mosaic and geometry on, colour and flips off, so pixels keep their class colour."""
    return {**hyp, "hsv_h": 0, "hsv_s": 0, "hsv_v": 0, "fliplr": 0.0}


def make_dataset(root, sizes=((48, 64), (64, 48), (64, 64), (40, 80), (80, 40), (64, 96)), split="train"):
    """Images (h, w) with two class-coloured rectangles each on a dark noisy background, and their labels."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        im = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        rows = []
        for cls, (fx1, fy1, fx2, fy2) in ((i % 3, (0.1, 0.1, 0.45, 0.5)), ((i + 1) % 3, (0.55, 0.4, 0.95, 0.9))):
            x1, y1, x2, y2 = int(fx1 * w), int(fy1 * h), int(fx2 * w), int(fy2 * h)
            im[y1:y2, x1:x2] = COLOURS[cls]
            rows.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / split / f"im{i}.png"), im)
        (root / "labels" / split / f"im{i}.txt").write_text("\n".join(rows) + "\n")
    return root / "images" / split


def assert_targets_on_objects(imgs, targets, min_fill=0.9):
    """Every target's box in the RGB batch holds its class colour (inside a 1 px margin that resizing blurs)."""
    _, _, h, w = imgs.shape
    checked = 0
    for i, cls, x, y, bw, bh in targets.tolist():
        if bw * w < 6 or bh * h < 6:
            continue  # slivers cut by the mosaic crop
        x1, y1 = int(np.ceil((x - bw / 2) * w)) + 1, int(np.ceil((y - bh / 2) * h)) + 1
        x2, y2 = int((x + bw / 2) * w) - 1, int((y + bh / 2) * h) - 1
        region = imgs[int(i), :, y1:y2, x1:x2].permute(1, 2, 0).numpy().astype(int)
        colour = np.array(COLOURS[int(cls)][::-1])  # RGB
        fill = (np.abs(region - colour).max(-1) < 40).mean()
        assert fill >= min_fill, f"target {i, cls, x, y, bw, bh} holds {fill:.0%} of its colour"
        checked += 1
    return checked


@pytest.mark.parametrize("image, label", [
    ("/data/coco/images/train2017/a.jpg", "/data/coco/labels/train2017/a.txt"),
    ("/data/images/x/images/b.v1.png", "/data/images/x/labels/b.v1.txt"),  # the last /images/ is the one replaced
    ("images/c.JPG", "images/c.txt"),  # no /images/ folder in between: label beside the image
])
def test_img2label_paths(image, label):
    assert img2label_paths([image.replace("/", os.sep)]) == [label.replace("/", os.sep)]


@pytest.mark.parametrize("shapes_wh, batch_size, expected", [
    ([[128, 64], [128, 64]], 2, [[96, 160]]),  # h/w 0.5: 128 * [0.5, 1] / 32 + 0.5 -> ceil [2.5, 4.5] * 32
    ([[64, 128], [64, 128]], 2, [[160, 96]]),
    ([[100, 100], [128, 64], [64, 128]], 3, [[160, 160]]),  # a batch spanning both sides of square stays square
    ([[128, 64], [100, 100], [64, 128], [60, 120]], 2, [[160, 160], [160, 96]]),
])
def test_rect_batch_shapes(shapes_wh, batch_size, expected):
    shapes = np.array(shapes_wh, float)
    shapes = shapes[(shapes[:, 1] / shapes[:, 0]).argsort()]
    batch = np.arange(len(shapes)) // batch_size
    assert rect_batch_shapes(shapes, batch, 128, 32, 0.5).tolist() == expected


@pytest.mark.parametrize("seed", range(4))
def test_train_batch_layout_and_alignment(tmp_path, still_hyp, seed):
    random.seed(seed)
    np.random.seed(seed)
    path = make_dataset(tmp_path)
    loader, dataset = create_dataloader(str(path), 64, 4, 32, hyp=still_hyp, augment=True, workers=0, shuffle=True)
    assert isinstance(loader, InfiniteDataLoader) and len(loader) == 2
    checked = 0
    for batch_size, (imgs, targets, paths, shapes) in zip((4, 2), loader):  # 6 images: the last batch holds 2
        assert imgs.dtype == torch.uint8 and imgs.shape == (batch_size, 3, 64, 64)
        assert targets.dtype == torch.float32 and targets.shape[1] == 6
        assert targets[:, 0].min() >= 0 and targets[:, 0].max() < batch_size and (targets[:, 0].diff() >= 0).all()
        assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
        assert isinstance(paths, tuple) and len(paths) == batch_size and shapes == (None,) * batch_size
        checked += assert_targets_on_objects(imgs, targets)
    assert checked >= 3


def test_training_images_go_through_albumentations(tmp_path, still_hyp):
    pytest.importorskip("albumentations")
    path = make_dataset(tmp_path)
    loader, dataset = create_dataloader(str(path), 64, 6, 32, hyp=still_hyp, augment=True, workers=0)
    for t in dataset.albumentations.transform.transforms:
        t.p = 1.0 if t.p else 0.0  # YOLOv5's 1% transforms every time: ToGray makes every image grey
    imgs, targets, _, _ = next(iter(loader))
    assert (imgs[:, 0].int() - imgs[:, 1]).abs().max() <= 1 and len(targets)
    _, val_dataset = create_dataloader(str(path), 64, 6, 32, workers=0)
    assert val_dataset.albumentations is None  # validation images are never augmented


def test_val_batch_letterbox_rect_and_shapes(tmp_path):
    path = make_dataset(tmp_path)
    loader, dataset = create_dataloader(str(path), 96, 2, 32, rect=True, pad=0.5, workers=0)
    assert len(dataset.batch_shapes) == 3
    for b, (imgs, targets, paths, shapes) in enumerate(loader):
        assert tuple(imgs.shape[2:]) == tuple(dataset.batch_shapes[b])
        for i, ((h0, w0), ((gh, gw), pad)) in enumerate(shapes):
            assert cv2.imread(paths[i]).shape[:2] == (h0, w0)
            assert gh == pytest.approx(gw, rel=0.05) and 0 < gh <= 1.5
            assert len(pad) == 2
        assert assert_targets_on_objects(imgs, targets) == len(targets)


def test_rgb_channel_order(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "red.png"), np.full((32, 32, 3), (0, 0, 255), np.uint8))  # BGR red
    dataset = LoadImagesAndLabels(str(tmp_path / "images"), 32, 1)
    img = dataset[0][0]
    assert img[0].float().mean() == 255 and img[2].float().mean() == 0


def test_collate_fn4_quad(tmp_path, hyp):
    path = make_dataset(tmp_path, sizes=[(64, 64)] * 8)
    dataset = LoadImagesAndLabels(str(path), 64, 8)
    batch = [dataset[i] for i in range(8)]
    torch.manual_seed(0)
    imgs, targets, paths, shapes = LoadImagesAndLabels.collate_fn4(batch)
    assert imgs.shape == (2, 3, 128, 128) and imgs.dtype == torch.uint8 and len(paths) == 2
    assert set(targets[:, 0].tolist()) <= {0.0, 1.0}
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
    assert_targets_on_objects(imgs, targets, min_fill=0.8)


def test_quad_tiling_offsets(monkeypatch):
    monkeypatch.setattr(dataloaders.random, "random", lambda: 0.9)  # always tile 2x2
    img = torch.zeros(3, 4, 4, dtype=torch.uint8)
    label = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.2]])
    batch = [(img, label.clone(), f"p{i}", None) for i in range(4)]
    _, targets, _, _ = LoadImagesAndLabels.collate_fn4(batch)
    expected = [[0, 1, 0.25, 0.25, 0.1, 0.1], [0, 1, 0.25, 0.75, 0.1, 0.1], [0, 1, 0.75, 0.25, 0.1, 0.1],
                [0, 1, 0.75, 0.75, 0.1, 0.1]]
    torch.testing.assert_close(targets, torch.tensor(expected))


def test_infinite_loader_epochs_and_seeded_workers(tmp_path, hyp):
    path = make_dataset(tmp_path)

    def two_epochs(seed):
        loader, _ = create_dataloader(str(path), 64, 2, 32, hyp=hyp, augment=True, workers=2, shuffle=True, seed=seed)
        out = [[(imgs.clone(), targets.clone()) for imgs, targets, _, _ in loader] for _ in range(2)]
        assert [len(epoch) for epoch in out] == [3, 3]
        return out

    a, b, c = two_epochs(0), two_epochs(0), two_epochs(1)
    same = all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for ea, eb in zip(a, b) for x, y in zip(ea, eb))
    assert same  # same seed: same order and the same augmentation in every worker
    assert not torch.equal(a[0][0][0], c[0][0][0])


def test_ddp_sampler_and_image_weights(tmp_path, monkeypatch):
    import torch.distributed as dist

    path = make_dataset(tmp_path)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader, _ = create_dataloader(str(path), 64, 2, 32, rank=0, workers=0, shuffle=True)
        assert isinstance(loader.sampler, DistributedSampler)
    finally:
        dist.destroy_process_group()
    loader, dataset = create_dataloader(str(path), 64, 2, 32, rect=True, image_weights=True, workers=0)
    assert type(loader) is DataLoader and not dataset.rect  # a fresh iterator per epoch sees new indices


def test_nc_check_skips_image_naming_file_and_line(tmp_path):
    path = make_dataset(tmp_path)
    (tmp_path / "labels" / "train" / "im1.txt").write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.3 0.3\n")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        _, dataset = create_dataloader(str(path), 64, 2, 32, workers=0, nc=3)
    finally:
        LOGGER.removeHandler(handler)
    assert len(dataset) == 5 and not any(f.endswith("im1.png") for f in dataset.im_files)
    text = "\n".join(seen)
    assert "im1.txt" in text and "line 2 has class 5, expected an integer in 0-2" in text
    assert "1 of 6 images skipped" in text


def test_single_cls_keeps_every_class_as_zero(tmp_path):
    path = make_dataset(tmp_path)
    (tmp_path / "labels" / "train" / "im1.txt").write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.3 0.3\n")
    _, dataset = create_dataloader(str(path), 64, 2, 32, single_cls=True, workers=0, nc=1)  # as train.py calls it
    assert len(dataset) == 6 and sum(len(x) for x in dataset.labels) == 12
    assert all((x[:, 0] == 0).all() for x in dataset.labels)


def test_corrupt_image_skipped_rest_trains(tmp_path, hyp):
    path = make_dataset(tmp_path)
    (path / "im2.png").write_bytes(b"\x89PNG broken")
    loader, dataset = create_dataloader(str(path), 64, 2, 32, hyp=hyp, augment=True, workers=0)
    assert len(dataset) == 5
    imgs, targets, _, _ = next(iter(loader))
    assert imgs.shape == (2, 3, 64, 64) and len(targets)


def test_no_labels_stops_training_with_layout_help(tmp_path, hyp):
    path = make_dataset(tmp_path)
    shutil.rmtree(tmp_path / "labels")
    with pytest.raises(DatasetNotFoundError, match="no labels found .* replacing /images/ with /labels/"):
        create_dataloader(str(path), 64, 2, 32, hyp=hyp, augment=True, workers=0)
    _, dataset = create_dataloader(str(path), 64, 2, 32, workers=0)  # validation on backgrounds is allowed
    assert all(len(x) == 0 for x in dataset.labels)


def test_image_lists_and_missing_paths(tmp_path):
    path = make_dataset(tmp_path)
    listing = tmp_path / "train.txt"
    listing.write_text("./images/train/im0.png\nimages/train/im1.png\n" + str(path / "im2.png") + "\n")
    assert [Path(f).name for f in list_image_files(str(listing))] == ["im0.png", "im1.png", "im2.png"]
    assert len(list_image_files([str(path), str(listing)])) == 9
    with pytest.raises(DatasetNotFoundError, match="nowhere does not exist"):
        list_image_files(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no images found"):
        list_image_files(str(tmp_path / "empty"))


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_image_cache(tmp_path, mode):
    path = make_dataset(tmp_path)
    dataset = LoadImagesAndLabels(str(path), 64, 2, cache_images=mode)
    if mode == "ram":
        assert all(im is not None and max(im.shape[:2]) == 64 for im in dataset.ims)
    else:
        assert all(f.is_file() for f in dataset.npy_files)
        assert np.load(dataset.npy_files[0]).shape == cv2.imread(dataset.im_files[0]).shape
    reference = LoadImagesAndLabels(str(path), 64, 2)
    assert torch.equal(dataset[3][0], reference[3][0])


def test_ram_cache_refused_when_it_does_not_fit(tmp_path, monkeypatch):
    path = make_dataset(tmp_path)
    monkeypatch.setattr(dataloaders, "available_memory", lambda: 1000)
    dataset = LoadImagesAndLabels(str(path), 64, 2, cache_images="ram")
    assert all(im is None for im in dataset.ims)


def test_exif_rotated_image_shape_agrees(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = img.getexif()
    exif[274] = 6
    img.save(tmp_path / "images" / "r.jpg", exif=exif)
    dataset = LoadImagesAndLabels(str(tmp_path / "images"), 40, 1)
    w, h = dataset.shapes[0]
    assert (w, h) == (20, 40) and dataset.load_image(0)[1] == (h, w)


@pytest.mark.skipif(not SHARED_COCO128.is_dir(), reason="needs ../shared/datasets/coco128")
def test_coco128_copy_scan_counts(tmp_path, hyp):
    root = tmp_path / "coco128"
    shutil.copytree(SHARED_COCO128, root)
    loader, dataset = create_dataloader(str(root / "images" / "train2017"), 128, 16, 32, hyp=hyp, augment=True,
                                        workers=0, nc=80)
    assert len(dataset) == 128 and sum(len(x) for x in dataset.labels) == 929
    scan = dataloaders.load_or_scan(dataset.im_files, dataset.label_files, root / "labels" / "train2017.cache", nc=80)
    assert scan.from_cache and scan.summary() == "126 images, 2 backgrounds, 0 corrupt"
    imgs, targets, _, _ = next(iter(loader))
    assert imgs.shape == (16, 3, 128, 128)


def test_datasets_dict_scans_once_per_process(tmp_path, hyp, monkeypatch):
    """With the caller's `datasets` dict (one --evolve process's TrainingCache) the same arguments give back the
    scanned, cached dataset with the new generation's hyp; without it every call builds afresh."""
    images = make_dataset(tmp_path)
    scans = []
    original = dataloaders.load_or_scan
    monkeypatch.setattr(dataloaders, "load_or_scan", lambda *a, **k: scans.append(1) or original(*a, **k))
    other_hyp = {**hyp, "mosaic": 0.0}
    datasets = {}
    _, first = create_dataloader(str(images), 64, 2, 32, hyp=hyp, augment=True, cache="ram", workers=0,
                                 datasets=datasets)
    first.indices = [0] * first.n  # as --image-weights leaves them
    _, second = create_dataloader(str(images), 64, 2, 32, hyp=other_hyp, augment=True, cache="ram", workers=0,
                                  datasets=datasets)
    _, val = create_dataloader(str(images), 64, 2, 32, hyp=hyp, rect=True, workers=0, datasets=datasets)
    assert second is first and second.hyp is other_hyp and list(second.indices) == list(range(first.n))
    assert val is not first and len(scans) == 2 and len(datasets) == 2
    _, fresh = create_dataloader(str(images), 64, 2, 32, hyp=hyp, augment=True, workers=0)
    assert fresh is not first and len(scans) == 3
