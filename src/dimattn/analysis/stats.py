"""The study's numbers (SPEC §5) from a tidy results table (see :mod:`dimattn.analysis.results`).

- :func:`per_game`: each seed's score is the mean of its evaluations over the whole evaluation
  period (or the last evaluation); a cell is the mean over seeds ± standard error; the winner of a
  game is the agent with the highest mean.
- :func:`human_normalized`, :func:`score_matrices`, :func:`run_curves`: human-normalised scores
  arranged as rliable wants them, (n_runs, n_games[, n_steps]) per agent.
- :func:`aggregate_metrics`, :func:`probability_of_improvement`, :func:`performance_profiles`,
  :func:`sample_efficiency`: rliable's stratified-bootstrap estimates, seeded.
- :func:`alignment`, :func:`win_lists`: games won per axis group (alignment of biases).

Caveats about incomplete data are :class:`~dimattn.analysis.results.DataWarning` warnings; data that
cannot be analysed at all raises :class:`~dimattn.errors.DimattnError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats

from dimattn.agents.attention import AGENTS
from dimattn.agents.registry import agent_order, bias_of
from dimattn.analysis.results import note
from dimattn.errors import DimattnError
from dimattn.games import AXIS_GROUPS, reference_scores

#: Standard-error conventions: the published one (std with ddof=0) and the sample one (ddof=1).
SE_CONVENTIONS: dict[str, int] = {"ddof0": 0, "ddof1": 1}
#: rliable's four aggregate metrics, in the order of its figures.
METRICS: tuple[str, ...] = ("Median", "IQM", "Mean", "Optimality Gap")
#: Name of the group for games outside the SPEC §5 classification.
UNCLASSIFIED = "unclassified"

Matrices = dict[str, np.ndarray]
Progress = Callable[[int], object] | None


def agents_in(df: pd.DataFrame) -> tuple[str, ...]:
    """The agents present in ``df``: the study's five in its order, then the others (registry order)."""
    return tuple(agent_order(set(df["agent"])))


# --------------------------------------------------------------------------- per-game table
def seed_scores(df: pd.DataFrame, use_last: bool = False) -> pd.DataFrame:
    """Tidy table -> one score per run: columns game, agent, seed, score.

    ``score`` is the mean over all of the run's evaluations (the published convention) or, with
    ``use_last``, its last evaluation.
    """
    runs = df.sort_values("timestep").groupby(["game", "agent", "seed"], sort=False)["score"]
    out = (runs.last() if use_last else runs.mean()).reset_index()
    return out.sort_values(["game", "seed"]).reset_index(drop=True)


def per_game(df: pd.DataFrame, use_last: bool = False, se: str = "ddof0") -> pd.DataFrame:
    """The per-game table in long form: one row per (game, agent).

    Columns: game, agent, mean (over seeds), se = std(ddof)/√n_seeds, n_seeds, winner (bool).
    A game's winners are the agents with the highest mean; a game that lacks some agent has none.
    """
    if se not in SE_CONVENTIONS:
        raise DimattnError(f"unknown standard-error convention {se!r}; choose one of {', '.join(SE_CONVENTIONS)}")
    ddof = SE_CONVENTIONS[se]
    runs = seed_scores(df, use_last).groupby(["game", "agent"])["score"]
    table = runs.agg(mean="mean", n_seeds="count").reset_index()
    std = runs.std(ddof=ddof).reset_index(drop=True)  # NaN for one seed with ddof=1
    table["se"] = std.to_numpy() / np.sqrt(table["n_seeds"].to_numpy())
    agents = agents_in(df)
    table["winner"] = False
    for game, g in table.groupby("game"):
        if len(g) < len(agents):
            continue  # coverage_notes() says which agents are missing
        best = g["mean"].max()
        table.loc[g.index[g["mean"] == best], "winner"] = True
        if (g["mean"] == best).sum() > 1:
            note(f"{game}: tie for the highest mean between {', '.join(g.loc[g['mean'] == best, 'agent'])}; "
                 "each counts a win")
    order = {a: i for i, a in enumerate(agents)}
    table = table.sort_values(["game", "agent"], key=lambda c: c.map(order) if c.name == "agent" else c)
    return table[["game", "agent", "mean", "se", "n_seeds", "winner"]].reset_index(drop=True)


