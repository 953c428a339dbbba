"""Plan a study before paying for it (``dimattn plan``, docs/plan.md): per game, the seeds that let
``dimattn compare`` detect a difference, or the smallest difference given seeds can detect, and what the
runs cost. The statistic is compare's own (:func:`dimattn.analysis.compare.interval`, its power in
:func:`~dimattn.analysis.compare.power`), on the published per-seed spreads at the planned budget.

    spreads(budget, games) -> Spreads            the published seeds' scores at a budget (compare's score)
    parse_difference("3se" | "10%" | "0.05hns")  a difference to detect, in one of three units
    make_plan(...) -> Plan                       both directions per game, the cost, the ranking of games
    simulate(spreads, ...)                       compare run on resampled published seeds: the power achieved
    NODE_RATES                                   steps/s measured on a GPU node (docs/benchmarks.md)

Nothing is written: the command prints the plan, and ``--csv`` writes it (cli.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dimattn.analysis import compare, tables
from dimattn.analysis.results import PUBLISHED, load_results
from dimattn.errors import DimattnError

#: Steps/s of the fast engine on one GPU node, measured (docs/benchmarks.md, "The fast engine on a GPU node":
#: H100, Breakout, NA with the CUDA graph that is now the default, CWCA without it). Agents not listed were
#: not measured there, and the plan says so rather than guess.
NODE_RATES: dict[str, dict[str, float]] = {"H100": {"NA": 3133.0, "CWCA": 2154.0}}
#: The fast engine's rollout (16 envs × 128 steps): a run reaches a budget at the next multiple of it.
ROLLOUT = 2048
#: Seeds tried per game before a plan says "more than this".
MAX_SEEDS = 50


# --------------------------------------------------------------------------- the published spreads
@dataclass(frozen=True)
class Spreads:
    """The published seeds at a budget: ``cells`` one row per (game, agent) (game, agent, mean, sd: std
    ddof=1, se: std ddof=0 / √m, m, random, human) and ``scores`` (C, m) each seed's score, in that order."""

    budget: int
    cells: pd.DataFrame
    scores: np.ndarray


def grid_budget(budget: int, steps: np.ndarray) -> int:
    """The last published evaluation step at or before ``budget``; raises below the first."""
    if budget < steps[0]:
        raise DimattnError(f"--budget {budget:,} is before the published study's first evaluation "
                           f"({steps[0]:,} steps): compare can judge nothing there; give at least --budget {steps[0]}")
    return int(steps[steps <= budget][-1])


def spreads(budget: int, games: list[str] | None = None) -> Spreads:
    """Each published seed's score on the grid up to ``budget`` (the mean of its evaluations there, as
    compare scores it), per (game, agent) of ``games`` (None: all 56)."""
    from dimattn.games import reference_scores

    df = load_results(PUBLISHED)
    if games is not None:
        missing = sorted(set(games) - set(df["game"]))
        if missing:
            raise DimattnError(f"not in the published study: {', '.join(missing)} (it has {df['game'].nunique()} "
                               "games; see dimattn report published)")
        df = df[df["game"].isin(games)]
    budget = grid_budget(budget, np.sort(df["timestep"].unique()))
    wide = df[df["timestep"] <= budget].pivot_table(index=["game", "agent", "seed"], columns="timestep",
                                                    values="score")
    per_seed = wide.mean(axis=1).unstack("seed")  # (C, m): index (game, agent)
    scores = per_seed.to_numpy(dtype=np.float64)
    ref = reference_scores()
    cells = per_seed.index.to_frame(index=False)
    cells["mean"], cells["sd"] = scores.mean(axis=1), scores.std(axis=1, ddof=1)
    cells["m"] = scores.shape[1]
    cells["se"] = scores.std(axis=1) / np.sqrt(scores.shape[1])
    cells["random"] = [ref.get(g, (np.nan, np.nan))[0] for g in cells["game"]]
    cells["human"] = [ref.get(g, (np.nan, np.nan))[1] for g in cells["game"]]
    return Spreads(budget, cells, scores)


# --------------------------------------------------------------------------- differences
_DIFF = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(se|%|hns)\s*", re.IGNORECASE)


def parse_difference(text: str) -> tuple[float, str]:
    """``"3se"`` (published SEs), ``"10%"`` (of the published score), ``"0.05hns"`` -> (value, unit)."""
    match = _DIFF.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise DimattnError(f"--diff {text!r}: give a positive number and a unit: 3se (published standard errors), "
                           "10% (of the published score) or 0.05hns (human-normalised points)")
    return float(match.group(1)), match.group(2).lower()


