from pathlib import Path

import pytest

from utils.files import atomic_open, atomic_write_text, increment_path


def test_increment_path_dirs(tmp_path):
    names = [increment_path(tmp_path / "exp", mkdir=True).name for _ in range(3)]
    assert names == ["exp", "exp2", "exp3"]


def test_increment_path_exist_ok(tmp_path):
    (tmp_path / "exp").mkdir()
    assert increment_path(tmp_path / "exp", exist_ok=True) == tmp_path / "exp"


def test_increment_path_file_keeps_suffix(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert increment_path(tmp_path / "a.txt").name == "a2.txt"


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_open_failure_keeps_previous(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "complete")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write("torn")
        raise RuntimeError("killed")
    assert p.read_text() == "complete"
    assert sorted(Path(tmp_path).iterdir()) == [p]
