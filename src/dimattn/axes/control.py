"""What the agent controls, found by experiment: action probes from cloned emulator states (docs/axes.md).

At :data:`PROBES` moments of the play the emulator pauses for :data:`PAUSE` no-op frames (a shot in flight
lands, the fire button is released), its state is cloned, and every action of the game's minimal set is
held for :data:`HORIZON` frames, each branch restored from the same state. Two branches differ only where
the action made a difference. Two kinds of pairs:

- **move**: each action without FIRE against NOOP (``LEFT`` vs ``NOOP``): where they differ is the object
  the agent steers (the player) — and whatever its move disturbs;
- **fire**: each action with FIRE against the same action without it (``FIRE`` vs ``NOOP``,
  ``LEFTFIRE`` vs ``LEFT``): what firing adds — the agent's shots (or a serve, a punch, a throw).

The action names say only which actions fire, never a direction: Pong's ``RIGHT`` moves its paddle up.
The pixels where two branches differ are taken in frame pairs (flicker), dilated by one pixel (shots
drawn as single dots), and their small components are tracked with the motion measure's tracker; each
track's net displacement over the horizon is one *effect*. Per probe, the effects of one kind cast one
vote: horizontal if their energy ``Σ w·dx²`` holds at least ``TAU`` of ``Σ w·(dx² + dy²)``, vertical if at
most ``1 − TAU``, none otherwise.

The weight ``w`` of a fire effect is how likely the agent is to press that fire action there: 1 for the
random policy (every action alike), the trained agent's probability of the action at the probe when a
checkpoint plays — "where the agent's fire goes" is then where *this* agent fires. The agent sees the
probe's state as it would after the pause (the pause's last frames, the study's observation). Move effects
always weigh 1: which way the player *can* move is the game's, not the agent's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dimattn.axes.measure import PAIR, TAU, _split, track_masks
from dimattn.envs.pool import FRAME_SKIP

#: Probes per play, spread evenly over it.
PROBES = 20
#: No-op frames before each probe (emulator frames; 32 ≈ half a second of game time).
PAUSE = 32
#: Frames each action is held in a branch (24 = 6 agent steps: a shot crosses a good part of the screen).
HORIZON = 24
#: A track must span this many frame pairs to count as an effect.
MIN_PAIRS = 3
MOVE, FIRE = 0, 1


@dataclass
class Control:
    """The effects of the probes: one row per effect, ``[probe, kind, dx, dy, x0, y0, w]`` (kind MOVE or FIRE,
    ``w`` its weight)."""

    effects: np.ndarray   # (N, 7) float
    n_probes: int

    def energy(self, kind: int, probes: np.ndarray | None = None) -> np.ndarray:
        """(E_x, E_y) = Σ w·dx², Σ w·dy² of the effects of ``kind`` (in ``probes``, an index array with repeats)."""
        per = self.per_probe(kind)  # (n_probes, 2)
        return (per if probes is None else per[probes]).sum(axis=0)

    def per_probe(self, kind: int) -> np.ndarray:
        """(n_probes, 2): Σ w·dx², Σ w·dy² of the effects of ``kind`` per probe."""
        out = np.zeros((self.n_probes, 2))
        rows = self.effects[self.effects[:, 1] == kind]  # (n, 7)
        np.add.at(out, rows[:, 0].astype(int), rows[:, 2:4] ** 2 * rows[:, 6:7])
        return out

    def votes(self, kind: int, probes: np.ndarray | None = None) -> np.ndarray:
        """(horizontal, vertical) votes of the probes (``probes``: an index array with repeats) for ``kind``."""
        per = self.per_probe(kind)
        per = per if probes is None else per[probes]
        total = per.sum(axis=1)
        h = np.divide(per[:, 0], total, out=np.full(len(per), 0.5), where=total > 0)
        return np.array([int(((h >= TAU) & (total > 0)).sum()), int(((h <= 1 - TAU) & (total > 0)).sum())])


def action_pairs(meanings: list[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Indices into the action set: move pairs (action, NOOP) and fire pairs (action with FIRE, without)."""
    index = {name: i for i, name in enumerate(meanings)}
    if "NOOP" not in index:
        return [], []
    move = [(i, index["NOOP"]) for i, n in enumerate(meanings) if n != "NOOP" and "FIRE" not in n]
    fire = [(i, index[n.replace("FIRE", "") or "NOOP"]) for i, n in enumerate(meanings)
            if "FIRE" in n and (n.replace("FIRE", "") or "NOOP") in index]
    return move, fire


