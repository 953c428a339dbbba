"""An agent playing a game: whole evaluation games step by step, and observations met on the way.

The study's evaluation env (SPEC §3: whole games, raw score) with the emulator's full-resolution screen
beside each observation, so callers can draw what the agent saw (:mod:`dimattn.interpret.record`) or
explain it (:mod:`dimattn.interpret.explain`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dimattn.agents.networks import ActorCritic
from dimattn.envs.ale import action_meanings, make_env
from dimattn.errors import DimattnError


def check_game_fits(model: ActorCritic, game: str, what: str = "checkpoint") -> None:
    """A one-line error if ``game``'s action set does not match the model's policy head."""
    n_game, n_model = len(action_meanings(game)), int(model.config["n_actions"])
    if n_game != n_model:
        trained = model.meta.get("game") if hasattr(model, "meta") else None
        hint = f" (it was trained on {trained})" if trained else ""
        raise DimattnError(f"{game} has {n_game} actions but the {what} has {n_model}{hint}; "
                           "give the game the checkpoint was trained on")


@dataclass
class PlayStep:
    """One agent step: the observation (4, 84, 84) uint8 and screen (210, 160, 3) uint8 it acts on."""

    obs: np.ndarray
    screen: np.ndarray
    action: int
    episode: int   # 0-based
    t: int         # step within the episode, 0-based
    score: float   # the episode's score before this step's reward
    end: str = ""  # on the extra step after an episode: "game over" or "max steps"


def play(model: ActorCritic, game: str, episodes: int, seed: int = 0, deterministic: bool = False,
         max_steps: int | None = None) -> Iterator[PlayStep]:
    """Play ``episodes`` whole games (or stop an episode after ``max_steps`` agent steps).

    The policy samples its actions (the study's evaluation) from a generator seeded with ``seed``
    unless ``deterministic``. Yields one :class:`PlayStep` per agent step, then one extra step per
    episode with ``action = -1``, the final score and ``end`` saying why the episode ended.
    """
    env = make_env(game, n_envs=1, seed=seed, training=False, render_mode="rgb_array")
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    try:
        obs = env.reset()  # (1, 4, 84, 84)
        for episode in range(episodes):
            score, t = 0.0, 0
            while True:
                screen = env.get_images()[0]  # (210, 160, 3): the screen the observation was made from
                with torch.no_grad():
                    logits, _ = model(torch.as_tensor(obs, device=device))
                probs = torch.softmax(logits.double().cpu(), -1)
                action = int(probs.argmax(-1)) if deterministic else int(torch.multinomial(probs[0], 1, generator=gen))
                yield PlayStep(obs[0], screen, action, episode, t, score)
                obs, reward, done, _ = env.step(np.array([action]))
                score, t = score + float(reward[0]), t + 1
                if done[0] or (max_steps is not None and t >= max_steps):
                    yield PlayStep(obs[0], screen, -1, episode, t, score, "game over" if done[0] else "max steps")
                    if not done[0]:
                        obs = env.reset()
                    break
    finally:
        env.close()


def collect_observations(model: ActorCritic, game: str, n_obs: int, seed: int = 0,
                         every: int = 25) -> tuple[np.ndarray, list[str]]:
    """Observations (n_obs, 4, 84, 84) uint8 met while ``model`` plays ``game``: one every ``every``
    agent steps (counted across episodes), named ``<game>_ep<episode>_t<step>``."""
    if n_obs < 1 or every < 1:
        raise DimattnError("--n-obs and --every must be at least 1")
    out, names, steps = [], [], 0
    for step in play(model, game, episodes=10**9, seed=seed):
        if step.action < 0:  # the extra end-of-episode step
            continue
        if steps > 0 and steps % every == 0:  # `steps` agent steps taken before this observation
            out.append(step.obs.copy())
            names.append(f"{game}_ep{step.episode}_t{step.t:05d}")
            if len(out) == n_obs:
                break
        steps += 1
    return np.stack(out), names
