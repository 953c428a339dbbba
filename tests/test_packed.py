"""Packed runs (dimattn.engines.learners): one vmapped update equals K separate updates, member by member."""

from __future__ import annotations

import copy
import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch

from dimattn.agents.networks import ActorCritic
from dimattn.engines.config import build_config
from dimattn.engines.learners import VmappedLearner
from dimattn.engines.ppo import gae, update
from dimattn.engines.rollout import Rollout
from dimattn.engines.speed import DEFAULT_SPEED

# 2 epochs x 2 minibatches of 32 per member: Adam's state carries over, the clip is active. (A third epoch
# at this clip makes single samples sit on the clip's edge, where float rounding decides their gradient.)
T, N, B, E, K, A = 16, 4, 32, 2, 3, 4
LR, CLIP = 1e-3, 0.02  # large enough steps that the clip is active
SEEDS = [3, 11, 5]


def _args(agent: str):
    return build_config("Breakout", agent=agent, hyperparams={"n_epochs": E, "batch_size": B, "ent_coef": 0.01,
                                                             "vf_coef": 1.0, "max_grad_norm": 0.5}).resolve()


def _rollouts(nets: list[ActorCritic], seed: int = 1) -> Rollout:
    """A (T, K, N) rollout whose actions, log-probs and values come from each member's own network, with
    EnvPool reset steps (done) sprinkled in, so the per-member masks are exercised."""
    g = torch.Generator().manual_seed(seed)
    buf = Rollout.empty(T, N, members=K)
    buf.obs[:] = torch.randint(0, 256, buf.obs.shape, generator=g, dtype=torch.uint8)
    buf.rewards[:] = torch.randint(-1, 2, (T, K, N), generator=g).float()
    buf.done[:] = torch.rand(T, K, N, generator=g) < 0.1
    buf.done[:, 2, :] |= torch.rand(T, N, generator=g) < 0.5  # member 2 has many reset steps
    buf.trunc[:] = buf.done & (torch.rand(T, K, N, generator=g) < 0.3)
    with torch.no_grad():
        for k, net in enumerate(nets):
            for t in range(T):
                logits, values = net(buf.obs[t, k])
                probs = torch.softmax(logits, -1)
                buf.actions[t, k] = torch.multinomial(probs, 1, generator=g)[:, 0]
                buf.logprobs[t, k] = torch.log(probs.gather(-1, buf.actions[t, k][:, None]))[:, 0]
                buf.values[t, k] = values
            buf.last_value[k] = net(buf.obs[-1, k])[1]
    return buf


def _alone(nets: list[ActorCritic], buf: Rollout, args) -> tuple[list, list, list[dict]]:
    """The reference: each member trained alone by ppo.update, NumPy's global RNG seeded with its seed."""
    nets = [copy.deepcopy(n) for n in nets]
    opts = [torch.optim.Adam(n.parameters(), lr=LR, eps=1e-5) for n in nets]
    stats = []
    for k, (net, opt) in enumerate(zip(nets, opts)):
        run = buf.member(k)
        adv = gae(run.rewards, run.values, run.done, run.trunc, run.last_value, run.last_done, run.last_trunc,
                  0.99, 0.95)
        np.random.seed(SEEDS[k])
        stats.append(update(net, opt, run, adv, args, CLIP, DEFAULT_SPEED))
    return nets, opts, stats


def _packed(nets: list[ActorCritic], buf: Rollout, args) -> tuple[VmappedLearner, list]:
    rngs = [np.random.RandomState(s) for s in SEEDS]
    pack = VmappedLearner(nets, "cpu", args, rngs)  # vmapped, as on a GPU
    adv = gae(buf.rewards, buf.values, buf.done, buf.trunc, buf.last_value, buf.last_done, buf.last_trunc,
              0.99, 0.95)
    stats = pack.update(buf, adv, LR, CLIP)
    return pack, stats


