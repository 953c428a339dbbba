"""The fast engine (dimattn.engines.fast): a tiny real run on EnvPool Breakout, resume, GAE, bad input."""

from __future__ import annotations

import dataclasses
import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dimattn.agents.checkpoints import load_agent
from dimattn.agents.networks import ActorCritic
from dimattn.engines.common import STATE_ENTRY
from dimattn.engines.config import build_config
from dimattn.engines.members import restore
from dimattn.engines.ppo import gae
from dimattn.engines.rundir import EvalHistory
from dimattn.engines.train import train
from dimattn.errors import DimattnError

# 4 envs x 32 steps = rollouts of 128; 2 minibatches of 64; 3 epochs -> 6 optimiser steps per rollout.
TINY = {"n_envs": 4, "n_steps": 32, "batch_size": 64}
STEPS, FREQ = 512, 256


def tiny_config(n_timesteps: int = STEPS, agent: str = "CWCA", **hp):
    return build_config("Breakout", agent=agent, seed=3, n_timesteps=n_timesteps, engine="fast",
                        eval_freq=FREQ, eval_episodes=1, save_freq=FREQ, hyperparams={**TINY, **hp})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    run_dir, tb = root / "run", root / "tb"
    final = train(tiny_config(), run_dir, tensorboard_log=str(tb))
    return run_dir, tb, final


def test_tiny_run_writes_the_sb3_engines_outputs(tiny_run):
    run_dir, _, final = tiny_run
    assert final == run_dir / "BreakoutNoFrameskip-v4.zip"
    names = {p.name for p in run_dir.iterdir()}
    assert {"evaluations.npz", "best_model.zip", "rl_model_256_steps.zip", "rl_model_512_steps.zip",
            final.name} <= names
    with np.load(run_dir / "evaluations.npz") as f:
        assert f["timesteps"].tolist() == [256, 512]
        assert f["results"].shape == (2, 1) and f["ep_lengths"].shape == (2, 1)
        assert (f["ep_lengths"] > 0).all()  # whole games were played


def test_checkpoints_load_with_load_agent_and_sb3(tiny_run):
    run_dir, _, final = tiny_run
    agent = load_agent(final)
    assert agent.agent == "CWCA"
    assert agent.meta["engine"] == "fast" and agent.meta["num_timesteps"] == STEPS
    from stable_baselines3 import PPO

    model = PPO.load(final, device="cpu")
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        logits, value = agent(obs)
        dist = model.policy.get_distribution(model.policy.obs_to_tensor(obs.numpy())[0])
        sb3_value = model.policy.predict_values(model.policy.obs_to_tensor(obs.numpy())[0])
    torch.testing.assert_close(dist.distribution.logits, torch.log_softmax(logits, -1))
    torch.testing.assert_close(sb3_value.squeeze(-1), value)
    assert model.num_timesteps == STEPS


def test_checkpoint_holds_the_training_state(tiny_run):
    run_dir, _, _ = tiny_run
    policy = ActorCritic(4, "CWCA")
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, eps=1e-5)
    steps, n_updates = restore(run_dir / "rl_model_256_steps.zip", policy, optimizer)
    assert (steps, n_updates) == (256, 6)  # 2 rollouts x 3 epochs
    adam_steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    assert adam_steps == {12}  # 2 rollouts x 3 epochs x 2 minibatches
    with zipfile.ZipFile(run_dir / "rl_model_256_steps.zip") as zf:
        assert not any(n.endswith(".pth") and n not in ("policy.pth", "policy.optimizer.pth", "pytorch_variables.pth")
                       for n in zf.namelist())
        state = torch.load(io.BytesIO(zf.read(STATE_ENTRY)), weights_only=True)
    assert int(state["num_timesteps"]) == 256


