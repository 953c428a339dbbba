"""Atari environments with the study's semantics (SPEC §3), through Gymnasium + ale-py + SB3 wrappers.

Whatever id the user gives (``Pong``, ``PongNoFrameskip-v4``, ``ALE/Pong-v5``), the environment is the
study's ``<Game>NoFrameskip-v4``: no sticky actions, minimal action set, 108,000-frame cap (or the run's
protocol: :mod:`dimattn.envs.protocol`); wrapped by
SB3's ``AtariWrapper`` (30 no-ops, frame skip 4 with max-pool, 84×84 grey, FIRE at reset) and stacked
4 deep. Training envs end an episode at a life loss and clip rewards; evaluation envs play whole games
with raw rewards. Observations are channel-first uint8 ``(n_envs, 4, 84, 84)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecTransposeImage

from dimattn.envs import protocol
from dimattn.errors import DimattnError
from dimattn.games import canonical_game, v4_id

FRAME_STACK = 4
VEC_ENVS = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


def _register() -> None:
    """ale-py's ids into Gymnasium, and its C++ logger down to errors: at Info it prints its banner
    ("A.L.E: Arcade Learning Environment ... [Powered by Stella]") to stdout at every env creation,
    which broke into the progress bar and every run's train.log. Called in SubprocVecEnv workers too."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)


def make_game(env_id: str, **kwargs) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` of an ALE id without ale-py's banner (module-level so SubprocVecEnv can
    pickle it; registers ale-py's ids in the worker process)."""
    _register()
    return gym.make(env_id, **kwargs)


def make_env(
    game: str, n_envs: int = 1, seed: int = 0, training: bool = True, vec_env: str = "dummy",
    render_mode: str | None = None,
) -> VecEnv:
    """A vectorised Atari env of ``game`` with SPEC §3 semantics.

    Args:
        game: a game name, v4 id or v5 id.
        n_envs: number of parallel copies.
        seed: seed of the first copy (copy ``i`` gets ``seed + i``).
        training: life loss ends the episode and rewards are clipped (``False``: whole games, raw score).
        vec_env: ``dummy`` (one process) or ``subproc`` (one process per copy).
        render_mode: ``"rgb_array"`` to read full-resolution screens with ``get_images()``.

    Returns a VecEnv whose observations are uint8 (n_envs, 4, 84, 84). Every copy is wrapped in
    SB3's ``Monitor`` *outside* the Atari wrapper, so ``info["episode"]`` holds the raw game score.
    """
    if vec_env not in VEC_ENVS:
        raise DimattnError(f"unknown --vec-env {vec_env!r}; choose one of {', '.join(VEC_ENVS)}")
    if n_envs < 1:
        raise DimattnError(f"n_envs must be at least 1, got {n_envs}")
    env_id = v4_id(game)
    _register()
    options = protocol.current()  # the study's, or the run's protocol (envs/protocol.py)
    wrapper_kwargs = ({"terminal_on_life_loss": options["terminal_on_life_loss"]} if training
                      else {"terminal_on_life_loss": False, "clip_reward": False})
    env = make_atari_env(
        partial(make_game, env_id), n_envs=n_envs, seed=seed, wrapper_kwargs=wrapper_kwargs,
        vec_env_cls=VEC_ENVS[vec_env],
        env_kwargs={"repeat_action_probability": options["repeat_action_probability"],
                    "full_action_space": options["full_action_space"],
                    "max_num_frames_per_episode": options["max_num_frames_per_episode"], "render_mode": render_mode},
    )
    # (n, 84, 84, 1) -> stacked (n, 84, 84, 4) -> channel-first (n, 4, 84, 84)
    return VecTransposeImage(VecFrameStack(env, n_stack=FRAME_STACK))


def action_meanings(game: str) -> list[str]:
    """The minimal action set of ``game``, e.g. ``['NOOP', 'FIRE', 'RIGHT', 'LEFT', ...]``."""
    _register()
    env = gym.make(v4_id(game))
    try:
        return list(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def evaluation_envs(game: str, n: int) -> list[VecEnv]:
    """``n`` evaluation envs of ``game`` (whole games, raw score) for :func:`evaluate` to reuse: building
    an Atari env costs far more than a short game, and a trainer evaluates many times."""
    return [make_env(canonical_game(game), n_envs=1, seed=0, training=False) for _ in range(n)]


def evaluate(act: Callable[[np.ndarray], np.ndarray], game: str, seeds: Sequence[Sequence[int]],
             envs: list[VecEnv] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Play one whole game per seed, for K policies at once: ``seeds[k][e]`` seeds game e of policy k.

    ``act(obs (K, E, 4, 84, 84) uint8) -> actions (K, E)`` is called once per agent step for every
    game, finished or not (one batched forward; the actions of finished games are dropped), and only
    the games still running step their emulators. Each game is the study's evaluation env (SPEC §3:
    whole game, raw score, 108k-frame cap) in its own copy, reset with its seed, so the result of a game
    does not depend on the others. ``envs``: K*E envs from :func:`evaluation_envs` to reuse (they stay
    open); by default they are built and closed here. Returns per policy (scores, lengths), each (E,): raw
    game scores and game lengths in emulator frames (SB3's Monitor sits under the frame skip, as in RL
    Zoo's ``ep_lengths``).
    """
    k, e = len(seeds), len(seeds[0])
    if any(len(s) != e for s in seeds) or e < 1:
        raise DimattnError("evaluate needs the same number (>= 1) of games for every policy")
    own = envs is None
    envs = evaluation_envs(game, k * e) if envs is None else envs
    if len(envs) != k * e:
        raise DimattnError(f"evaluate got {len(envs)} envs for {k * e} games")
    scores, lengths = np.zeros(k * e), np.zeros(k * e, dtype=np.int64)
    running = np.ones(k * e, dtype=bool)
    try:
        for env, seed in zip(envs, (s for row in seeds for s in row)):
            env.seed(int(seed))  # used by the reset below: the same game as a fresh env made with this seed
        obs = np.concatenate([env.reset() for env in envs])  # (K*E, 4, 84, 84)
        while running.any():
            actions = np.asarray(act(obs.reshape(k, e, *obs.shape[1:]))).reshape(k * e)
            for i in np.flatnonzero(running):
                o, _, done, info = envs[i].step(actions[i:i + 1])
                obs[i] = o[0]
                if done[0] and "episode" in info[0]:
                    scores[i], lengths[i], running[i] = info[0]["episode"]["r"], info[0]["episode"]["l"], False
    finally:
        if own:
            for env in envs:
                env.close()
    return [(scores[i * e:(i + 1) * e], lengths[i * e:(i + 1) * e]) for i in range(k)]
