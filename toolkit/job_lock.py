"""One run per job folder: an advisory lock file ``<job folder>/.job.lock`` holding who runs it.

Two ``run.py`` on one config would train into the same folder (interleaved progress and loss
logs, each overwriting the other's checkpoints). The trainer takes this lock before it writes
anything; a second run refuses with the first one's PID and host, from any front end (CLI, the
Gradio app, the Next.js UI: they all start ``run.py``).

The lock is ``fcntl.flock`` on the file (``msvcrt.locking`` on Windows), released by the kernel
when the process dies, so a crash or ``kill -9`` never leaves a lock that blocks: a file nobody
holds is stale and is taken over. The file's text (``{"pid", "host", "started"}``) only says who
holds it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

LOCK_FILE = ".job.lock"

try:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows: a byte-range lock past the JSON text, so readers can still read it
    import msvcrt

    _FAR = 1 << 20

    def _try_lock(fd: int) -> None:
        os.lseek(fd, _FAR, 0)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _FAR, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class JobFolderBusy(ToolkitError):
    """Another run holds the job folder; the message names its PID and host."""

    def __init__(self, folder: Path, holder: dict):
        self.folder, self.holder = Path(folder), holder
        started = holder.get("started")
        since = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
        super().__init__(
            f"job folder '{folder}' is in use by another run (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}{since}); wait for it to finish, stop it, or give this job another "
            "config.name"
        )


def holder(folder: Path) -> dict | None:
    """Who holds the lock of ``folder`` (``{"pid", "host", "started"}``), or None when nobody does."""
    path = Path(folder) / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        _try_lock(fd)
    except OSError:
        return _read(path) or {}
    else:
        _unlock(fd)
        return None
    finally:
        os.close(fd)


class JobFolderLock:
    """``with JobFolderLock(folder):`` or ``lock = JobFolderLock(folder).acquire() ... lock.release()``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> JobFolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 3)}
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(fd)
        except OSError:
            os.close(fd)
            raise JobFolderBusy(self.folder, _holder(self.path)) from None
        previous = _read(self.path)
        if previous and previous.get("pid") != me["pid"]:
            log.info(
                "job folder %s: taking over a stale lock (pid %s on %s is gone)",
                self.folder,
                previous.get("pid"),
                previous.get("host"),
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, 0)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        # The file stays (unlinking it would let a third run lock a new inode while a second one
        # holds the old); emptied, it says nobody holds it.
        os.ftruncate(self.fd, 0)
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> JobFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path, wait_s: float = 2.0) -> dict:
    """The lock holder's PID and host. A holder that took the lock an instant ago may not have written them
    yet (lock, then write): read again for up to `wait_s` before answering without them."""
    deadline = time.monotonic() + wait_s
    while True:
        info = _read(path)
        if info and info.get("pid") or time.monotonic() > deadline:
            return info or {}
        time.sleep(0.05)


def _read(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
