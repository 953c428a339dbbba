"""Packed runs: K runs of one game and agent (different seeds) learning together in one process.

A pack steps its K×N envs in shared EnvPools and acts for all K networks in one forward pass; it is
what lets a GPU node train the study at the speed of its emulators (docs/benchmarks.md). (On the CPU
a pack's members learn in threads instead, each with its own network: :func:`dimattn.engines.fast.
train_pack`.) What defines each run's learning stays its own, so every member learns exactly as it
would alone:

- the K parameter sets are stacked, each tensor (K, ...) (``torch.func.stack_module_state``), and run
  as one vmapped ``functional_call`` of the study's network (all five agents);
- each member draws its minibatches from its own NumPy RNG stream (seeded with its seed, as a run
  alone seeds NumPy's global one), normalises advantages over its own minibatch, clips its own global
  gradient norm, and has its own Adam state (moments and step count);
- EnvPool's reset steps are masked per member (weights of 0) instead of being indexed out, so all
  members' minibatches keep one shape: the loss terms are masked means.

:func:`packed_update` is checked equal, to float rounding, to K separate calls of
:func:`dimattn.engines.fast.update` on the same rollouts and RNG draws (tests/test_packed.py).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from dimattn.agents.networks import ActorCritic
from dimattn.engines.common import explained_variance
from dimattn.engines.config import PPOArgs

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5  # SB3's PPO: Adam with eps 1e-5, torch's betas
# vmap runs SDPA member by member where torch has no batching rule for it (the CPU kernels): correct,
# and said once per process by torch as a warning; the pack's speed is measured in benchmarks/.
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")


class Pack:
    """K networks of one architecture as stacked tensors, with a per-member Adam.

    ``params[name]`` (K, ...) are plain tensors (no autograd graph; gradients come from
    ``torch.func.grad``); ``exp_avg``/``exp_avg_sq`` the same shapes; ``adam_steps`` (K,) the
    optimiser steps each member has taken (a member can skip a minibatch that has < 2 transitions).
    """

    def __init__(self, nets: list[ActorCritic], device: torch.device | str) -> None:
        params, buffers = stack_module_state(nets)
        self.k = len(nets)
        self.params = {n: p.detach().to(device) for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")  # the architecture; weights come from params
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.adam_steps = torch.zeros(self.k, device=device)

    def _forward(self, params: dict, buffers: dict, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(self.base, (params, buffers), (obs,))

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (K, n, 4, 84, 84) uint8 -> logits (K, n, A), values (K, n): member k acts on obs[k]."""
        return self.map(self._forward, self.params, self.buffers, obs)

    def map(self, fn: Any, params: dict, buffers: dict, *batched: torch.Tensor, shared: tuple = ()) -> Any:
        """``fn(params_k, buffers_k, *batched[k], *shared)`` for every member k, results stacked (K, ...):
        one vmapped call, i.e. one kernel per layer for all members (the convolutions become grouped
        ones)."""
        return vmap(fn, in_dims=(0, 0) + (0,) * len(batched) + (None,) * len(shared))(
            params, buffers, *batched, *shared)

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
              vf_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's PPO loss on its minibatch (B,), with weights ``w`` (B,) of 1 for transitions and
        0 for masked-out rows: the masked means equal :func:`fast.update`'s means over the kept rows."""
        logits, values = self._forward(params, buffers, obs)
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
            stats = torch.stack([pg_loss, value_loss, entropy_loss, mean(((ratio - 1).abs() > clip).float()),
                                 mean((ratio - 1) - (logp - old_logp)), loss])
        return loss, stats

    def step(self, grads: dict[str, torch.Tensor], lr: float, max_grad_norm: float, active: torch.Tensor) -> None:
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


