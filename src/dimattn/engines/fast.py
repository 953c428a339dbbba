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

import io
import math
import re
import time
import zipfile
from collections import deque
from dataclasses import dataclass
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
    eval_seed,
    next_multiple,
    record_evaluation,
    resume_point,
    rng_state_bytes,
    sb3_ppo,
    set_rng_state_bytes,
)
from dimattn.engines.config import PPOArgs
from dimattn.engines.rundir import BEST_MODEL, EvalHistory, checkpoint_path, final_model_path
from dimattn.envs.ale import evaluate
from dimattn.envs.pool import FRAME_SKIP, make_pool, task_id
from dimattn.errors import DimattnError

STATE_ENTRY = "dimattn_fast_state.pt"  # not .pth: SB3 loads every .pth entry as parameters


@dataclass(frozen=True)
class Speed:
    """How the engine uses the CPU; none of these changes what is learned (docs/benchmarks.md).

    ``groups``: the envs are split into this many EnvPools stepped in turn, so one group's emulators
    run while the network acts for the other (2 = overlap env stepping with inference).
    ``torch_threads``/``env_threads``: 0 = leave as they are. Torch threads are the caller's choice:
    ``dimattn study`` sets them per run (1 is best when runs share the cores), a lone ``dimattn train``
    keeps torch's default (2 threads beat 1 by ~27% on an idle 2-core machine).
    ``channels_last``: NHWC tensors for the convolutions. ``bf16``: bfloat16 autocast of the network's
    forward and backward on the CPU (losses, log-probabilities and Adam stay float32).
    ``compile``: ``torch.compile`` (measured slower; it also fails on the attention blocks in torch 2.13).
    The default is fp32, the same arithmetic as the SB3 engine (docs/benchmarks.md).
    """

    groups: int = 2
    torch_threads: int = 0
    env_threads: int = 1
    channels_last: bool = False  # +22% for NA alone, but with bf16 it makes the attention blocks 3x slower
    bf16: bool = False  # +44% (NA), but its two parity seeds learned below the SB3 seeds: opt-in for now
    compile: bool = False


DEFAULT_SPEED = Speed()


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
    """One rollout; T = n_steps, N = n_envs. ``done[t]``: obs[t] ended its episode (EnvPool resets
    that env at step t, so step t is no transition); ``trunc[t]``: that end was the time limit."""

    obs: torch.Tensor  # (T, N, 4, 84, 84) uint8
    actions: torch.Tensor  # (T, N) int64
    logprobs: torch.Tensor  # (T, N)
    values: torch.Tensor  # (T, N)
    rewards: torch.Tensor  # (T, N), clipped, reward of the step taken from obs[t]
    done: torch.Tensor  # (T, N) bool
    trunc: torch.Tensor  # (T, N) bool
    last_value: torch.Tensor  # (N,) value of the obs after the rollout
    last_done: torch.Tensor  # (N,) bool
    last_trunc: torch.Tensor  # (N,) bool

    @classmethod
    def empty(cls, n_steps: int, n_envs: int, device: torch.device | str = "cpu") -> Rollout:
        z = lambda dtype: torch.zeros(n_steps, n_envs, dtype=dtype, device=device)  # noqa: E731
        zn = lambda dtype: torch.zeros(n_envs, dtype=dtype, device=device)  # noqa: E731
        return cls(torch.zeros(n_steps, n_envs, *OBS_SHAPE, dtype=torch.uint8, device=device), z(torch.int64),
                   z(torch.float32), z(torch.float32), z(torch.float32), z(torch.bool), z(torch.bool),
                   zn(torch.float32), zn(torch.bool), zn(torch.bool))