def winners(table: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Per-game table -> {game: winning agents} for every game that has a winner."""
    won = table[table["winner"]]
    return {game: tuple(g["agent"]) for game, g in won.groupby("game")}


def win_counts(table: pd.DataFrame) -> pd.Series:
    """Per-game table -> number of games won per agent (every agent of the table, study order)."""
    counts = table[table["winner"]].groupby("agent").size()
    agents = agents_in(table)
    return pd.Series([int(counts.get(a, 0)) for a in agents], index=list(agents), name="wins")


# --------------------------------------------------------------------------- human-normalised scores
def human_normalized(df: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Add ``hns`` = (score − random) / (human − random) (SPEC §5); drop games with no reference score."""
    ref = reference_scores()
    unknown = sorted(set(df["game"]) - set(ref))
    if unknown:
        if len(unknown) == df["game"].nunique():
            raise DimattnError(
                f"no reference (random and human) score for {', '.join(unknown)}, so no human-normalised "
                "metric can be computed; the reference scores cover the Atari-57 games")
        note(f"no reference score for {', '.join(unknown)}: left out of the human-normalised metrics")
    out = df[df["game"].isin(ref)].copy()
    rnd = out["game"].map(lambda g: ref[g][0])
    human = out["game"].map(lambda g: ref[g][1])
    out["hns"] = (out[column] - rnd) / (human - rnd)
    return out


def _complete_games(df: pd.DataFrame, agents: tuple[str, ...]) -> list[str]:
    """Games that have runs of every agent in ``agents``; say which are left out."""
    have = df.groupby("game")["agent"].agg(set)
    games = sorted(g for g, a in have.items() if set(agents) <= a)
    left = sorted(set(have.index) - set(games))
    if left:
        note(f"left out of the aggregate metrics (missing agents): {', '.join(left)}")
    if not games:
        raise DimattnError(f"no game has runs of all of {', '.join(agents)}; aggregate metrics need the same games "
                           "for every agent")
    return games


def _runs_per_agent(df: pd.DataFrame, agents: tuple[str, ...], games: list[str]) -> dict[str, int]:
    """Runs per game used for each agent: as many as its game with the fewest seeds has
    (rliable needs a full (n_runs, n_games) matrix per agent)."""
    seeds = df[df["game"].isin(games)].groupby(["agent", "game"])["seed"].nunique()
    used = {}
    for agent in agents:
        counts = seeds.loc[agent]
        used[agent] = int(counts.min())
        if counts.max() > counts.min():
            note(f"{agent}: some games have fewer seeds; the aggregate metrics use its first "
                 f"{used[agent]} seed(s) of every game")
    return used


def score_matrices(scores: pd.DataFrame, value: str = "hns") -> tuple[Matrices, list[str]]:
    """Per-run scores (game, agent, seed, ``value``) -> ({agent: (n_runs, n_games)}, games).

    Only games with every agent are used, and per agent as many runs as its sparsest game has.
    """
    agents = agents_in(scores)
    games = _complete_games(scores, agents)
    n_runs = _runs_per_agent(scores, agents, games)
    mats = {}
    for agent in agents:
        wide = scores[scores["agent"] == agent].pivot(index="seed", columns="game", values=value)  # (S, G)
        cols = [wide[g].dropna().to_numpy()[: n_runs[agent]] for g in games]  # n_games x (R,)
        mats[agent] = np.stack(cols, axis=1)  # (R, G)
    return mats, games


def run_curves(df: pd.DataFrame, value: str = "hns") -> tuple[Matrices, list[str], np.ndarray]:
    """Per-evaluation scores -> ({agent: (n_runs, n_games, n_steps)}, games, steps (n_steps,)).

    Uses the evaluation steps every game shares; games and runs are chosen as in :func:`score_matrices`.
    """
    agents = agents_in(df)
    games = _complete_games(df, agents)
    per_game_steps = [set(df.loc[df["game"] == g, "timestep"]) for g in games]
    steps = np.array(sorted(set.intersection(*per_game_steps)), dtype=np.int64)
    if len(steps) == 0:
        raise DimattnError("the games share no evaluation step, so no sample-efficiency curve can be drawn")
    if any(len(s) != len(steps) for s in per_game_steps):
        note(f"sample-efficiency curves use the {len(steps)} evaluation steps all games share")
    n_runs = _runs_per_agent(df, agents, games)
    shared = df[df["timestep"].isin(steps)]
    curves = {}
    for agent in agents:
        mine = shared[shared["agent"] == agent]
        per_game = []
        for g in games:
            wide = mine[mine["game"] == g].pivot(index="seed", columns="timestep", values=value)  # (S, T)
            per_game.append(wide.loc[:, steps].dropna().to_numpy()[: n_runs[agent]])  # (R, T)
        curves[agent] = np.stack(per_game, axis=1)  # (R, G, T)
    return curves, games, steps


def learning_curves(df: pd.DataFrame, se: str = "ddof0") -> pd.DataFrame:
    """Per-game learning curves: game, agent, timestep, mean and se of the score over seeds."""
    g = df.groupby(["game", "agent", "timestep"])["score"]
    out = g.agg(mean="mean", n="count").reset_index()
    out["se"] = g.std(ddof=SE_CONVENTIONS[se]).to_numpy() / np.sqrt(out["n"].to_numpy())
    return out


# --------------------------------------------------------------------------- rliable estimates
@contextmanager
def _quiet_arch() -> Iterator[None]:
    """rliable passes ``random_state`` to arch, which warns that it will change the keyword one day."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
        yield


@contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG for the block, then put its state back.

    rliable's stratified bootstraps draw their resampling indices with ``np.random.choice``
    (the global generator), not from the ``random_state`` they are given, so this is what makes
    the intervals reproducible.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _bootstrap(score_dict: Mapping[str, object], func: Callable, reps: int, seed: int,
               progress: Progress) -> tuple[dict, dict]:
    """rliable's stratified-bootstrap point estimates and 95% CIs, one key at a time.

    Every key is bootstrapped from the same seed, so an agent's interval does not depend on
    which other agents are in the input. ``progress(1)`` is called after each key.
    """
    from rliable import library as rly

    points, cis = {}, {}
    for key, scores in score_dict.items():
        with _quiet_arch(), _seeded_global_rng(seed):
            p, c = rly.get_interval_estimates({key: scores}, func, reps=reps,
                                              random_state=np.random.RandomState(seed))
        points[key], cis[key] = p[key], c[key]
        if progress is not None:
            progress(1)
    return points, cis


def _four_metrics(scores: np.ndarray) -> np.ndarray:
    """(R, G) -> [median, IQM, mean, optimality gap] with rliable's definitions."""
    from rliable import metrics

    return np.array([metrics.aggregate_median(scores), metrics.aggregate_iqm(scores),
                     metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)])


