import random

import numpy as np
import pytest
import torch
import yaml

import train
from utils import cpu_threads
from utils.cpu_threads import ThreadTuner
from utils.files import ROOT
from utils.reuse import ReplayLoader, TrainingCache, replayable
from utils.synthetic import CLASS_NAMES, make_shapes_dataset


class CountingLoader:
    """Two batches of (images uint8, targets, paths, shapes); counts its passes."""

    def __init__(self):
        self.dataset = list(range(4))
        self.passes = 0

    def __len__(self):
        return 2

    def __iter__(self):
        self.passes += 1
        for b in range(2):
            yield (torch.full((2, 3, 4, 4), b, dtype=torch.uint8), torch.tensor([[0.0, 1, 0.5, 0.5, 0.25, 0.25]]),
                   (f"{b}a.jpg", f"{b}b.jpg"), None)


def test_replay_loader_replays_the_first_full_pass():
    source = CountingLoader()
    loader = ReplayLoader(source)
    first = list(loader)
    first[0][1][:, 2:] *= 64  # val.run scales the targets in place: the replay must not see it
    second = list(loader)
    assert source.passes == 1 and len(loader) == 2 and loader.dataset is source.dataset
    assert [b[0][0, 0, 0, 0].item() for b in second] == [0, 1]
    assert second[0][1].tolist() == [[0.0, 1, 0.5, 0.5, 0.25, 0.25]]


def test_replay_loader_keeps_nothing_from_an_interrupted_pass():
    source = CountingLoader()
    loader = ReplayLoader(source)
    next(iter(loader))  # a pass abandoned after one batch
    assert loader.batches is None and len(list(loader)) == 2 and source.passes == 2
    list(loader)
    assert source.passes == 2


@pytest.mark.parametrize("max_bytes, replayed", [(10**9, True), (1000, False)])
def test_replayable_only_when_the_batches_fit(max_bytes, replayed):
    source = CountingLoader()
    source.dataset = type("Images", (list,), {"img_size": 64})(range(4))  # 4 x (96 x 96 x 3) bytes bound: 110,592
    assert isinstance(replayable(source, max_bytes), ReplayLoader) is replayed


def test_cached_model_is_a_copy_and_leaves_the_random_state_of_a_fresh_build():
    def build():
        return torch.nn.Linear(3, 2)  # draws its initial weights

    cache = TrainingCache()
    states = []
    for _ in range(2):
        torch.manual_seed(5)
        model = cache.model(("cfg", "weights"), build)
        states.append((random.random(), np.random.rand(), torch.rand(1).item()))
        model.weight.data.zero_()  # training one copy must not change the next
    torch.manual_seed(5)
    fresh = build()
    assert states[0] == states[1] and torch.rand(1).item() == states[0][2]  # the torch draw after a fresh build
    torch.manual_seed(5)
    assert torch.equal(cache.model(("cfg", "weights"), build).weight, fresh.weight)  # not the zeroed copy
    torch.manual_seed(6)  # another seed is another build (fresh layers differ), which replaces the first
    assert not torch.equal(cache.model(("cfg", "weights"), build).weight, fresh.weight)
    assert len(cache.models) == 1


@pytest.fixture
def one_thread(monkeypatch):
    """Training on one intra-op thread, with ThreadTuners that have no other count to try."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cpu_threads, "STARTUP_THREADS", 1)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_candidates_with_the_cache_train_exactly_as_without(tmp_path, one_thread):
    """Two candidates trained through one TrainingCache (the second reusing the datasets, model and val batches the
    first built) give the very results each gives trained alone, at the same thread count: the count a ThreadTuner
    picks by timing (which the cache carries over, and which changes oneDNN's sums) is pinned to one here."""
    root = make_shapes_dataset(tmp_path / "shapes", train=16, val=8, size=96, workers=0)
    data = tmp_path / "shapes.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": dict(enumerate(CLASS_NAMES))}))
    hyps = [yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text()) for _ in range(2)]
    hyps[1].update(lr0=0.02, hsv_h=0.0, mosaic=0.5)

    def candidate(hyp, name, cache):
        opt = train.parse_opt(True)
        for key, value in dict(cfg="yolov5n.yaml", weights="", data=str(data), imgsz=[64], batch_size=8, epochs=2,
                               workers=0, device="cpu", cache="ram", noplots=True, nosave=True, noval=True,
                               evolve=1, save_dir=str(tmp_path / name), seed=0, noautoanchor=True).items():
            setattr(opt, key, value)
        opt = train.check_train_options(train.apply_legacy_flags(opt))
        return train.quiet_train(dict(hyp), opt, torch.device("cpu"), None, cache)

    cache = TrainingCache()
    shared = [candidate(hyp, f"shared{i}", cache) for i, hyp in enumerate(hyps)]
    alone = [candidate(hyp, f"alone{i}", None) for i, hyp in enumerate(hyps)]
    assert len(cache.models) == 1 and len(cache.val_loaders) == 1 and len(cache.datasets) == 2
    assert shared == alone and shared[0] != shared[1]


def test_the_cache_keeps_one_thread_tuner():
    cache = TrainingCache()
    tuner = cache.threads()
    assert isinstance(tuner, ThreadTuner) and cache.threads() is tuner
