"""Where the tests find the workplace's shared data (the published results, Pong observations, reference
scores; ``shared/README.md``), which the project reads but never copies.

In order: ``$DIMATTN_SHARED``; ``shared/`` beside this checkout (as CI has it); ``shared/`` beside the
repository this checkout was cloned from, when that is a folder on this machine (``git clone /work/main
/tmp/x`` finds ``/work/shared``). Where none exists, the tests that need it fail naming the first place.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _origin() -> Path | None:
    """The folder this checkout was cloned from, if its origin is a local path."""
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://")) if url and "://" not in url.replace("file://", "") else None
    return path if path is not None and path.is_absolute() and path.is_dir() else None


def shared_dir() -> Path:
    candidates = [Path(os.environ["DIMATTN_SHARED"])] if os.environ.get("DIMATTN_SHARED") else []
    candidates.append(ROOT.parent / "shared")
    origin = _origin()
    if origin is not None:
        candidates.append(origin.parent / "shared")
    return next((c for c in candidates if (c / "README.md").is_file()), candidates[0])


SHARED = shared_dir()
