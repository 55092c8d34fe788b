"""Claims: the candidates in training right now, by any process on any host, kept alive by heartbeats.

A claim is a JSON file `<pool>/<token>-<n>.json` in the evolve folder. `token` is random per ClaimOwner (one per
EvolveStore, so one per process in practice); host names and pids are recorded for people, never trusted, since two
containers can share both. A claim is live while its owner
  - refreshes its `heartbeat` time every HEARTBEAT_S (or a tenth of the grace period) (a daemon thread rewrites the owner's claim files atomically,
    under the folder lock), and
  - holds an exclusive flock on `.evolve_owners/<token>.lock` (the kernel, or the NFS server, drops it when the
    process dies, so a crash on a shared kernel is seen at once, not after the grace period).
A claim is stale when its heartbeat is older than the grace period (--evolve-claim-grace, minutes), or when its
owner's lock file can be locked by someone else; the next reader deletes it and its candidate is proposed again.
Only the owner ever deletes its live claims.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from utils.files import atomic_write_text
from utils.log import LOGGER

OWNERS_DIR = ".evolve_owners"
HEARTBEAT_S = 5.0
DEFAULT_GRACE_MIN = 5.0  # 60 missed heartbeats: a stalled NFS server or a loaded host is not taken for dead


def owner_lock_free(path):
    """True when nobody holds the flock on `path` (its owner died); the free lock file is deleted. False if held."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False  # no lock file: judge by the heartbeat alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)


class ClaimOwner:
    """This process's claims in one evolve folder: make, release, keep alive, and judge everyone's.

    `lock` is the folder lock (a context manager factory, re-entrant) that every write of a claim happens under.
    """

    def __init__(self, folder, lock, grace_s=DEFAULT_GRACE_MIN * 60):
        if not grace_s > 0:
            raise ValueError(f"--evolve-claim-grace must be a positive number of minutes, got {grace_s / 60:g}")
        self.folder, self.lock = Path(folder), lock
        self.grace_s = float(grace_s)
        self.heartbeat_s = min(HEARTBEAT_S, self.grace_s / 10)  # many beats per grace period
        self.token = uuid.uuid4().hex
        self.owned = {}  # claim id -> (pool, item)
        self._owner_fd = None
        self._thread = None
        self._stop = threading.Event()

    # this process's claims --------------------------------------------------------------------------------------
    def claim(self, item, pool):
        """Write a claim on `item` in `pool` (a folder name); returns its id."""
        claim_id = f"{self.token}-{uuid.uuid4().hex[:8]}"
        with self.lock():
            self._hold_owner_lock()
            (self.folder / pool).mkdir(exist_ok=True)
            self._write(claim_id, pool, item)
            self.owned[claim_id] = (pool, item)
        self._start_heartbeat()
        return claim_id

    def release(self, claim_id, pool):
        with self.lock(), contextlib.suppress(FileNotFoundError):
            self.owned.pop(claim_id, None)
            (self.folder / pool / f"{claim_id}.json").unlink()

    def beat(self):
        """Refresh the heartbeat of every claim this owner holds; a claim whose file is gone is dropped."""
        with self.lock():
            for claim_id, (pool, item) in list(self.owned.items()):
                if (self.folder / pool / f"{claim_id}.json").exists():
                    self._write(claim_id, pool, item)
                else:  # its candidate ended (recorded or pruned through another store) or it was taken for stale
                    self.owned.pop(claim_id, None)

    def close(self):
        """Stop the heartbeat and let go of the owner lock (claims still held then turn stale)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None

    def _write(self, claim_id, pool, item):
        now = time.time()
        record = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(), "time": now,
                  "heartbeat": now, "item": item}
        atomic_write_text(self.folder / pool / f"{claim_id}.json", json.dumps(record))

    def _hold_owner_lock(self):
        if self._owner_fd is not None:
            return
        owners = self.folder / OWNERS_DIR
        owners.mkdir(exist_ok=True)
        fd = os.open(owners / f"{self.token}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh random name: nobody else can hold it
        self._owner_fd = fd

    def _start_heartbeat(self):
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="evolve-claims-heartbeat", daemon=True)
        self._thread.start()

    def _heartbeat_loop(self):
        while not self._stop.wait(self.heartbeat_s):
            if not self.owned:
                return
            with contextlib.suppress(OSError):  # a transient NFS error: the next beat retries
                self.beat()

    # everyone's claims ------------------------------------------------------------------------------------------
    def live_items(self, pool):
        """{claim id: item} of the live claims in `pool`, in id order; stale ones (see the module's note) are deleted."""
        folder = self.folder / pool
        if not folder.exists():
            return {}
        live = {}
        with self.lock():
            for path in sorted(folder.glob("*.json")):
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    record = None
                item = record.get("item", record.get("hyp")) if isinstance(record, dict) else None  # "hyp": older
                if item is None or self.stale(path.stem, record):
                    if item is not None:
                        LOGGER.warning(f"WARNING: evolve: the candidate in flight of {record.get('host')} (pid "
                                       f"{record.get('pid')}) is lost (its process ended or sent no heartbeat for "
                                       f"{self.grace_s / 60:g} min): it will be trained again")
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                live[path.stem] = item
        return live

    def stale(self, claim_id, record):
        """Whether a claim is dead: its heartbeat is older than the grace period, or its owner's lock is free."""
        token = record.get("token")
        if token == self.token:
            return claim_id not in self.owned
        heartbeat = float(record.get("heartbeat", record.get("time", 0)))
        if time.time() - heartbeat > self.grace_s:
            return True
        return bool(token) and owner_lock_free(self.folder / OWNERS_DIR / f"{token}.lock")
