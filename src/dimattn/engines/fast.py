"""The fast engine: our own PPO on EnvPool, with exactly the learner of SPEC §4.

Read top to bottom: configuration -> collect a rollout (EnvPool stepping overlapped with inference)
-> GAE -> PPO update -> logging, evaluation, checkpoints. The learner is SB3's PPO, written out:

- rollout of ``n_steps`` per env; GAE(γ, λ) with the value of the last observation as bootstrap, and
  ``γ·V(final obs)`` added to the reward of a step that was cut by the 108k-frame limit (SB3 does the same);
- ``n_epochs`` passes over the rollout in random minibatches of ``batch_size``; advantages normalised
  per minibatch; clipped surrogate with a linearly decaying clip range; unclipped value loss × vf_coef;
  entropy bonus × ent_coef; global grad-norm clip; Adam (eps 1e-5) with a linearly decaying LR.
  Both schedules use SB3's progress ``1 - steps/n_timesteps``, measured after each rollout;
- the network is :class:`dimattn.agents.networks.ActorCritic` (SB3's ``CnnPolicy`` with ``net_arch=[]``,
  same parameter names and orthogonal init).

One thing EnvPool adds: the step after an episode end only resets that env (its action is ignored,
reward 0). Those steps are not transitions of the game, so they are left out of the loss.

Outputs match the SB3 engine (:mod:`dimattn.engines.sb3`): ``evaluations.npz``, SB3 ``.zip`` checkpoints
(loadable by :func:`dimattn.agents.checkpoints.load_agent` and by SB3's ``PPO.load``), TensorBoard scalars under
SB3's names. Evaluation plays whole games with raw scores and the stochastic policy on the Gymnasium +
SB3 ``AtariWrapper`` env (:func:`dimattn.envs.ale.evaluate`), i.e. the very protocol of the SB3 engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dimattn.agents.checkpoints import read_checkpoint, save_sb3
from dimattn.agents.networks import OBS_SHAPE, ActorCritic
from dimattn.engines.common import (
    RNG_ENTRY,
    checkpoint_meta,
    eval_seeds,
    explained_variance,
    next_multiple,
    record_evaluation,
    resume_point,
    rng_state_bytes,
    sb3_ppo,
    set_rng_state_bytes,
)
from dimattn.engines.config import PPOArgs
from dimattn.engines.packed import Pack, packed_update
from dimattn.engines.progress import ProgressBar
from dimattn.engines.rundir import BEST_MODEL, EvalHistory, checkpoint_path, final_model_path
from dimattn.envs.ale import evaluate, evaluation_envs
from dimattn.envs.pool import FRAME_SKIP, make_pool, task_id
from dimattn.errors import DimattnError
from dimattn.host import usable_cores

STATE_ENTRY = "dimattn_fast_state.pt"  # not .pth: SB3 loads every .pth entry as parameters


@dataclass(frozen=True)
class Speed:
    """How the engine uses the machine; none of these changes what is learned (docs/benchmarks.md).

    ``groups``: the envs are split into this many EnvPools stepped in turn, so one group's emulators
    run while the network acts for the other (2 = overlap env stepping with inference).
    ``torch_threads``/``env_threads``: 0 = leave torch's as they are / one EnvPool thread per core
    shared out among the groups. ``collect_threads``: torch's threads while collecting and evaluating
    (0 = ``torch_threads``): acting is a small batch, and idle OpenMP threads spin on the cores the
    emulators need. ``channels_last``: NHWC tensors for the convolutions (fp32; with bf16 it makes the
    attention blocks 3× slower on the CPU: turn it off there). ``bf16``:
    bfloat16 autocast of the network's forward and backward (losses, log-probabilities and Adam stay
    float32). ``compile``: ``torch.compile`` (measured slower; it fails on the attention blocks in
    torch 2.13). ``cuda_graph``: replay the act step (forward + sampling) as a CUDA graph (a run alone).
    ``vmap``: a pack's K networks run as one vmapped network (:mod:`dimattn.engines.packed`), as on an
    accelerator; on the CPU the members otherwise act and learn each in its own thread, one torch thread
    each, which measured faster there (docs/benchmarks.md). The defaults for each device are
    :func:`default_speed`'s.
    """

    groups: int = 2
    torch_threads: int = 0
    env_threads: int = 1
    collect_threads: int = 0
    channels_last: bool = False
    bf16: bool = False  # +44% (NA), but its two parity seeds learned below the SB3 seeds: opt-in for now
    compile: bool = False
    cuda_graph: bool = False
    vmap: bool = False


#: The CPU defaults, measured on 2 cores (docs/benchmarks.md): torch keeps its threads for the update (a
#: lone run) and uses one while acting, each EnvPool one thread, so the emulators and the network share
#: the cores without spinning; channels-last convolutions (+16% for NA and CWCA, in the update).
DEFAULT_SPEED = Speed(collect_threads=1, channels_last=True)


def speed_overrides(items: Sequence[str]) -> dict[str, int | bool]:
    """``["bf16=true", "env_threads=4"]`` -> ``{"bf16": True, "env_threads": 4}``: :class:`Speed` fields to set
    on top of the device's defaults (``dimattn train --speed``). Parsed, never evaluated; DimattnError on an
    unknown field or a bad value."""
    fields = {f.name: f.type for f in dataclasses.fields(Speed)}
    out: dict[str, int | bool] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip().replace("-", "_"), value.strip().lower()
        if not sep or not name or not value:
            raise DimattnError(f"malformed --speed item {item!r}; write field=value, e.g. --speed bf16=true")
        if name not in fields:
            raise DimattnError(f"unknown --speed field {name!r}; the fields are {', '.join(fields)}")
        if fields[name] in (bool, "bool"):
            if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise DimattnError(f"--speed {name} takes true or false, got {value!r}")
            out[name] = value in ("true", "1", "yes", "on")
        else:
            if not value.isdigit():
                raise DimattnError(f"--speed {name} takes a whole number >= 0, got {value!r}")
            out[name] = int(value)
    if out.get("groups") == 0:
        raise DimattnError("--speed groups must be at least 1")
    return out


def default_speed(device: torch.device, members: int = 1) -> Speed:
    """The measured best :class:`Speed` for ``device`` and a pack of ``members`` runs (docs/benchmarks.md,
    CPU and GPU tables).

    On a GPU the network needs one CPU thread to launch its kernels; torch's default (one OpenMP thread
    per core) spins on the cores the emulators need and halves the speed. EnvPool gets the other cores.
    On the CPU a pack of K members is given K cores (a study's ``--pack K`` counts them so): the members
    work in threads of their own with one torch thread each, and the collect phase, bound by the
    emulators, gives each EnvPool K threads (the pools take turns), which measured faster than one
    (benchmarks/throughput.py --packed).
    """
    if device.type != "cpu":  # measured on an H100 node, docs/benchmarks.md: the CUDA graph gave +20%
        return Speed(groups=2, torch_threads=1, env_threads=0, cuda_graph=True, vmap=True)
    if members == 1:
        return DEFAULT_SPEED
    return dataclasses.replace(DEFAULT_SPEED, torch_threads=1, env_threads=min(members, usable_cores()))


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

def check_supported(args: PPOArgs) -> None:
    """Refuse, before anything is written, what the fast engine cannot run: no EnvPool, a game EnvPool
    lacks, or SB3 options outside SPEC §4's learner. Raises DimattnError naming ``--engine sb3``."""
    task_id(args.game)
    for key in ("clip_range_vf", "target_kl"):
        if getattr(args, key) is not None:
            raise DimattnError(f"the fast engine does not implement {key}; train with --engine sb3")
    if not args.normalize_advantage:
        raise DimattnError("the fast engine always normalises advantages; train with --engine sb3")
    pk = args.raw_policy_kwargs
    unknown = set(pk) - {"features_extractor_class", "features_extractor_kwargs", "net_arch", "activation_fn",
                         "share_features_extractor"}  # activation_fn acts on the MLP that net_arch=[] omits
    if unknown or pk.get("net_arch", []) not in ([], None) or pk.get("share_features_extractor", True) is False:
        bad = ", ".join(sorted(unknown)) or "net_arch/share_features_extractor"
        raise DimattnError(f"the fast engine builds the study's network only (net_arch=[], one shared extractor, "
                           f"SB3's init); policy_kwargs {bad} is not supported; train with --engine sb3")


def _groups(n_envs: int, speed: Speed) -> list[slice]:
    """Env index ranges of the EnvPools, e.g. 16 envs, 2 groups -> [0:8, 8:16] (1 group if uneven)."""
    g = speed.groups if n_envs % speed.groups == 0 else 1
    size = n_envs // g
    return [slice(i * size, (i + 1) * size) for i in range(g)]


def _memory_format(speed: Speed) -> torch.memory_format:
    return torch.channels_last if speed.channels_last else torch.contiguous_format


def linear_schedule(start: float, linear: bool, steps: int, total: int) -> float:
    """SB3/RL Zoo ``lin_<start>``: start·(1 - steps/total), with steps counted after the rollout."""
    return start * (1.0 - steps / total) if linear else start


# ----------------------------------------------------------------------------------------------
# Rollout
# ----------------------------------------------------------------------------------------------

@dataclass
class Rollout:
    """One rollout of K runs (a pack; K = 1 alone), T = n_steps, N = n_envs of each run.

    Shapes are (T, K, N) (or (T, N) without ``members``). ``done[t]``: obs[t] ended its episode
    (EnvPool resets that env at step t, so step t is no transition); ``trunc[t]``: that end was the
    time limit. What the network makes lives on its device; rewards and flags, born on the CPU, stay
    there during the rollout (:meth:`on` moves them once).
    """

    obs: torch.Tensor  # (T, K, N, 4, 84, 84) uint8, device
    actions: torch.Tensor  # (T, K, N) int64, device
    logprobs: torch.Tensor  # (T, K, N), device
    values: torch.Tensor  # (T, K, N), device
    rewards: torch.Tensor  # (T, K, N), clipped, reward of the step taken from obs[t]; host
    done: torch.Tensor  # (T, K, N) bool, host
    trunc: torch.Tensor  # (T, K, N) bool, host
    last_value: torch.Tensor  # (K, N) value of the obs after the rollout, device
    last_done: torch.Tensor  # (K, N) bool, host
    last_trunc: torch.Tensor  # (K, N) bool, host

    @classmethod
    def empty(cls, n_steps: int, n_envs: int, device: torch.device | str = "cpu",
              members: int | None = None) -> Rollout:
        lead = (n_steps, n_envs) if members is None else (n_steps, members, n_envs)
        pin = torch.device(device).type == "cuda"  # pinned host memory: copies to the GPU run asynchronously

        def dev(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        def host(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, pin_memory=pin)

        return cls(dev(*lead, *OBS_SHAPE, dtype=torch.uint8), dev(*lead, dtype=torch.int64), dev(*lead), dev(*lead),
                   host(*lead), host(*lead, dtype=torch.bool), host(*lead, dtype=torch.bool),
                   dev(*lead[1:]), host(*lead[1:], dtype=torch.bool), host(*lead[1:], dtype=torch.bool))

    def member(self, k: int) -> Rollout:
        """Run ``k``'s part, (T, N), everything on the network's device."""
        device = self.obs.device
        return Rollout(*(x[:, k] if x.dim() > 2 else x[k] for x in (
            self.obs, self.actions, self.logprobs, self.values)),
            *(x[:, k].to(device, non_blocking=True) for x in (self.rewards, self.done, self.trunc)),
            self.last_value[k], *(x[k].to(device, non_blocking=True) for x in (self.last_done, self.last_trunc)))


class Envs:
    """The training EnvPools of K runs and what the engine carries between rollouts: each env's
    current observation and done flags, and each run's finished games for ``rollout/ep_rew_mean``.

    Env j of run k is seeded ``seeds[k] + j``, as when the run trains alone. Group g's pool holds, for
    every run, its envs in slice g, run-major: pool index m = k * n_g + j'. ``obs[g]`` (K, n_g, 4, 84, 84)
    is that group's current observation in (pinned) host memory, uploaded once per step.
    """

    def __init__(self, game: str, seeds: list[int], n_envs: int, speed: Speed, pin: bool = False) -> None:
        self.slices = _groups(n_envs, speed)
        self.k, n_g = len(seeds), self.slices[0].stop - self.slices[0].start
        threads = speed.env_threads or max(1, (os.cpu_count() or 1) // len(self.slices))
        self.pools = [make_pool(game, self.k * n_g, [sk + j for sk in seeds for j in range(s.start, s.stop)],
                                training=True, num_threads=min(threads, self.k * n_g)) for s in self.slices]
        self.n_actions = int(self.pools[0].action_space.n)
        self.obs = [torch.zeros(self.k, n_g, *OBS_SHAPE, dtype=torch.uint8, pin_memory=pin) for _ in self.slices]
        self.done = np.zeros((self.k, n_envs), dtype=bool)
        self.trunc = np.zeros((self.k, n_envs), dtype=bool)
        self.game_score = np.zeros((self.k, n_envs))
        self.game_steps = np.zeros((self.k, n_envs), dtype=np.int64)
        self.finished: list[deque[tuple[float, int]]] = [deque(maxlen=100) for _ in seeds]  # (score, frames)
        for pool in self.pools:
            pool.async_reset()
        for g in range(len(self.pools)):
            self.receive(g)

    def receive(self, g: int) -> np.ndarray:
        """Wait for group ``g``'s step; update its obs and flags; return its rewards (K, n_g)."""
        obs, reward, terminated, truncated, info = self.pools[g].recv()
        order = np.argsort(info["env_id"])  # EnvPool may return envs in any order
        s, shape = self.slices[g], (self.k, -1)
        self.obs[g].numpy().reshape(-1, *OBS_SHAPE)[:] = obs[order]
        terminated, truncated = terminated[order].reshape(shape), truncated[order].reshape(shape)
        self.done[:, s] = terminated | truncated
        self.trunc[:, s] = truncated & ~terminated
        # A game ends at game over or time limit (a life loss only ends the training episode).
        self.game_score[:, s] += info["reward"][order].reshape(shape)
        self.game_steps[:, s] += 1
        ended = info["terminated"][order].reshape(shape).astype(bool) | truncated
        for k, j in zip(*np.nonzero(ended)):
            self.finished[k].append((float(self.game_score[k, s][j]), int(self.game_steps[k, s][j]) * FRAME_SKIP))
        self.game_score[:, s][ended] = 0.0
        self.game_steps[:, s][ended] = 0
        return reward[order].reshape(shape).astype(np.float32)

    def send(self, g: int, actions: np.ndarray) -> None:
        """Actions (K, n_g) for group ``g``."""
        self.pools[g].send(actions.reshape(-1).astype(np.int32), np.arange(actions.size, dtype=np.int32))

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw actions from Categorical(logits) by the Gumbel-max trick and return (actions, log-probs).

    argmax(logits + G) with G ~ Gumbel(0, 1) i.i.d. is distributed as softmax(logits): one uniform
    draw and a few element-wise kernels, no ``torch.distributions`` object per step
    (tests/test_ppo.py::test_gumbel_sampler_draws_from_the_policy). logits (..., A) -> (...,), (...,).
    ``generator``: the uniform draw's (default torch's global one).
    """
    logp = torch.log_softmax(logits.float(), -1)
    uniform = torch.rand(logp.shape, generator=generator, dtype=logp.dtype, device=logp.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(logp.dtype).tiny)))
    action = torch.argmax(logp + gumbel, -1)
    return action, logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)


Act = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def acting(act: Act, speed: Speed, generator: torch.Generator | None = None) -> Act:
    """The act step of :func:`collect`: obs (K, n, 4, 84, 84) uint8 -> (actions, log-probs, values),
    each (K, n), without gradients, under the engine's autocast; actions drawn with ``generator``."""

    def step(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad(), torch.autocast(obs.device.type, torch.bfloat16, enabled=speed.bf16):
            logits, value = act(obs)
        return (*sample(logits, generator), value.float())

    return step


def cuda_graphed(step: Callable, example: torch.Tensor) -> Callable:
    """``step`` replayed as a CUDA graph on a static copy of ``example``'s shape: one launch instead of
    one per kernel. The network's parameters are updated in place, so the graph keeps reading them."""
    static_in = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up outside the graph (cuDNN autotuning, lazy allocations)
            step(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step(static_in)

    def replay(obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        static_in.copy_(obs, non_blocking=True)
        graph.replay()
        return static_out

    return replay


def collect(envs: Envs, steps: list[Callable], buf: Rollout) -> None:
    """Fill ``buf`` (T, K, N) with one rollout. Group g's emulators step while the network acts for
    group g+1. Per group and step: one upload of the observations, one download of the actions."""
    n_steps, device = buf.obs.shape[0], buf.obs.device
    for t in range(n_steps + 1):
        for g, s in enumerate(envs.slices):
            if t > 0:  # the step sent at t-1 has come back
                buf.rewards[t - 1, :, s] = torch.from_numpy(envs.receive(g))
            obs = envs.obs[g].to(device, non_blocking=True)  # (K, n_g, 4, 84, 84)
            action, logp, value = steps[g](obs)
            if t == n_steps:  # the bootstrap value; the next rollout acts with the updated policy
                buf.last_value[:, s] = value
                buf.last_done[:, s] = torch.from_numpy(envs.done[:, s])
                buf.last_trunc[:, s] = torch.from_numpy(envs.trunc[:, s])
                continue
            envs.send(g, action.cpu().numpy())  # the one sync per group-step
            buf.obs[t, :, s] = obs
            buf.actions[t, :, s], buf.logprobs[t, :, s], buf.values[t, :, s] = action, logp, value
            buf.done[t, :, s] = torch.from_numpy(envs.done[:, s])
            buf.trunc[t, :, s] = torch.from_numpy(envs.trunc[:, s])


# ----------------------------------------------------------------------------------------------
# Advantages
# ----------------------------------------------------------------------------------------------

def gae(rewards: torch.Tensor, values: torch.Tensor, done: torch.Tensor, trunc: torch.Tensor,
        last_value: torch.Tensor, last_done: torch.Tensor, last_trunc: torch.Tensor,
        gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates (T, N).

    ``rewards[t]`` (T, N) is the reward of the step from obs[t]; ``done[t]``/``trunc[t]`` (T, N) say
    that obs[t] ended an episode (by the time limit, for ``trunc``), ``last_*`` (N,) the same for the
    observation after the rollout. A truncated episode is bootstrapped with γ·V(its final obs), as SB3 does.
    """
    next_values = torch.cat([values[1:], last_value[None]])  # (T, N): V(obs[t+1])
    next_done = torch.cat([done[1:], last_done[None]]).float()  # (T, N)
    next_trunc = torch.cat([trunc[1:], last_trunc[None]]).float()
    rewards = rewards + gamma * next_values * next_trunc
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        alive = 1.0 - next_done[t]
        delta = rewards[t] + gamma * next_values[t] * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages


# ----------------------------------------------------------------------------------------------
# Update
# ----------------------------------------------------------------------------------------------

def minibatches(n_steps: int, n_envs: int, batch_size: int, is_transition: np.ndarray,
                rng: Any = np.random) -> list[torch.Tensor]:
    """One epoch's minibatches: index tensors into the step-major (T*N) rollout, drawn as SB3 draws them.

    SB3's RolloutBuffer permutes its env-major (N*T) order (index i is env i // T, step i % T) with
    NumPy's global RNG; drawing the same way makes runs comparable step by step (tests/test_ppo.py).
    EnvPool's reset steps (``is_transition`` False, (T*N,)) are left out here, on the host, once per
    epoch, so the update needs no data-dependent indexing on the device. Minibatches of fewer than two
    transitions are dropped (advantages could not be normalised).
    """
    n = n_steps * n_envs
    order = rng.permutation(n)
    order = (order % n_steps) * n_envs + order // n_steps  # env-major -> our step-major index
    out = []
    for start in range(0, n, batch_size):
        mb = order[start:start + batch_size]
        mb = mb[is_transition[mb]]
        if len(mb) >= 2:
            out.append(torch.from_numpy(mb))
    return out


def update(policy: nn.Module, optimizer: torch.optim.Optimizer, buf: Rollout, advantages: torch.Tensor,
           args: PPOArgs, clip: float, speed: Speed, rng: Any = np.random) -> dict[str, float]:
    """``n_epochs`` PPO passes over the rollout ((T, N) tensors on the network's device); returns SB3's
    ``train/*`` statistics (means over all minibatches; the approximate KL over the last epoch's, as
    SB3 logs it). Statistics are summed on the device and read once, so no minibatch waits for the host."""
    n_steps, n_envs = buf.actions.shape
    device = buf.obs.device
    obs = buf.obs.flatten(0, 1)  # (T*N, 4, 84, 84)
    actions, old_logp = buf.actions.flatten(), buf.logprobs.flatten()  # (T*N,)
    returns = (advantages + buf.values).flatten()
    advantages = advantages.flatten()
    is_transition = ~buf.done.flatten().cpu().numpy()  # see the module docstring: EnvPool's reset steps
    sums = torch.zeros(5, device=device)  # pg, value, entropy, clipfrac, kl (last epoch) summed over minibatches
    count = last_count = 0
    loss = torch.full((), float("nan"), device=device)
    for epoch in range(args.n_epochs):
        batches = minibatches(n_steps, n_envs, args.batch_size, is_transition, rng)
        if epoch == args.n_epochs - 1:
            sums[4] = 0  # SB3 logs the approximate KL of the last epoch only
            last_count = len(batches)
        for mb in (b.to(device, non_blocking=True) for b in batches):
            x = obs[mb].contiguous(memory_format=_memory_format(speed))  # (B, 4, 84, 84)
            with torch.autocast(x.device.type, torch.bfloat16, enabled=speed.bf16):
                logits, values = policy(x)
            logp_all = torch.log_softmax(logits.float(), -1)  # (B, A)
            logp = logp_all.gather(-1, actions[mb].unsqueeze(-1)).squeeze(-1)
            adv = advantages[mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            ratio = torch.exp(logp - old_logp[mb])
            pg_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            value_loss = nn.functional.mse_loss(returns[mb], values.float())
            entropy_loss = (logp_all.exp() * logp_all).sum(-1).mean()  # -entropy
            loss = pg_loss + args.ent_coef * entropy_loss + args.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = logp - old_logp[mb]
                sums += torch.stack([pg_loss, value_loss, entropy_loss, ((ratio - 1).abs() > clip).float().mean(),
                                     ((ratio - 1) - log_ratio).mean()]).detach()
            count += 1
    means = (sums / torch.tensor([count] * 4 + [last_count], device=device)).tolist()  # the one sync
    out = dict(zip(("pg", "value", "entropy", "clipfrac", "kl"), means))
    out["loss"] = float(loss.detach())  # SB3 logs the last minibatch's total loss
    keep = torch.from_numpy(is_transition).to(device)
    out["explained_variance"] = explained_variance(buf.values.flatten()[keep], returns[keep])
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints: SB3 zips with the full training state
# ----------------------------------------------------------------------------------------------

def _state_bytes(steps: int, n_updates: int) -> bytes:
    buf = io.BytesIO()
    torch.save({"num_timesteps": torch.tensor(steps), "n_updates": torch.tensor(n_updates)}, buf)
    return buf.getvalue()


class Saver:
    """Writes SB3 zips of the fast engine's policy, optimiser, step count and RNG states."""

    def __init__(self, args: PPOArgs, policy: ActorCritic, optimizer: torch.optim.Optimizer) -> None:
        self.args, self.policy, self.optimizer = args, policy, optimizer
        self.model = sb3_ppo(args, n_actions=policy.config["n_actions"])

    def save(self, path: Path, steps: int, n_updates: int, numpy_state: tuple | None = None,
             torch_state: torch.Tensor | None = None) -> Path:
        """``numpy_state``/``torch_state``: the run's RNG states where they are not the global ones (a
        pack member's)."""
        ours = self.policy.state_dict()
        theirs = {k: ours[re.sub(r"^(pi_|vf_)features_extractor\.", "features_extractor.", k)]
                  for k in self.model.policy.state_dict()}  # SB3 aliases the shared extractor
        self.model.policy.load_state_dict(theirs)
        # SB3's optimiser holds the policy's parameters in our order, so the state transfers as is.
        self.model.policy.optimizer.load_state_dict(self.optimizer.state_dict())
        self.model.num_timesteps = steps
        meta = checkpoint_meta(self.args, steps)
        extra = {RNG_ENTRY: rng_state_bytes(numpy_state, torch_state), STATE_ENTRY: _state_bytes(steps, n_updates)}
        return save_sb3(self.model, path, meta, extra=extra)


def restore(path: Path, policy: ActorCritic, optimizer: torch.optim.Optimizer) -> tuple[int, int | None]:
    """Load policy, optimiser and RNG states from a checkpoint; returns (steps, n_updates or None)."""
    state, meta = read_checkpoint(path)
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise DimattnError(
            f"cannot resume from {path}: it holds another network ({str(exc).splitlines()[0]})"
        ) from None
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if "policy.optimizer.pth" in names:
            optimizer.load_state_dict(torch.load(io.BytesIO(zf.read("policy.optimizer.pth")), weights_only=True))
        if RNG_ENTRY in names:
            set_rng_state_bytes(zf.read(RNG_ENTRY))
        if STATE_ENTRY in names:
            s = torch.load(io.BytesIO(zf.read(STATE_ENTRY)), weights_only=True)
            return int(s["num_timesteps"]), int(s["n_updates"])
    return int(meta["num_timesteps"] or 0), None  # not written by this engine: count from the steps


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

@dataclass
class Member:
    """One run of a pack (or the run alone): its configuration, folder, files and learning state.

    ``policy``/``optimizer`` are the run's own network and torch Adam: the ones that learn when the run
    is alone or in a threaded pack, a CPU copy that checkpoints are written from and restored into in a
    vmapped pack (:class:`dimattn.engines.packed.Pack`).
    """

    args: PPOArgs
    run_dir: Path
    policy: ActorCritic
    optimizer: torch.optim.Adam
    saver: Saver
    history: EvalHistory
    rng: Any  # NumPy RNG of the minibatch draws: the global one alone (as SB3), a RandomState in a pack
    gen: torch.Generator | None = None  # the actions' draws in a threaded pack (else torch's global RNG)
    start: int = 0
    checkpoint: Path | None = None
    n_updates: int = 0
    writer: Any = None


def train_fast(args: PPOArgs, run_dir: Path, tensorboard_log: str | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True,
               speed: Speed | None = None, overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) one run with the fast engine; returns the final model's path.

    ``speed`` picks how the machine is used (never what is learned); the default is the measured best
    for the run's device (:func:`default_speed`), with ``overrides`` (:func:`speed_overrides`) set on
    top; the run's log says what was used.
    """
    return train_pack([args], [run_dir], tensorboard_log, progress=progress, verbose=verbose, resume=resume,
                      speed=speed, overrides=overrides)[0]


def train_pack(runs: list[PPOArgs], run_dirs: list[Path],
               tensorboard_log: str | Sequence[str | None] | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True,
               speed: Speed | None = None, overrides: dict[str, Any] | None = None) -> list[Path]:
    """Train (or resume) K runs of one game and agent together (:mod:`dimattn.engines.packed`); K = 1 is a
    run alone. Returns each run's final model; each run's folder is exactly what it would be alone.

    ``tensorboard_log``: one TensorBoard root for every run (each logs under ``<root>/<EnvId>/<run
    folder's name>_1``), or a list with each run's own root (None: that run logs nothing).

    Members resume from their own newest checkpoints. A pack saves all members at the same steps, so
    they normally agree; members that stopped at different checkpoints (a pack killed while saving,
    or runs trained before apart) are resumed as sub-packs of equal step count, one after another.
    """
    check_pack(runs)
    tb_roots = pack_tb_roots(tensorboard_log, len(runs))
    speed = default_speed(runs[0].device, len(runs)) if speed is None else speed
    speed = dataclasses.replace(speed, **(overrides or {}))
    if speed.torch_threads:
        torch.set_num_threads(speed.torch_threads)
    np.random.seed(runs[0].seed)
    print(f"fast engine on {runs[0].device}: {len(runs)} run(s), {speed.groups} EnvPool group(s), "
          f"{speed.env_threads or 'all'} EnvPool thread(s) each, {torch.get_num_threads()} torch thread(s)"
          + (f" ({speed.collect_threads} while acting)" if speed.collect_threads else "")
          + "".join(f", {k}" for k in ("bf16", "channels_last", "cuda_graph", "compile", "vmap")
                    if getattr(speed, k)), flush=True)
    stacked = len(runs) > 1 and speed.vmap
    members = [_member(a, Path(d), len(runs), stacked, resume) for a, d in zip(runs, run_dirs)]
    finals: dict[int, Path] = {}
    for start in sorted({m.start for m in members}):
        group = [i for i, m in enumerate(members) if m.start == start]
        if len(group) < len(members):
            print(f"runs {', '.join(str(members[i].run_dir) for i in group)} resume at {start:,} steps "
                  "(the others at another checkpoint): trained as a pack of their own", flush=True)
        try:
            paths = _train_members([members[i] for i in group], [tb_roots[i] for i in group], progress, verbose,
                                   speed, stacked)
        except torch.OutOfMemoryError:  # checkpoints are written atomically: the last one of each run is intact
            names = ", ".join(str(members[i].run_dir) for i in group)
            raise DimattnError(f"{names}: the {runs[0].device} device ran out of memory; the last checkpoints are "
                               "intact: rerun to resume, with fewer runs per pack, a smaller n_envs, or another "
                               "device (--device)") from None
        finals.update(zip(group, paths))
    return [finals[i] for i in range(len(members))]


def check_pack(runs: list[PPOArgs]) -> None:
    """A pack shares envs and one forward pass: its runs differ only in their seeds (and folders)."""
    if not runs:
        raise DimattnError("a pack needs at least one run")
    first = runs[0]
    for a in runs:
        check_supported(a)
        mine = dataclasses.replace(a, seed=first.seed, config=first.config)
        if mine != first:
            diff = next(f.name for f in dataclasses.fields(a) if getattr(mine, f.name) != getattr(first, f.name))
            raise DimattnError(f"runs of a pack must differ only in their seeds; {diff} differs "
                               f"({getattr(a, diff)!r} vs {getattr(first, diff)!r}): train them in separate packs")
    seeds = [a.seed for a in runs]
    if len(set(seeds)) < len(seeds):
        raise DimattnError(f"runs of a pack need different seeds, got {seeds}")


def _member(args: PPOArgs, run_dir: Path, k: int, stacked: bool, resume: bool) -> Member:
    """A run's network, Adam and files, restored from its newest checkpoint: on the run's device, or on
    the CPU for a vmapped pack (whose stacked copy learns on the device). A member's minibatch RNG is
    NumPy's global one alone, a RandomState of its own seed in a pack; in a threaded pack its actions are
    drawn from a torch Generator of its own too (worker threads would take turns on the global one in
    no fixed order)."""
    alone = k == 1
    device = torch.device("cpu") if stacked else args.device
    torch.manual_seed(args.seed)  # each member's initial weights are the ones it would have alone
    policy = ActorCritic(_n_actions(args.game), args.agent, ada_attn=args.ada_attn,
                         norm_softmax=args.norm_softmax, features_dim=args.features_dim).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5,
                                 fused=not stacked and device.type == "cuda")
    rng = np.random if alone else np.random.RandomState(args.seed)
    start, path, history = resume_point(run_dir, resume)
    member = Member(args, run_dir, policy, optimizer, Saver(args, policy, optimizer), history, rng)
    if path is not None:
        steps, n_updates = restore(path, policy, optimizer)
        if not alone:  # restore set NumPy's global RNG: that state is this member's stream
            rng.set_state(np.random.get_state())
        member.start, member.checkpoint = steps, path
        member.n_updates = n_updates if n_updates is not None else steps // args.rollout_size * args.n_epochs
        history.save(run_dir)
    if not alone and not stacked:  # after restore, which set torch's global RNG to this member's state
        member.gen = torch.Generator(device)
        member.gen.set_state(torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device))
    return member


def _n_actions(game: str) -> int:
    pool = make_pool(game, 1, 0, num_threads=1)
    try:
        return int(pool.action_space.n)
    finally:
        pool.close()


def pack_tb_roots(tensorboard_log: str | Sequence[str | None] | None, k: int) -> list[str | None]:
    """Each run's TensorBoard root: the one root for all, or the list given (checked to have k entries)."""
    if tensorboard_log is None or isinstance(tensorboard_log, (str, os.PathLike)):
        return [tensorboard_log] * k
    roots = list(tensorboard_log)
    if len(roots) != k:
        raise DimattnError(f"a pack of {k} runs needs {k} TensorBoard folders, got {len(roots)}")
    return roots


def _train_members(members: list[Member], tb_roots: list[str | None], progress: bool, verbose: int,
                   speed: Speed, stacked: bool) -> list[Path]:
    """The training loop of K members that resume at the same step: collect, evaluate, update, log, save.

    The members' networks act and learn in one of three ways: a run alone; a pack on the CPU, each
    member in a worker thread of its own (its own network, Adam and :func:`update`; torch ops release
    the GIL, so K members use K cores); or ``stacked``, one vmapped :class:`Pack` (accelerators).
    """
    args, k = members[0].args, len(members)
    device = args.device
    envs = Envs(args.game, [m.args.seed for m in members], args.n_envs, speed, pin=device.type == "cuda")
    pack, threads, nets = None, None, []
    if stacked:
        pack = Pack([m.policy for m in members], device)
        for i, m in enumerate(members):
            pack.load(i, m.policy, m.optimizer)
        act, act_step = pack, acting(pack, speed)
    else:
        nets = [_prepared(m.policy, speed) for m in members]
        acts = [_flat_act(net, speed) for net in nets]
        act, act_step = acts[0], acting(acts[0], speed, members[0].gen)
        if k > 1:
            threads = ThreadPoolExecutor(min(k, usable_cores()), "dimattn-member")
            act = _in_threads(acts, threads)
            act_step = _in_threads([acting(a, speed, m.gen) for a, m in zip(acts, members)], threads)
    # The CUDA graph was measured for a run alone; a pack's act step runs without it (not measured).
    steps_fn = _act_steps(act_step, envs, dataclasses.replace(speed, cuda_graph=speed.cuda_graph and k == 1), device)
    for m, tb_root in zip(members, tb_roots):
        m.writer = _tb_writer(tb_root, m.args, m.run_dir)
        if m.checkpoint is not None:
            print(f"resuming {m.run_dir} from {m.checkpoint.name} (EnvPool restarts with fresh games)", flush=True)
    start = members[0].start
    bar = ProgressBar(k * args.n_timesteps, k * start) if progress else None
    buf = Rollout.empty(args.n_steps, args.n_envs, device, members=k)
    next_eval, next_save = next_multiple(start, args.eval_freq), next_multiple(start, args.save_freq)
    steps, t0, last_status = start, time.perf_counter(), time.perf_counter()
    eval_envs: list = []  # built at the first evaluation, reused by the others
    eval_seconds = 0.0

    def on(x: torch.Tensor) -> torch.Tensor:  # rewards and flags move to the device once per rollout
        return x.to(device, non_blocking=True)

    def learn(i: int, advantages: torch.Tensor, lr: float, clip: float) -> dict[str, float]:
        """Member i's PPO update (alone, or in its worker thread)."""
        for group in members[i].optimizer.param_groups:
            group["lr"] = lr
        return update(nets[i], members[i].optimizer, buf.member(i), advantages[:, i], args, clip, speed,
                      rng=members[i].rng)

    def save(path_of: Callable[[Member], Path]) -> list[Path]:
        paths = []
        for i, m in enumerate(members):
            if pack is not None:
                pack.export(i, m.policy, m.optimizer)
            paths.append(m.saver.save(path_of(m), steps, m.n_updates, *_rng_states(m)))
        return paths

    try:
        while steps < args.n_timesteps:
            with _torch_threads(speed.collect_threads):
                collect(envs, steps_fn, buf)
            steps += args.rollout_size
            # SB3 evaluates in the middle of a rollout, at the first step (a multiple of n_envs) past
            # each eval_freq; the policy does not change within a rollout, so evaluate it now.
            while next_eval is not None and next_eval <= steps:
                at = math.ceil(next_eval / args.n_envs) * args.n_envs
                t_eval = time.perf_counter()
                eval_envs = eval_envs or evaluation_envs(args.game, k * args.eval_episodes)
                with _torch_threads(speed.collect_threads):
                    _evaluate(members, act, at, pack, eval_envs)
                eval_seconds += time.perf_counter() - t_eval
                if verbose:
                    print(f"evaluated at {at:,} steps: {k} × {args.eval_episodes} games in "
                          f"{time.perf_counter() - t_eval:.1f} s", flush=True)
                next_eval = next_multiple(at, args.eval_freq)

            lr = linear_schedule(args.learning_rate, args.lr_linear, steps, args.n_timesteps)
            clip = linear_schedule(args.clip_range, args.clip_linear, steps, args.n_timesteps)
            advantages = gae(on(buf.rewards), buf.values, on(buf.done), on(buf.trunc), buf.last_value,
                             on(buf.last_done), on(buf.last_trunc), args.gamma, args.gae_lambda)  # (T, K, N)
            if pack is not None:
                stats = packed_update(pack, buf.obs, buf.actions, buf.logprobs, buf.values, buf.done.numpy(),
                                      advantages, args, lr, clip, [m.rng for m in members])
            elif threads is not None:
                stats = list(threads.map(learn, range(k), repeat(advantages), repeat(lr), repeat(clip)))
            else:
                stats = [learn(0, advantages, lr, clip)]
            fps = k * (steps - start) / (time.perf_counter() - t0)
            for m, s, finished in zip(members, stats, envs.finished):
                m.n_updates += args.n_epochs
                _log(m.writer, steps, finished, s, lr, clip, fps / k, m.n_updates)
            if bar is not None:
                bar.update_to(k * steps, [s for s, _ in envs.finished[0]])
            elif verbose and time.perf_counter() - last_status > 30:
                last_status = time.perf_counter()
                score = _score_text(envs.finished[0])
                runs = f" each, {fps:,.0f} steps/s over {k} runs" if k > 1 else f", {fps:,.0f} steps/s"
                print(f"{steps:,}/{args.n_timesteps:,} steps{runs}{score}", flush=True)
            if next_save is not None and steps >= next_save:
                save(lambda m, at=steps: checkpoint_path(m.run_dir, at))
                next_save = next_multiple(steps, args.save_freq)
        finals = save(lambda m: final_model_path(m.run_dir, m.args.env_id))
        if verbose:
            wall = time.perf_counter() - t0
            print(f"trained {k} run(s) to {steps:,} steps in {wall:,.0f} s, {eval_seconds:,.0f} s of it evaluating "
                  f"({eval_seconds / max(wall, 1e-9):.0%})", flush=True)
    finally:
        envs.close()
        if threads is not None:
            threads.shutdown()
        for env in eval_envs:
            env.close()
        if bar is not None:
            bar.close()
        for m in members:
            if m.writer is not None:
                m.writer.close()
    return finals


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (0: unchanged) for the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepared(net: ActorCritic, speed: Speed) -> nn.Module:
    """The member's network as it runs: in channels-last memory and/or compiled, as ``speed`` says."""
    net = net.to(memory_format=torch.channels_last) if speed.channels_last else net
    return torch.compile(net) if speed.compile else net


def _flat_act(net: nn.Module, speed: Speed) -> Callable:
    """A run's network acting on (K=1, n, 4, 84, 84): logits (1, n, A), values (1, n), without gradients
    (set here: grad mode is per thread, and a pack's members act in worker threads)."""
    memory_format = _memory_format(speed)

    def act(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits, value = net(obs.flatten(0, 1).contiguous(memory_format=memory_format))  # (K*n, ...)
        return logits.unflatten(0, obs.shape[:2]), value.unflatten(0, obs.shape[:2])  # (K, n, A), (K, n)

    return act


def _in_threads(fns: list[Callable], threads: ThreadPoolExecutor) -> Callable:
    """``fns[k]`` on member k's slice ``x[k:k+1]`` (1, ...) for every k, in the worker threads; each
    function's outputs concatenated over the members (K, ...)."""

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = list(threads.map(lambda k: fns[k](x[k:k + 1]), range(len(fns))))
        return tuple(torch.cat(parts) for parts in zip(*outs))

    return run


def _act_steps(step: Callable, envs: Envs, speed: Speed, device: torch.device) -> list[Callable]:
    """One act step per env group for :func:`collect` (a CUDA graph each, with ``speed.cuda_graph``)."""
    if speed.cuda_graph and device.type == "cuda":
        return [cuda_graphed(step, obs.to(device)) for obs in envs.obs]
    return [step] * len(envs.slices)


def _rng_states(m: Member) -> tuple[tuple | None, torch.Tensor | None]:
    """The member's own NumPy and torch RNG states for its checkpoint; None for those that are the global
    ones (the checkpoint saves those)."""
    return None if m.rng is np.random else m.rng.get_state(), None if m.gen is None else m.gen.get_state()


def _tb_writer(tensorboard_log: str | None, args: PPOArgs, run_dir: Path) -> Any:
    if tensorboard_log is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(tensorboard_log) / args.env_id / f"{Path(run_dir).name}_1"))


def _score_text(finished: deque[tuple[float, int]]) -> str:
    return f", game score {np.mean([s for s, _ in finished]):.1f}" if finished else ""


def _evaluate(members: list[Member], act: Callable, steps: int, pack: Any, envs: list) -> None:
    """SPEC protocol: ``eval_episodes`` whole games per run, raw scores, stochastic policy, separate envs
    (``envs``, built once per training); the games of all members are played together (one batched
    forward per step)."""
    args = members[0].args
    seeds = [eval_seeds(m.args.seed, len(m.history.timesteps), args.eval_episodes) for m in members]

    def policy(obs: np.ndarray) -> np.ndarray:  # (K, E, 4, 84, 84) -> (K, E)
        with torch.no_grad():
            logits, _ = act(torch.as_tensor(obs, device=args.device))
        return sample(logits)[0].cpu().numpy()

    for i, (m, (scores, lengths)) in enumerate(zip(members, evaluate(policy, args.game, seeds, envs))):
        if record_evaluation(m.history, m.run_dir, steps, scores, lengths, m.writer):
            if pack is not None:
                pack.export(i, m.policy, m.optimizer)
            m.saver.save(m.run_dir / BEST_MODEL, steps, m.n_updates, *_rng_states(m))


def _log(writer: Any, steps: int, finished: deque[tuple[float, int]], stats: dict[str, float], lr: float,
         clip: float, fps: float, n_updates: int) -> None:
    """SB3's scalar names, so TensorBoard shows both engines' runs side by side."""
    if writer is None:
        return
    scalars = {"train/policy_gradient_loss": stats["pg"], "train/value_loss": stats["value"],
               "train/entropy_loss": stats["entropy"], "train/approx_kl": stats["kl"],
               "train/clip_fraction": stats["clipfrac"], "train/learning_rate": lr,
               "train/loss": stats["loss"], "train/explained_variance": stats["explained_variance"],
               "train/clip_range": clip, "train/n_updates": n_updates, "time/fps": fps}
    if finished:
        scalars["rollout/ep_rew_mean"] = float(np.mean([s for s, _ in finished]))
        scalars["rollout/ep_len_mean"] = float(np.mean([n for _, n in finished]))
    for name, value in scalars.items():
        writer.add_scalar(name, value, steps)
