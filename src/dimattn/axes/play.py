"""Playing a game through the ALE and keeping every emulator frame, for :mod:`dimattn.axes.measure`.

The game runs as the study's ``<Game>NoFrameskip-v4`` does (SPEC §3: no sticky actions, minimal action
set); an agent step repeats its action for 4 emulator frames. Every frame is kept as ALE palette indices
(one byte per pixel, exact colours). The policy is uniformly random, or a trained agent that sees the
study's observation (max of the step's last two frames in grey, resized to 84×84 by area, 4 stacked).
A lost game is reset and play goes on until ``steps`` agent steps are taken. Before 20 evenly spread steps
the play pauses for 32 no-op frames (not kept) and probes what each action does on cloned states
(:mod:`dimattn.axes.control`; a trained agent's action probabilities there weigh its fire effects); the
play then goes on from the paused state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dimattn.agents.checkpoints import load_agent
from dimattn.axes.control import PROBES, Control, Policy, control_of, observation, probe
from dimattn.envs.ale import action_meanings, make_game
from dimattn.envs.pool import FRAME_SKIP
from dimattn.errors import DimattnError
from dimattn.games import canonical_game, v4_id


@dataclass
class Play:
    """What playing produced: frames (T, H, W) uint8 palette indices and one RGB screen (H, W, 3) to draw on."""

    game: str
    frames: np.ndarray
    screen: np.ndarray   # (H, W, 3) uint8 (210×160 for most games), the middle of the run
    steps: int
    episodes: int        # games started (1 + resets after game over)
    policy: str          # "random" or the checkpoint's agent
    control: Control     # the effects of the action probes (dimattn.axes.control)


def load_policy(checkpoint: str, game: str | None = None, agent: str | None = None) -> torch.nn.Module:
    """A trained agent (``model.meta["game"]``: the game it plays); a one-line error if it was trained on
    another game than ``game``, or records no game and none is given."""
    model = load_agent(checkpoint, agent)
    trained = canonical_game(str(model.meta["game"])) if model.meta.get("game") else None
    if game is not None and trained is not None and trained != game:
        raise DimattnError(f"checkpoint {checkpoint} was trained on {trained}, not {game}; "
                           f"give a checkpoint of {game} or leave --checkpoint out (random policy)")
    game = game or trained
    if game is None:
        raise DimattnError(f"checkpoint {checkpoint} does not record its game; name the game it was trained on")
    n_game, n_model = len(action_meanings(game)), int(model.config["n_actions"])
    if n_game != n_model:
        raise DimattnError(f"{game} has {n_game} actions but checkpoint {checkpoint} has {n_model}; "
                           "give the game the checkpoint was trained on")
    model.meta["game"] = game
    return model


def probe_steps(steps: int, probes: int = PROBES) -> set[int]:
    """The agent steps before which the play is probed: ``probes`` of them, evenly spread."""
    return set(np.linspace(steps // (2 * probes), steps - 1, probes).astype(int).tolist()) if probes else set()


def play(game: str, steps: int, seed: int = 0, policy: torch.nn.Module | None = None, probes: int = PROBES) -> Play:
    """Play ``steps`` agent steps of ``game`` with a random policy (or ``policy``) and keep every frame.

    Before ``probes`` of the steps the actions' effects are probed on cloned states (:mod:`dimattn.axes.control`).
    """
    if steps < 1:
        raise DimattnError(f"--steps must be at least 1, got {steps}")
    game = canonical_game(game)
    env = make_game(v4_id(game), repeat_action_probability=0.0, full_action_space=False)
    ale, actions = env.unwrapped.ale, env.unwrapped._action_set
    meanings = env.unwrapped.get_action_meanings()
    at, effects, n_probed = probe_steps(steps, probes), [], 0
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    probs = None if policy is None else action_probabilities(policy)
    screen, episodes, stack = None, 1, None
    try:
        env.reset(seed=seed)
        height, width = ale.getScreen().shape  # 210×160 for most games, not all (Pooyan: 220×160)
        frames = np.empty((steps * FRAME_SKIP, height, width), np.uint8)
        for step in range(steps):
            if step in at:
                effects += probe(ale, actions, meanings, n_probed, probs)
                n_probed += 1
            if probs is None:
                a = int(rng.integers(len(actions)))
            elif stack is None:
                a = 0  # NOOP until 4 frames are seen
            else:  # the study's stochastic evaluation policy
                a = int(torch.multinomial(torch.as_tensor(probs(stack)), 1, generator=gen))
            grey = []
            for k in range(FRAME_SKIP):
                ale.act(actions[a])
                frames[step * FRAME_SKIP + k] = ale.getScreen()
                if probs is not None and k >= FRAME_SKIP - 2:
                    grey.append(ale.getScreenGrayscale())
            if probs is not None:
                obs = observation(grey)  # (84, 84)
                stack = np.stack([obs] * 4) if stack is None else np.concatenate([stack[1:], obs[None]])
            if step == steps // 2:
                screen = ale.getScreenRGB()
            if ale.game_over():
                env.reset(seed=seed + episodes)
                episodes, stack = episodes + 1, None
    finally:
        env.close()
    return Play(game, frames, screen, steps, episodes, "random" if policy is None else str(policy.agent),
                control_of(effects, n_probed))


def action_probabilities(policy: torch.nn.Module) -> Policy:
    """The agent's action probabilities (A,) float64 for a stack (4, 84, 84) uint8."""
    def probs(stack: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits, _ = policy(torch.as_tensor(stack[None]))  # (1, A)
        return torch.softmax(logits.double(), -1)[0].numpy()
    return probs
