"""YOLO-format training/validation data: LoadImagesAndLabels, create_dataloader, samplers and collate functions."""

import math
import os
import random
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, distributed
from tqdm import tqdm

from utils.augmentations import (
    Albumentations,
    augment_hsv,
    copy_paste,
    letterbox,
    mixup,
    mosaic_centre,
    random_perspective,
    tile_mosaic,
)
from utils.boxes import xywhn2xyxy, xyxy2xywhn
from utils.dataset_config import DatasetNotFoundError
from utils.dataset_files import img2label_paths, list_image_files
from utils.distributed import RANK, torch_distributed_zero_first
from utils.files import atomic_open
from utils.label_cache import (  # noqa: F401 (re-exported as in YOLOv5)
    HELP_URL,
    IMG_FORMATS,
    LAYOUT_HELP,
    load_or_scan,
    num_threads,
)
from utils.log import LOGGER, TQDM_BAR_FORMAT

PIN_MEMORY = str(os.getenv("PIN_MEMORY", True)).lower() == "true"  # pinned host memory for faster GPU copies
def _dataset(hyp, datasets=None, **kwargs):
    """A LoadImagesAndLabels for `kwargs`; with `datasets` (a dict kept by the caller), the one built before for the
    same arguments, its hyp updated, so successive trainings scan labels and cache images once."""
    if datasets is None:
        return LoadImagesAndLabels(hyp=hyp, **kwargs)
    key = repr(sorted(kwargs.items()))
    dataset = datasets.get(key)
    if dataset is None:
        dataset = datasets[key] = LoadImagesAndLabels(hyp=hyp, **kwargs)
    else:
        dataset.hyp = hyp
        dataset.indices = range(dataset.n)  # --image-weights redraws them each epoch
        if dataset.albumentations is not None:
            dataset.albumentations.seed = None  # reseeded at its next use, as a new dataset's is
        if kwargs["cache_images"] in ("ram", True):
            dataset.ram_check_sample()  # the random draws a new dataset makes, so that later draws are the same
    return dataset


