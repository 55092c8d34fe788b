"""What successive validations and trainings in one process keep rather than rebuild.

ReplayLoader: a validation loader's batches kept in memory after its first pass, so that the next validations (every
epoch of a training, every candidate of an --evolve process) cost inference and matching only. The batches are
letterboxed, unaugmented and in a fixed order, so a replay gives the same numbers as a fresh pass.

TrainingCache: what the candidates of one --evolve process (or one Ray worker) share, passed explicitly to train():
datasets by their constructor arguments (labels scanned and images cached once), the model built from a cfg and
weights (copied for each candidate, the random state left as the build leaves it), the validation loaders with
their replayed batches, and the CPU ThreadTuner. The training loader is built for each candidate: its shuffle order
and augmentation streams are seeded when it is created, so a candidate trains exactly as `train.py --hyp` with the
same --seed does at the same thread counts. The thread count is the one thing carried over: a fresh tuner spends 4 of
a 1-epoch candidate's 8 steps trying one thread (0.58 s a step against 0.39 with two on an idle 2-core CPU), and
oneDNN's sums, so the last bits of a result, depend on the count.
"""

import copy
import random

import numpy as np
import torch

from utils.cpu_threads import ThreadTuner
from utils.dataloaders import available_memory

REPLAY_MAX_BYTES = 2 << 30  # at most this much memory for one loader's batches (COCO128 at 640: about 0.15 GB)


class ReplayLoader:
    """Iterates `loader` once while keeping its batches, then replays them; the image tensors are shared (callers
    convert them to float before scaling, never in place), the targets copied (callers scale them in place)."""

    def __init__(self, loader):
        self.loader = loader
        self.dataset = loader.dataset
        self.batches = None

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        if self.batches is not None:
            for images, targets, paths, shapes in self.batches:
                yield images, targets.clone(), paths, shapes
            return
        batches = []
        for images, targets, paths, shapes in self.loader:
            batches.append((images, targets.clone(), paths, shapes))
            yield images, targets, paths, shapes
        self.batches = batches  # only a pass that ran to the end is replayed


def replayable(loader, max_bytes=REPLAY_MAX_BYTES):
    """`loader` as a ReplayLoader when its images fit in memory (uint8, padded to the letterbox), else as it is."""
    dataset = loader.dataset
    side = getattr(dataset, "img_size", 640) * 1.5  # rectangular batches pad the short side: a generous bound
    needed = len(dataset) * side * side * 3
    available = available_memory()
    if needed > max_bytes or (available is not None and needed > available / 4):
        return loader
    return ReplayLoader(loader)


class TrainingCache:
    """Datasets, built models and validation loaders that successive trainings in one process share (see above)."""

    def __init__(self):
        self.datasets = {}  # create_dataloader's: {repr of its arguments: LoadImagesAndLabels}
        self.models = {}  # the last model built: {(cfg, weights, nc, anchors, device, seed): (model, random state)}
        self.val_loaders = {}  # {repr of the loader's arguments: ReplayLoader or loader}
        self.thread_tuner = None  # the training step's ThreadTuner, made by the first CPU training

    def threads(self):
        """The ThreadTuner every training of this process shares, made on first use."""
        if self.thread_tuner is None:
            self.thread_tuner = ThreadTuner()
        return self.thread_tuner

    def model(self, key, build):
        """A copy of the model build() gives for `key`, built on first use. Building draws random numbers (fresh
        layers), so the random state a build leaves is kept and restored with every copy: later draws (augmentation
        in the main process with --workers 0) are those of a fresh build. The key must hold what the build draws
        from: train() seeds just before it, so torch.initial_seed() is part of the key."""
        key = (*key, torch.initial_seed())
        if key not in self.models:
            self.models.clear()  # one model kept: verification's many seeds must not pile up large models
            model = build()
            self.models[key] = model, (random.getstate(), np.random.get_state(), torch.get_rng_state())
        model, (python_state, numpy_state, torch_state) = self.models[key]
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        return copy.deepcopy(model)

    def val_loader(self, key, build):
        """The validation loader for `key`, built on first use and replayed from memory after its first pass."""
        if key not in self.val_loaders:
            self.val_loaders[key] = replayable(build())
        return self.val_loaders[key]
