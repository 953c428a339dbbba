"""A run's lock: ``flock`` on ``<run>/.lock``, so two processes never train the same run.

The kernel releases the lock when its holder dies, so a killed run never leaves a stale lock. The
holder writes ``<pid> <host> <since>`` into the file for ``dimattn study status``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = ".lock"


@contextmanager
def run_lock(run_dir: Path, wait: float = 2.0) -> Iterator[bool]:
    """Hold the run's lock (``flock`` on ``<run>/.lock``) for the ``with`` body; yields False if another
    process holds it after ``wait`` seconds. The kernel releases the lock when its holder dies, so a
    killed run never leaves a stale lock. (On a cluster, the study directory must be on a file system
    whose ``flock`` is seen by every node: NFSv4, Lustre with ``-o flock``, GPFS, BeeGFS.)"""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # `study status` probes locks for an instant; only a lock held past `wait` is a real holder.
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(run_dir: Path) -> str | None:
    """``"<pid> <host> <since>"`` of the process holding the run's lock (``"another process"`` if it
    wrote nothing), or None if nobody holds it."""
    path = run_dir / LOCK
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


