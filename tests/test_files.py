import os
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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_a_plain_files_permissions(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "results.csv", "epoch\n")
        with atomic_open(tmp_path / "best.pt", "wb") as f:
            f.write(b"\0")
    finally:
        os.umask(previous)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == mode
    assert (tmp_path / "best.pt").stat().st_mode & 0o777 == mode
