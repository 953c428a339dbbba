"""``dimattn axes``: measure the axis of dynamics of games, print it, write ``axes.csv`` and figures.

Per game: play (:mod:`~dimattn.axes.play`, with the action probes of :mod:`~dimattn.axes.control`), the
motion measure (:mod:`~dimattn.axes.measure`), and the rule that gives the label (:mod:`~dimattn.axes.decide`).
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dimattn.axes.decide import Decision, decide
from dimattn.axes.figures import axes_figure, save_png
from dimattn.axes.measure import AxisMeasure, measure
from dimattn.axes.play import Play, load_policy, play
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.games import AXIS_OF_GAME, resolve_games

#: Agent steps played per game by default (8,000 emulator frames, about 2 minutes of game time).
DEFAULT_STEPS = 2000
CSV_COLUMNS = ("game", "label", "source", "confidence", "shot_votes_h", "shot_votes_v", "player_x", "motion_h",
               "energy_x", "energy_y", "axial", "n_tracks", "probes", "policy", "steps", "seed", "published_label")


@dataclass
class GameAxis:
    """One game's result: the play, its motion measure and the decision."""

    game: str
    measure: AxisMeasure
    play: Play
    decision: Decision
    seconds: float

    def row(self, seed: int) -> dict:
        m, d = self.measure, self.decision
        return {"game": self.game, "label": d.label, "source": d.source, "confidence": f"{d.confidence:.2f}",
                "shot_votes_h": d.shot_votes[0], "shot_votes_v": d.shot_votes[1],
                "player_x": "" if d.player_x is None else f"{d.player_x:.3f}", "motion_h": f"{m.h_share:.4f}",
                "energy_x": f"{m.energy_x:.1f}", "energy_y": f"{m.energy_y:.1f}", "axial": f"{m.axial:.3f}",
                "n_tracks": m.n_tracks, "probes": self.play.control.n_probes, "policy": self.play.policy,
                "steps": self.play.steps, "seed": seed, "published_label": AXIS_OF_GAME.get(self.game, "")}

    def line(self) -> str:
        m, d = self.measure, self.decision
        known = AXIS_OF_GAME.get(self.game)
        published = f"  [published: {known}]" if known else ""
        player = "-" if d.player_x is None else f"{d.player_x:.2f}"
        return (f"{self.game:<18} {d.label:<10} by {d.source:<6}  shots {d.shot_votes[0]}H/{d.shot_votes[1]}V, "
                f"player x-share {player}, motion h={m.h_share:.2f}; confidence {d.confidence:.2f}  "
                f"({self.seconds:.1f} s){published}")


def check_out_dir(out: str | Path) -> Path:
    """A one-line error unless ``out`` is (or can be created as) a writable directory; creates nothing."""
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise DimattnError(f"cannot write to {out}: {probe} is not a directory; give --out a directory path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DimattnError(f"cannot write to {out}: {probe} is not writable; give --out a writable directory")
    return out


def measure_game(game: str, steps: int, seed: int = 0, policy=None) -> GameAxis:
    """Play and measure one game."""
    start = time.perf_counter()
    played = play(game, steps, seed=seed, policy=policy)
    m = measure(played.frames, seed=seed)
    played.frames = np.empty((0, *played.frames.shape[1:]), np.uint8)  # (0, 210, 160): free the frames
    return GameAxis(played.game, m, played, decide(played.control, m, seed=seed), time.perf_counter() - start)


def to_csv(results: list[GameAxis], seed: int) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(r.row(seed))
    return buf.getvalue()


def axes_command(games: list[str], steps: int = DEFAULT_STEPS, seed: int = 0, checkpoints: Sequence[str] = (),
                 agent: str | None = None, out: str | None = None, echo=print) -> list[GameAxis]:
    """``dimattn axes``: check every input first, then measure each game (one line each), then write.

    With ``checkpoints`` each game is played by its own trained agent; with no game named, the games are
    the checkpoints' games.
    """
    names = list(resolve_games(games))
    if not names and not checkpoints:
        raise DimattnError("no game given; name games (Pong Breakout) or a set (--games paper56)")
    if steps < 1:
        raise DimattnError(f"--steps must be at least 1, got {steps}")
    out_dir = check_out_dir(out) if out is not None else None
    policies = match_policies(names, checkpoints, agent) if checkpoints else {}
    names = names or list(policies)
    results: list[GameAxis] = []
    start = time.perf_counter()
    for i, game in enumerate(names):
        if sys.stderr.isatty():  # a transient status, redrawn in place; in a file or pipe the lines below say it
            print(f"[{i + 1}/{len(names)}] playing {game} ({steps} steps)...", end="\r", file=sys.stderr, flush=True)
        results.append(measure_game(game, steps, seed, policies.get(game)))
        echo(results[-1].line())
    echo(f"measured {len(results)} games in {time.perf_counter() - start:.0f} s")
    if out_dir is not None:
        write_outputs(results, out_dir, seed)
        echo(f"wrote {out_dir / 'axes.csv'} and {len(results)} figures to {out_dir}")
    return results


def match_policies(games: list[str], checkpoints: Sequence[str], agent: str | None) -> dict[str, torch.nn.Module]:
    """{game: its trained agent}: one checkpoint per game, matched by the game each records.

    One game and one checkpoint need no record (the checkpoint is taken to be of that game).
    """
    if len(games) == 1 and len(checkpoints) == 1:
        return {games[0]: load_policy(checkpoints[0], games[0], agent)}
    policies: dict[str, torch.nn.Module] = {}
    for path in checkpoints:
        model = load_policy(path, None, agent)
        game = model.meta["game"]
        if game in policies:
            raise DimattnError(f"two checkpoints play {game} ({path} and another); give one checkpoint per game")
        if games and game not in games:
            raise DimattnError(f"checkpoint {path} plays {game}, which is not among the games named; "
                               f"name {game} too or leave the checkpoint out")
        policies[game] = model
    missing = [g for g in games if g not in policies]
    if missing:
        raise DimattnError(f"no checkpoint plays {', '.join(missing)}; give one checkpoint per game "
                           "(or leave --checkpoint out: random policy)")
    return policies


def write_outputs(results: list[GameAxis], out_dir: Path, seed: int) -> None:
    """``axes.csv`` and ``<game>.png`` per game, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    for r in results:
        policy = r.play.policy if r.play.policy == "random" else f"{r.play.policy} agent"
        caption = f"{policy} policy, {r.play.steps} steps, seed {seed}"
        if r.game in AXIS_OF_GAME:
            caption += f"; the published label: {AXIS_OF_GAME[r.game]}"
        fig = axes_figure(r.game, r.play.screen, r.measure, r.decision, r.play.control, caption)
        save_png(fig, out_dir / f"{r.game}.png")
    atomic_write_text(out_dir / "axes.csv", to_csv(results, seed))