def available_memory():
    """Bytes of memory available to new allocations (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def rect_batch_shapes(shapes_wh, batch_index, img_size, stride, pad):
    """(num_batches, 2) [h, w] inputs for rectangular batches: each batch fits its most extreme aspect ratio.

    batch_index is non-decreasing (images are sorted by aspect ratio, then cut into consecutive batches).
    """
    aspect = shapes_wh[:, 1] / shapes_wh[:, 0]  # h / w
    starts = np.flatnonzero(np.r_[True, np.diff(batch_index) != 0])
    lo, hi = np.minimum.reduceat(aspect, starts), np.maximum.reduceat(aspect, starts)
    shapes = np.ones((len(starts), 2))
    shapes[hi < 1] = np.stack([hi, np.ones_like(hi)], 1)[hi < 1]  # all wide: height shrinks to the tallest
    shapes[lo > 1] = np.stack([np.ones_like(lo), 1 / lo], 1)[lo > 1]  # all tall: width shrinks to the widest
    return np.ceil(shapes * img_size / stride + pad).astype(int) * stride


class LoadImagesAndLabels(Dataset):
    """Images and YOLO labels for training (mosaic and augmentation) and validation (letterbox, rect batches)."""

    def __init__(self, path, img_size=640, batch_size=16, augment=False, hyp=None, rect=False, image_weights=False,
                 cache_images=False, single_cls=False, stride=32, pad=0.0, min_items=0, prefix="", nc=None):
        self.img_size = img_size
        self.augment = augment
        self.hyp = hyp
        self.image_weights = image_weights
        self.rect = False if image_weights else rect
        self.mosaic = self.augment and not self.rect  # mosaic tiles square inputs, so not with rect batches
        self.mosaic_border = [-img_size // 2, -img_size // 2]
        self.albumentations = Albumentations(size=img_size) if augment else None
        self.stride = stride
        self.path = path
        if augment and hyp is None:
            raise ValueError("augment=True needs a hyp dict (e.g. data/hyps/hyp.scratch-low.yaml)")

        self.im_files = list_image_files(path, prefix)
        self.label_files = img2label_paths(self.im_files)
        first = Path(path[0] if isinstance(path, (list, tuple)) else path)
        cache_path = (first if first.is_file() else Path(self.label_files[0]).parent).with_suffix(".cache")
        class_limit = None if single_cls else nc  # --single-cls trains every class as 0, whatever nc says
        scan = load_or_scan(self.im_files, self.label_files, cache_path, nc=class_limit, prefix=prefix)
        if scan.found == 0 and augment:
            raise DatasetNotFoundError(f"{prefix}no labels found in {cache_path.parent}, cannot start training: "
                                       f"{LAYOUT_HELP}")
        self.labels, self.shapes, self.segments = scan.labels, np.asarray(scan.shapes, np.int64), scan.segments
        self.im_files = scan.im_files
        self.label_files = img2label_paths(self.im_files)
        if min_items:
            keep = np.array([len(x) >= min_items for x in self.labels], bool)
            LOGGER.info(f"{prefix}{len(keep) - keep.sum()}/{len(keep)} images filtered from dataset")
            self._select(np.flatnonzero(keep))
        if not self.im_files:
            raise DatasetNotFoundError(f"{prefix}no usable images in {path}: every image was skipped, see the "
                                       "warnings above")
        if single_cls:
            for x in self.labels:
                x[:, 0] = 0

        n = len(self.im_files)
        self.batch = np.floor(np.arange(n) / batch_size).astype(int)  # batch index of each image
        self.n = n
        self.indices = range(n)
        if self.rect:
            order = (self.shapes[:, 1] / self.shapes[:, 0]).argsort()
            self._select(order)
            self.batch_shapes = rect_batch_shapes(self.shapes, self.batch, img_size, stride, pad)

        self.ims = [None] * n
        self.im_hw0, self.im_hw = [None] * n, [None] * n
        self.npy_files = [Path(f).with_suffix(".npy") for f in self.im_files]
        if cache_images == "ram" or cache_images is True:
            cache_images = "ram" if self.check_cache_ram(prefix=prefix) else False
        if cache_images:
            self.cache_images(cache_images, prefix)

    def _select(self, order):
        """Keep/reorder images (and everything per image) by an index array."""
        self.im_files = [self.im_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.segments = [self.segments[i] for i in order]
        self.shapes = self.shapes[order]

    def ram_check_sample(self):
        """The images check_cache_ram reads: min(n, 30) drawn with Python's random, as YOLOv5 draws them."""
        return [random.choice(self.im_files) for _ in range(min(self.n, 30))]

    def check_cache_ram(self, safety_margin=0.1, prefix=""):
        """True when the resized images fit in available memory with a margin (estimated from 30 of them)."""
        sample = self.ram_check_sample()
        total = 0
        for file in sample:
            im = cv2.imread(file)
            if im is None:
                continue
            ratio = self.img_size / max(im.shape[:2])
            total += im.nbytes * ratio ** 2
        required = total * self.n / len(sample)
        available = available_memory()
        if available is None:
            LOGGER.warning(f"{prefix}WARNING cannot read available memory, images not cached (use --cache disk)")
            return False
        fits = required * (1 + safety_margin) < available
        if not fits:
            LOGGER.info(f"{prefix}{required / 2 ** 30:.1f}GB RAM required, {available / 2 ** 30:.1f}GB available, "
                        "not caching images to RAM (use --cache disk, or a smaller --imgsz) ⚠️")
        return fits

    def cache_images(self, mode, prefix=""):
        """Preload resized images into RAM, or save decoded full-size images as .npy files next to them (disk)."""
        done, nbytes = 0, 0
        work = self.cache_image_to_disk if mode == "disk" else self.load_image
        with ThreadPool(num_threads()) as pool:
            bar = tqdm(enumerate(pool.imap(work, range(self.n))), total=self.n, bar_format=TQDM_BAR_FORMAT)
            for i, result in bar:
                if mode == "disk":
                    if result is None:
                        bar.close()
                        LOGGER.warning(f"{prefix}WARNING cannot write .npy files beside {self.im_files[i]}: "
                                       "images not cached to disk")
                        self.npy_files = [None] * self.n
                        return
                    nbytes += result
                else:
                    self.ims[i], self.im_hw0[i], self.im_hw[i] = result
                    nbytes += self.ims[i].nbytes
                done += 1
                bar.desc = f"{prefix}Caching images ({nbytes / 1e9:.1f}GB {mode})"
            bar.close()

    def cache_image_to_disk(self, i):
        """Write image i as .npy once; returns its size in bytes, or None when its folder is read-only."""
        f = self.npy_files[i]
        if not f.exists():
            im = self._read(i)
            try:
                with atomic_open(f, "wb") as out:
                    np.save(out, im)
            except OSError:
                return None
        return f.stat().st_size

    def _read(self, i):
        im = cv2.imread(self.im_files[i])  # BGR, EXIF rotation applied as in the label scan
        if im is None:
            raise FileNotFoundError(f"image not found or unreadable: {self.im_files[i]} (it passed the label scan; "
                                    "was it removed or changed since? delete the labels *.cache to rescan)")
        return im

    def load_image(self, i):
        """Image i resized so its long side is img_size -> (image, (h0, w0) original, (h, w) resized)."""
        if self.ims[i] is not None:
            return self.ims[i], self.im_hw0[i], self.im_hw[i]
        f = self.npy_files[i]
        im = np.load(f) if f is not None and f.exists() else self._read(i)
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            im = cv2.resize(im, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
        return im, (h0, w0), im.shape[:2]

    def load_mosaic(self, index):
        """Image `index` and 3 random others tiled around a random centre, then warped and cropped to img_size."""
        size = self.img_size
        centre = mosaic_centre(size, self.mosaic_border)
        indices = [index] + random.choices(self.indices, k=3)
        random.shuffle(indices)
        images = [self.load_image(i)[0] for i in indices]
        canvas, labels, segments = tile_mosaic(images, [self.labels[i] for i in indices],
                                               [self.segments[i] for i in indices], size, centre)
        hyp = self.hyp
        canvas, labels, segments = copy_paste(canvas, labels, segments, p=hyp["copy_paste"])
        return random_perspective(canvas, labels, segments, degrees=hyp["degrees"], translate=hyp["translate"],
                                  scale=hyp["scale"], shear=hyp["shear"], perspective=hyp["perspective"],
                                  border=self.mosaic_border)

    def __len__(self):
        return len(self.im_files)

    def __getitem__(self, index):
        """-> (image uint8 CHW RGB tensor, (n, 6) labels [0, cls, x, y, w, h] normalised, path, shapes or None)."""
        index = self.indices[index]  # --image-weights replaces indices each epoch
        hyp = self.hyp
        if self.mosaic and random.random() < hyp["mosaic"]:
            img, labels = self.load_mosaic(index)
            shapes = None
            if random.random() < hyp["mixup"]:
                img, labels = mixup(img, labels, *self.load_mosaic(random.randint(0, self.n - 1)))
        else:
            img, (h0, w0), (h, w) = self.load_image(index)
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), pad)  # what scale_boxes needs to map back to the original
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
            if self.augment:
                img, labels = random_perspective(img, labels, degrees=hyp["degrees"], translate=hyp["translate"],
                                                 scale=hyp["scale"], shear=hyp["shear"],
                                                 perspective=hyp["perspective"])
        num_labels = len(labels)
        if num_labels:
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            img, labels = self.albumentations(img, labels)
            num_labels = len(labels)
            augment_hsv(img, hgain=hyp["hsv_h"], sgain=hyp["hsv_s"], vgain=hyp["hsv_v"])
            if random.random() < hyp["flipud"]:
                img = np.flipud(img)
                if num_labels:
                    labels[:, 2] = 1 - labels[:, 2]
            if random.random() < hyp["fliplr"]:
                img = np.fliplr(img)
                if num_labels:
                    labels[:, 1] = 1 - labels[:, 1]
        labels_out = torch.zeros((num_labels, 6))
        if num_labels:
            labels_out[:, 1:] = torch.from_numpy(labels)
        img = np.ascontiguousarray(img.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(img), labels_out, self.im_files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """Stack images; concatenate labels with each row's image index in column 0."""
        images, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(images, 0), torch.cat(labels, 0), paths, shapes

    @staticmethod
    def collate_fn4(batch):
        """--quad: every 4 images become one 2x-size image, either image 0 upscaled or the four tiled 2x2."""
        images, labels, paths, shapes = zip(*batch)
        n = len(shapes) // 4
        out_images, out_labels = [], []
        down = torch.tensor([[0.0, 0, 0, 1, 0, 0]])  # shift y by one tile
        right = torch.tensor([[0.0, 0, 1, 0, 0, 0]])  # shift x by one tile
        halve = torch.tensor([[1, 1, 0.5, 0.5, 0.5, 0.5]])
        for q in range(n):
            i = q * 4
            if random.random() < 0.5:
                im = torch.nn.functional.interpolate(images[i].unsqueeze(0).float(), scale_factor=2.0,
                                                     mode="bilinear", align_corners=False)[0].type(images[i].type())
                lb = labels[i]
            else:
                left_col = torch.cat((images[i], images[i + 1]), 1)
                right_col = torch.cat((images[i + 2], images[i + 3]), 1)
                im = torch.cat((left_col, right_col), 2)
                lb = torch.cat((labels[i], labels[i + 1] + down, labels[i + 2] + right,
                                labels[i + 3] + down + right), 0) * halve
            out_images.append(im)
            out_labels.append(lb)
        for i, lb in enumerate(out_labels):
            lb[:, 0] = i
        return torch.stack(out_images, 0), torch.cat(out_labels, 0), paths[:n], shapes[:n]


class _RepeatSampler:
    """Yields from `sampler` forever, so the DataLoader's iterator (and its workers) never ends."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            yield from iter(self.sampler)


class InfiniteDataLoader(DataLoader):
    """A DataLoader whose workers live across epochs: one epoch is len(self) batches of an endless iterator."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self.iterator = super().__iter__()

    def __len__(self):
        return len(self.batch_sampler.sampler)

    def __iter__(self):
        for _ in range(len(self)):
            yield next(self.iterator)


def seed_worker(worker_id):
    """Worker init: seed numpy and random from torch's per-worker seed; one OpenCV thread per worker process."""
    worker_seed = torch.initial_seed() % 2 ** 32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    cv2.setNumThreads(0)  # workers already run in parallel; OpenCV's own threads would oversubscribe the CPU


def create_dataloader(path, imgsz, batch_size, stride, single_cls=False, hyp=None, augment=False, cache=False,
                      pad=0.0, rect=False, rank=-1, workers=8, image_weights=False, quad=False, prefix="",
                      shuffle=False, seed=0, nc=None, datasets=None):
    """-> (loader, dataset) as YOLOv5: InfiniteDataLoader (DataLoader with --image-weights), DistributedSampler
    under DDP, seeded workers, collate_fn (collate_fn4 with --quad). `nc` enables the class-id check. `datasets`:
    a dict the caller keeps across calls (reuse.TrainingCache.datasets) to reuse datasets built for the same
    arguments."""
    if rect and shuffle:
        LOGGER.warning("WARNING --rect is incompatible with DataLoader shuffle, setting shuffle=False")
        shuffle = False
    with torch_distributed_zero_first(rank):  # rank 0 scans and writes the cache, the others then read it
        dataset = _dataset(hyp, datasets, path=path, img_size=imgsz, batch_size=batch_size, augment=augment,
                           rect=rect, cache_images=cache, single_cls=single_cls, stride=int(stride), pad=pad,
                           image_weights=image_weights, prefix=prefix, nc=nc)
    batch_size = min(batch_size, len(dataset))
    num_devices = torch.cuda.device_count()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    num_workers = min(cpus // max(num_devices, 1), batch_size if batch_size > 1 else 0, workers)
    sampler = None if rank == -1 else distributed.DistributedSampler(dataset, shuffle=shuffle)
    loader = DataLoader if image_weights else InfiniteDataLoader  # a fresh iterator each epoch sees new indices
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + RANK)
    return loader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, num_workers=num_workers,
                  sampler=sampler, pin_memory=PIN_MEMORY and torch.cuda.is_available(),
                  collate_fn=LoadImagesAndLabels.collate_fn4 if quad else LoadImagesAndLabels.collate_fn,
                  worker_init_fn=seed_worker, generator=generator), dataset
