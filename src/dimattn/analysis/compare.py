"""Your runs against the published study (or any other): per game and agent, at your budget, with a
calibrated verdict (docs/report.md, "Compared with the published study").

    compare(mine, against="published") -> Comparison     the numbers; nothing is written
    interval(mine, theirs) -> diff, low, high, test       the statistic, on arrays (also for calibration)
    power(shift, k, m) / detectable(k, m)                 what it can find with k seeds against m (dimattn plan)
    calibrate(df) / planted_power(df)                     the verdict run on a study against itself

How a (game, agent) is compared:

1. **Matched budget.** Both sides are scored on one grid of evaluation steps: each of your evaluation
   steps (those all your runs of the game share) is paired with the other side's nearest step, within a
   quarter of its evaluation interval (±50,000 steps for the study's 200,000); unpaired steps are left
   out with a note. Your last paired step is the *budget*. Each seed's score is SPEC §5's score
   restricted to that grid (the mean of its evaluations there) and, beside it, its last evaluation.
2. **Difference** = mean over your seeds − mean over theirs, with a 95% interval:
   Welch's t interval for 2+ of your seeds; for 1 seed, the prediction interval of one new seed from
   theirs (``t`` with m−1 degrees of freedom, times √(1 + 1/m) · their sample std).
3. **Verdict**: ``below`` / ``above`` where the interval excludes 0, ``consistent`` otherwise, ``too few
   seeds`` where the other side has fewer than 2 (no spread to compare with).

An agent of yours that the other side lacks (your own variant, a renamed run) is compared in the same
way against every agent the other side has on that game (``versus`` column).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from dimattn.analysis import stats
from dimattn.analysis.protocol import cell_differences, protocol_lines
from dimattn.analysis.results import PUBLISHED, DataWarning, align_steps, check_source, load_results, note
from dimattn.console import notes_of
from dimattn.errors import DimattnError

#: Confidence level of the interval; the verdict's nominal false-alarm rate is 1 − LEVEL.
LEVEL = 0.95
#: Steps of the two sides pair up when at most this share of the other side's evaluation interval apart.
TOLERANCE = 0.25
VERDICTS: tuple[str, ...] = ("below", "consistent", "above", "too few seeds")


# --------------------------------------------------------------------------- the statistic
def interval(mine: np.ndarray, theirs: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """Per-seed scores ``mine`` (..., k) and ``theirs`` (..., m) -> (diff, low, high) each (...), and the
    test's name. Welch for k ≥ 2, a prediction interval for k = 1, NaN bounds where m < 2."""
    k, m = mine.shape[-1], theirs.shape[-1]
    diff = mine.mean(axis=-1) - theirs.mean(axis=-1)  # (...)
    if k < 1 or m < 2:
        nan = np.full(np.shape(diff), np.nan)
        return diff, nan, nan, "too few seeds"
    var_b = theirs.var(axis=-1, ddof=1)
    if k == 1:  # one new seed against m: x - mean ~ t(m-1) * s * sqrt(1 + 1/m)
        se, dof, test = np.sqrt(var_b * (1 + 1 / m)), np.full(np.shape(diff), m - 1.0), "prediction"
    else:
        a, b = mine.var(axis=-1, ddof=1) / k, var_b / m
        se = np.sqrt(a + b)
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = (a + b) ** 2 / (a**2 / (k - 1) + b**2 / (m - 1))  # Welch–Satterthwaite
        dof, test = np.where(np.isfinite(dof), dof, k + m - 2.0), "welch"  # no spread at all: se is 0 anyway
    half = sps.t.ppf(0.5 + level / 2, dof) * se
    return diff, diff - half, diff + half, test


