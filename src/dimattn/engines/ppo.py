"""PPO, top to bottom: the rollout, GAE, the loss, the update and the training loop of the fast engine.

The learner is SB3's PPO with exactly SPEC §4's settings, written out:

- a rollout of ``n_steps`` per env; GAE(γ, λ) with the value of the last observation as bootstrap, and
  ``γ·V(final obs)`` added to the reward of a step that was cut by the 108k-frame limit (SB3 does the same);
- ``n_epochs`` passes over the rollout in random minibatches of ``batch_size``; advantages normalised
  per minibatch; clipped surrogate with a linearly decaying clip range; unclipped value loss × vf_coef;
  entropy bonus × ent_coef; global grad-norm clip; Adam (eps 1e-5) with a linearly decaying LR.
  Both schedules use SB3's progress ``1 - steps/n_timesteps``, measured after each rollout;
- the network is :class:`dimattn.agents.networks.ActorCritic` (SB3's ``CnnPolicy`` with ``net_arch=[]``,
  same parameter names and orthogonal init).

One thing EnvPool adds: the step after an episode end only resets that env (its action is ignored,
reward 0). Those steps are not transitions of the game, so they are left out of the loss.

Everything here works on a pack of K runs (K = 1: a run alone) that step their envs together; what acts
and learns is a :class:`~dimattn.engines.learner.Learner` (``learner.py``; its three kinds in ``learners.py``),
chosen once per pack by :func:`dimattn.engines.train.prepare`. The machinery lives beside this file: the
rollout's buffer (``rollout.py``), the envs and the act step (``acting.py``), the machine's levers
(``speed.py``), each run's files and checkpoints (``members.py``), evaluations (``evaluation.py``), logs
(``progress.py``).

This loss is the fast engine's only: the SB3 engine (``sb3.py``) trains with SB3's own PPO, so a change to
:func:`ppo_loss` changes what the fast engine learns and nothing else (tests/test_ppo.py holds the two equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from dimattn.engines import stopping
from dimattn.engines.acting import ActStep, Envs, act_steps
from dimattn.engines.common import check_finite_update, next_multiple
from dimattn.engines.config import PPOArgs
from dimattn.engines.evaluation import Evaluations
from dimattn.engines.learner import Learner, UpdateStats
from dimattn.engines.members import Member, save_members
from dimattn.engines.progress import TrainingReport
from dimattn.engines.rollout import Rollout
from dimattn.engines.rundir import checkpoint_path, final_model_path
from dimattn.engines.speed import Speed, memory_format, torch_threads

# ----------------------------------------------------------------------------------------------
# Rollout
# ----------------------------------------------------------------------------------------------

def collect(envs: Envs, steps: list[ActStep], buf: Rollout) -> None:
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
    """Generalised advantage estimates (T, ...) (``...``: N, or K, N for a pack).

    ``rewards[t]`` (T, ...) is the reward of the step from obs[t]; ``done[t]``/``trunc[t]`` say that
    obs[t] ended an episode (by the time limit, for ``trunc``), ``last_*`` (...) the same for the
    observation after the rollout. A truncated episode is bootstrapped with γ·V(its final obs), as SB3 does.
    """
    next_values = torch.cat([values[1:], last_value[None]])  # (T, ...): V(obs[t+1])
    next_done = torch.cat([done[1:], last_done[None]]).float()  # (T, ...)
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


def linear_schedule(start: float, linear: bool, steps: int, total: int) -> float:
    """SB3/RL Zoo ``lin_<start>``: start·(1 - steps/total), with steps counted after the rollout."""
    return start * (1.0 - steps / total) if linear else start


# ----------------------------------------------------------------------------------------------
# The loss and the update
# ----------------------------------------------------------------------------------------------

def minibatches(n_steps: int, n_envs: int, batch_size: int, is_transition: np.ndarray,
                rng: Any = np.random) -> list[np.ndarray]:
    """One epoch's minibatches of one run: indices into its step-major (T*N) rollout, drawn as SB3 draws.

    SB3's RolloutBuffer permutes its env-major (N*T) order (index i is env i // T, step i % T) with
    NumPy's RNG; drawing the same way makes runs comparable step by step (tests/test_ppo.py). EnvPool's
    reset steps (``is_transition`` False, (T*N,)) are left out here, on the host, so the update needs no
    data-dependent indexing on the device; a minibatch may so hold fewer than ``batch_size`` rows, and
    one of fewer than two is skipped by the learners (its advantages could not be normalised).
    """
    n = n_steps * n_envs
    order = rng.permutation(n)
    order = (order % n_steps) * n_envs + order // n_steps  # env-major -> our step-major index
    return [mb[is_transition[mb]] for mb in (order[s:s + batch_size] for s in range(0, n, batch_size))]


class LossTerms(NamedTuple):
    """SB3's ``train/*`` loss terms of one minibatch (tensors; (K,) under a vmapped pack)."""

    pg: torch.Tensor  # policy gradient loss
    value: torch.Tensor
    entropy: torch.Tensor  # -entropy, as SB3's entropy_loss
    clipfrac: torch.Tensor
    kl: torch.Tensor  # approximate KL
    loss: torch.Tensor  # the total