class Envs:
    """The training EnvPools and what the engine carries between rollouts: each env's current
    observation and done flags, and the running score of each game for ``rollout/ep_rew_mean``."""

    def __init__(self, game: str, n_envs: int, seed: int, speed: Speed) -> None:
        self.slices = _groups(n_envs, speed)
        self.pools = [make_pool(game, s.stop - s.start, seed + s.start, training=True,
                                num_threads=speed.env_threads) for s in self.slices]
        self.n_actions = int(self.pools[0].action_space.n)
        self.obs = torch.zeros(n_envs, *OBS_SHAPE, dtype=torch.uint8)  # (N, 4, 84, 84)
        self.done = torch.zeros(n_envs, dtype=torch.bool)
        self.trunc = torch.zeros(n_envs, dtype=torch.bool)
        self.game_score = np.zeros(n_envs)
        self.game_steps = np.zeros(n_envs, dtype=np.int64)
        self.finished: deque[tuple[float, int]] = deque(maxlen=100)  # (raw score, frames) of games
        for pool in self.pools:
            pool.async_reset()
        for g in range(len(self.pools)):
            self.receive(g)

    def receive(self, g: int) -> torch.Tensor:
        """Wait for group ``g``'s step; update its obs/done; return its rewards (n_g,)."""
        obs, reward, terminated, truncated, info = self.pools[g].recv()
        order = np.argsort(info["env_id"])  # EnvPool may return envs in any order
        s = self.slices[g]
        self.obs[s] = torch.from_numpy(obs[order])
        self.done[s] = torch.from_numpy(terminated[order] | truncated[order])
        self.trunc[s] = torch.from_numpy(truncated[order] & ~terminated[order])
        # A game ends at game over or time limit (a life loss only ends the training episode).
        self.game_score[s] += info["reward"][order]
        self.game_steps[s] += 1
        ended = np.flatnonzero(info["terminated"][order].astype(bool) | truncated[order]) + s.start
        for i in ended:
            self.finished.append((float(self.game_score[i]), int(self.game_steps[i]) * FRAME_SKIP))
        self.game_score[ended] = 0.0
        self.game_steps[ended] = 0
        return torch.from_numpy(reward[order].astype(np.float32))

    def send(self, g: int, actions: torch.Tensor) -> None:
        s = self.slices[g]
        self.pools[g].send(actions.numpy().astype(np.int32), np.arange(s.stop - s.start, dtype=np.int32))

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


def collect(envs: Envs, act: nn.Module, buf: Rollout, speed: Speed) -> None:
    """Fill ``buf`` with one rollout. Group g's emulators step while the network acts for group g+1.
    The envs live on the CPU; ``buf`` and the network on the network's device."""
    n_steps, device = buf.obs.shape[0], buf.obs.device
    for t in range(n_steps + 1):
        for g, s in enumerate(envs.slices):
            if t > 0:  # the step sent at t-1 has come back
                buf.rewards[t - 1, s] = envs.receive(g).to(device)
            obs = envs.obs[s].to(device)  # (n_g, 4, 84, 84)
            done, trunc = envs.done[s].to(device), envs.trunc[s].to(device)
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=speed.bf16):
                logits, value = act(obs.contiguous(memory_format=_memory_format(speed)))
            if t == n_steps:
                buf.last_value[s], buf.last_done[s], buf.last_trunc[s] = value.float(), done, trunc
                continue  # the bootstrap value; the next rollout acts with the updated policy
            dist = torch.distributions.Categorical(logits=logits.float())
            action = dist.sample()
            envs.send(g, action.cpu())
            buf.obs[t, s] = obs
            buf.actions[t, s] = action
            buf.logprobs[t, s] = dist.log_prob(action)
            buf.values[t, s] = value.float()
            buf.done[t, s], buf.trunc[t, s] = done, trunc


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