@functools.lru_cache(maxsize=256)
def _welch_nodes(k: int, m: int, level: float, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature over both sides' sample variances (σ = 1): at each of n × n equally likely pairs of
    χ² quantiles, the interval's half-width (t quantile at Welch's estimated degrees of freedom × the
    estimated SE), and the true SE √(1/k + 1/m) (the second array, a scalar)."""
    u = (np.arange(n) + 0.5) / n
    va = (sps.chi2.ppf(u, k - 1) / (k - 1))[:, None] / k  # your variance / k
    vb = (sps.chi2.ppf(u, m - 1) / (m - 1))[None, :] / m
    dof = (va + vb) ** 2 / (va**2 / (k - 1) + vb**2 / (m - 1))
    half = sps.t.ppf(0.5 + level / 2, dof) * np.sqrt(va + vb)
    return half.ravel(), np.array(np.sqrt(1 / k + 1 / m))


def power(shift: np.ndarray, k: int, m: int, level: float = LEVEL) -> np.ndarray:
    """P(the verdict flags a true difference of ``shift`` seed stds σ in its direction), k of your seeds against
    m of theirs, normal scores of equal spread. k = 1: the noncentral t of the prediction interval (exact);
    k ≥ 2: Welch's interval averaged over both sample variances by quadrature (exact up to the quadrature:
    the usual noncentral-t shortcut with expected degrees of freedom overstates it by up to 8 points at
    k = 2). Checked by simulation on resampled published seeds in ``dimattn.analysis.plan``."""
    shift = np.abs(np.asarray(shift, dtype=float))
    if k < 1 or m < 2:
        return np.zeros(shift.shape)
    if k == 1:
        dof = m - 1.0
        return sps.nct.sf(sps.t.ppf(0.5 + level / 2, dof), dof, shift / np.sqrt(1 + 1 / m))
    half, true_se = _welch_nodes(k, m, level)
    flat = shift.reshape(-1, 1)
    out = sps.norm.cdf((np.where(np.isinf(flat), 1e12, flat) - half[None, :]) / true_se).mean(axis=1)
    return out.reshape(shift.shape)


def detectable(k: int, m: int, level: float = LEVEL, target: float = 0.8) -> float:
    """The smallest true difference, in seed stds σ, that k seeds against m flag with probability ``target``
    (inf where m < 2: no verdict at all)."""
    if k < 1 or m < 2:
        return float("inf")
    lo, hi = 0.0, 1.0
    while power(np.array(hi), k, m, level) < target:
        lo, hi = hi, 2 * hi
    for _ in range(50):  # bisection: power rises with the shift
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power(np.array(mid), k, m, level) < target else (lo, mid)
    return hi


def verdict(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Interval bounds -> "above" (low > 0), "below" (high < 0), "consistent", or "too few seeds" (NaN)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    out = np.where(low > 0, "above", np.where(high < 0, "below", "consistent"))
    return np.where(np.isnan(low), "too few seeds", out)


# --------------------------------------------------------------------------- matched budget
@dataclass(frozen=True)
class Grid:
    """The evaluation steps of one game that both sides are scored on: yours (P,) and theirs (P,)."""

    mine: np.ndarray
    theirs: np.ndarray

    @property
    def budget(self) -> int:
        return int(self.mine[-1])

    @property
    def offset(self) -> int:
        return int(np.abs(self.mine - self.theirs).max())


def match_steps(game: str, mine: np.ndarray, theirs: np.ndarray, label: str) -> Grid | None:
    """Pair each of ``mine`` (sorted steps) with the nearest of ``theirs`` within :data:`TOLERANCE` of their
    evaluation interval; notes say what was left out or moved. None (with a note) when nothing pairs."""
    spacing = float(np.median(np.diff(theirs))) if len(theirs) > 1 else float(theirs[0])
    tol = TOLERANCE * spacing
    nearest = theirs[np.abs(mine[:, None] - theirs[None, :]).argmin(axis=1)]  # (n_mine,)
    close = np.abs(mine - nearest) <= tol
    beyond = mine > theirs[-1] + tol
    if beyond.any():
        note(f"{game}: {beyond.sum()} of your evaluations lie beyond the {label} runs' last ({theirs[-1]:,} steps) "
             f"and are left out")
    pairs: dict[int, int] = {}
    for m, t in zip(mine[close], nearest[close]):  # two of yours near one of theirs: keep the closer
        if t not in pairs or abs(m - t) < abs(pairs[t] - t):
            pairs[t] = int(m)
    if not pairs:
        fix = (f"your runs reached {mine[-1]:,} steps, before the {label} runs' first evaluation: train to "
               f"-n {theirs[0]}" if mine[-1] < theirs[0] - tol else
               f"evaluate at the {label} steps, e.g. --eval-freq {int(spacing)}")
        note(f"{game}: none of your evaluation steps ({_span(mine)}) lies within ±{tol:,.0f} of a {label} one "
             f"({_span(theirs)}); left out ({fix})")
        return None
    their_steps = np.array(sorted(pairs), dtype=np.int64)
    grid = Grid(np.array([pairs[t] for t in their_steps], dtype=np.int64), their_steps)
    unpaired = (~close & ~beyond).sum() + close.sum() - len(pairs)
    if unpaired:
        note(f"{game}: {unpaired} of your {len(mine)} evaluations have no {label} evaluation within ±{tol:,.0f} "
             f"steps and are left out (compared: {len(pairs)} evaluations up to {grid.budget:,})")
    if grid.offset:
        note(f"{game}: your evaluation steps are matched to the nearest {label} ones (at most {grid.offset:,} "
             "steps apart)")
    return grid


def _span(steps: np.ndarray) -> str:
    return f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}–{steps[-1]:,}"


def _grid_scores(df: pd.DataFrame, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of one (game, agent) -> per-seed score over ``steps`` (S,) and at the last of them (S,)."""
    wide = df.pivot(index="seed", columns="timestep", values="score").loc[:, steps]  # (S, P)
    per_eval = wide.to_numpy(dtype=np.float64)
    return per_eval.mean(axis=1), per_eval[:, -1]