def ppo_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
             adv: torch.Tensor, returns: torch.Tensor, w: torch.Tensor, clip: float, ent_coef: float,
             vf_coef: float) -> tuple[torch.Tensor, LossTerms]:
    """The PPO loss of one network on one minibatch: logits (B, A), values and the rest (B,).

    ``w`` (B,) weighs each row: 1 for a transition, 0 for the padding that keeps a vmapped pack's
    minibatches one shape, so every mean is over the transitions only."""
    logp_all = torch.log_softmax(logits.float(), -1)  # (B, A)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (B,)
    n = w.sum()

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum() / n

    centred = adv - mean(adv)
    adv = centred / (torch.sqrt((centred**2 * w).sum() / (n - 1)) + 1e-8)  # unbiased std, as torch's .std()
    ratio = torch.exp(logp - old_logp)
    pg_loss = -mean(torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)))
    value_loss = mean((returns - values.float()) ** 2)
    entropy_loss = mean((logp_all.exp() * logp_all).sum(-1))  # -entropy
    loss = pg_loss + ent_coef * entropy_loss + vf_coef * value_loss
    with torch.no_grad():
        terms = LossTerms(pg_loss, value_loss, entropy_loss, mean(((ratio - 1).abs() > clip).float()),
                          mean((ratio - 1) - (logp - old_logp)), loss.detach())
    return loss, terms


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) (population variances, as SB3 logs it); NaN if Var = 0."""
    var = float(returns.var(unbiased=False))
    return float("nan") if var == 0 else 1.0 - float((returns - values).var(unbiased=False)) / var


class Totals:
    """The loss terms of K networks summed over an update's minibatches, on the device, read once at the
    end (no minibatch waits for the host): means over all minibatches, the KL over the last epoch's."""

    def __init__(self, k: int, device: torch.device) -> None:
        fields = len(LossTerms._fields)
        self.every, self.last = torch.zeros(k, fields, device=device), torch.zeros(k, fields, device=device)
        self.counts = torch.zeros(k, 2, device=device)  # minibatches taken: all, in the last epoch
        self.count_as = {False: torch.tensor([1.0, 0.0], device=device), True: torch.tensor([1.0, 1.0], device=device)}
        self.loss = torch.full((k,), float("nan"), device=device)

    def add(self, terms: LossTerms, last_epoch: bool, taken: torch.Tensor | None = None) -> None:
        """``taken`` (K,): which networks stepped on this minibatch (default: all). A few small ops on the
        device, no sync: a run alone pays ~5 kernel launches per minibatch for them."""
        row = torch.stack(terms, -1).reshape(self.every.shape)  # (K, fields)
        if taken is not None:  # the others' terms may be NaN (no transitions): left out, not multiplied by 0
            row = torch.where(taken[:, None], row, 0.0)
        self.every += row
        if last_epoch:
            self.last += row
        if taken is None:
            self.counts += self.count_as[last_epoch]
            self.loss = terms.loss.reshape(self.loss.shape)
        else:
            self.counts += taken[:, None].float() * self.count_as[last_epoch]
            self.loss = torch.where(taken, terms.loss, self.loss)

    def stats(self, explained: list[float]) -> list[UpdateStats]:
        """Each network's statistics, given its explained variance."""
        every, last = self.every / self.counts[:, :1], self.last / self.counts[:, 1:]  # (K, fields)
        loss = self.loss[:, None].expand_as(every)
        rows = torch.stack([every, last, loss], 1).tolist()  # (K, 3, fields): the one sync
        out = []
        for (over_all, over_last, last_loss), ev in zip(rows, explained):
            terms = LossTerms(*over_all)._replace(kl=LossTerms(*over_last).kl, loss=last_loss[0])
            out.append(UpdateStats(**terms._asdict(), explained_variance=ev))
        return out