def packed_minibatches(n_steps: int, n_envs: int, batch_size: int, is_transition: np.ndarray,
                       rngs: list[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch's minibatches of every member, drawn as :func:`fast.minibatches` draws them alone.

    ``is_transition`` (K, T*N). Returns ``index`` (S, K, B) into the step-major (T*N) rollout, ``weight``
    (S, K, B) (1 = a transition, 0 = EnvPool's reset step or padding) and ``active`` (S, K): whether the
    member takes an optimiser step on slot s (it does not on fewer than two transitions, as alone).
    """
    n = n_steps * n_envs
    slots = n // batch_size
    index = np.zeros((slots, len(rngs), batch_size), dtype=np.int64)
    weight = np.zeros((slots, len(rngs), batch_size), dtype=np.float32)
    for k, rng in enumerate(rngs):
        order = rng.permutation(n)
        order = (order % n_steps) * n_envs + order // n_steps  # env-major -> our step-major index
        for s in range(slots):
            mb = order[s * batch_size:(s + 1) * batch_size]
            mb = mb[is_transition[k, mb]]
            index[s, k, :len(mb)] = mb
            weight[s, k, :len(mb)] = 1.0
    weight_t = torch.from_numpy(weight)
    return torch.from_numpy(index), weight_t, weight_t.sum(-1) >= 2


def packed_update(pack: Pack, obs: torch.Tensor, actions: torch.Tensor, logprobs: torch.Tensor,
                  values: torch.Tensor, done: np.ndarray, advantages: torch.Tensor, args: PPOArgs, lr: float,
                  clip: float, rngs: list[Any]) -> list[dict[str, float]]:
    """``n_epochs`` PPO passes over each member's rollout, all members at once.

    ``obs`` (T, K, N, 4, 84, 84), ``actions``/``logprobs``/``values``/``advantages`` (T, K, N) on the
    pack's device; ``done`` (T, K, N) on the host. Returns each member's SB3 ``train/*`` statistics, as
    :func:`fast.update` returns them for a run alone.
    """
    n_steps, k, n_envs = actions.shape
    device = actions.device

    def flat(x: torch.Tensor) -> torch.Tensor:  # (T, K, N, ...) -> (K, T*N, ...), step-major per member
        return x.transpose(0, 1).flatten(1, 2)

    acts, old_logp, adv_all = flat(actions), flat(logprobs), flat(advantages)
    returns = flat(advantages + values)
    is_transition = ~np.ascontiguousarray(np.swapaxes(done, 0, 1)).reshape(k, -1)  # (K, T*N)
    member = torch.arange(k, device=device)[:, None]  # (K, 1)
    member_grad = grad(pack._loss, has_aux=True)
    sums = torch.zeros(k, 5, device=device)  # pg, value, entropy, clipfrac, kl (last epoch)
    counts = torch.zeros(k, 2, device=device)  # minibatches stepped: all epochs, last epoch
    count_as = {False: torch.tensor([1.0, 0.0], device=device), True: torch.tensor([1.0, 1.0], device=device)}
    last_loss = torch.full((k,), float("nan"), device=device)
    for epoch in range(args.n_epochs):
        index, weight, active = (x.to(device, non_blocking=True)
                                 for x in packed_minibatches(n_steps, n_envs, args.batch_size, is_transition, rngs))
        if epoch == args.n_epochs - 1:
            sums[:, 4] = 0  # SB3 logs the approximate KL of the last epoch only
        for s in range(index.shape[0]):
            mb = index[s]  # (K, B)
            t, e = mb // n_envs, mb % n_envs  # step and env of each row
            x = obs[t, member, e]  # (K, B, 4, 84, 84)
            grads, stats = pack.map(member_grad, pack.params, pack.buffers, x, acts[member, mb], old_logp[member, mb],
                                    adv_all[member, mb], returns[member, mb], weight[s],
                                    shared=(clip, args.ent_coef, args.vf_coef))
            on = active[s]  # (K,)
            pack.step(grads, lr, args.max_grad_norm, on)
            sums += torch.where(on[:, None], stats[:, :5], 0.0)
            counts += on[:, None].float() * count_as[epoch == args.n_epochs - 1]
            last_loss = torch.where(on, stats[:, 5], last_loss)
    means = (sums / torch.cat([counts[:, :1].expand(k, 4), counts[:, 1:]], 1)).tolist()  # the one sync
    out = []
    for j in range(k):
        keep = torch.from_numpy(is_transition[j]).to(device)
        out.append({**dict(zip(("pg", "value", "entropy", "clipfrac", "kl"), means[j])),
                    "loss": float(last_loss[j]),
                    "explained_variance": explained_variance(flat(values)[j][keep], returns[j][keep])})
    return out
