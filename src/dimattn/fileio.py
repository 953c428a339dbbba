"""Atomic file writes: a reader sees the old file or the new one, never half of one.

And :func:`writing`: an ``OSError`` met while writing (read-only file system, a file where a folder is
expected, a full disk) becomes one :class:`DimattnError` line naming the path and the cause;
:func:`output_folder`: a command's output folder checked before any work, removed if the command fails.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dimattn.errors import DimattnError

if TYPE_CHECKING:
    import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone the umask allows
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (``path`` should end in ``.npz``)."""
    import numpy as np  # here: the command line imports this module before it knows it needs NumPy

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_savefig(fig, path: str | Path, dpi: int = 110, crop: bool = True) -> Path:
    """Save a matplotlib figure to ``path`` atomically, in the format its suffix names (``.png``, ``.svg``).

    ``crop``: trim the page to the drawing (``bbox_inches="tight"``). SVGs carry no timestamp, so the
    same figure gives the same file.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight" if crop else None,
                    metadata={"Date": None} if fmt == "svg" else None)
    return path


#: The causes of a failed write that the user can fix, in words; other OSErrors are not ours to explain.
WRITE_CAUSES = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "not a directory (a file stands where a folder is expected)",
    errno.EEXIST: "a file stands where a folder is expected",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.ENAMETOOLONG: "file name too long",
}


def write_error(exc: OSError, path: str | Path, what: str, option: str | None = None) -> DimattnError | None:
    """The one-line error for ``exc``, met while writing ``what`` at ``path``; None if it is not a
    write problem the user can fix (then the caller re-raises it)."""
    cause = WRITE_CAUSES.get(exc.errno)
    if cause is None:
        return None
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space or choose another location"
    else:
        todo = f"choose another {option}" if option else "choose another location"
    return DimattnError(f"cannot write {what} {path}: {cause}{where}; {todo}")


@contextmanager
def writing(path: str | Path, what: str, option: str | None = None) -> Iterator[None]:
    """Turn an OSError of the ``with`` body that comes from writing into one line naming ``path``
    (``what``: "log folder", "report folder", ...; ``option``: the flag that chose it, for the advice).

    Files already written stay as they were: every writer here is atomic.
    """
    try:
        yield
    except OSError as exc:
        error = write_error(exc, path, what, option)
        if error is None:
            raise
        raise error from None


def check_writable_dir(path: str | Path, what: str, option: str | None = None) -> Path:
    """Create folder ``path`` if needed and write (then delete) a probe file in it, so that a folder that
    cannot be written is refused before any work starts. Returns ``path``."""
    path = Path(path)
    # mkdir of an existing folder succeeds even on a read-only file system: the probe is what tells
    with writing(path, what, option):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    return path


def _nearest_existing(path: Path) -> tuple[Path, Path | None]:
    """(the nearest folder at or above ``path`` that exists, the first folder below it on the way to ``path``
    that does not, or None when ``path`` exists)."""
    path = Path(os.path.abspath(path))
    below = None
    while not path.exists() and not path.is_symlink() and path.parent != path:
        path, below = path.parent, path
    return path, below


@contextmanager
def output_folder(path: str | Path, what: str, option: str | None = None) -> Iterator[Path]:
    """A command's output folder, checked before the command works and cleaned up if it fails.

    Before the body: refused in one line if it could not be made or written (read-only, a file in the way,
    a full disk), creating nothing: a probe file is written and deleted in the folder, or, when it does not
    exist yet, in the nearest folder above it. In the body: an OSError from writing is one line (as
    :func:`writing`); if the body fails, the folders this command made are removed, so a full disk or
    an interrupt leaves no half-written output folder (a folder that was there keeps its files, each
    written atomically).
    """
    path = Path(path)
    existing, made = _nearest_existing(path)
    with writing(path, what, option):
        if made is None and not existing.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        probe = existing / f".write-test-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")  # a file where a folder should be: ENOTDIR; read-only: EROFS / EACCES
            probe.unlink()
        except OSError as exc:  # said of the folder asked for, not of the probe
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with writing(path, what, option):
            yield path
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes (``what``: what it should be,
    for the message); a FIFO, device or folder is refused unopened, as it could block the reader."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DimattnError(f"{path} is not a regular file (a FIFO, device or folder); expected {what}")
        if st.st_size > limit:
            raise DimattnError(f"{path} is {st.st_size:,} bytes, more than {what} can be ({limit:,})")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # swapped for a FIFO since the stat: never block on it
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DimattnError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise DimattnError(f"{path} is more than {limit:,} bytes, more than {what} can be")
    return data
