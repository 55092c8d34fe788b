"""Label verification rules and the versioned, atomic label cache."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from utils import label_cache
from utils.label_cache import dataset_hash, load_cache, load_or_scan, parse_label_file, verify_image_label

BOX = "0 0.5 0.5 0.2 0.2"


def write_image(path, w=32, h=24, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return str(path)


def write_label(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def make_pairs(root, n=4):
    """n images under root/images with one-box labels under root/labels."""
    ims = [write_image(root / "images" / f"{i}.jpg") for i in range(n)]
    lbs = [write_label(root / "labels" / f"{i}.txt", f"{i % 2} 0.5 0.5 0.2 0.2\n") for i in range(n)]
    return ims, lbs


@pytest.mark.parametrize("text, nc, n, message", [
    (BOX, None, 1, None),
    (f"{BOX}\n{BOX}\n", None, 1, None),  # duplicates removed (reported by verify_image_label)
    ("0 0.5 0.5 0.2", None, None, "line 1 has 4 values"),
    (f"{BOX} 0.9", None, None, "line 1 has 6 values"),
    (f"{BOX}\n\n0 0.5 0.5 1.2 0.2", None, None, "line 3 has coordinates outside 0-1"),
    ("0 0.5 nan 0.2 0.2", None, None, "line 1 has coordinates outside 0-1"),
    ("-1 0.5 0.5 0.2 0.2", None, None, "line 1 has class -1, expected a non-negative integer"),
    ("1.5 0.5 0.5 0.2 0.2", None, None, "line 1 has class 1.5"),
    (f"{BOX}\n3 0.5 0.5 0.2 0.2", 3, None, "line 2 has class 3, expected an integer in 0-2"),
    ("0 a 0.5 0.2 0.2", None, None, "line 1 is not numeric"),
    ("0 0.1 0.1 0.5 0.1", None, 1, None),
    ("0 0.1 0.1 0.5 0.1 0.5", None, None, "line 1 has 6 values"),
])
def test_parse_label_rules(tmp_path, text, nc, n, message):
    f = write_label(tmp_path / "a.txt", text)
    if message:
        with pytest.raises(ValueError, match=message):
            parse_label_file(f, nc)
    else:
        labels, _, _ = parse_label_file(f, nc)
        assert labels.shape == (n, 5) and labels.dtype == np.float32


def test_polygon_rows_become_boxes_and_keep_segments(tmp_path):
    # a triangle and, in the same file, a plain box row (kept as its box, corners as the segment)
    f = write_label(tmp_path / "a.txt", "1 0.1 0.1 0.5 0.1 0.5 0.4\n2 0.5 0.5 0.2 0.2\n")
    labels, segments, duplicates = parse_label_file(f)
    np.testing.assert_allclose(labels, [[1, 0.3, 0.25, 0.4, 0.3], [2, 0.5, 0.5, 0.2, 0.2]], atol=1e-6)
    assert len(segments) == 2 and segments[0].shape == (3, 2) and segments[1].shape == (4, 2)
    assert duplicates == 0


def test_verify_counts_and_messages(tmp_path):
    im = write_image(tmp_path / "images" / "a.jpg")
    lb = str(tmp_path / "labels" / "a.txt")
    v = verify_image_label(im, lb)  # no label file: a background image
    assert (v.found, v.missing, v.empty, v.corrupt) == (0, 1, 0, 0) and v.labels.shape == (0, 5)
    write_label(Path(lb), "")
    v = verify_image_label(im, lb)
    assert (v.found, v.missing, v.empty, v.corrupt) == (1, 0, 1, 0)
    write_label(Path(lb), f"{BOX}\n{BOX}\n")
    v = verify_image_label(im, lb)
    assert (v.found, v.corrupt) == (1, 0) and len(v.labels) == 1 and "1 duplicate labels removed" in v.msg
    write_label(Path(lb), f"{BOX}\n7 0.5 0.5 0.1 0.1\n")
    v = verify_image_label(im, lb, nc=5)
    assert v.corrupt == 1 and v.labels is None
    assert lb in v.msg and "line 2 has class 7" in v.msg


def test_image_rules(tmp_path):
    lb = str(tmp_path / "none.txt")
    tiny = write_image(tmp_path / "tiny.png", 8, 8)
    assert "under 10 pixels" in verify_image_label(tiny, lb).msg
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    assert verify_image_label(str(junk), lb).corrupt == 1
    gif = tmp_path / "gif.jpg"
    Image.new("RGB", (20, 20)).save(gif, format="GIF")
    v = verify_image_label(str(gif), lb)
    assert v.corrupt == 1 and "unsupported image format gif" in v.msg


def test_truncated_jpeg_is_restored_and_kept(tmp_path):
    f = tmp_path / "t.jpg"
    cv2.imwrite(str(f), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 200])  # cut the tail and its end-of-image marker
    v = verify_image_label(str(f), str(tmp_path / "t.txt"))
    assert v.corrupt == 0 and v.labels is not None and "corrupt JPEG restored" in v.msg
    assert f.read_bytes()[-2:] == b"\xff\xd9"


def test_exif_rotation_swaps_size(tmp_path):
    f = tmp_path / "r.jpg"
    img = Image.new("RGB", (40, 20))
    exif = img.getexif()
    exif[274] = 6  # rotate 90 degrees when displayed
    img.save(f, exif=exif)
    assert verify_image_label(str(f), str(tmp_path / "r.txt")).shape == (20, 40)
    assert cv2.imread(str(f)).shape[:2] == (40, 20)  # what the loader reads agrees with the scanned size


def test_cache_reused_then_rescanned_when_a_label_changes(tmp_path):
    ims, lbs = make_pairs(tmp_path)
    cache = tmp_path / "labels.cache"
    first = load_or_scan(ims, lbs, cache)
    assert not first.from_cache and cache.is_file()
    assert (first.found, first.missing, first.empty, first.corrupt) == (4, 0, 0, 0)
    again = load_or_scan(ims, lbs, cache)
    assert again.from_cache and [x.tolist() for x in again.labels] == [x.tolist() for x in first.labels]
    st = os.stat(lbs[0])
    os.utime(lbs[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touch: same size, new mtime
    assert not load_or_scan(ims, lbs, cache).from_cache
    assert load_or_scan(ims, lbs, cache).from_cache
    limited = load_or_scan(ims, lbs, cache, nc=1)  # the class check runs on the cached labels: one cache for any nc
    assert limited.from_cache and limited.im_files == ims[0::2] and limited.corrupt == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing behind


def test_cache_round_trips_segments_and_messages(tmp_path):
    ims, lbs = make_pairs(tmp_path, 3)
    write_label(Path(lbs[1]), "1 0.1 0.1 0.5 0.1 0.5 0.4\n0 0.2 0.2 0.3 0.3 0.2 0.3\n")
    write_label(Path(lbs[2]), "9 0.5 0.5 0.2 0.2\n")
    cache = tmp_path / "x.cache"
    scan = load_or_scan(ims, lbs, cache, nc=5)
    assert scan.im_files == ims[:2] and (scan.found, scan.corrupt, scan.total) == (3, 1, 3)
    assert lbs[2] in scan.msgs[-1] and "line 1 has class 9, expected an integer in 0-4" in scan.msgs[-1]
    cached = load_cache(cache, scan.key)  # the cache itself holds every valid image, whatever nc
    assert cached.im_files == ims and (cached.found, cached.corrupt) == (3, 0)
    assert [len(s) for s in cached.segments] == [0, 2, 0]
    np.testing.assert_allclose(cached.segments[1][0], scan.segments[1][0])
    np.testing.assert_array_equal(cached.shapes, [[32, 24]] * 3)
    write_label(Path(lbs[0]), f"{BOX}\n{BOX}\n")
    rescanned = load_or_scan(ims, lbs, cache)
    assert load_cache(cache, rescanned.key).msgs == rescanned.msgs and "duplicate" in rescanned.msgs[0]


@pytest.mark.parametrize("damage", ["garbage", "old_version", "pickled_yolov5"])
def test_bad_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    ims, lbs = make_pairs(tmp_path, 2)
    cache = tmp_path / "labels.cache"
    if damage == "garbage":
        cache.write_bytes(b"\x00not a cache")
    elif damage == "old_version":
        monkeypatch.setattr(label_cache, "CACHE_VERSION", label_cache.CACHE_VERSION - 1)
        load_or_scan(ims, lbs, cache)
        monkeypatch.undo()
    else:  # YOLOv5 pickles a dict with np.save: never unpickled here
        with open(cache, "wb") as f:
            np.save(f, np.array({"hash": dataset_hash(ims, lbs), "version": 0.6}, dtype=object), allow_pickle=True)
    assert cache.is_file()
    scan = load_or_scan(ims, lbs, cache)
    assert not scan.from_cache and scan.found == 2
    assert load_or_scan(ims, lbs, cache).from_cache


def test_unwritable_cache_folder_still_scans(tmp_path, monkeypatch):
    ims, lbs = make_pairs(tmp_path, 2)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(label_cache, "atomic_open", refuse)
    scan = load_or_scan(ims, lbs, tmp_path / "ro" / "labels.cache")
    assert scan.found == 2 and not (tmp_path / "ro" / "labels.cache").exists()


def test_hash_tracks_sizes(tmp_path):
    ims, lbs = make_pairs(tmp_path, 2)
    before = dataset_hash(ims, lbs)
    with open(lbs[1], "a") as f:
        f.write("1 0.5 0.5 0.1 0.1\n")
    assert dataset_hash(ims, lbs) != before


def test_cache_file_is_readable_by_others(tmp_path):
    ims, lbs = make_pairs(tmp_path, 1)
    load_or_scan(ims, lbs, tmp_path / "labels.cache")
    assert (tmp_path / "labels.cache").stat().st_mode & 0o777 == 0o644