def update(policy: nn.Module, optimizer: torch.optim.Optimizer, buf: Rollout, advantages: torch.Tensor,
           args: PPOArgs, clip: float, speed: Speed) -> dict[str, float]:
    """``n_epochs`` PPO passes over the rollout; returns SB3's ``train/*`` statistics (means over all
    minibatches; the approximate KL over the last epoch's, as SB3 logs it)."""
    n_steps, n_envs = buf.actions.shape
    obs = buf.obs.flatten(0, 1)  # (T*N, 4, 84, 84)
    actions, old_logp = buf.actions.flatten(), buf.logprobs.flatten()  # (T*N,)
    returns = (advantages + buf.values).flatten()
    advantages = advantages.flatten()
    is_transition = ~buf.done.flatten()  # see the module docstring: EnvPool's reset steps are left out
    n, batch_size = obs.shape[0], args.batch_size
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "value", "entropy", "kl", "clipfrac")}
    last_loss = float("nan")
    for _ in range(args.n_epochs):
        stats["kl"] = []  # SB3 logs the approximate KL of the last epoch only
        # SB3's RolloutBuffer draws a permutation of its env-major (N*T) order; index i is env i // T,
        # step i % T. Drawing the same way makes runs comparable step by step (tests/test_ppo.py).
        order = torch.from_numpy(np.random.permutation(n)).to(obs.device)
        order = (order % n_steps) * n_envs + order // n_steps  # -> our step-major (T*N) index
        for start in range(0, n, batch_size):
            mb = order[start:start + batch_size]
            mb = mb[is_transition[mb]]
            if len(mb) < 2:
                continue
            x = obs[mb].contiguous(memory_format=_memory_format(speed))  # (B, 4, 84, 84)
            with torch.autocast(x.device.type, torch.bfloat16, enabled=speed.bf16):
                logits, values = policy(x)
            dist = torch.distributions.Categorical(logits=logits.float())
            logp = dist.log_prob(actions[mb])
            adv = advantages[mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            ratio = torch.exp(logp - old_logp[mb])
            pg_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            value_loss = nn.functional.mse_loss(returns[mb], values.float())
            entropy_loss = -dist.entropy().mean()
            loss = pg_loss + args.ent_coef * entropy_loss + args.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = logp - old_logp[mb]
                stats["kl"].append(float(((ratio - 1) - log_ratio).mean()))
                stats["clipfrac"].append(float(((ratio - 1).abs() > clip).float().mean()))
            stats["pg"].append(pg_loss.item())
            stats["value"].append(value_loss.item())
            stats["entropy"].append(entropy_loss.item())
            last_loss = loss.item()
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
    out["loss"] = last_loss  # SB3 logs the last minibatch's total loss
    out["explained_variance"] = explained_variance(buf.values.flatten()[is_transition], returns[is_transition])
    return out


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) (population variances, as SB3 logs it); NaN if Var = 0."""
    var = float(returns.var(unbiased=False))
    return float("nan") if var == 0 else 1.0 - float((returns - values).var(unbiased=False)) / var


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

    def save(self, path: Path, steps: int, n_updates: int) -> Path:
        ours = self.policy.state_dict()
        theirs = {k: ours[re.sub(r"^(pi_|vf_)features_extractor\.", "features_extractor.", k)]
                  for k in self.model.policy.state_dict()}  # SB3 aliases the shared extractor
        self.model.policy.load_state_dict(theirs)
        # SB3's optimiser holds the policy's parameters in our order, so the state transfers as is.
        self.model.policy.optimizer.load_state_dict(self.optimizer.state_dict())
        self.model.num_timesteps = steps
        meta = checkpoint_meta(self.args, steps)
        extra = {RNG_ENTRY: rng_state_bytes(), STATE_ENTRY: _state_bytes(steps, n_updates)}
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

def _tb_writer(tensorboard_log: str | None, args: PPOArgs, run_dir: Path) -> Any:
    if tensorboard_log is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(tensorboard_log) / args.env_id / f"{Path(run_dir).name}_1"))


def train_fast(args: PPOArgs, run_dir: Path, tensorboard_log: str | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True,
               speed: Speed = DEFAULT_SPEED) -> Path:
    """Train (or resume) one run with the fast engine; returns the final model's path.

    ``speed`` picks how the CPU is used (never what is learned); the default is the measured best.
    """
    run_dir = Path(run_dir)
    check_supported(args)
    if speed.torch_threads:
        torch.set_num_threads(speed.torch_threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    envs = Envs(args.game, args.n_envs, args.seed, speed)
    policy = ActorCritic(envs.n_actions, args.agent, ada_attn=args.ada_attn, norm_softmax=args.norm_softmax,
                         features_dim=args.features_dim)
    policy.to(args.device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5)
    saver = Saver(args, policy, optimizer)

    start, path, history = resume_point(run_dir, resume)
    n_updates = 0
    if path is not None:
        start, restored_updates = restore(path, policy, optimizer)
        n_updates = restored_updates if restored_updates is not None else start // args.rollout_size * args.n_epochs
        history.save(run_dir)
        print(f"resuming {run_dir} from {path.name} (EnvPool restarts with fresh games)", flush=True)

    net: nn.Module = policy.to(memory_format=torch.channels_last) if speed.channels_last else policy
    if speed.compile:
        net = torch.compile(net)
    writer = _tb_writer(tensorboard_log, args, run_dir)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=args.n_timesteps, initial=start, unit="step", unit_scale=True, dynamic_ncols=True)
    buf = Rollout.empty(args.n_steps, args.n_envs, args.device)
    next_eval, next_save = next_multiple(start, args.eval_freq), next_multiple(start, args.save_freq)
    steps, t0, last_status = start, time.perf_counter(), time.perf_counter()
    try:
        while steps < args.n_timesteps:
            policy.train()
            collect(envs, net, buf, speed)
            steps += args.rollout_size
            # SB3 evaluates in the middle of a rollout, at the first step (a multiple of n_envs) past
            # each eval_freq; the policy does not change within a rollout, so evaluate it now.
            while next_eval is not None and next_eval <= steps:
                at = math.ceil(next_eval / args.n_envs) * args.n_envs
                _evaluate(args, policy, history, run_dir, at, saver, n_updates, writer)
                next_eval = next_multiple(at, args.eval_freq)

            lr = linear_schedule(args.learning_rate, args.lr_linear, steps, args.n_timesteps)
            clip = linear_schedule(args.clip_range, args.clip_linear, steps, args.n_timesteps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            advantages = gae(buf.rewards, buf.values, buf.done, buf.trunc, buf.last_value, buf.last_done,
                             buf.last_trunc, args.gamma, args.gae_lambda)
            stats = update(net, optimizer, buf, advantages, args, clip, speed)
            n_updates += args.n_epochs

            fps = (steps - start) / (time.perf_counter() - t0)
            _log(writer, steps, envs, stats, lr, clip, fps, n_updates)
            if bar is not None:
                bar.update(args.rollout_size)
                bar.set_postfix_str(_score_text(envs).lstrip(", "), refresh=False)
            elif verbose and time.perf_counter() - last_status > 30:
                last_status = time.perf_counter()
                print(f"{steps:,}/{args.n_timesteps:,} steps, {fps:,.0f} steps/s{_score_text(envs)}", flush=True)
            if next_save is not None and steps >= next_save:
                saver.save(checkpoint_path(run_dir, steps), steps, n_updates)
                next_save = next_multiple(steps, args.save_freq)
        final = saver.save(final_model_path(run_dir, args.env_id), steps, n_updates)
    finally:
        envs.close()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    return final


def _score_text(envs: Envs) -> str:
    return f", game score {np.mean([s for s, _ in envs.finished]):.1f}" if envs.finished else ""


def _evaluate(args: PPOArgs, policy: ActorCritic, history: EvalHistory, run_dir: Path, steps: int,
              saver: Saver, n_updates: int, writer: Any) -> None:
    """SPEC protocol: ``eval_episodes`` whole games, raw scores, stochastic policy, a separate env."""
    policy.eval()
    scores, lengths = evaluate(policy.act, args.game, args.eval_episodes,
                               seed=eval_seed(args.seed, len(history.timesteps)))
    policy.train()
    if record_evaluation(history, run_dir, steps, scores, lengths, writer):
        saver.save(run_dir / BEST_MODEL, steps, n_updates)


def _log(writer: Any, steps: int, envs: Envs, stats: dict[str, float], lr: float, clip: float,
         fps: float, n_updates: int) -> None:
    """SB3's scalar names, so TensorBoard shows both engines' runs side by side."""
    if writer is None:
        return
    scalars = {"train/policy_gradient_loss": stats["pg"], "train/value_loss": stats["value"],
               "train/entropy_loss": stats["entropy"], "train/approx_kl": stats["kl"],
               "train/clip_fraction": stats["clipfrac"], "train/learning_rate": lr,
               "train/loss": stats["loss"], "train/explained_variance": stats["explained_variance"],
               "train/clip_range": clip, "train/n_updates": n_updates, "time/fps": fps}
    if envs.finished:
        scalars["rollout/ep_rew_mean"] = float(np.mean([s for s, _ in envs.finished]))
        scalars["rollout/ep_len_mean"] = float(np.mean([n for _, n in envs.finished]))
    for name, value in scalars.items():
        writer.add_scalar(name, value, steps)