@pytest.mark.parametrize("agent", ["NA", "CWCA"])
def test_packed_update_is_k_separate_updates(agent):
    torch.manual_seed(0)
    nets = [ActorCritic(A, agent) for _ in range(K)]
    args = _args(agent)
    buf = _rollouts(nets)
    alone, opts, want = _alone(nets, buf, args)
    pack, got = _packed(nets, buf, args)
    for k in range(K):
        for key in ("pg", "value", "entropy", "kl", "clipfrac", "loss", "explained_variance"):
            assert getattr(got[k], key) == pytest.approx(getattr(want[k], key), rel=1e-4, abs=1e-6), (k, key)
        for name, p in alone[k].named_parameters():
            # vmapped convolutions sum in another order: gradients agree to ~1e-6 of their size. Adam divides
            # by sqrt(v) + eps, so where a gradient is tiny that rounding moves a weight by a larger share of
            # its step (seen with 1 torch thread: 1.7e-6 on one conv1 weight of 4,096, its step 2.6e-5);
            # weights therefore agree to 1e-4 of their size or 0.5% of one Adam step (LR), whichever is more.
            torch.testing.assert_close(pack.params[name][k], p.detach(), rtol=1e-4, atol=5e-3 * LR,
                                       msg=f"{k} {name}")
            state = opts[k].state[p]
            torch.testing.assert_close(pack.exp_avg[name][k], state["exp_avg"], rtol=1e-3, atol=1e-5)
            torch.testing.assert_close(pack.exp_avg_sq[name][k], state["exp_avg_sq"], rtol=1e-3, atol=1e-9)
            assert float(pack.adam_steps[k]) == float(state["step"])
        moved = max(float((p.detach() - nets[k].state_dict()[n]).abs().max()) for n, p in alone[k].named_parameters())
        assert moved > 1e-3  # the tolerance above is small beside how far the weights moved
    assert want[0].clipfrac > 0  # the clip was active
    assert float(pack.adam_steps[0]) == E * (T * N // B)


def test_changing_one_members_data_changes_only_that_member():
    torch.manual_seed(0)
    nets = [ActorCritic(A, "CWCA") for _ in range(K)]
    args = _args("CWCA")
    buf = _rollouts(nets)
    base, _ = _packed(nets, buf, args)
    buf.rewards[:, 1] += 1.0  # member 1 only
    changed, _ = _packed(nets, buf, args)
    for name in base.params:
        assert torch.equal(base.params[name][0], changed.params[name][0])
        assert torch.equal(base.params[name][2], changed.params[name][2])
    assert any(not torch.equal(base.params[n][1], changed.params[n][1]) for n in base.params)


def test_members_move_in_and_out_of_a_pack():
    """export then load gives the member back: what a pack saves is the run's own checkpoint state."""
    torch.manual_seed(0)
    nets = [ActorCritic(A, "SWA") for _ in range(K)]
    pack, _ = _packed(nets, _rollouts(nets), _args("SWA"))
    solo = ActorCritic(A, "SWA")
    opt = torch.optim.Adam(solo.parameters(), lr=LR, eps=1e-5)
    pack.export(1, solo, opt)
    other = VmappedLearner([ActorCritic(A, "SWA") for _ in range(K)], "cpu", _args("SWA"), [np.random] * K)
    other.load(2, solo, opt)
    for name in pack.params:
        assert torch.equal(other.params[name][2], pack.params[name][1])
        assert torch.equal(other.exp_avg_sq[name][2], pack.exp_avg_sq[name][1])
    assert float(other.adam_steps[2]) == float(pack.adam_steps[1])
    logits, values = other(torch.zeros(K, 2, 4, 84, 84, dtype=torch.uint8))
    torch.testing.assert_close(logits[2], solo(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))[0])


# ------------------------------------------------------------------ a pack trained end to end
TINY = {"n_envs": 4, "n_steps": 32, "batch_size": 64}


def _tiny(seed: int, n_timesteps: int = 512, **over):
    return build_config("Breakout", agent="CWCA", seed=seed, n_timesteps=n_timesteps, engine="fast", eval_freq=256,
                        eval_episodes=1, save_freq=256, hyperparams={**TINY, **over})


@pytest.fixture(scope="module")
def pack_run(tmp_path_factory):
    from dimattn.engines.train import train_pack

    root = tmp_path_factory.mktemp("pack")
    dirs = [root / "seed0", root / "seed1"]
    finals = train_pack([_tiny(0), _tiny(1)], dirs, tensorboard_log=str(root / "tb"))
    return root, dirs, finals


def test_a_pack_leaves_each_run_as_if_trained_alone(pack_run):
    from stable_baselines3 import PPO
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dimattn.agents.checkpoints import load_agent
    from dimattn.engines.rundir import EvalHistory, checkpoints, read_config

    root, dirs, finals = pack_run
    weights = []
    for seed, run_dir, final in zip((0, 1), dirs, finals):
        assert read_config(run_dir).seed == seed and read_config(run_dir).engine == "fast"
        assert [s for s, _ in checkpoints(run_dir)] == [256, 512]
        assert EvalHistory.load(run_dir).timesteps == [256, 512]
        assert (run_dir / "best_model.zip").is_file() and final == run_dir / "BreakoutNoFrameskip-v4.zip"
        agent = load_agent(final)
        assert json.loads(zipfile.ZipFile(final).read("dimattn.json"))["seed"] == seed
        assert agent.meta["num_timesteps"] == 512
        PPO.load(final, device="cpu")
        weights.append(agent.state_dict()["action_net.weight"])
        (events,) = (root / "tb" / "BreakoutNoFrameskip-v4" / f"{run_dir.name}_1").iterdir()
        acc = EventAccumulator(str(events))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/approx_kl")] == [128, 256, 384, 512]
    assert not torch.equal(weights[0], weights[1])  # two runs, not one run twice