def branches(ale, actions, horizon: int = HORIZON) -> np.ndarray:
    """Every action held for ``horizon`` frames from the current state: (A, horizon, H, W) uint8.

    The emulator is left in the state it was in (cloned before, restored after).
    """
    state = ale.cloneState()
    height, width = ale.getScreen().shape
    out = np.empty((len(actions), horizon, height, width), np.uint8)
    for i, action in enumerate(actions):
        ale.restoreState(state)
        for k in range(horizon):
            ale.act(action)
            out[i, k] = ale.getScreen()
    ale.restoreState(state)
    return out


def effects(frames: np.ndarray, pairs: list[tuple[int, int]], kind: int, probe: int,
            weights: np.ndarray | None = None) -> list[list[float]]:
    """Effects of ``pairs`` of branches (A, K, H, W): rows ``[probe, kind, dx, dy, x0, y0, w]``.

    ``w`` is ``weights[a]`` for the pair's first action ``a`` (1 when ``weights`` is None).
    """
    rows = []
    kernel = np.ones((3, 3), np.uint8)
    n = frames.shape[1] // PAIR * PAIR
    for a, b in pairs:
        w = 1.0 if weights is None else float(weights[a])
        diff = frames[a, :n] != frames[b, :n]  # (n, H, W)
        diff = diff.reshape(n // PAIR, PAIR, *diff.shape[1:]).any(axis=1)  # (n/PAIR, H, W)
        if not diff.any():
            continue
        masks = np.stack([cv2.dilate(m.view(np.uint8), kernel).view(bool) for m in diff])
        for _, xy in _split(track_masks(masks)):
            if len(xy) >= MIN_PAIRS:
                d = xy[-1] - xy[0]
                rows.append([probe, kind, float(d[0]), float(d[1]), float(xy[0, 0]), float(xy[0, 1]), w])
    return rows


#: The agent's action probabilities (A,) for the study's observation (4, 84, 84) uint8.
Policy = Callable[[np.ndarray], np.ndarray]


def probe(ale, actions, meanings: list[str], index: int, policy: Policy | None = None) -> list[list[float]]:
    """One probe at the emulator's current state: pause, branch every action, the effects of both kinds.

    The pause is played on the emulator itself (the play goes on after it); the branches are not. With a
    ``policy``, the fire effects are weighted by its probabilities for the state after the pause.
    """
    grey = []
    for k in range(PAUSE):
        ale.act(actions[meanings.index("NOOP")] if "NOOP" in meanings else actions[0])
        if policy is not None and k % FRAME_SKIP >= FRAME_SKIP - 2:
            grey.append(ale.getScreenGrayscale())
    move, fire = action_pairs(meanings)
    weights = None if policy is None else policy(observation_stack(grey))
    frames = branches(ale, actions)
    return effects(frames, move, MOVE, index) + effects(frames, fire, FIRE, index, weights)


def observation(last_two: list[np.ndarray]) -> np.ndarray:
    """An agent step's last two grey frames (H, W) -> the study's 84×84 frame (max-pooled, area resize)."""
    return cv2.resize(np.maximum(*last_two), (84, 84), interpolation=cv2.INTER_AREA)


def observation_stack(grey: list[np.ndarray]) -> np.ndarray:
    """Grey frames, the last two of each agent step, (2·S of (H, W)) -> the last 4 steps' stack (4, 84, 84)."""
    steps = [observation(grey[i:i + 2]) for i in range(0, len(grey) - 1, 2)]
    return np.stack(steps[-4:])


def control_of(rows: list[list[float]], n_probes: int) -> Control:
    """The rows of all probes -> :class:`Control`."""
    return Control(np.asarray(rows, float).reshape(-1, 7), n_probes)


def shot_share(votes: np.ndarray) -> float | None:
    """Share of horizontal votes among the decided probes (None: no probe decided)."""
    return float(votes[0] / votes.sum()) if votes.sum() > 0 else None


def player_share(energy: np.ndarray) -> float | None:
    """Share of the player's moves along x (None: the actions moved nothing)."""
    return float(energy[0] / energy.sum()) if energy.sum() > 0 else None