def test_tensorboard_has_sb3_scalar_names_and_linear_schedules(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, tb, _ = tiny_run
    (events_dir,) = (tb / "BreakoutNoFrameskip-v4").iterdir()
    assert events_dir.name == "run_1"
    acc = EventAccumulator(str(events_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/value_loss", "train/policy_gradient_loss", "train/entropy_loss", "train/approx_kl",
            "train/clip_fraction", "train/learning_rate", "train/clip_range", "time/fps", "train/loss",
            "train/explained_variance",
            "eval/mean_reward"} <= tags
    lr = [(e.step, e.value) for e in acc.Scalars("train/learning_rate")]
    clip = [(e.step, e.value) for e in acc.Scalars("train/clip_range")]
    assert [s for s, _ in lr] == [128, 256, 384, 512]
    # SB3's progress: measured after each rollout, lin_x decays x -> 0 over n_timesteps.
    np.testing.assert_allclose([v for _, v in lr], [2.5e-4 * (1 - s / STEPS) for s, _ in lr], rtol=1e-5)
    np.testing.assert_allclose([v for _, v in clip], [0.1 * (1 - s / STEPS) for s, _ in clip], rtol=1e-5)


def test_resume_continues_from_the_latest_checkpoint(tiny_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    for name in ("rl_model_512_steps.zip", "BreakoutNoFrameskip-v4.zip"):  # as if killed after 256 steps
        (run_dir / name).unlink()
    final = train(tiny_config(n_timesteps=768), run_dir)
    assert "resuming" in capsys.readouterr().out
    history = EvalHistory.load(run_dir)
    assert history.timesteps == [256, 512, 768]  # the old 512 evaluation was replaced, not kept
    assert load_agent(final).meta["num_timesteps"] == 768
    policy = ActorCritic(4, "CWCA")
    optimizer = torch.optim.Adam(policy.parameters(), eps=1e-5)
    assert restore(final, policy, optimizer) == (768, 18)  # the update count went on from 6


def _gae_direct(rewards, values, done, trunc, last_value, last_done, last_trunc, gamma, lam):
    """A_t = sum_k (γλ)^k δ_{t+k}, summed until the episode ends, written out per env and step."""
    T, N = rewards.shape
    v_next = np.vstack([values[1:], last_value[None]])
    d_next = np.vstack([done[1:], last_done[None]])
    tr_next = np.vstack([trunc[1:], last_trunc[None]])
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                r = rewards[k, n] + (gamma * v_next[k, n] if tr_next[k, n] else 0.0)
                delta = r + gamma * v_next[k, n] * (not d_next[k, n]) - values[k, n]
                total += discount * delta
                if d_next[k, n]:
                    break
                discount *= gamma * lam
            adv[t, n] = total
    return adv


def test_gae_matches_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    T, N = 12, 3
    rewards, values = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    done = torch.rand(T, N, generator=g) < 0.2
    trunc = done & (torch.rand(T, N, generator=g) < 0.5)
    last_value = torch.randn(N, generator=g)
    last_done, last_trunc = torch.tensor([False, True, True]), torch.tensor([False, False, True])
    got = gae(rewards, values, done, trunc, last_value, last_done, last_trunc, 0.99, 0.95)
    want = _gae_direct(*(x.numpy() for x in (rewards, values, done, trunc, last_value, last_done, last_trunc)),
                       0.99, 0.95)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    # without any episode end, GAE(λ=1) is the discounted return to the bootstrap value minus V
    no = torch.zeros(T, N, dtype=torch.bool)
    adv = gae(rewards, values, no, no, last_value, no[0], no[0], 0.9, 1.0)
    ret = last_value.clone()
    for t in reversed(range(T)):
        ret = rewards[t] + 0.9 * ret
        torch.testing.assert_close(adv[t] + values[t], ret)


def test_missing_envpool_names_the_sb3_engine(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool -> ImportError
    with pytest.raises(DimattnError, match="--engine sb3"):
        train(tiny_config(), tmp_path)


@pytest.mark.parametrize("hp", [{"target_kl": 0.01}, {"clip_range_vf": 0.2}, {"normalize_advantage": False},
                                {"policy_kwargs": {"ortho_init": False}}])
def test_sb3_only_options_are_refused(tmp_path, hp):
    with pytest.raises(DimattnError, match="--engine sb3"):
        train(tiny_config(**hp), tmp_path)
    assert not any(Path(tmp_path).iterdir())  # refused before anything was written


LR, CLIP = 1e-3, 0.02  # large enough steps that the clip is active


def _sb3_ppo(n_envs: int, n_steps: int, batch_size: int, n_epochs: int, agent: str):
    """SB3's PPO (the reference learner) on stand-in spaces, with the study's network and SPEC §4 losses."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dimattn.agents.networks import observation_space as obs_space
    from dimattn.engines.config import resolve_policy_kwargs

    class Spaces(gym.Env):
        observation_space = obs_space()
        action_space = gym.spaces.Discrete(4)

    kwargs = {"features_extractor_class": "SelfAttnCNNPPO", "features_extractor_kwargs": {"self_attn": agent},
              "net_arch": []}
    return PPO("CnnPolicy", DummyVecEnv([Spaces] * n_envs), n_steps=n_steps, batch_size=batch_size,
               n_epochs=n_epochs, learning_rate=LR, clip_range=CLIP, ent_coef=0.01, vf_coef=1.0,
               max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95, policy_kwargs=resolve_policy_kwargs(kwargs),
               device="cpu", seed=0)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                    reason="torch sees no CUDA GPU (run on a GPU machine)"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("agent", ["NA", "CWCA"])
def test_update_is_sb3_ppo_train(agent, device):
    """Same weights, same rollout, same minibatch draws: our GAE and PPO update give SB3's advantages,
    statistics and parameters (3 epochs x 2 minibatches, so Adam's state and the clip are exercised).
    On CUDA our update runs on the GPU with the engine's fused Adam (SB3 on the CPU is the reference);
    TF32 is switched off there, since it rounds matmuls to 10 bits by design."""
    from dimattn.engines.ppo import update
    from dimattn.engines.rollout import Rollout
    from dimattn.engines.speed import DEFAULT_SPEED

    T, N, B, E = 16, 4, 32, 3
    tol = {"rtol": 1e-4, "atol": 1e-6} if device == "cpu" else {"rtol": 2e-3, "atol": 2e-5}
    sb3 = _sb3_ppo(N, T, B, E, agent)
    ours = ActorCritic(4, agent)
    ours.load_state_dict({k: v for k, v in sb3.policy.state_dict().items() if not k.startswith(("pi_", "vf_"))})

    g = torch.Generator().manual_seed(1)
    buf = Rollout.empty(T, N)
    buf.obs[:] = torch.randint(0, 256, buf.obs.shape, generator=g, dtype=torch.uint8)
    buf.rewards[:] = torch.randint(-1, 2, (T, N), generator=g).float()
    with torch.no_grad():
        for t in range(T):
            logits, values = ours(buf.obs[t])
            dist = torch.distributions.Categorical(logits=logits)
            buf.actions[t] = torch.multinomial(dist.probs, 1, generator=g)[:, 0]
            buf.logprobs[t], buf.values[t] = dist.log_prob(buf.actions[t]), values
        buf.last_value[:] = ours(buf.obs[-1])[1]  # any bootstrap value
    for t in range(T):
        sb3.rollout_buffer.add(buf.obs[t].numpy(), buf.actions[t, :, None].numpy(), buf.rewards[t].numpy(),
                               np.zeros(N, dtype=bool), buf.values[t], buf.logprobs[t])
    sb3.rollout_buffer.compute_returns_and_advantage(buf.last_value, np.zeros(N, dtype=bool))
    advantages = gae(buf.rewards, buf.values, buf.done, buf.trunc, buf.last_value, buf.last_done,
                     buf.last_trunc, 0.99, 0.95)
    np.testing.assert_allclose(advantages.numpy(), sb3.rollout_buffer.advantages, rtol=1e-5, atol=1e-6)

    from stable_baselines3.common.logger import configure

    sb3.set_logger(configure(None, []))  # in-memory: read back below
    np.random.seed(7)
    sb3._current_progress_remaining = 1.0
    sb3.train()
    np.random.seed(7)
    args = build_config("Breakout", agent=agent, hyperparams={"n_epochs": E, "batch_size": B, "ent_coef": 0.01,
                                                              "vf_coef": 1.0, "max_grad_norm": 0.5}).resolve()
    ours.to(device)
    opt = torch.optim.Adam(ours.parameters(), lr=LR, eps=1e-5, fused=device == "cuda")  # as the engine makes it
    on = buf.to(device)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        stats = update(ours, opt, on, advantages.to(device), args, CLIP, DEFAULT_SPEED)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    logged = sb3.logger.name_to_value
    for ours_key, sb3_key in (("pg", "policy_gradient_loss"), ("value", "value_loss"), ("entropy", "entropy_loss"),
                              ("kl", "approx_kl"), ("clipfrac", "clip_fraction"), ("loss", "loss"),
                              ("explained_variance", "explained_variance")):
        want = logged[f"train/{sb3_key}"]
        assert getattr(stats, ours_key) == pytest.approx(want, rel=tol["rtol"], abs=1e-7), ours_key
    assert logged["train/clip_fraction"] > 0  # the clip was active, so it is tested too
    theirs = sb3.policy.state_dict()
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(value.cpu(), theirs[name], **tol, msg=name)


def test_gumbel_sampler_draws_from_the_policy():
    """The collect loop's sampler against the distribution it must draw from: 200,000 draws from each of
    three fixed policies; every action's frequency within 5 standard errors of its probability (a false
    alarm has probability < 1e-5 per action), and the returned log-probabilities are exactly log_softmax."""
    from dimattn.engines.acting import sample

    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, -3.0], [8.0, 0.0, 0.0, 7.5]])
    n = 200_000
    actions, logp = sample(logits.expand(n, 3, 4).contiguous())  # (n, 3)
    probs = torch.softmax(logits, -1)  # (3, 4)
    freq = torch.nn.functional.one_hot(actions, 4).float().mean(0)  # (3, 4)
    se = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() <= 5 * se + 1e-6).all(), (freq, probs)
    want = torch.log_softmax(logits, -1).expand(n, 3, 4).gather(-1, actions[..., None])[..., 0]  # (n, 3)
    torch.testing.assert_close(logp, want)
    # a wrong sampler (argmax, or uniform) fails the same check
    assert not ((torch.nn.functional.one_hot(logits.argmax(-1), 4).float() - probs).abs() <= 5 * se + 1e-6).all()


def test_auto_engine_is_fast_where_it_can_run_and_records_it(tmp_path):
    from dimattn.engines.rundir import read_config
    from dimattn.engines.train import train

    config = build_config("Breakout", agent="NA", seed=0, n_timesteps=256, eval_freq=0, save_freq=0,
                          hyperparams={**TINY, "batch_size": 64})
    assert config.engine == "auto"
    final = train(config, tmp_path / "run")
    assert read_config(tmp_path / "run").engine == "fast"
    assert load_agent(final).meta["engine"] == "fast"


@pytest.mark.parametrize("cause", ["no envpool", "target_kl"])
def test_auto_engine_falls_back_to_sb3_and_says_why(monkeypatch, capsys, cause):
    from dimattn.engines.train import prepare

    if cause == "no envpool":
        monkeypatch.setitem(sys.modules, "envpool", None)
        config = build_config("Breakout", agent="NA")
    else:
        config = build_config("Breakout", agent="NA", hyperparams={"target_kl": 0.01})
    assert prepare([config]).engine == "sb3"
    note = capsys.readouterr().out
    assert note.startswith("note: the fast engine cannot run this") and "using the SB3 engine" in note
    assert prepare([build_config("Breakout", engine="sb3")]).engine == "sb3"  # an explicit choice stays
    with pytest.raises(DimattnError, match="--engine sb3"):  # and an explicit fast is refused, not switched
        prepare([dataclasses.replace(config, engine="fast")])


def test_devices_are_resolved_or_refused():
    from dimattn.engines.config import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DimattnError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(DimattnError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_running_out_of_device_memory_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """A GPU that runs out of memory mid-run (simulated at the first update after a checkpoint): one
    DimattnError naming the run and the fix; the checkpoint on disk still loads and resumes."""
    from dimattn.engines.learners import NetworkLearner

    real, calls = NetworkLearner.update, []

    def update(*a, **kw):
        calls.append(1)
        if len(calls) == 3:  # 256 steps saved (2 rollouts of 128), then the memory runs out
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*a, **kw)

    monkeypatch.setattr(NetworkLearner, "update", update)
    with pytest.raises(DimattnError, match="ran out of memory.*last checkpoints are intact") as err:
        train(tiny_config(), tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    assert load_agent(tmp_path / "rl_model_256_steps.zip").meta["num_timesteps"] == 256
    monkeypatch.setattr(NetworkLearner, "update", real)
    train(tiny_config(), tmp_path)  # resumes from it
    assert EvalHistory.load(tmp_path).timesteps == [256, 512]
