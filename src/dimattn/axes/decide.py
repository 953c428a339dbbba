"""The label of a game: three measures, asked in order, the first clear answer wins (docs/axes.md).

1. **shots** — where the agent's fire goes (:mod:`dimattn.axes.control`, fire pairs): the share of
   horizontal votes among the probes whose fire effects lie along one axis. Clear if it is at least
   ``TAU`` or at most ``1 − TAU``.
2. **player** — the axis the agent's moves are confined to (move pairs): if at least :data:`CONFINED` of
   the player's motion energy lies along one axis, the game's axis is the *other* one (a paddle that
   only moves up and down plays left–right: Pong; one that only moves left–right plays up–down: Breakout).
3. **motion** — the persistent motion of the small objects (:mod:`dimattn.axes.measure`), which always
   answers (horizontal, vertical or other).

Two thresholds: ``TAU`` = 2/3 (the motion measure's, set a priori and kept) and ``CONFINED`` = 0.95, chosen
on the prototype's values (Pong and Breakout above 0.99, the next game 0.89); any value from 0.90 to 0.99
gives the same 56 labels (docs/axes.md). Confidence: the share of bootstrap resamples (probes resampled
with replacement, the motion measure's blocks of time resampled) whose whole cascade gives the same label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimattn.axes.control import FIRE, MOVE, Control, player_share, shot_share
from dimattn.axes.measure import RESAMPLES, AxisMeasure, label_of

#: Share of the player's motion along one axis for it to count as confined to that axis.
CONFINED = 0.95
SOURCES = ("shots", "player", "motion")


@dataclass
class Decision:
    """The label, which measure gave it, and the confidence."""

    label: str
    source: str                 # "shots", "player" or "motion"
    shots_h: float | None       # share of horizontal fire votes (None: no decided probe)
    shot_votes: tuple[int, int]  # (horizontal, vertical) probes
    player_x: float | None      # share of the player's motion along x (None: nothing moved)
    motion_h: float             # the motion measure's h
    confidence: float


def cascade(shots_h: float | None, player_x: float | None, motion_h: float) -> tuple[str, str]:
    """The rule: (label, source)."""
    if shots_h is not None and label_of(shots_h) != "other":
        return label_of(shots_h), "shots"
    if player_x is not None and max(player_x, 1 - player_x) >= CONFINED:
        return ("vertical" if player_x > 0.5 else "horizontal"), "player"
    return label_of(motion_h), "motion"


def decide(control: Control, motion: AxisMeasure, seed: int = 0) -> Decision:
    """Apply :func:`cascade` to a play's probes and motion measure, with a bootstrap confidence."""
    votes = control.votes(FIRE)
    shots_h, player_x = shot_share(votes), player_share(control.energy(MOVE))
    label, source = cascade(shots_h, player_x, motion.h_share)
    rng = np.random.default_rng(seed + 1)
    boot = motion.boot_h if len(motion.boot_h) else np.full(RESAMPLES, motion.h_share)
    same = 0
    for r in range(RESAMPLES):
        probes = rng.integers(0, max(control.n_probes, 1), control.n_probes)
        b_label, _ = cascade(shot_share(control.votes(FIRE, probes)), player_share(control.energy(MOVE, probes)),
                             float(boot[r]))
        same += b_label == label
    return Decision(label, source, shots_h, (int(votes[0]), int(votes[1])), player_x, motion.h_share,
                    same / RESAMPLES)
