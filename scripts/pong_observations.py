"""Write the ten Pong observations of the published interpretability study as dimattn's package data.

    python scripts/pong_observations.py [FOLDER] [--out src/dimattn/data/pong_observations.npz]

FOLDER defaults to ``../shared/data/pong-observations`` (``pong_1.npy`` ... ``pong_10.npy``, each
(1, 4, 84, 84) uint8). The output is one compressed ``.npz``: ``obs`` (10, 4, 84, 84) uint8 and ``names``
(10,) in natural order; ``dimattn explain --obs pong`` reads it, so the examples need nothing outside
the package. ``tests/test_interpret.py`` checks that it equals the ten files.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_bytes
from dimattn.interpret.explain import PONG_OBSERVATIONS, load_observations

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared" / "data" / "pong-observations")
    p.add_argument("--out", type=Path, default=ROOT / "src" / "dimattn" / PONG_OBSERVATIONS)
    args = p.parse_args(argv)
    try:
        obs, names = load_observations(sorted(args.folder.glob("pong_*.npy")))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, obs=obs, names=np.array(names))
        atomic_write_bytes(args.out, buffer.getvalue())
    except DimattnError as exc:
        print(f"pong_observations: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(names)} observations, {args.out.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
