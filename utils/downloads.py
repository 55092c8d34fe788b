"""Fetching files by URL and unpacking archives; offline, a download fails within seconds and says what to do by hand."""

import shutil
import socket
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from utils.errors import DownloadError
from utils.files import atomic_open
from utils.log import LOGGER

CONNECT_TIMEOUT = 10.0  # seconds allowed for name resolution and for each socket operation
RELEASE_URL = "https://github.com/ultralytics/yolov5/releases/download/v7.0/"  # official YOLOv5 weights
OFFICIAL_WEIGHTS = {f"yolov5{size}{p6}.pt" for size in "nsmlx" for p6 in ("", "6")}


def is_url(url):
    """True for an http(s) or ftp URL with a host."""
    try:
        parts = urllib.parse.urlparse(str(url))
        return parts.scheme in ("http", "https", "ftp") and bool(parts.netloc)
    except ValueError:
        return False


def url_filename(url):
    """The file name a URL points to, without query string: https://x.com/a/b.zip?raw=1 -> b.zip."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(str(url)).path)).name


def _resolve_host(host, timeout):
    """getaddrinfo under a wall-clock limit: socket timeouts do not cover name resolution, which can hang offline."""
    outcome = {}

    def lookup():
        try:
            outcome["ok"] = socket.getaddrinfo(host, None)
        except OSError as e:
            outcome["error"] = e

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if "ok" in outcome:
        return
    raise OSError(outcome.get("error") or f"name resolution for {host} took over {timeout:.0f}s")


def safe_download(url, file, timeout=CONNECT_TIMEOUT, hint=""):
    """Download `url` to `file` (written atomically). Raises DownloadError naming the URL, `file` and `hint`."""
    file = Path(file)
    LOGGER.info(f"Downloading {url} to {file}...")
    try:
        _resolve_host(urllib.parse.urlparse(url).hostname or "", timeout)
        request = urllib.request.Request(url, headers={"User-Agent": "yolov5-toolkit"})
        with urllib.request.urlopen(request, timeout=timeout) as response, atomic_open(file, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts and socket errors are all OSError
        fix = hint or f"download it by hand and save it as {file}"
        raise DownloadError(f"could not download {url} ({e}). No network? {fix}") from None
    if not file.is_file() or file.stat().st_size == 0:
        raise DownloadError(f"download of {url} gave an empty file {file}: {hint or 'try again or fetch it by hand'}")
    return file


def unzip_file(file, path=None, exclude=(".DS_Store", "__MACOSX")):
    """Unpack a .zip (or .tar/.tar.gz) into `path` (default: the archive's folder), skipping `exclude` names.

    Members that would land outside `path` (absolute names, '..') are refused.
    """
    file = Path(file)
    path = Path(path or file.parent).resolve()
    path.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                members = [m for m in archive.namelist() if not any(x in m for x in exclude)]
                for member in members:
                    _check_inside(path, member, file)
                archive.extractall(path, members=members)
        elif tarfile.is_tarfile(file):
            with tarfile.open(file) as archive:
                members = [m for m in archive.getmembers() if not any(x in m.name for x in exclude)]
                for member in members:
                    _check_inside(path, member.name, file)
                safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
                archive.extractall(path, members=members, **safety)
        else:
            raise DownloadError(f"{file} is not a zip or tar archive: delete it and fetch it again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise DownloadError(f"{file} is a damaged archive ({e}): delete it and fetch it again") from None
    return path


def _check_inside(root, member, archive):
    if not (root / member).resolve().is_relative_to(root):
        raise DownloadError(f"{archive} holds {member!r}, which would unpack outside {root}: refusing to unpack it")


def download(url, dir=".", unzip=True, delete=True, timeout=CONNECT_TIMEOUT, hint=""):
    """Fetch `url` into folder `dir`; unpack it there if it is an archive (then delete the archive). Returns `dir`."""
    dir = Path(dir)  # created by the first write, so a failed download leaves no empty folders behind
    file = dir / url_filename(url)
    if not file.exists():
        safe_download(url, file, timeout=timeout, hint=hint)
    if unzip and file.suffix in (".zip", ".tar", ".gz", ".tgz"):
        LOGGER.info(f"Unzipping {file}...")
        unzip_file(file, dir)
        if delete:
            file.unlink()
    return dir


def attempt_download(weights):
    """The weights path; an official name (yolov5s.pt, ...) that is not on disk is fetched from the v7.0 release.

    Offline this fails within seconds with a DownloadError naming the URL and where to put the file by hand.
    """
    path = Path(str(weights).strip().replace("'", ""))
    if path.is_file() or path.name not in OFFICIAL_WEIGHTS:
        return path
    url = RELEASE_URL + path.name
    safe_download(url, path, hint=f"download {url} by hand and save it as {path.resolve()}, or train from scratch "
                                   f"with --cfg {path.stem}.yaml --weights ''")
    return path