def aggregate_metrics(matrices: Matrices, reps: int = 2000, seed: int = 0,
                      progress: Progress = None) -> pd.DataFrame:
    """Median, IQM, mean and optimality gap per agent with stratified-bootstrap 95% CIs.

    ``matrices``: {agent: (n_runs, n_games)} human-normalised. Returns columns agent, metric,
    estimate, low, high (one row per agent and metric).
    """
    points, cis = _bootstrap(matrices, _four_metrics, reps, seed, progress)
    rows = [{"agent": a, "metric": m, "estimate": points[a][i], "low": cis[a][0, i], "high": cis[a][1, i]}
            for a in matrices for i, m in enumerate(METRICS)]
    return pd.DataFrame(rows)


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y): for each game the chance that a run of X beats a run of Y (ties count ½), averaged
    over games. (R_x, G), (R_y, G) -> scalar.

    The same number as rliable's ``metrics.probability_of_improvement`` (the Mann–Whitney U
    statistic / (R_x·R_y) per game), computed for all games at once: rliable calls SciPy's test
    once per game, which makes 2000 bootstrap replicates over 56 games take minutes.
    """
    diff = scores_x[:, None, :] - scores_y[None, :, :]  # (R_x, R_y, G)
    per_game = (diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))  # (G,)
    return float(per_game.mean())


def probability_of_improvement(matrices: Matrices, baseline: str = "NA", reps: int = 2000, seed: int = 0,
                               progress: Progress = None) -> pd.DataFrame:
    """P(X > baseline) of each other agent X, with stratified independent-bootstrap 95% CIs.

    Returns columns agent, baseline, estimate, low, high; empty when the baseline is absent.
    """
    if baseline not in matrices:
        note(f"no runs of {baseline}: no probability of improvement over it")
        return pd.DataFrame(columns=["agent", "baseline", "estimate", "low", "high"])
    pairs = {f"{a},{baseline}": (m, matrices[baseline]) for a, m in matrices.items() if a != baseline}
    points, cis = _bootstrap(pairs, improvement_probability, reps, seed, progress)
    return pd.DataFrame([{"agent": k.split(",")[0], "baseline": baseline, "estimate": float(np.ravel(points[k])[0]),
                          "low": float(np.ravel(cis[k])[0]), "high": float(np.ravel(cis[k])[1])} for k in pairs])


def profile_taus(matrices: Matrices, n: int = 81) -> np.ndarray:
    """Thresholds τ for performance profiles: 0 to the 95th percentile of all scores (≥ 1), rounded up."""
    pooled = np.concatenate([m.ravel() for m in matrices.values()])
    top = max(1.0, math.ceil(float(np.quantile(pooled, 0.95))))
    return np.linspace(0.0, top, n)


def performance_profiles(matrices: Matrices, taus: np.ndarray, reps: int = 2000, seed: int = 0,
                         progress: Progress = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score-distribution performance profiles: fraction of runs with score > τ, for τ in ``taus``.

    Returns ({agent: (n_taus,)}, {agent: (2, n_taus) CI}). This is rliable's
    ``create_performance_profile`` with a seeded bootstrap (that function takes no random state).
    """
    from rliable import library as rly

    return _bootstrap(matrices, lambda s: rly.score_distributions(s, taus), reps, seed, progress)


