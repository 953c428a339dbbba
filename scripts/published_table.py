"""Write the published study's scores as dimattn's package data, from the published pickle.

    python scripts/published_table.py [PKL] [--out src/dimattn/data/published_scores.csv.gz]

PKL defaults to ``../shared/data/seed-results/post_processed_results_56.pkl``. The output is the tidy
table (game, agent, seed, timestep, score; 56 x 5 x 5 x 50 = 70,000 rows, every score written exactly)
as a reproducible gzip CSV (~0.3 MB): the same input gives the same bytes. ``tests/test_compare.py``
checks that the shipped file equals the pickle. ``dimattn report published`` and ``dimattn compare``
read it, so they need no download.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dimattn.analysis.results import PUBLISHED_TABLE, load_published, published_table_bytes
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pickle", nargs="?", type=Path,
                   default=ROOT.parent / "shared" / "data" / "seed-results" / "post_processed_results_56.pkl")
    p.add_argument("--out", type=Path, default=ROOT / "src" / "dimattn" / PUBLISHED_TABLE)
    args = p.parse_args(argv)
    try:
        df = load_published(args.pickle)
    except DimattnError as exc:
        print(f"published_table: error: {exc}", file=sys.stderr)
        return 2
    data = published_table_bytes(df)
    atomic_write_bytes(args.out, data)
    print(f"wrote {args.out} ({len(df):,} rows, {df['game'].nunique()} games, {len(data) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
