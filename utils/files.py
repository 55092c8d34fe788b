"""Paths and files: the project root, increment_path for runs/, and atomic writes."""

import contextlib
import glob
import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # project root


def increment_path(path, exist_ok=False, sep="", mkdir=False):
    """runs/exp -> runs/exp2, runs/exp3, ... (the first free one); with exist_ok the path itself."""
    path = Path(path)
    if path.exists() and not exist_ok:
        path, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        pattern = re.compile(rf"{re.escape(path.name)}{re.escape(sep)}(\d+)$")
        taken = [int(m.group(1)) for p in glob.glob(f"{glob.escape(str(path))}{sep}*")
                 if (m := pattern.match(Path(p).with_suffix("").name if suffix else Path(p).name))]
        n = max(taken, default=1) + 1
        while Path(f"{path}{sep}{n}{suffix}").exists():
            n += 1
        path = Path(f"{path}{sep}{n}{suffix}")
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside `path` and rename it over `path` on success.

    A process killed at any instant leaves either the previous complete file or the new one, never a torn one.
    The file gets the permissions of a plainly created one (mkstemp's are 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask():
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def file_size_mb(path):
    """Size of a file, or of everything under a folder, in MB."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    if path.is_dir():
        return sum(f.stat().st_size for f in path.glob("**/*") if f.is_file()) / 1e6
    return 0.0
