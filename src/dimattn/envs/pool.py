"""Atari environments from EnvPool with the study's semantics (SPEC §3), for the fast engine.

EnvPool runs the emulators in C++ threads and returns batches of observations already preprocessed:
no sticky actions, minimal action set, up to 30 no-ops at reset, frame skip 4 with max-pool of the
last two frames, grey 84×84 (area interpolation), FIRE at reset, 4 frames stacked, 27,000 agent steps
(= 108,000 frames) per game (or the run's protocol: :mod:`dimattn.envs.protocol`). Training pools end an
episode at a life loss and clip rewards; the raw reward and the game-over flag stay available in
``info["reward"]`` / ``info["terminated"]``.

Known differences from the Gymnasium + SB3 ``AtariWrapper`` path (:mod:`dimattn.envs.ale`), all at resets
(``tests/test_env_parity.py`` checks that stepping is otherwise the same; docs/benchmarks.md):

- FIRE at reset is one emulator frame (SB3: FIRE for 4 frames, then action 2 for 4 frames).
- After a life loss EnvPool does fresh random no-ops then FIRE (SB3: one no-op step, then FIRE).
- At a game reset the frame stack is filled with copies of the first frame (SB3: zeros); after a
  life loss the stack carries on (SB3: zeros).
- EnvPool auto-resets on the step *after* a done: that step ignores its action and returns the first
  observation of the next episode with reward 0. The fast engine masks those steps out of the loss.
"""

from __future__ import annotations

from typing import Any

from dimattn.envs import protocol
from dimattn.errors import DimattnError
from dimattn.games import canonical_game

FRAME_SKIP = 4


def _envpool() -> Any:
    try:
        import envpool
    except ImportError:
        raise DimattnError("the fast engine needs EnvPool (pip install envpool, Linux x86-64 only); "
                           "or train with --engine sb3") from None
    return envpool


def task_id(game: str) -> str:
    """EnvPool's id for ``game`` (``Breakout`` -> ``Breakout-v5``); DimattnError if EnvPool lacks it."""
    envpool = _envpool()
    task = f"{canonical_game(game)}-v5"
    if task not in envpool.list_all_envs():
        raise DimattnError(f"EnvPool has no Atari game {canonical_game(game)}; train it with --engine sb3")
    return task


def make_pool(game: str, n_envs: int, seed: int | list[int], training: bool = True, num_threads: int = 0,
              noop_max: int = 30, use_fire_reset: bool = True) -> Any:
    """An EnvPool of ``n_envs`` copies of ``game`` (copy ``i`` seeded ``seed + i``, or ``seed[i]`` for a
    list), used via ``async_reset`` / ``send`` / ``recv`` (Gymnasium API). Observations are uint8
    (n_envs, 4, 84, 84). A copy seeded s plays the same game whichever pool holds it, so the envs of
    several runs can share one pool.

    Args:
        training: life loss ends the episode and rewards are clipped (``False``: whole games, raw score).
        num_threads: EnvPool worker threads (0: one per env, capped at the CPU count).
        noop_max: at most this many no-op frames at reset (``1`` = exactly one, for parity tests).
        use_fire_reset: press FIRE at reset in games that have it.
    """
    if n_envs < 1:
        raise DimattnError(f"n_envs must be at least 1, got {n_envs}")
    if isinstance(seed, (list, tuple)) and len(seed) != n_envs:
        raise DimattnError(f"make_pool got {len(seed)} seeds for {n_envs} envs")
    options = protocol.current()  # the study's, or the run's protocol (envs/protocol.py)
    return _envpool().make(
        task_id(game), env_type="gymnasium", num_envs=n_envs, batch_size=n_envs, num_threads=num_threads,
        seed=[int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed),
        episodic_life=training and options["terminal_on_life_loss"], reward_clip=training, noop_max=noop_max,
        use_fire_reset=use_fire_reset, repeat_action_probability=options["repeat_action_probability"],
        full_action_space=options["full_action_space"],
        max_episode_steps=options["max_num_frames_per_episode"] // FRAME_SKIP, stack_num=4, frame_skip=FRAME_SKIP,
        img_height=84, img_width=84, gray_scale=True, use_inter_area_resize=True,
    )
