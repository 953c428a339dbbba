"""EnvPool (fast engine) vs Gymnasium + SB3 Atari wrappers (SB3 engine): same frames, same rewards.

Both sides play the same action sequence from a reset with exactly one no-op frame (random no-ops
disabled). The SB3 side is SB3's own wrappers in ``AtariWrapper``'s order; the one reset difference
(FIRE: 1 frame in EnvPool, FIRE + action 2 for 4 frames each in SB3) is taken out by switching
FIRE-at-reset off on both sides for Breakout and by also testing a game without FIRE in the fast
engine's exact configuration. Documented in docs/benchmarks.md and dimattn.envs.pool.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.atari_wrappers import (
    ClipRewardEnv,
    EpisodicLifeEnv,
    FireResetEnv,
    MaxAndSkipEnv,
    NoopResetEnv,
    WarpFrame,
)

from dimattn.envs.ale import _register
from dimattn.envs.pool import make_pool
from dimattn.games import v4_id

N_STEPS = 400


def sb3_env(game: str, training: bool, fire_reset: bool) -> gym.Env:
    """SB3's AtariWrapper chain (noop_max=1: exactly one no-op frame), without frame stacking."""
    _register()
    env = gym.make(v4_id(game), repeat_action_probability=0.0, full_action_space=False)
    env = MaxAndSkipEnv(NoopResetEnv(env, noop_max=1), skip=4)
    if training:
        env = EpisodicLifeEnv(env)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = WarpFrame(env, width=84, height=84)
    return ClipRewardEnv(env) if training else env


def play_both(game: str, training: bool, fire_reset: bool, seed: int = 0):
    """Frames (T, 84, 84), rewards (T,), dones (T,) of both sides, until the first episode end."""
    pool = make_pool(game, 1, seed=seed, training=training, noop_max=1, use_fire_reset=fire_reset)
    env = sb3_env(game, training, fire_reset)
    n_actions = int(pool.action_space.n)
    assert n_actions == env.action_space.n
    actions = np.random.default_rng(seed).integers(0, n_actions, N_STEPS)
    pool.async_reset()
    obs, *_ = pool.recv()
    frame, _ = env.reset(seed=seed)
    ours, theirs = [obs[0]], [frame[..., 0]]
    our_r, their_r, our_d, their_d = [], [], [], []
    for a in actions:
        pool.send(np.array([a], dtype=np.int32), np.array([0], dtype=np.int32))
        obs, r, term, trunc, _ = pool.recv()
        frame, r2, term2, trunc2, _ = env.step(int(a))
        ours.append(obs[0])
        theirs.append(frame[..., 0])
        our_r.append(float(r[0]))
        their_r.append(float(r2))
        our_d.append(bool(term[0] or trunc[0]))
        their_d.append(bool(term2 or trunc2))
        if our_d[-1] or their_d[-1]:
            break
    pool.close()
    env.close()
    return np.stack(ours), np.stack(theirs), np.array(our_r), np.array(their_r), np.array(our_d), np.array(their_d)


def check_same(ours, theirs, our_r, their_r, our_d, their_d):
    # ours: stacked (T+1, 4, 84, 84); the newest frame of each stack is the frame of that step
    assert ours.dtype == theirs.dtype == np.uint8
    assert ours.shape[1:] == (4, 84, 84) and theirs.shape[1:] == (84, 84)
    newest = ours[:, -1].astype(np.int16)
    diff = np.abs(newest - theirs.astype(np.int16))
    assert diff.mean() <= 1.0, f"mean |Δ| = {diff.mean():.3f} grey levels"
    # the stack holds the last 4 frames, oldest first (from the 4th step on; resets fill differently)
    for k in range(1, 4):
        lagged = np.abs(ours[3:, 3 - k].astype(np.int16) - theirs[3 - k:len(theirs) - k].astype(np.int16))
        assert lagged.mean() <= 1.0
    np.testing.assert_array_equal(our_r, their_r)
    np.testing.assert_array_equal(our_d, their_d)
    return diff


def test_breakout_whole_game_frames_rewards_and_game_over_match():
    """Evaluation semantics: whole game, raw rewards."""
    ours, theirs, *rest = play_both("Breakout", training=False, fire_reset=False)
    diff = check_same(ours, theirs, *rest)
    assert len(theirs) > 100 and rest[1].sum() > 0  # the sequence scored points: rewards were compared
    assert np.quantile(diff, 0.999) <= 1  # any difference is a rounding of the grey level


def test_breakout_training_episode_ends_at_life_loss_with_clipped_rewards():
    ours, theirs, our_r, their_r, our_d, their_d = play_both("Breakout", training=True, fire_reset=False, seed=1)
    check_same(ours, theirs, our_r, their_r, our_d, their_d)
    assert our_d[-1] and their_d[-1]  # the life loss ended the episode on both sides at the same step
    assert set(np.unique(our_r)) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("game", ["MsPacman"])
def test_fast_engine_configuration_on_a_game_without_fire(game):
    """The fast engine's exact settings (FIRE reset on) where FIRE reset does not apply."""
    ours, theirs, *rest = play_both(game, training=True, fire_reset=True)
    check_same(ours, theirs, *rest)
    assert rest[1].sum() > 0


def test_evaluation_on_reused_envs_plays_the_games_of_fresh_envs():
    """A trainer builds its evaluation envs once and reseeds them: the same games as envs made anew."""
    import numpy as np

    from dimattn.envs.ale import evaluate, evaluation_envs

    def act(obs):  # a deterministic policy of the screen: (K, E, 4, 84, 84) -> (K, E)
        return (obs.reshape(*obs.shape[:2], -1).sum(-1) // 7) % 4

    seeds = [[5, 6], [7, 8]]
    fresh = evaluate(act, "Breakout", seeds)
    envs = evaluation_envs("Breakout", 4)
    try:
        evaluate(act, "Breakout", [[1, 2], [3, 4]], envs)  # other games first, on the same envs
        reused = evaluate(act, "Breakout", seeds, envs)
    finally:
        for env in envs:
            env.close()
    for (s1, l1), (s2, l2) in zip(fresh, reused):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(l1, l2)
    assert len({int(x) for _, lengths in fresh for x in lengths}) > 1  # the games differ
