"""check_dataset: paths, names, nc, clear errors, download scripts; coco128 offline fails fast with the fix."""

import os
import socket
import time
from pathlib import Path

import pytest
import yaml

from utils import dataset_config
from utils.dataset_config import DatasetError, DatasetNotFoundError, check_dataset, check_file, check_yaml
from utils.downloads import DownloadError, download
from utils.files import ROOT

COCO128_YAML = ROOT / "data" / "coco128.yaml"
COCO128_URL = "https://ultralytics.com/assets/coco128.zip"


def make_split(root, *folders):
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)


def write_yaml(path, content):
    path.write_text(yaml.safe_dump(content, sort_keys=False) if isinstance(content, dict) else content)
    return str(path)


@pytest.fixture
def offline(monkeypatch):
    """No network: name resolution fails at once, as it does on this machine."""
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", fail)


@pytest.mark.parametrize("name, expected", [
    ("coco128.yaml", "data/coco128.yaml"),
    ("hyp.scratch-low.yaml", "data/hyps/hyp.scratch-low.yaml"),
])
def test_check_yaml_finds_bare_names(name, expected):
    assert Path(check_yaml(name)) == ROOT / expected


def test_check_file_errors():
    with pytest.raises(FileNotFoundError, match="no-such-file.yaml"):
        check_yaml("no-such-file.yaml")
    with pytest.raises(ValueError, match="expected one of .yaml, .yml"):
        check_yaml("model.pt")
    assert check_file("") == ""


def test_paths_names_and_nc(tmp_path):
    make_split(tmp_path / "ds", "images/train", "images/val")
    f = write_yaml(tmp_path / "d.yaml", {"path": str(tmp_path / "ds"), "train": "images/train", "val": "images/val",
                                         "test": None, "names": ["cat", "dog"]})
    data = check_dataset(f)
    assert data["train"] == str(tmp_path / "ds" / "images" / "train")
    assert data["val"] == str(tmp_path / "ds" / "images" / "val")
    assert data["test"] is None
    assert data["names"] == {0: "cat", 1: "dog"} and data["nc"] == 2
    assert data["path"] == tmp_path / "ds"
    assert check_dataset(data)["train"] == data["train"]  # a checked dict checks again unchanged


def test_relative_path_resolves_against_project_root(tmp_path):
    make_split(tmp_path / "ds", "a", "b")
    rel = os.path.relpath(tmp_path / "ds", ROOT)
    f = write_yaml(tmp_path / "d.yaml", {"path": rel, "train": ["a", "b"], "val": "b", "names": {0: "x"}, "nc": 1})
    data = check_dataset(f)
    assert data["train"] == [str(tmp_path / "ds" / "a"), str(tmp_path / "ds" / "b")]
    assert data["nc"] == 1


@pytest.mark.parametrize("content, error, message", [
    ({"val": "v", "names": ["a"]}, DatasetError, "'train:' is missing"),
    ({"train": "t", "names": ["a"]}, DatasetError, "'val:' is missing"),
    ({"train": "t", "val": "v"}, DatasetError, "'names:' is missing"),
    ({"train": "t", "val": "v", "names": "cat"}, DatasetError, "'names:' must be a non-empty list"),
    ({"train": "t", "val": "v", "names": {"a": "cat"}}, DatasetError, "keys must be integers"),
    ({"train": "t", "val": "v", "names": {0: "a", 2: "b"}}, DatasetError, "keys must be 0 to 1"),
    ({"train": "t", "val": "v", "names": ["a", "b"], "nc": 3}, DatasetError, "'nc: 3' does not match the 2"),
    ({"train": "t", "val": "v", "names": ["a"], "nc": "one"}, DatasetError, "'nc:' must be a positive integer"),
    ({"train": 5, "val": "v", "names": ["a"]}, DatasetError, "'train:' must be a folder"),
    ({"train": "t", "val": "v", "names": ["a"], "path": ["x"]}, DatasetError, "'path:' must be a folder"),
    ({"train": "t", "val": "v", "names": ["a"]}, DatasetNotFoundError, "'train:' .* does not exist"),
    ("train: [unclosed", DatasetError, "is not valid YAML"),
    ("- a\n- b\n", DatasetError, "must hold a mapping"),
])
def test_bad_yaml_gives_one_clear_error(tmp_path, content, error, message):
    if isinstance(content, dict) and "path" not in content:
        content = {"path": str(tmp_path), **content}
    f = write_yaml(tmp_path / "bad.yaml", content)
    with pytest.raises(error, match=message) as info:
        check_dataset(f)
    assert str(tmp_path / "bad.yaml") in str(info.value)


def test_missing_yaml_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="dataset YAML nothing-here.yaml not found"):
        check_dataset("nothing-here.yaml")


def test_nc_alone_names_classes(tmp_path):
    make_split(tmp_path, "t")
    data = check_dataset({"path": str(tmp_path), "train": "t", "val": "t", "nc": 2})
    assert data["names"] == {0: "class0", 1: "class1"}


def test_python_download_runs_with_yaml_bound_then_rechecks(tmp_path):
    script = ("from pathlib import Path\n"
              "for split in ('train', 'val'):\n"
              "    Path(yaml[split]).mkdir(parents=True)\n"
              "(Path(yaml['path']) / 'made.txt').write_text(str(yaml['nc']))\n")
    f = write_yaml(tmp_path / "gen.yaml", {"path": str(tmp_path / "gen"), "train": "images/train",
                                           "val": "images/val", "names": ["a", "b", "c"], "download": script})
    data = check_dataset(f)
    assert Path(data["val"]).is_dir() and (tmp_path / "gen" / "made.txt").read_text() == "3"


