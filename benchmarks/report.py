"""Benchmark: the full ``dimattn report`` on the published 56-game data (goal: ≤ 60 s with 2000
bootstrap replicates), its stages, and the probability-of-improvement metric against rliable's own.

    PYTHONPATH=src python benchmarks/report.py [--reps 2000] [--poi-reps 20] [--no-stages]

Prints wall-clock and CPU seconds side by side: on a shared machine wall time includes waiting for
a core, CPU time does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from dimattn.analysis import (  # noqa: E402
    figures,
    results,
    stats,  # noqa: E402
)
from dimattn.analysis.report import build_report  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
PUBLISHED = SHARED / "data" / "seed-results" / "post_processed_results_56.pkl"
GOAL_S = 60.0


@contextmanager
def timed(rows: list, name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))


def show(rows: list, title: str) -> None:
    print(f"\n{title}")
    print(f"  {'stage':<52}{'wall s':>9}{'cpu s':>9}")
    for name, wall, cpu in rows:
        print(f"  {name:<52}{wall:9.2f}{cpu:9.2f}")


def stages(reps: int) -> list:
    """Each step of the report on its own, in the report's order."""
    rows: list = []
    with timed(rows, "load published pickle (restricted)"):
        df = results.align_steps(results.load_published(PUBLISHED))
    with timed(rows, "per-game table"):
        stats.per_game(df)
    with timed(rows, "human-normalised matrices + curves"):
        mats, _ = stats.score_matrices(stats.human_normalized(stats.seed_scores(df)))
        curves, _, steps = stats.run_curves(stats.human_normalized(df))
    with timed(rows, f"aggregates (4 metrics x 5 agents, {reps} reps)"):
        agg = stats.aggregate_metrics(mats, reps)
    with timed(rows, f"probability of improvement (4 pairs, {reps} reps)"):
        poi = stats.probability_of_improvement(mats, reps=reps)
    taus = stats.profile_taus(mats)
    with timed(rows, f"performance profiles ({len(taus)} taus, {reps} reps)"):
        profiles, cis = stats.performance_profiles(mats, taus, reps)
    with timed(rows, f"sample efficiency ({len(steps)} steps, {reps} reps)"):
        eff = stats.sample_efficiency(curves, steps, reps)
    with tempfile.TemporaryDirectory() as tmp, timed(rows, "figures (6, PNG + SVG)"):
        out = Path(tmp)
        figures.save_figure(figures.aggregates_figure(agg), out / "a")
        figures.save_figure(figures.improvement_figure(poi), out / "b")
        figures.save_figure(figures.profiles_figure(profiles, cis, taus), out / "c")
        figures.save_figure(figures.sample_efficiency_figure(eff), out / "d")
        figures.save_figure(figures.alignment_figure(stats.alignment(stats.winners(stats.per_game(df)))),
                            out / "e")
        figures.save_figure(figures.learning_curves_figure(stats.learning_curves(df)), out / "f", crop=False)
    return rows


def poi_comparison(reps: int) -> None:
    """Our vectorised P(X > Y) against rliable's per-game SciPy loop, same bootstrap, same reps."""
    from rliable import metrics

    df = results.load_published(PUBLISHED)
    mats, _ = stats.score_matrices(stats.human_normalized(stats.seed_scores(df)))
    pair = {"CWCA,NA": (mats["CWCA"], mats["NA"])}
    timings = {}
    for name, func in (("rliable metrics.probability_of_improvement", metrics.probability_of_improvement),
                       ("dimattn stats.improvement_probability", stats.improvement_probability)):
        t = time.perf_counter()
        points, cis = stats._bootstrap(pair, func, reps, 0, None)
        timings[name] = (time.perf_counter() - t, float(np.ravel(points["CWCA,NA"])[0]), np.ravel(cis["CWCA,NA"]))
    print(f"\nprobability of improvement, 1 pair x 56 games, {reps} reps (same bootstrap draws)")
    base = timings["rliable metrics.probability_of_improvement"][0]
    for name, (s, p, ci) in timings.items():
        print(f"  {name:<44}{s:8.2f} s  x{base / s:7.1f}   P={p:.4f}  CI=[{ci[0]:.4f}, {ci[1]:.4f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--poi-reps", type=int, default=20, help="reps for the rliable-vs-ours comparison")
    ap.add_argument("--no-stages", action="store_true", help="only the end-to-end run")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}")

    rows: list = []
    with tempfile.TemporaryDirectory() as tmp, timed(rows, f"dimattn report, {args.reps} reps (end to end)"):
        build_report(PUBLISHED, tmp, reps=args.reps, seed=0, progress=False)
    show(rows, "end to end")
    wall = rows[0][1]
    print(f"  goal {GOAL_S:.0f} s: {'met' if wall <= GOAL_S else 'NOT met'} ({wall / GOAL_S:.2f} of the goal)")

    if not args.no_stages:
        show(stages(args.reps), "stages")
        poi_comparison(args.poi_reps)


if __name__ == "__main__":
    main()