def _iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """(R, G, T) -> (T,): rliable's IQM (25% trimmed mean of all runs and games) at each step.

    One trimmed mean along axis 0 instead of T calls of ``metrics.aggregate_iqm``: same numbers,
    T times fewer Python calls per bootstrap replicate.
    """
    return stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)  # (R*G, T)


def sample_efficiency(curves: Matrices, steps: np.ndarray, reps: int = 2000, seed: int = 0,
                      progress: Progress = None) -> pd.DataFrame:
    """IQM of human-normalised scores at each evaluation step with 95% CIs.

    ``curves``: {agent: (n_runs, n_games, n_steps)}. Returns columns agent, timestep, iqm, low, high.
    """
    points, cis = _bootstrap(curves, _iqm_per_step, reps, seed, progress)
    frames = [pd.DataFrame({"agent": a, "timestep": steps, "iqm": points[a], "low": cis[a][0], "high": cis[a][1]})
              for a in curves]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- alignment of biases
def group_of(game: str) -> str:
    """The SPEC §5 axis group of ``game`` (:data:`UNCLASSIFIED` for games outside the 56)."""
    for group, games in AXIS_GROUPS.items():
        if game in games:
            return group
    return UNCLASSIFIED


def alignment(won: Mapping[str, tuple[str, ...]], agents: tuple[str, ...] = AGENTS,
              groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Games won per axis group and agent: columns group, agent, bias, wins, n_games, share.

    ``won`` is {game: winning agents} (see :func:`winners`); ``n_games`` counts the group's games
    that have a winner, ``share`` = wins / n_games. ``groups`` is {game: group} for another
    classification (e.g. measured axes); by default the SPEC §5 groups, in SPEC order. Games
    outside the classification form the group unclassified, last. ``bias`` is each agent's declared bias
    (:func:`dimattn.agents.registry.bias_of`; ``unknown`` for a block not registered here).
    """
    def group(game: str) -> str:
        return group_of(game) if groups is None else groups.get(game, UNCLASSIFIED)

    order = AXIS_GROUPS if groups is None else dict.fromkeys(groups.values())
    present = {group(game) for game in won}
    rows = []
    for name in [g for g in (*order, UNCLASSIFIED) if g in present]:
        games = [g for g in won if group(g) == name]
        for agent in agents:
            wins = sum(agent in won[g] for g in games)
            rows.append({"group": name, "agent": agent, "bias": bias_of(agent), "wins": wins, "n_games": len(games),
                         "share": wins / len(games)})
    return pd.DataFrame(rows)


def win_lists(won: Mapping[str, tuple[str, ...]], agents: tuple[str, ...] = AGENTS) -> dict[str, list[str]]:
    """{agent: games it won, alphabetical}."""
    return {a: sorted(g for g, w in won.items() if a in w) for a in agents}