def test_failing_download_script_names_the_yaml(tmp_path):
    f = write_yaml(tmp_path / "gen.yaml", {"path": str(tmp_path / "g"), "train": "t", "val": "v", "names": ["a"],
                                           "download": "raise RuntimeError('generator broke')"})
    with pytest.raises(DatasetNotFoundError, match="'download:' Python code failed: RuntimeError: generator broke"):
        check_dataset(f)


def test_download_that_makes_nothing_is_reported(tmp_path):
    f = write_yaml(tmp_path / "gen.yaml", {"path": str(tmp_path / "g"), "train": "t", "val": "v", "names": ["a"],
                                           "download": "x = 1"})
    with pytest.raises(DatasetNotFoundError, match="'download:' ran but 'train:' .* still does not exist"):
        check_dataset(f)


def test_bash_download(tmp_path):
    target = tmp_path / "b"
    f = write_yaml(tmp_path / "b.yaml", {"path": str(target), "train": "t", "val": "t", "names": ["a"],
                                         "download": f"bash -c 'mkdir -p {target}/t'"})
    assert check_dataset(f)["train"] == str(target / "t")


def test_autodownload_off_does_not_run_the_script(tmp_path):
    f = write_yaml(tmp_path / "gen.yaml", {"path": str(tmp_path / "g"), "train": "t", "val": "v", "names": ["a"],
                                           "download": "raise RuntimeError('must not run')"})
    with pytest.raises(DatasetNotFoundError, match="autodownload is off"):
        check_dataset(f, autodownload=False)


def test_coco128_offline_fails_fast_naming_url_and_folder(tmp_path, monkeypatch, offline):
    # the real data/coco128.yaml, with the project root moved so that ../datasets/coco128 is an empty tmp place
    monkeypatch.setattr(dataset_config, "ROOT", tmp_path / "project")
    start = time.time()
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset(str(COCO128_YAML))
    assert time.time() - start < 5
    message = str(info.value)
    assert COCO128_URL in message
    assert f"unzip it into {tmp_path / 'datasets'}{os.sep}" in message
    assert str(COCO128_YAML) in message and "No network?" in message
    assert "\n" not in message and info.value.__cause__ is None  # one line, not a chained traceback
    assert isinstance(info.value, FileNotFoundError)  # what train.py reports as a message, not a traceback
    assert not (tmp_path / "datasets").exists()  # no partial download or empty folder left behind


def test_download_helper_offline(tmp_path, offline):
    with pytest.raises(DownloadError, match="could not download https://example.com/x.zip"):
        download("https://example.com/x.zip", tmp_path, hint="fetch it by hand")
    assert list(tmp_path.iterdir()) == []


def test_unzip_refuses_paths_outside(tmp_path):
    import zipfile

    from utils.downloads import unzip_file

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(DownloadError, match="outside"):
        unzip_file(archive, tmp_path / "out")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("ds/images/a.txt", "x")
        z.writestr("__MACOSX/junk", "x")
    out = unzip_file(good, tmp_path / "out")
    assert (out / "ds" / "images" / "a.txt").is_file() and not (out / "__MACOSX").exists()


@pytest.mark.skipif(not (ROOT.parent / "datasets" / "coco128" / "images").is_dir(),
                    reason="needs ../datasets/coco128 (.ci/run copies it from ../shared)")
def test_coco128_yaml_when_present():
    data = check_dataset("coco128.yaml")
    assert data["nc"] == 80 and data["names"][79] == "toothbrush"
    assert Path(data["train"]) == (ROOT.parent / "datasets" / "coco128" / "images" / "train2017").resolve()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "datasets" / "coco128").is_dir(), reason="needs ../shared coco128")
def test_coco128_yaml_finds_copy_beside_project(tmp_path, monkeypatch, offline):
    import shutil

    shutil.copytree(ROOT.parent / "shared" / "datasets" / "coco128", tmp_path / "datasets" / "coco128")
    monkeypatch.setattr(dataset_config, "ROOT", tmp_path / "project")
    data = check_dataset(str(COCO128_YAML))  # offline, but nothing needs fetching
    assert data["train"] == data["val"] == str(tmp_path / "datasets" / "coco128" / "images" / "train2017")
    assert data["nc"] == 80 and len(data["names"]) == 80


def test_cli_prints_one_error_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    text = COCO128_YAML.read_text().replace("path: ../datasets/coco128", f"path: {tmp_path / 'datasets' / 'coco128'}")
    text = text.replace(COCO128_URL, "http://127.0.0.1:9/coco128.zip")  # refused at once, network or not
    f = tmp_path / "coco128.yaml"
    f.write_text(text)
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "utils.dataset_config", str(f)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and time.time() - start < 30
    assert "Traceback" not in output
    assert "http://127.0.0.1:9/coco128.zip" in output and f"unzip it into {tmp_path / 'datasets'}{os.sep}" in output


def test_cli_summary(tmp_path):
    make_split(tmp_path / "ds", "t")
    f = write_yaml(tmp_path / "d.yaml", {"path": str(tmp_path / "ds"), "train": "t", "val": "t", "names": ["a", "b"]})
    assert dataset_config.main([f]) == 0
    assert dataset_config.main([str(tmp_path / "none.yaml")]) == 1
