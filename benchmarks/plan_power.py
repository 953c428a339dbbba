"""The check of ``dimattn plan`` on the published seeds (docs/plan.md, "Checked by simulation").

    python benchmarks/plan_power.py [--budget 10000000] [--reps 1000] [--game Breakout]

For each plan (seeds 1, 2, 3, 5, 10; a difference of 6 SEs; 50% of the score), all five agents on the 56
games and on one game: the power the plan promises and the share of comparisons that compare's own
interval and verdict flag when both sides are drawn from the published seeds of each (game, agent)
(``dimattn.analysis.plan.simulate``), averaged over the plan's cells. Takes about 20 s.
"""

from __future__ import annotations

import argparse

import numpy as np

from dimattn.analysis import plan

PLANS = {"--seeds 1": {"seeds": 1}, "--seeds 2": {"seeds": 2}, "--seeds 3": {"seeds": 3}, "--seeds 5": {"seeds": 5},
         "--seeds 10": {"seeds": 10}, "--diff 6se": {"difference": (6.0, "se")},
         "--diff 50%": {"difference": (50.0, "%")}}


def achieved(p: plan.Plan, reps: int) -> tuple[int, float, float]:
    """(cells with a plan, mean planned power, mean achieved power) over the plan's cells."""
    shift = plan.shift_of(p.cells, p.cells["diff_points"].to_numpy())
    sim = plan.simulate(p.spreads, shift, p.cells["seeds"].to_numpy(), p.level, reps=reps)
    keep = np.isfinite(sim) & np.isfinite(p.cells["power"].to_numpy())
    return int(keep.sum()), float(p.cells["power"].to_numpy()[keep].mean()), float(sim[keep].mean())


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--budget", type=int, default=10_000_000)
    a.add_argument("--reps", type=int, default=1000)
    a.add_argument("--game", default="Breakout")
    args = a.parse_args()
    agents = ["NA", "SWA", "CWRA", "CWCA", "CWRCA"]
    print(f"| plan | cells | planned | achieved (56 games) | {args.game}'s cells | planned | achieved |")
    print("|---|---|---|---|---|---|---|")
    for name, how in PLANS.items():
        all56 = achieved(plan.make_plan(None, agents, args.budget, **how), args.reps)
        one = achieved(plan.make_plan([args.game], agents, args.budget, **how), args.reps)
        print(f"| `{name}` | {all56[0]} | {100 * all56[1]:.1f}% | {100 * all56[2]:.1f}% | {one[0]} | "
              f"{100 * one[1]:.1f}% | {100 * one[2]:.1f}% |")


if __name__ == "__main__":
    main()