def to_points(cells: pd.DataFrame, value: float, unit: str) -> np.ndarray:
    """A difference in ``unit`` -> score points per cell (NaN where the unit is undefined: no reference
    score for hns, a published score of 0 for %)."""
    if unit == "se":
        return value * cells["se"].to_numpy()
    if unit == "%":
        mean = cells["mean"].abs().to_numpy()
        return np.where(mean > 0, value / 100 * mean, np.nan)
    return value * (cells["human"] - cells["random"]).to_numpy()


def in_units(cells: pd.DataFrame, points: np.ndarray) -> dict[str, np.ndarray]:
    """Score points per cell -> {unit: the same difference in that unit}."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"se": points / cells["se"].to_numpy(), "%": 100 * points / cells["mean"].abs().to_numpy(),
                "hns": points / (cells["human"] - cells["random"]).to_numpy()}


# --------------------------------------------------------------------------- the two directions
def seeds_needed(shift: np.ndarray, m: int, target: float, level: float) -> np.ndarray:
    """Per cell, the fewest of your seeds (1..MAX_SEEDS) whose verdict flags a true difference of ``shift``
    seed stds with probability ``target``; MAX_SEEDS + 1 where none does. Not monotone at small k: one
    seed (a prediction interval, m − 1 degrees of freedom) can beat two (Welch with ~2)."""
    out = np.full(np.shape(shift), MAX_SEEDS + 1)
    for k in range(MAX_SEEDS, 0, -1):  # downwards, so the smallest k that reaches the target is kept
        out = np.where(compare.power(np.nan_to_num(shift), k, m, level) >= target, k, out)
    return out


def shift_of(cells: pd.DataFrame, points: np.ndarray) -> np.ndarray:
    """Score points -> seed stds; a cell with no spread flags any difference (an infinite shift)."""
    sd = cells["sd"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, points / sd, np.where(points > 0, np.inf, 0.0))


# --------------------------------------------------------------------------- the check by simulation
def simulate(sp: Spreads, shift: np.ndarray, k: np.ndarray, level: float = compare.LEVEL, reps: int = 400,
             seed: int = 0) -> np.ndarray:
    """Per cell, the share of ``reps`` comparisons that compare's verdict flags "above" when your k seeds and
    their m are drawn from that cell's published seeds (resampled with replacement, spread rescaled by
    √(m/(m−1)) so that the draws spread as the sample std says) and yours are shifted by ``shift`` seed stds."""
    rng = np.random.default_rng(seed)
    centre = sp.scores.mean(axis=1, keepdims=True)
    pool = centre + (sp.scores - centre) * np.sqrt(sp.scores.shape[1] / (sp.scores.shape[1] - 1))  # (C, m)
    m, out = sp.scores.shape[1], np.full(len(pool), np.nan)
    sd = sp.cells["sd"].to_numpy()
    for kk in np.unique(k[(k <= MAX_SEEDS) & (sd > 0)]):
        rows = np.flatnonzero((k == kk) & (sd > 0))
        mine = pool[rows[:, None, None], rng.integers(0, m, (len(rows), reps, int(kk)))]
        theirs = pool[rows[:, None, None], rng.integers(0, m, (len(rows), reps, m))]
        mine = mine + (shift[rows] * sd[rows])[:, None, None]
        _, low, high, _ = compare.interval(mine, theirs, level)
        out[rows] = (compare.verdict(low, high) == "above").mean(axis=1)
    return out


# --------------------------------------------------------------------------- cost
def run_steps(budget: int) -> int:
    """The steps one run trains to reach an evaluation at ``budget`` (the next whole rollout)."""
    return -(-budget // ROLLOUT) * ROLLOUT


# --------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """``games``: one row per game (see :func:`make_plan`); ``totals``: steps and hours of the whole plan;
    ``lines``: what was measured, what assumed, printed under the table; ``cells``: per published (game,
    agent) compared with, the same columns before the hardest of each game is kept; ``spreads``: their seeds."""

    games: pd.DataFrame
    totals: dict[str, float]
    lines: list[str]
    direction: str
    m: int = 5
    level: float = compare.LEVEL
    target: float = 0.8
    cells: pd.DataFrame | None = None
    spreads: Spreads | None = None


def _versus(agents: list[str], published: list[str]) -> list[str]:
    """The published agents whose spreads set the statistic: each of yours that the study has, and all of
    them for one it lacks (compare judges a new block against each)."""
    return list(dict.fromkeys(v for a in agents for v in ([a] if a in published else published)))


def make_plan(games: list[str] | None, agents: list[str], budget: int, *, difference: tuple[float, str] | None = None,
              seeds: int | None = None, target: float = 0.8, level: float = compare.LEVEL) -> Plan:
    """Per game: ``seeds`` given, the smallest difference the verdict flags with probability ``target`` (columns
    diff_se, diff_pct, diff_hns, diff_points: the hardest of the published agents compared with); a
    ``difference`` given, the seeds that flag it (seeds, power); both with the published agents' largest gap
    and the seeds that detect it (gap_sd, gap_seeds), and the cost (steps, hours_<node> where a node's rate
    was measured; :func:`add_rates` adds hours_here). Rows ranked by gap_seeds, then gap_sd."""
    if (difference is None) == (seeds is None):
        raise DimattnError("give either --diff (the seeds it needs) or --seeds (the difference they detect)")
    if not 0 < target < 1 or not 0.5 <= level < 1:
        raise DimattnError(f"--power must be in (0, 1) and --level in [0.5, 1); got {target} and {level}")
    if not agents:
        raise DimattnError("--agents names no agent; give e.g. --agents NA,CWCA")
    sp = spreads(budget, games)
    cells = sp.cells[sp.cells["agent"].isin(_versus(agents, sorted(set(sp.cells["agent"]))))].copy()
    m = int(sp.scores.shape[1])
    if seeds is not None:
        points = compare.detectable(seeds, m, level, target) * cells["sd"].to_numpy()
        cells["seeds"] = seeds
    else:
        points = to_points(cells, *difference)
        cells["seeds"] = seeds_needed(shift_of(cells, points), m, target, level)
    cells["power"] = [float(compare.power(np.array(s), int(k), m, level)) if k <= MAX_SEEDS else np.nan
                      for s, k in zip(shift_of(cells, points), cells["seeds"])]
    cells["diff_points"] = points
    for unit, values in in_units(cells, points).items():
        cells[f"diff_{'pct' if unit == '%' else unit}"] = values
    key = "seeds" if seeds is None else "diff_se"
    hardest = cells.sort_values([key, "diff_points"], ascending=False).groupby("game", sort=False).head(1)
    table = hardest.set_index("game")[["agent", "seeds", "power", "diff_se", "diff_pct", "diff_hns",
                                       "diff_points", "mean"]].rename(columns={"agent": "hardest"})
    table = table.join(_gaps(sp, target, level)).reset_index()
    table = table.sort_values(["gap_seeds", "gap_sd"], ascending=[True, False], ignore_index=True)
    plan = Plan(table, {}, [], "seeds" if seeds is None else "difference", m, level, target, cells,
                Spreads(sp.budget, sp.cells.loc[cells.index].reset_index(drop=True), sp.scores[cells.index]))
    _cost(plan, agents, sp.budget)
    plan.lines.insert(0, f"budget {sp.budget:,} steps (published grid), {len(table)} game(s), your agents: "
                         f"{', '.join(agents)}; statistic: dimattn compare's at level {level:g}, power {target:.0%}, "
                         f"against the {m} published seeds" + (
                         f" (--budget {budget:,} is not a published evaluation step: planned at the last one before "
                         "it)" if budget != sp.budget else ""))
    return plan


def _gaps(sp: Spreads, target: float, level: float) -> pd.DataFrame:
    """Per game: the published agents' largest difference of means in pooled seed stds (gap_sd) and the seeds
    per agent that detect it with probability ``target`` (gap_seeds): how much a game tells per run."""
    by = sp.cells.groupby("game", sort=False)
    gap = by["mean"].max() - by["mean"].min()
    pooled = np.sqrt(by["sd"].apply(lambda s: float(np.mean(s**2))))
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = (gap / pooled).where(pooled > 0, np.inf).fillna(0.0)
    return pd.DataFrame({"gap_sd": sd, "gap_seeds": seeds_needed(sd.to_numpy(), int(sp.scores.shape[1]), target,
                                                                 level)}, index=gap.index)


def _hours(plan: Plan, agents: list[str], rates: dict[str, float]) -> pd.Series:
    """Per game: training hours of its seeds × agents at ``rates`` (steps/s per agent)."""
    steps = run_steps(plan.spreads.budget)
    return plan.games["seeds"].where(plan.games["seeds"] <= MAX_SEEDS) * sum(steps / rates[a] for a in agents) / 3600


def add_rates(plan: Plan, agents: list[str], rates: dict[str, float], how: str) -> None:
    """Hours on this machine (column hours_here, and its total) at ``rates``, measured by ``dimattn plan``'s
    probe (a short training run: cli.py, since analysis does not train) or given; ``how``: which."""
    plan.games["hours_here"] = _hours(plan, agents, rates)
    plan.totals["hours_here"] = float(plan.games["hours_here"].sum())
    plan.lines.append(f"this machine: {how}")


def _cost(plan: Plan, agents: list[str], budget: int) -> None:
    """Steps per game and in total, and hours on a GPU node where its rate was measured for every agent."""
    g, steps = plan.games, run_steps(budget)
    g["steps"] = g["seeds"].where(g["seeds"] <= MAX_SEEDS) * steps * len(agents)  # "> MAX_SEEDS": no cost
    for node, measured in NODE_RATES.items():
        if all(a in measured for a in agents):
            g[f"hours_{node}"] = _hours(plan, agents, measured)
    plan.totals = {c: float(g[c].sum()) for c in g.columns if c == "steps" or c.startswith("hours_")}
    plan.lines.append(f"each run: {steps:,} steps (the budget, to a whole rollout of {ROLLOUT:,}); evaluation "
                      "time and start-up are not counted")
    for node, measured in NODE_RATES.items():
        have = [a for a in agents if a in measured]
        lacking = [a for a in agents if a not in measured]
        text = ", ".join(f"{a} {measured[a]:,.0f}" for a in have) or "none of your agents"
        plan.lines.append(f"{node} node: measured steps/s (docs/benchmarks.md): {text}" + (
            f"; not measured for {', '.join(lacking)}, so no {node} hours" if lacking else ""))


# --------------------------------------------------------------------------- as text
def _fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def table(plan: Plan) -> tables.TextTable:
    """The plan per game, ranked (most telling games first)."""
    g = plan.games
    hours = sorted((c for c in g.columns if c.startswith("hours_")), key=lambda c: c != "hours_here")
    rows = []
    for i, r in enumerate(g.itertuples(index=False), 1):
        seeds = f"> {MAX_SEEDS}" if r.seeds > MAX_SEEDS else str(r.seeds)
        row = [str(i), r.game, seeds, _fmt(r.power * 100, 0) + "%" if np.isfinite(r.power) else "—",
               _fmt(r.diff_points), _fmt(r.diff_se), _fmt(r.diff_pct, 1), _fmt(r.diff_hns, 3), r.hardest,
               _fmt(r.gap_sd), f"> {MAX_SEEDS}" if r.gap_seeds > MAX_SEEDS else str(r.gap_seeds)]
        rows.append(row + [_fmt(getattr(r, c), 1) for c in hours])
    word = "seeds it needs" if plan.direction == "seeds" else "smallest difference these seeds detect"
    caption = (f"Per game, the {word} (difference in score points, published SEs, % of the published score, "
               "human-normalised points; the hardest published agent compared with sets it); the published "
               "agents' largest gap in seed stds and the seeds that detect it (games ranked by it: the most "
               "telling first); hours of training")
    header = ["#", "Game", "Seeds", "Power", "Points", "SEs", "%", "HNS", "Hardest", "Gap (sd)", "Seeds for gap"]
    header += [c.replace("hours_", "Hours ") + ("" if c == "hours_here" else " node") for c in hours]
    return tables.TextTable(caption, header, rows, text_columns={1, 8})


def summary(plan: Plan) -> list[str]:
    """The lines under the table: totals, what is measured and what assumed, what cannot be reached."""
    lines = list(plan.lines)
    total = ", ".join(f"steps: {v:,.0f}" if k == "steps" else
                      f"{k.replace('hours_', 'hours ')}{'' if k == 'hours_here' else ' node'}: {v:,.1f}"
                      for k, v in sorted(plan.totals.items(), key=lambda kv: (kv[0] != "steps", kv[0] != "hours_here")))
    lines.append(f"total ({plan.games['seeds'].le(MAX_SEEDS).sum()} game(s) with a finite plan): {total}")
    undefined = plan.games.loc[~np.isfinite(plan.games["diff_points"]), "game"]
    if len(undefined):
        lines.append(f"no difference in that unit for {', '.join(undefined)} (no reference score for hns, a "
                     "published score of 0 for %): give it in se")
    far = plan.games.loc[(plan.games["seeds"] > MAX_SEEDS) & np.isfinite(plan.games["diff_points"]), "game"]
    if len(far):
        floor = floor_se(plan.m, plan.level, plan.target)
        lines.append(f"not reachable with up to {MAX_SEEDS} seeds: {', '.join(far)}: against the {plan.m} published "
                     f"seeds no number of yours flags less than {floor:.1f} published SEs with this power (their "
                     "own spread bounds the verdict); to go below, run the baseline too and compare --against "
                     "your runs")
    return lines


def floor_se(m: int = 5, level: float = compare.LEVEL, target: float = 0.8) -> float:
    """The smallest difference (published SEs) that any number of your seeds flags against m published ones."""
    return compare.detectable(10**6, m, level, target) * m / np.sqrt(m - 1)
