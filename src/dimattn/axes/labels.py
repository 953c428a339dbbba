"""The measured axis labels of the study's 56 games, shipped as package data.

``src/dimattn/data/measured_axes.csv`` is the ``axes.csv`` that ``dimattn axes --games seed56 --out DIR``
writes (random policy, default steps and seed), copied; docs/axes.md gives the command.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

MEASURED_AXES = "data/measured_axes.csv"


@lru_cache(maxsize=1)
def measured_labels() -> dict[str, str]:
    """{game: "horizontal" | "vertical" | "other"} as measured by ``dimattn axes`` (random policy)."""
    text = resources.files("dimattn").joinpath(MEASURED_AXES).read_text()
    return {r["game"]: r["label"] for r in csv.DictReader(text.splitlines())}
