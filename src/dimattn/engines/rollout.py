"""A rollout's buffer: what K runs (a pack; K = 1 alone) collected in one rollout, as the learners read it.

Filled by :func:`dimattn.engines.ppo.collect`; read by :func:`dimattn.engines.ppo.gae` and each learner's
``update`` (:mod:`dimattn.engines.learner`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dimattn.agents.networks import OBS_SHAPE


@dataclass
class Rollout:
    """One rollout of K runs (a pack; K = 1 alone), T = n_steps, N = n_envs of each run.

    Shapes are (T, K, N) (or (T, N) for one run's part, :meth:`member`). ``done[t]``: obs[t] ended its
    episode (EnvPool resets that env at step t, so step t is no transition); ``trunc[t]``: that end was
    the time limit. What the network makes lives on its device; rewards and flags, born on the CPU, stay
    there during the rollout (:meth:`to` moves them once).
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

        def host(*shape: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, pin_memory=pin)

        return cls(obs=dev(*lead, *OBS_SHAPE, dtype=torch.uint8), actions=dev(*lead, dtype=torch.int64),
                   logprobs=dev(*lead), values=dev(*lead), rewards=host(*lead, dtype=torch.float32),
                   done=host(*lead), trunc=host(*lead), last_value=dev(*lead[1:]), last_done=host(*lead[1:]),
                   last_trunc=host(*lead[1:]))

    def member(self, k: int) -> Rollout:
        """Run ``k``'s part, (T, N), everything on the network's device."""
        def part(name: str, x: torch.Tensor) -> torch.Tensor:
            return x[k] if name.startswith("last_") else x[:, k]  # (K, N) or (T, K, N, ...)

        return self._map(lambda name, x: part(name, x).to(self.obs.device, non_blocking=True))

    def to(self, device: torch.device | str) -> Rollout:
        """The rollout with every tensor on ``device`` (those already there are not copied)."""
        return self._map(lambda name, x: x.to(device, non_blocking=True))

    def _map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> Rollout:
        return Rollout(**{f.name: fn(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)})
