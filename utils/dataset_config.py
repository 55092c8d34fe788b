"""Dataset YAML -> checked dict of absolute paths, names and nc (`check_dataset`), and finding project files by name."""

import glob
import os
import subprocess
import time
from pathlib import Path

import yaml

from utils.downloads import download, is_url, safe_download, url_filename
from utils.errors import DownloadError
from utils.files import ROOT
from utils.log import LOGGER, colorstr

SEARCH_DIRS = ("data", "models", "utils")  # where bare file names like 'coco128.yaml' are looked up


class DatasetError(ValueError):
    """A dataset YAML with a missing key, a wrong type or inconsistent values."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset YAML, image folder or list that does not exist (and could not be downloaded)."""


def check_suffix(file, suffix=(".pt",), msg=""):
    """Raise ValueError unless `file` (or each of a list) ends with one of `suffix` (no-op for empty names)."""
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
    if not file or not suffixes or not any(suffixes):
        return
    for f in file if isinstance(file, (list, tuple)) else [file]:
        s = Path(f).suffix.lower()
        if s and s not in suffixes:
            raise ValueError(f"{msg}{f} has suffix {s}, expected one of {', '.join(suffixes)}")


def check_file(file, suffix=""):
    """A file path as given if it exists, else downloaded (URL) or found by name under data/, models/, utils/."""
    check_suffix(file, suffix)
    file = str(file)
    if not file or os.path.isfile(file):
        return file
    if is_url(file):
        target = Path(url_filename(file))
        if not target.is_file():
            safe_download(file, target, hint=f"download it by hand and save it as {target.resolve()}")
        return str(target)
    matches = sorted({f for d in SEARCH_DIRS for f in glob.glob(str(ROOT / d / "**" / file), recursive=True)})
    if not matches:
        raise FileNotFoundError(f"file not found: {file} (looked in the current folder and in "
                                f"{', '.join(str(ROOT / d) for d in SEARCH_DIRS)})")
    if len(matches) > 1:
        raise FileNotFoundError(f"several files match {file!r}, give the exact path: {matches}")
    return matches[0]


def check_yaml(file, suffix=(".yaml", ".yml")):
    """check_file for YAML files: 'coco128.yaml' -> data/coco128.yaml, 'hyp.scratch-low.yaml' -> data/hyps/..."""
    return check_file(file, suffix)


