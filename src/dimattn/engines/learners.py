"""The three ways K runs' networks act and learn, behind one interface (:class:`dimattn.engines.learner.Learner`):

- :class:`NetworkLearner`: one network and its torch Adam (a run alone);
- :class:`ThreadedLearner`: K of those, each acting and learning in a worker thread of its own (a pack on
  the CPU: torch ops release the GIL, so K members use K cores; measured faster there, docs/benchmarks.md);
- :class:`VmappedLearner`: K networks as one vmapped network with a per-member Adam (a pack on an
  accelerator: one kernel per layer for all members).

:func:`make_learner` builds the one the pack's :data:`~dimattn.engines.learner.Drive` names. All three use
the same loss and minibatch draws (:func:`dimattn.engines.ppo.ppo_loss`, :func:`dimattn.engines.ppo.minibatches`),
so every member learns exactly as it would alone. In a vmapped pack:

- the K parameter sets are stacked, each tensor (K, ...) (``torch.func.stack_module_state``), and run
  as one vmapped ``functional_call`` of the study's network (all five agents);
- each member draws its minibatches from its own NumPy RNG stream (seeded with its seed, as a run
  alone seeds NumPy's global one), normalises advantages over its own minibatch, clips its own global
  gradient norm, and has its own Adam state (moments and step count);
- EnvPool's reset steps are masked per member (weights of 0) instead of being indexed out, so all
  members' minibatches keep one shape.

:meth:`VmappedLearner.update` is checked equal, to float rounding, to K separate calls of
:func:`dimattn.engines.ppo.update` on the same rollouts and RNG draws (tests/test_packed.py).
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from dimattn.agents.networks import ActorCritic
from dimattn.engines.acting import ActStep, acting
from dimattn.engines.config import PPOArgs
from dimattn.engines.learner import ADAM_BETAS, ADAM_EPS, Drive, Learner, MemberState, UpdateStats
from dimattn.engines.members import Member
from dimattn.engines.ppo import LossTerms, Totals, explained_variance, minibatches, ppo_loss, update
from dimattn.engines.rollout import Rollout
from dimattn.engines.speed import Speed, memory_format
from dimattn.host import usable_cores


def make_learner(members: list[Member], speed: Speed, drive: Drive) -> Learner:
    """The learner ``drive`` names for ``members`` (a vmapped pack's members' networks are CPU copies)."""
    if drive == "vmapped":
        return VmappedLearner([m.policy for m in members], members[0].args.device, members[0].args,
                              [m.rng for m in members], [m.optimizer for m in members], speed)
    nets = [NetworkLearner(m.policy, m.optimizer, m.args, speed, m.rng, m.gen) for m in members]
    return nets[0] if drive == "alone" else ThreadedLearner(nets)


class NetworkLearner:
    """One network (K = 1) and its torch Adam, learning by :func:`dimattn.engines.ppo.update`.

    ``rng``: the NumPy RNG of its minibatch draws; ``gen``: the torch Generator of its actions (None:
    torch's global one)."""

    def __init__(self, policy: ActorCritic, optimizer: torch.optim.Optimizer, args: PPOArgs, speed: Speed,
                 rng: Any = np.random, gen: torch.Generator | None = None) -> None:
        self.policy, self.optimizer, self.args, self.speed, self.rng = policy, optimizer, args, speed, rng
        # as it runs: channels-last and/or compiled (the same parameters as ``policy``)
        net = policy.to(memory_format=torch.channels_last) if speed.channels_last else policy
        self.net = torch.compile(net) if speed.compile else net
        self._act: ActStep = acting(self.forward, speed, gen)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (K=1, n, 4, 84, 84) -> logits (1, n, A), values (1, n), without gradients (set here: grad
        mode is per thread, and a pack's members act in worker threads)."""
        with torch.no_grad():
            x = obs.flatten(0, 1).contiguous(memory_format=memory_format(self.speed))  # (K*n, 4, 84, 84)
            logits, value = self.net(x)
        return logits.unflatten(0, obs.shape[:2]), value.unflatten(0, obs.shape[:2])  # (K, n, A), (K, n)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (1, n, 4, 84, 84) -> actions, log-probs, values (1, n), drawn from its own Generator if any."""
        return self._act(obs)

    def update(self, buf: Rollout, advantages: torch.Tensor, lr: float, clip: float) -> list[UpdateStats]:
        """``buf`` (T, 1, N) and ``advantages`` (T, 1, N): a pack of one."""
        return [self.learn(buf.member(0), advantages[:, 0], lr, clip)]

    def learn(self, run: Rollout, advantages: torch.Tensor, lr: float, clip: float) -> UpdateStats:
        """The update of this network on its own rollout ``run`` (T, N), advantages (T, N)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return update(self.net, self.optimizer, run, advantages, self.args, clip, self.speed, rng=self.rng)

    def state(self, i: int) -> MemberState:
        return MemberState(self.policy, self.optimizer)

    def close(self) -> None:
        pass


class ThreadedLearner:
    """K :class:`NetworkLearner` s, member k acting on ``obs[k]`` and learning in a worker thread."""

    def __init__(self, learners: list[NetworkLearner]) -> None:
        self.learners = learners
        self.threads = ThreadPoolExecutor(min(len(learners), usable_cores()), "dimattn-member")

    def _each(self, method: str, *per_member: Any) -> list[Any]:
        """``learner_k.method(*args_k)`` for every member k, in the worker threads."""
        return list(self.threads.map(lambda k, *a: getattr(self.learners[k], method)(*a),
                                     range(len(self.learners)), *per_member))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (K, n, ...): member k on ``obs[k:k+1]``; logits (K, n, A), values (K, n)."""
        outs = self._each("forward", obs.split(1))
        return tuple(torch.cat(parts) for parts in zip(*outs))

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (K, n, ...): member k acts on ``obs[k:k+1]`` from its own Generator; each (K, n)."""
        outs = self._each("act", obs.split(1))
        return tuple(torch.cat(parts) for parts in zip(*outs))

    def update(self, buf: Rollout, advantages: torch.Tensor, lr: float, clip: float) -> list[UpdateStats]:
        k = len(self.learners)
        runs = [buf.member(i) for i in range(k)]  # (T, N) each
        return self._each("learn", runs, [advantages[:, i] for i in range(k)], [lr] * k, [clip] * k)

    def state(self, i: int) -> MemberState:
        return self.learners[i].state(0)

    def close(self) -> None:
        self.threads.shutdown()


class VmappedLearner:
    """K networks of one architecture as stacked tensors, with a per-member Adam.

    ``params[name]`` (K, ...) are plain tensors (no autograd graph; gradients come from
    ``torch.func.grad``); ``exp_avg``/``exp_avg_sq`` the same shapes; ``adam_steps`` (K,) the
    optimiser steps each member has taken (a member can skip a minibatch that has < 2 transitions).
    ``nets``/``optimizers``: each member's own network and torch Adam (CPU copies), which it starts
    from and which :meth:`state` fills for its checkpoints; ``rngs``: each member's minibatch RNG.
    """

    def __init__(self, nets: list[ActorCritic], device: torch.device | str, args: PPOArgs, rngs: list[Any],
                 optimizers: list[torch.optim.Optimizer] | None = None, speed: Speed | None = None) -> None:
        params, buffers = stack_module_state(nets)
        self.k, self.args, self.rngs = len(nets), args, rngs
        self.params = {n: p.detach().to(device) for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")  # the architecture; weights come from params
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.adam_steps = torch.zeros(self.k, device=device)
        self.nets = nets
        self.optimizers = optimizers or [torch.optim.Adam(n.parameters(), lr=args.learning_rate, eps=ADAM_EPS)
                                         for n in nets]
        for i, (net, optimizer) in enumerate(zip(self.nets, self.optimizers)):
            self.load(i, net, optimizer)
        self._act: ActStep = acting(self.forward, speed or Speed())

    def _forward(self, params: dict, buffers: dict, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(self.base, (params, buffers), (obs,))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (K, n, 4, 84, 84) uint8 -> logits (K, n, A), values (K, n): member k acts on obs[k]."""
        return self.map(self._forward, self.params, self.buffers, obs)

    __call__ = forward

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (K, n, 4, 84, 84) -> actions, log-probs, values (K, n), drawn from torch's global RNG."""
        return self._act(obs)

    def map(self, fn: Any, params: dict, buffers: dict, *batched: torch.Tensor, shared: tuple = ()) -> Any:
        """``fn(params_k, buffers_k, *batched[k], *shared)`` for every member k, results stacked (K, ...):
        one vmapped call, i.e. one kernel per layer for all members (the convolutions become grouped
        ones)."""
        return vmap(fn, in_dims=(0, 0) + (0,) * len(batched) + (None,) * len(shared))(
            params, buffers, *batched, *shared)

    def state(self, i: int) -> MemberState:
        self.export(i, self.nets[i], self.optimizers[i])
        return MemberState(self.nets[i], self.optimizers[i])

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ members as ordinary runs
    def export(self, k: int, policy: ActorCritic, optimizer: torch.optim.Adam) -> None:
        """Copy member ``k`` into a run's own network and torch Adam (to save it as that run's checkpoint)."""
        with torch.no_grad():
            for name, p in policy.named_parameters():
                p.copy_(self.params[name][k])
        for name, p in policy.named_parameters():
            optimizer.state[p] = {"step": self.adam_steps[k].detach().cpu().clone(),
                                  "exp_avg": self.exp_avg[name][k].to(p.device, copy=True),
                                  "exp_avg_sq": self.exp_avg_sq[name][k].to(p.device, copy=True)}

    def load(self, k: int, policy: ActorCritic, optimizer: torch.optim.Adam) -> None:
        """Member ``k`` from a run's own network and torch Adam (as restored from its checkpoint)."""
        with torch.no_grad():
            for name, p in policy.named_parameters():
                self.params[name][k] = p
                state = optimizer.state.get(p)
                if state:  # a checkpoint without optimiser state starts Adam afresh
                    self.exp_avg[name][k] = state["exp_avg"]
                    self.exp_avg_sq[name][k] = state["exp_avg_sq"]
                    self.adam_steps[k] = float(state["step"])

    # ------------------------------------------------------------------ learning
    def _loss(self, params: dict, buffers: dict, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
              adv: torch.Tensor, returns: torch.Tensor, w: torch.Tensor, clip: float, ent_coef: float,
              vf_coef: float) -> tuple[torch.Tensor, LossTerms]:
        """One member's PPO loss on its minibatch (B,) (``w``: 1 for a transition, 0 for padding)."""
        logits, values = self._forward(params, buffers, obs)
        return ppo_loss(logits, values, actions, old_logp, adv, returns, w, clip, ent_coef, vf_coef)

    def update(self, buf: Rollout, advantages: torch.Tensor, lr: float, clip: float) -> list[UpdateStats]:
        """``n_epochs`` PPO passes over each member's rollout, all members at once: ``buf`` (T, K, N) with
        ``done`` on the host, ``advantages`` (T, K, N) on the pack's device."""
        args = self.args
        n_steps, k, n_envs = buf.actions.shape
        device = buf.actions.device

        def flat(x: torch.Tensor) -> torch.Tensor:  # (T, K, N, ...) -> (K, T*N, ...), step-major per member
            return x.transpose(0, 1).flatten(1, 2)

        acts, old_logp, adv_all = flat(buf.actions), flat(buf.logprobs), flat(advantages)
        returns = flat(advantages + buf.values)
        is_transition = ~np.ascontiguousarray(np.swapaxes(buf.done.numpy(), 0, 1)).reshape(k, -1)  # (K, T*N)
        member = torch.arange(k, device=device)[:, None]  # (K, 1)
        member_grad = grad(self._loss, has_aux=True)
        totals = Totals(k, device)
        for epoch in range(args.n_epochs):
            index, weight, active = (x.to(device, non_blocking=True) for x in self._draw(n_steps, n_envs,
                                                                                          is_transition))
            for s in range(index.shape[0]):
                mb = index[s]  # (K, B)
                t, e = mb // n_envs, mb % n_envs  # step and env of each row
                x = buf.obs[t, member, e]  # (K, B, 4, 84, 84)
                grads, terms = self.map(member_grad, self.params, self.buffers, x, acts[member, mb],
                                        old_logp[member, mb], adv_all[member, mb], returns[member, mb], weight[s],
                                        shared=(clip, args.ent_coef, args.vf_coef))
                self._step(grads, lr, args.max_grad_norm, active[s])
                totals.add(terms, epoch == args.n_epochs - 1, taken=active[s])
        values = flat(buf.values)
        keep = [torch.from_numpy(is_transition[j]).to(device) for j in range(k)]
        return totals.stats([explained_variance(values[j][keep[j]], returns[j][keep[j]]) for j in range(k)])

    def _draw(self, n_steps: int, n_envs: int, is_transition: np.ndarray) -> tuple[torch.Tensor, ...]:
        """One epoch's minibatches of every member, as each would draw them alone, padded to one shape:
        ``index`` (S, K, B) into the step-major (T*N) rollout, ``weight`` (S, K, B) (1 = a transition, 0 =
        padding) and ``active`` (S, K): whether the member steps on slot s (not on < 2 transitions)."""
        batch_size = self.args.batch_size
        drawn = [minibatches(n_steps, n_envs, batch_size, is_transition[k], rng) for k, rng in enumerate(self.rngs)]
        index = np.zeros((len(drawn[0]), self.k, batch_size), dtype=np.int64)
        weight = np.zeros((len(drawn[0]), self.k, batch_size), dtype=np.float32)
        for k, batches in enumerate(drawn):
            for s, mb in enumerate(batches):
                index[s, k, :len(mb)] = mb
                weight[s, k, :len(mb)] = 1.0
        return torch.from_numpy(index), torch.from_numpy(weight), torch.from_numpy(weight.sum(-1) >= 2)

    def _step(self, grads: dict[str, torch.Tensor], lr: float, max_grad_norm: float, active: torch.Tensor) -> None:
        """Clip each member's global gradient norm, then one Adam step for the ``active`` (K,) members.

        The same arithmetic as ``nn.utils.clip_grad_norm_`` and torch's Adam, member by member."""
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads.values()])  # (P, K)
        total = torch.linalg.vector_norm(norms, dim=0)  # (K,): each member's global norm, as clip_grad_norm_
        coef = torch.clamp(max_grad_norm / (total + 1e-6), max=1.0)
        self.adam_steps += active.float()
        b1, b2 = ADAM_BETAS
        bias1 = 1 - b1 ** self.adam_steps  # (K,)
        bias2_sqrt = torch.sqrt(1 - b2 ** self.adam_steps)
        for name, p in self.params.items():
            shape = (self.k,) + (1,) * (p.dim() - 1)  # broadcast (K,) over a member's tensor
            on, g = active.view(shape), grads[name] * coef.view(shape)
            m = torch.where(on, torch.lerp(self.exp_avg[name], g, 1 - b1), self.exp_avg[name])
            v = torch.where(on, self.exp_avg_sq[name] * b2 + (1 - b2) * g * g, self.exp_avg_sq[name])
            denom = v.sqrt() / bias2_sqrt.view(shape) + ADAM_EPS
            p.copy_(torch.where(on, p - (lr / bias1).view(shape) * m / denom, p))
            self.exp_avg[name], self.exp_avg_sq[name] = m, v