def test_a_pack_resumes_members_stopped_at_different_checkpoints(pack_run, tmp_path, capsys):
    import shutil

    from dimattn.engines.rundir import EvalHistory
    from dimattn.engines.train import train_pack

    _, dirs, _ = pack_run
    copies = [tmp_path / d.name for d in dirs]
    for d, c in zip(dirs, copies):
        shutil.copytree(d, c)
        (c / "BreakoutNoFrameskip-v4.zip").unlink()
    (copies[1] / "rl_model_512_steps.zip").unlink()  # killed while saving: member 1 is one save behind
    train_pack([_tiny(0, 768), _tiny(1, 768)], copies)
    out = capsys.readouterr().out
    assert "trained as a pack of their own" in out
    for c in copies:
        assert EvalHistory.load(c).timesteps == [256, 512, 768]  # continuous, nothing lost or doubled


def test_a_pack_of_different_runs_is_refused_before_anything_is_written(tmp_path):
    from dimattn.engines.train import train_pack
    from dimattn.errors import DimattnError

    other = build_config("Pong", agent="CWCA", seed=1, engine="fast", hyperparams=TINY)
    with pytest.raises(DimattnError, match="differ only in their seeds"):
        train_pack([_tiny(0), other], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DimattnError, match="different seeds"):
        train_pack([_tiny(0), _tiny(0)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DimattnError, match="needs 2 TensorBoard folders, got 1"):  # one per run, or one for all
        train_pack([_tiny(0), _tiny(1)], [tmp_path / "a", tmp_path / "b"], tensorboard_log=[str(tmp_path / "tb")])
    assert not any(tmp_path.iterdir())


def _final_weights(path) -> dict[str, torch.Tensor]:
    from dimattn.agents.checkpoints import load_agent

    return load_agent(path).state_dict()


@pytest.mark.parametrize("agent", ["NA", "CWCA"])
def test_a_member_of_a_pack_on_the_cpu_learns_what_it_would_alone(tmp_path, agent):
    """On the CPU a pack's members act and learn in threads; each one's weights after two updates are the
    run alone's (same envs, initial weights, action draws and minibatches; one torch thread in both)."""
    from dimattn.engines.speed import Speed
    from dimattn.engines.train import train_pack

    def cfg(seed):
        return build_config("Breakout", agent=agent, seed=seed, n_timesteps=256, engine="fast", eval_freq=0,
                            save_freq=0, hyperparams=TINY)

    one = dataclasses.asdict(Speed(torch_threads=1))
    threads = torch.get_num_threads()
    (alone,) = train_pack([cfg(1)], [tmp_path / "alone"], speed=one)
    assert torch.get_num_threads() == threads  # the caller's torch is left as it was
    finals = train_pack([cfg(0), cfg(1)], [tmp_path / "p0", tmp_path / "p1"], speed=one)
    again = train_pack([cfg(0), cfg(1)], [tmp_path / "q0", tmp_path / "q1"], speed=one)
    want, got = _final_weights(alone), _final_weights(finals[1])
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
        assert torch.equal(_final_weights(again[0])[name], _final_weights(finals[0])[name])  # reproducible
    assert not torch.equal(_final_weights(finals[0])["action_net.weight"], got["action_net.weight"])


def test_a_vmapped_pack_on_the_cpu_trains_end_to_end(tmp_path):
    """The accelerators' form of a pack (one vmapped network), run on the CPU: files as alone, resumable."""
    from dimattn.engines.rundir import EvalHistory, checkpoints
    from dimattn.engines.speed import Speed
    from dimattn.engines.train import train_pack

    dirs = [tmp_path / "a", tmp_path / "b"]
    speed = dataclasses.asdict(Speed(torch_threads=1, vmap=True))
    train_pack([_tiny(0, 256), _tiny(1, 256)], dirs, speed=speed)
    finals = train_pack([_tiny(0, 512), _tiny(1, 512)], dirs, speed=speed)  # resumes at 256
    for d in dirs:
        assert [s for s, _ in checkpoints(d)] == [256, 512]
        assert EvalHistory.load(d).timesteps == [256, 512]
    assert not torch.equal(_final_weights(finals[0])["action_net.weight"],
                           _final_weights(finals[1])["action_net.weight"])