def yaml_load(file):
    """Parse a YAML file into a dict; a syntax error or a non-mapping document raises DatasetError naming the file."""
    try:
        with open(file, encoding="utf-8", errors="ignore") as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DatasetError(f"{file} is not valid YAML: {e}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise DatasetError(f"{file} must hold a mapping (key: value lines), not a {type(content).__name__}")
    return content


def _names_dict(data, where):
    """names as {index: name} with indices 0..n-1, checked against nc when both are given."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise DatasetError(f"{where} 'nc:' must be a positive integer (the class count), got {nc!r}")
    if names is None:
        if nc is None:
            raise DatasetError(f"{where} 'names:' is missing: expected a list of class names or a mapping like "
                               "'0: person'")
        LOGGER.warning(f"WARNING {where} has no 'names:', using class0 ... class{nc - 1}")
        return {i: f"class{i}" for i in range(nc)}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{where} 'names:' must be a non-empty list of class names or a mapping like "
                           f"'0: person', got {type(names).__name__}")
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
        raise DatasetError(f"{where} 'names:' keys must be integers, i.e. '2: car', got {list(names)[:5]}")
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{where} 'names:' keys must be 0 to {len(names) - 1} with none missing, "
                           f"got {sorted(names)}")
    if nc is not None and nc != len(names):
        raise DatasetError(f"{where} 'nc: {nc}' does not match the {len(names)} entries of 'names:': fix one of them "
                           "(or drop 'nc:', it is implied by 'names:')")
    return {i: str(names[i]) for i in range(len(names))}


def _resolve_split(value, path, key, where):
    """A split (folder, .txt list, or list of either) -> absolute path string(s) under `path`."""
    def resolve(x):
        p = (path / x).resolve()
        if not p.exists() and str(x).startswith("../"):  # YOLOv5 also accepts ../ relative to path's contents
            p = (path / str(x)[3:]).resolve()
        return str(p)

    if isinstance(value, (str, Path)):
        return resolve(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(x, (str, Path)) for x in value):
        return [resolve(x) for x in value]
    raise DatasetError(f"{where} '{key}:' must be a folder, a .txt list of image paths, or a list of either, "
                       f"got {value!r}")


def _missing_splits(data):
    return [(k, p) for k in ("train", "val") for p in (data[k] if isinstance(data[k], list) else [data[k]])
            if not Path(p).exists()]


def _run_download(data, script, where):
    """Run the YAML's `download:` value: a URL (fetched and unpacked beside `path`), 'bash ...', or Python code."""
    path = data["path"]
    start = time.time()
    if is_url(script):
        hint = (f"download {script} by hand and unzip it into {path.parent}{os.sep} so that {path} holds its "
                "images/ and labels/ folders")
        try:
            download(script, dir=path.parent, hint=hint)
        except DownloadError as e:
            raise DatasetNotFoundError(f"{where}: dataset not found at {path} and {e}") from None
    elif script.startswith("bash "):
        LOGGER.info(f"Running {script} ...")
        result = subprocess.run(script, shell=True, cwd=ROOT)
        if result.returncode:
            raise DatasetNotFoundError(f"{where} 'download:' script failed (exit code {result.returncode}): "
                                       f"{script}")
    else:
        try:
            exec(script, {"yaml": data})  # YOLOv5 convention: the script sees the dataset dict as `yaml`
        except Exception as e:
            raise DatasetNotFoundError(f"{where} 'download:' Python code failed: {type(e).__name__}: {e}") from e
    LOGGER.info(f"Dataset download success ✅ ({time.time() - start:.1f}s), saved to {colorstr('bold', path)}")


def check_dataset(data, autodownload=True):
    """Dataset YAML file (or dict) -> dict with absolute train/val/test paths, names {i: name}, nc, path.

    A relative `path` resolves against the project root (so ../datasets/x lies beside the project). Missing train/val
    folders run the YAML's `download:` (URL, 'bash ...' or Python code with `yaml` bound to the dict) when
    autodownload is set. Problems raise DatasetError / DatasetNotFoundError naming the file, the key and the fix.
    """
    if isinstance(data, (str, Path)):
        try:
            yaml_file = check_yaml(data)
        except FileNotFoundError as e:
            raise DatasetNotFoundError(f"dataset YAML {data} not found ({e})") from None
        data = yaml_load(yaml_file)
    elif isinstance(data, dict):
        yaml_file = data.get("yaml_file", "dataset dict")
        data = dict(data)
    else:
        raise DatasetError(f"data must be a dataset YAML path or dict, got {type(data).__name__}")
    where = str(yaml_file)
    for key in ("train", "val"):
        if not data.get(key):
            raise DatasetError(f"{where} '{key}:' is missing: expected a folder of images (relative to 'path:'), a "
                               ".txt list of image paths, or a list of either")
    data["names"] = _names_dict(data, where)
    data["nc"] = len(data["names"])
    if not isinstance(data.get("path") or "", (str, Path)):
        raise DatasetError(f"{where} 'path:' must be a folder, got {data['path']!r}")
    path = Path(data.get("path") or "")
    if not path.is_absolute():
        path = (ROOT / path).resolve()
    data["path"] = path
    for key in ("train", "val", "test"):
        if data.get(key):
            data[key] = _resolve_split(data[key], path, key, where)
    data["yaml_file"] = where

    missing = _missing_splits(data)
    if missing:
        key, first = missing[0]
        script = data.get("download")
        found = f"{where}: '{key}:' {first} does not exist"
        if not script:
            raise DatasetNotFoundError(f"{found}: fix 'path:' and '{key}:' or put the images there")
        if not isinstance(script, str):
            raise DatasetError(f"{where} 'download:' must be a URL, a 'bash ...' command or Python code")
        if not autodownload:
            raise DatasetNotFoundError(f"{found} and autodownload is off: get it with {script.strip()!r} by hand")
        LOGGER.info(f"{found}, running 'download:' ...")
        _run_download(data, script.strip(), where)
        still = _missing_splits(data)
        if still:
            raise DatasetNotFoundError(f"{where}: 'download:' ran but '{still[0][0]}:' {still[0][1]} still does not "
                                       "exist: check 'path:' and the split folders against what it made")
    return data


def main(argv=None):
    """`python -m utils.dataset_config coco128.yaml`: check a dataset YAML (running its download if needed) and print
    where its splits are; a problem prints one error line and exits 1."""
    import argparse

    parser = argparse.ArgumentParser(description="Check a dataset YAML and fetch or generate the dataset if needed")
    parser.add_argument("data", help="dataset YAML, e.g. coco128.yaml")
    parser.add_argument("--no-download", action="store_true", help="report a missing dataset instead of fetching it")
    opt = parser.parse_args(argv)
    try:
        data = check_dataset(opt.data, autodownload=not opt.no_download)
    except (DatasetError, DownloadError, FileNotFoundError) as e:
        LOGGER.error(f"{colorstr('red', 'bold', 'Error:')} {e}")
        return 1
    for key in ("path", "train", "val", "test"):
        LOGGER.info(f"{key}: {data.get(key)}")
    LOGGER.info(f"nc: {data['nc']}  names: {', '.join(data['names'].values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