# --------------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """What :func:`compare` found. ``cells``: one row per (game, agent, versus) (see :func:`compare`);
    ``mine``/``theirs``: both tidy tables restricted to the compared games; ``grids``: {game: Grid}."""

    cells: pd.DataFrame
    versus: pd.DataFrame
    aggregates: pd.DataFrame
    protocol: list[str]
    notes: list[str]
    mine: pd.DataFrame
    theirs: pd.DataFrame
    grids: dict[str, Grid]
    label: str
    level: float
    reps: int
    sources: dict[str, str] = field(default_factory=dict)


def compare(mine: str | Path, against: str | Path = PUBLISHED, *, level: float = LEVEL, reps: int = 2000,
            seed: int = 0) -> Comparison:
    """Compare the runs of ``mine`` (a study, a folder of runs or a pickle) with ``against`` (``"published"``:
    the shipped published scores; or another pickle, study or folder).

    ``cells`` columns: game, agent, versus (the other side's agent), same_agent (versus == agent),
    budget, evals, offset (of the matched steps), seeds, seeds_published, detectable (the true difference the
    verdict flags 80% of the time with these seeds, your seeds spreading as theirs), mine, published, published_se
    (std ddof=0 / √m, the study's convention), diff, low, high, diff_in_se (diff / published_se), test,
    verdict, the same for the last evaluation (mine_last, published_last, diff_last, low_last,
    high_last, verdict_last), and protocol (how your runs of the cell differ from the published protocol).
    """
    if not 0.5 <= level < 1:
        raise DimattnError(f"--level must be in [0.5, 1), got {level}")
    if reps < 1:
        raise DimattnError(f"--reps must be at least 1, got {reps}")
    check_source(mine, "the runs to compare")
    check_source(against, "--against")
    label = "published" if str(against) == PUBLISHED else Path(against).name
    with notes_of(DataWarning) as notes:
        protocol = protocol_lines(mine, "your runs")
        protocol += protocol_lines(against, f"the {label} runs") if str(against) != PUBLISHED else []
        mine_df, theirs_df = align_steps(load_results(mine)), align_steps(load_results(against))
        grids = _grids(mine_df, theirs_df, label)
        cells = _cells(mine_df, theirs_df, grids, level)
        differ = cell_differences(mine)
        cells["protocol"] = [differ.get((g, a), "") for g, a in zip(cells["game"], cells["agent"])]
        versus = _versus(cells)
        aggregates = _aggregates(mine_df, theirs_df, grids, cells, reps, seed, label)
    games = set(grids)
    return Comparison(cells, versus, aggregates, protocol, notes, mine_df[mine_df["game"].isin(games)],
                      theirs_df[theirs_df["game"].isin(games)], grids, label, level, reps,
                      {"mine": str(mine), "against": str(against)})


def _grids(mine: pd.DataFrame, theirs: pd.DataFrame, label: str) -> dict[str, Grid]:
    """{game: Grid} for every game of yours the other side has and whose steps pair up; raises if none."""
    lacking = sorted(set(mine["game"]) - set(theirs["game"]))
    if lacking:
        note(f"not in the {label} runs, so not compared: {', '.join(lacking)}")
    grids = {}
    for game in sorted(set(mine["game"]) & set(theirs["game"])):
        g = match_steps(game, np.sort(mine.loc[mine["game"] == game, "timestep"].unique()),
                        np.sort(theirs.loc[theirs["game"] == game, "timestep"].unique()), label)
        if g is not None:
            grids[game] = g
    if not grids:
        why = (f"none of your games ({', '.join(sorted(set(mine['game'])))}) is in the {label} runs" if not
               set(mine["game"]) & set(theirs["game"]) else
               f"no evaluation step of yours pairs with a {label} one (the {label} runs evaluate at "
               f"{_span(np.sort(theirs['timestep'].unique()))}); {reach_first(mine, theirs, label)}")
        raise DimattnError(f"nothing to compare: {why}")
    return grids


def reach_first(mine: pd.DataFrame, theirs: pd.DataFrame, label: str) -> str:
    """Where your runs stopped, and the command that trains one of them to the other side's first evaluation."""
    first, reached = int(theirs["timestep"].min()), int(mine["timestep"].max())
    if reached >= first:
        return f"evaluate at the {label} steps (every {first:,} steps: --eval-freq {first})"
    game, agent = mine.iloc[0][["game", "agent"]]
    return (f"your runs reached {reached:,} steps, before the {label} runs' first evaluation at {first:,}: train to "
            f"it, e.g. `dimattn train --env {game} --agent {agent} -n {first} --eval-freq {first}` (one run per game "
            "and agent), and compare again")


def _cells(mine: pd.DataFrame, theirs: pd.DataFrame, grids: dict[str, Grid], level: float) -> pd.DataFrame:
    rows = []
    for game, grid in grids.items():
        their_agents = list(dict.fromkeys(theirs.loc[theirs["game"] == game, "agent"]))
        for agent, runs in mine[mine["game"] == game].groupby("agent", sort=False):
            mean_m, last_m = _grid_scores(runs, grid.mine)
            for other in ([agent] if agent in their_agents else their_agents):
                ref = theirs[(theirs["game"] == game) & (theirs["agent"] == other)]
                mean_t, last_t = _grid_scores(ref, grid.theirs)
                rows.append({"game": game, "agent": agent, "versus": other, "same_agent": other == agent,
                             "budget": grid.budget, "evals": len(grid.mine), "offset": grid.offset,
                             **_row(mean_m, mean_t, last_m, last_t, level)})
    cells = pd.DataFrame(rows)
    new = sorted(set(cells.loc[~cells["same_agent"], "agent"]))
    if new:
        note(f"not among the other side's agents, so compared with each of them: {', '.join(new)}")
    few = cells[cells["verdict"] == "too few seeds"]
    if len(few):
        note(f"{len(few)} comparison(s) have fewer than 2 seeds on the other side: no spread to judge a "
             "difference by (verdict: too few seeds)")
    return cells


def _row(mean_m: np.ndarray, mean_t: np.ndarray, last_m: np.ndarray, last_t: np.ndarray,
         level: float) -> dict[str, object]:
    diff, low, high, test = interval(mean_m, mean_t, level)
    diff_l, low_l, high_l, _ = interval(last_m, last_t, level)
    se = float(mean_t.std() / np.sqrt(len(mean_t)))
    # What this design could have found: the true difference flagged 80% of the time, your seeds spreading
    # as theirs do (dimattn plan's power), in score points.
    detect = detectable(len(mean_m), len(mean_t), level) * float(mean_t.std(ddof=1)) if len(mean_t) > 1 else np.nan
    return {"seeds": len(mean_m), "seeds_published": len(mean_t), "detectable": detect, "mine": float(mean_m.mean()),
            "published": float(mean_t.mean()), "published_se": se, "diff": float(diff), "low": float(low),
            "high": float(high), "diff_in_se": float(diff) / se if se > 0 else np.nan, "test": test,
            "verdict": str(verdict(low, high)), "mine_last": float(last_m.mean()),
            "published_last": float(last_t.mean()), "diff_last": float(diff_l), "low_last": float(low_l),
            "high_last": float(high_l), "verdict_last": str(verdict(low_l, high_l))}


def _versus(cells: pd.DataFrame) -> pd.DataFrame:
    """For your agents the other side lacks: per (agent, versus) the games it is above (wins), consistent
    with (ties) and below (losses)."""
    new = cells[~cells["same_agent"]]
    rows = []
    for (agent, other), g in new.groupby(["agent", "versus"], sort=False):
        rows.append({"agent": agent, "versus": other, "games": len(g), "wins": int((g["verdict"] == "above").sum()),
                     "ties": int((g["verdict"] == "consistent").sum()),
                     "losses": int((g["verdict"] == "below").sum()),
                     "too_few_seeds": int((g["verdict"] == "too few seeds").sum())})
    return pd.DataFrame(rows, columns=["agent", "versus", "games", "wins", "ties", "losses", "too_few_seeds"])


# --------------------------------------------------------------------------- aggregates (rliable)
def _hns_matrix(df: pd.DataFrame, agent: str, games: list[str], grids: dict[str, Grid], side: str) -> np.ndarray:
    """Per-seed human-normalised scores on the matched grids, (R, G); R = the fewest seeds of any game."""
    cols = []
    for game in games:
        runs = df[(df["game"] == game) & (df["agent"] == agent)]
        steps = grids[game].mine if side == "mine" else grids[game].theirs
        score, _ = _grid_scores(runs, steps)
        cols.append(stats.human_normalized(pd.DataFrame({"game": game, "score": score}))["hns"].to_numpy())
    n = min(len(c) for c in cols)
    return np.stack([c[:n] for c in cols], axis=1)  # (R, G)


def _aggregates(mine: pd.DataFrame, theirs: pd.DataFrame, grids: dict[str, Grid], cells: pd.DataFrame,
                reps: int, seed: int, label: str = "published") -> pd.DataFrame:
    """Per agent of yours, over the games it was compared on (those with reference scores): median, IQM and
    mean HNS with stratified-bootstrap 95% CIs, yours and each agent it was compared with; and, for an agent
    the other side lacks, P(yours > theirs). Columns: agent, entry, metric, estimate, low, high."""
    from dimattn.games import reference_scores

    ref, frames = reference_scores(), []
    for agent, g in cells.groupby("agent", sort=False):
        games = sorted(x for x in set(g["game"]) if x in ref)
        if len(games) < g["game"].nunique():
            note(f"{agent}: no reference score for {', '.join(sorted(set(g['game']) - set(games)))}; left out of "
                 "the human-normalised aggregates")
        if not games:
            note(f"{agent}: no compared game has a reference score; no human-normalised aggregates")
            continue
        others = list(dict.fromkeys(g["versus"]))
        mats = {f"{agent} (yours)": _hns_matrix(mine, agent, games, grids, "mine")}
        mats |= {f"{o} ({label})": _hns_matrix(theirs, o, games, grids, "theirs") for o in others}
        agg = stats.aggregate_metrics(mats, reps, seed)
        agg = agg[agg["metric"] != "Optimality Gap"].rename(columns={"agent": "entry"})
        agg.insert(0, "agent", agent)
        agg["games"] = len(games)
        frames.append(agg)
        if not g["same_agent"].iloc[0]:
            mine_label = f"{agent} (yours)"
            for o in others:
                poi = stats.probability_of_improvement({mine_label: mats[mine_label],
                                                        f"{o} ({label})": mats[f"{o} ({label})"]},
                                                       f"{o} ({label})", reps, seed)
                frames.append(pd.DataFrame([{"agent": agent, "entry": f"{o} ({label})",
                                             "metric": "P(yours > it)", "estimate": poi["estimate"].iloc[0],
                                             "low": poi["low"].iloc[0], "high": poi["high"].iloc[0],
                                             "games": len(games)}]))
    cols = ["agent", "entry", "metric", "estimate", "low", "high", "games"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- calibration
def _cube(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A study where every (game, agent) has the same seeds and steps -> scores (C, S, T) and steps (T,)."""
    wide = df.pivot_table(index=["game", "agent", "seed"], columns="timestep", values="score")  # (C*S, T)
    n_seeds = df.groupby(["game", "agent"])["seed"].nunique()
    if n_seeds.nunique() != 1 or wide.isna().any().any():
        raise DimattnError("calibration needs the same seeds and evaluation steps in every (game, agent)")
    return wide.to_numpy().reshape(len(n_seeds), int(n_seeds.iloc[0]), -1), wide.columns.to_numpy()


def _seed_score(cube: np.ndarray, n_evals: int, last: bool) -> np.ndarray:
    """(C, S, T) -> (C, S): each seed's score over the first ``n_evals`` evaluations, or at the last of them."""
    return cube[:, :, n_evals - 1] if last else cube[:, :, :n_evals].mean(axis=2)


def calibrate(df: pd.DataFrame, budgets: tuple[int, ...] = (10_000_000, 1_000_000, 400_000),
              level: float = LEVEL) -> pd.DataFrame:
    """The verdict run on ``df`` against itself: for every (game, agent), budget, score (whole grid or last
    evaluation) and split of its seeds into k "mine" and the rest "published", how often it says below or
    above. Columns: budget, score, k, m, comparisons, too_few, below, above, false_alarm (share of the
    comparisons with a verdict)."""
    cube, steps = _cube(df)
    n = cube.shape[1]
    rows = []
    for budget, last, k in itertools.product(budgets, (False, True), range(1, n)):
        s = _seed_score(cube, int((steps <= budget).sum()), last)  # (C, S)
        counts = dict.fromkeys(VERDICTS, 0)
        for mine in itertools.combinations(range(n), k):
            rest = [i for i in range(n) if i not in mine]
            _, low, high, _ = interval(s[:, list(mine)], s[:, rest], level)
            for v, c in zip(*np.unique(verdict(low, high), return_counts=True)):
                counts[str(v)] += int(c)
        judged = counts["below"] + counts["consistent"] + counts["above"]
        rows.append({"budget": budget, "score": "last" if last else "grid", "k": k, "m": n - k,
                     "comparisons": sum(counts.values()), "too_few": counts["too few seeds"],
                     "below": counts["below"], "above": counts["above"],
                     "false_alarm": (counts["below"] + counts["above"]) / judged if judged else np.nan})
    return pd.DataFrame(rows)


def planted_power(df: pd.DataFrame, shifts: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 6, 8),
                  level: float = LEVEL) -> pd.DataFrame:
    """How often a planted difference is flagged "above", the shift in units of the published SE
    (std ddof=0 / √m of the seeds compared against), on the whole grid. Designs: "copy" (all n seeds
    shifted, against themselves: the smallest shift flagged when your seeds spread as theirs do) and
    "k v m" splits (k seeds shifted against the other m: independent seeds). Columns: design, shift, above."""
    cube, _ = _cube(df)
    s = _seed_score(cube, cube.shape[2], False)  # (C, S)
    n = s.shape[1]
    designs = {"copy": [(tuple(range(n)), tuple(range(n)))]}
    for k in range(1, n - 1):
        designs[f"{k} v {n - k}"] = [(c, tuple(i for i in range(n) if i not in c))
                                     for c in itertools.combinations(range(n), k)]
    rows = []
    for name, splits in designs.items():
        for shift in shifts:
            flagged = total = 0
            for mine, rest in splits:
                theirs = s[:, list(rest)]
                se = theirs.std(axis=1) / np.sqrt(theirs.shape[1])  # (C,)
                keep = se > 0  # a cell with no spread has no SE to shift by
                _, low, high, _ = interval(s[keep][:, list(mine)] + shift * se[keep, None], theirs[keep], level)
                flagged += int((verdict(low, high) == "above").sum())
                total += int(keep.sum())
            rows.append({"design": name, "shift": shift, "above": flagged / total})
    return pd.DataFrame(rows)


def copy_threshold(n: int = 5, level: float = LEVEL) -> float:
    """The smallest shift (in published SEs, std ddof=0/√n) that the verdict flags when your n seeds are
    the published n shifted: Welch's t is then shift·√((n−1)/(2n)), against t(2n−2)."""
    return float(sps.t.ppf(0.5 + level / 2, 2 * n - 2) / np.sqrt((n - 1) / (2 * n)))
