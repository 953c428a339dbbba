"""Calibration of ``dimattn compare``'s verdict on the published study against itself (docs/report.md).

    python benchmarks/compare_calibration.py [--level 0.95] [--against published|PKL]

1. False alarms: every (game, agent) of the published data (280 cells), every split of its 5 seeds into k
   "mine" and 5−k "published" (k = 1..4), at budgets 10M, 1M and 400k steps, on the matched-grid score and
   the last evaluation: the share of comparisons flagged below or above (nominal: 1 − level).
2. Power, in units of the published SE (std ddof=0 / √m of the seeds compared against):
   - "copy": your 5 seeds are the published 5 shifted: the smallest shift flagged (a threshold);
   - "k v m": k published seeds shifted against the other m (independent seeds), share flagged above;
   - 5 v 5 independent seeds, normal scores with equal spread: Welch's power from the noncentral t.
Takes about 2 s.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import stats as sps

from dimattn.analysis import compare
from dimattn.analysis.results import load_results


def fresh_power(shift: float, n: int = 5, level: float = compare.LEVEL) -> float:
    """P(flagged above) for n v n independent normal seeds whose means differ by ``shift`` true SEs (σ/√n)."""
    ncp = shift / np.sqrt(2)  # difference / (σ √(2/n)), with difference = shift σ/√n
    crit = sps.t.ppf(0.5 + level / 2, 2 * n - 2)
    return float(sps.nct.sf(crit, 2 * n - 2, ncp))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--level", type=float, default=compare.LEVEL)
    p.add_argument("--against", default="published")
    args = p.parse_args()
    df = load_results(args.against)
    pd.set_option("display.width", 160)

    cal = compare.calibrate(df, level=args.level)
    judged = cal[cal["m"] >= 2]
    print(f"False alarms at level {args.level} ({df.groupby(['game', 'agent']).ngroups} cells, every split):")
    table = judged.pivot_table(index=["budget", "score"], columns="k", values="false_alarm").sort_index(ascending=False)
    table.columns = [f"{k} v {5 - k}" for k in table.columns]
    print((100 * table).round(1).to_string())
    overall = (judged["below"].sum() + judged["above"].sum()) / (judged["comparisons"] - judged["too_few"]).sum()
    print(f"overall: {100 * overall:.1f}% of {int(judged['comparisons'].sum()):,} comparisons "
          f"(4 v 1: too few seeds, {int(cal.loc[cal['m'] == 1, 'comparisons'].sum()):,})\n")

    shifts = (0, 1, 2, 3, 4, 5, 6, 8)
    power = compare.planted_power(df, shifts, level=args.level).pivot(index="shift", columns="design", values="above")
    power["5 v 5, normal (Welch)"] = [fresh_power(s, level=args.level) for s in shifts]
    print("Share flagged above, shift in published SEs:")
    print((100 * power).round(1).to_string())
    print(f"\n5 v 5 copies: flagged from {compare.copy_threshold(level=args.level):.2f} SE on")
    for target in (0.5, 0.8):
        lo, hi = 0.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fresh_power(mid, level=args.level) < target else (lo, mid)
        print(f"5 v 5 independent normal seeds: {100 * target:.0f}% power at a difference of {hi:.2f} SE")


if __name__ == "__main__":
    main()