def update(policy: nn.Module, optimizer: torch.optim.Optimizer, buf: Rollout, advantages: torch.Tensor,
           args: PPOArgs, clip: float, speed: Speed, rng: Any = np.random) -> UpdateStats:
    """``n_epochs`` PPO passes of one network over its rollout ((T, N) tensors on the network's device)."""
    n_steps, n_envs = buf.actions.shape
    device = buf.obs.device
    obs = buf.obs.flatten(0, 1)  # (T*N, 4, 84, 84)
    actions, old_logp = buf.actions.flatten(), buf.logprobs.flatten()  # (T*N,)
    returns = (advantages + buf.values).flatten()
    advantages = advantages.flatten()
    is_transition = ~buf.done.flatten().cpu().numpy()  # see the module docstring: EnvPool's reset steps
    totals = Totals(1, device)
    for epoch in range(args.n_epochs):
        for mb in minibatches(n_steps, n_envs, args.batch_size, is_transition, rng):
            if len(mb) < 2:
                continue
            mb = torch.from_numpy(mb).to(device, non_blocking=True)
            x = obs[mb].contiguous(memory_format=memory_format(speed))  # (B, 4, 84, 84)
            with torch.autocast(device.type, torch.bfloat16, enabled=speed.bf16):
                logits, values = policy(x)
            loss, terms = ppo_loss(logits, values, actions[mb], old_logp[mb], advantages[mb], returns[mb],
                                   torch.ones(len(mb), device=device), clip, args.ent_coef, args.vf_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
            optimizer.step()
            totals.add(terms, last_epoch=epoch == args.n_epochs - 1)
    keep = torch.from_numpy(is_transition).to(device)
    return totals.stats([explained_variance(buf.values.flatten()[keep], returns[keep])])[0]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def train_loop(members: list[Member], learner: Learner, envs: Envs, speed: Speed, report: TrainingReport,
               verbose: int = 0) -> list[Path]:
    """Train K runs that resume at the same step: collect, evaluate, update, log, save. Returns each run's
    final model."""
    args, k = members[0].args, len(members)
    device = args.device
    act = act_steps(learner.act, envs, speed, device)
    buf = Rollout.empty(args.n_steps, args.n_envs, device, members=k)
    steps = members[0].start
    evaluations = Evaluations(members, learner, speed, verbose)
    next_save = next_multiple(steps, args.save_freq)
    report.start_clock()
    try:
        with stopping.listening():  # SIGTERM / SIGUSR1: finish this iteration, checkpoint, stop
            while steps < args.n_timesteps:
                with torch_threads(speed.collect_threads):
                    collect(envs, act, buf)
                steps += args.rollout_size
                evaluations.run_due(steps)

                lr = linear_schedule(args.learning_rate, args.lr_linear, steps, args.n_timesteps)
                clip = linear_schedule(args.clip_range, args.clip_linear, steps, args.n_timesteps)
                on = buf.to(device)  # rewards and flags move to the device once per rollout
                advantages = gae(on.rewards, on.values, on.done, on.trunc, on.last_value, on.last_done,
                                 on.last_trunc, args.gamma, args.gae_lambda)  # (T, K, N)
                stats = learner.update(buf, advantages, lr, clip)
                for m, st in zip(members, stats):  # a NaN update is never checkpointed nor saved as a model
                    check_finite_update(m.args, m.run_dir, steps, st._asdict() | {"explained_variance": 0.0})

                for m in members:
                    m.n_updates += args.n_epochs
                report.after_update(steps, stats, lr, clip, envs.finished, [m.n_updates for m in members])
                saved = next_save is not None and steps >= next_save
                if saved or (stopping.requested() and steps < args.n_timesteps):
                    paths = save_members(members, learner, steps, lambda m, at=steps: checkpoint_path(m.run_dir, at))
                    next_save = next_multiple(steps, args.save_freq)
                    if (name := stopping.requested()) and steps < args.n_timesteps:
                        raise stopping.Stopped(name, steps, paths)  # exactly a periodic checkpoint: resumable
        finals = save_members(members, learner, steps, lambda m: final_model_path(m.run_dir, m.args.env_id))
        report.done(steps, evaluations.seconds)
        return finals
    finally:
        evaluations.close()
