"""``dimattn recommend``: a game's axis of dynamics and the agent the published alignment of biases favours.

The evidence is computed, never typed in: the per-game winners come from the published results through
:func:`dimattn.analysis.stats.per_game` / :func:`~dimattn.analysis.stats.winners` (from ``--results``: the published
pickle or a study directory), or from ``data/published_wins.csv``, a summary of the published pickle
that :func:`write_published_wins` generates. The axis groups are the published study's three axes
(horizontal, vertical, other), counted by :func:`dimattn.analysis.stats.alignment`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from dimattn.agents.registry import agent_order
from dimattn.analysis.results import load_results
from dimattn.analysis.stats import alignment, per_game, winners
from dimattn.axes.run import measure_game
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.games import AXIS_OF_GAME, canonical_game

PUBLISHED_WINS = "data/published_wins.csv"


def wins_from_results(source: str | Path) -> dict[str, tuple[str, ...]]:
    """{game: winning agents} from results (published pickle or study directory), by the analysis code."""
    return winners(per_game(load_results(source)))


def published_wins_csv(source: str | Path) -> str:
    """The text of ``published_wins.csv``: per game its winning agent(s), space-separated."""
    won = wins_from_results(source)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["game", "winners"])
    for game in sorted(won):
        writer.writerow([game, " ".join(won[game])])
    return buf.getvalue()


def write_published_wins(source: str | Path, path: str | Path) -> Path:
    """Write ``published_wins.csv`` (the shipped summary) from the published results, atomically."""
    atomic_write_text(path, published_wins_csv(source))
    return Path(path)


@lru_cache(maxsize=1)
def shipped_wins() -> dict[str, tuple[str, ...]]:
    """{game: winning agents} from the shipped summary of the published results."""
    text = resources.files("dimattn").joinpath(PUBLISHED_WINS).read_text()
    return {r["game"]: tuple(r["winners"].split()) for r in csv.DictReader(text.splitlines())}


@dataclass
class Recommendation:
    game: str
    axis: str
    axis_source: str          # "the published study's label" or "measured: ..."
    agent: str
    wins: int
    n_games: int
    runner_up: str
    runner_up_wins: int
    evidence_source: str

    def text(self) -> str:
        return (f"{self.game}: axis {self.axis} ({self.axis_source})\n"
                f"recommended agent: {self.agent} — {self.axis}: {self.agent} won {self.wins} of the "
                f"{self.n_games} {self.axis} games in the published study\n"
                f"runner-up: {self.runner_up} ({self.runner_up_wins} of {self.n_games})"
                + (" — a tie: the data do not separate them" if self.runner_up_wins == self.wins else "") + "\n"
                f"evidence: {self.evidence_source}")


def game_axis(game: str, steps: int, seed: int = 0) -> tuple[str, str]:
    """The published study's label where the game is among its 56, else measured by playing (random policy)."""
    if game in AXIS_OF_GAME:
        return AXIS_OF_GAME[game], "the published study's label (SPEC §5)"
    d = measure_game(game, steps, seed=seed).decision
    return d.label, (f"measured: {game} is not among the study's 56 games; {steps} random steps, "
                     f"decided by {d.source}, confidence {d.confidence:.2f}")


def recommend(game: str, results: str | Path | None = None, steps: int = 2000, seed: int = 0) -> Recommendation:
    """The axis of ``game`` and the agent that won most published games of that axis (and the runner-up)."""
    game = canonical_game(game)
    if steps < 1:
        raise DimattnError(f"--steps must be at least 1, got {steps}")
    if results is not None:
        won, source = wins_from_results(results), f"per-game winners computed from {results}"
    else:
        won, source = shipped_wins(), (f"per-game winners of the published study (package data {PUBLISHED_WINS}, "
                                      "generated from the published results pickle)")
    axis, axis_source = game_axis(game, steps, seed)
    agents = tuple(agent_order({a for w in won.values() for a in w}))
    table = alignment(won, agents, groups=AXIS_OF_GAME)
    rows = table[table["group"] == axis].sort_values("wins", ascending=False, kind="stable")
    if len(rows) < 2:
        raise DimattnError(f"the results hold no {axis} game of the published classification with a winner; "
                           "give --results with the published results or a study of the 56 games")
    best, second = rows.iloc[0], rows.iloc[1]
    return Recommendation(game, axis, axis_source, best["agent"], int(best["wins"]), int(best["n_games"]),
                          second["agent"], int(second["wins"]), source)




