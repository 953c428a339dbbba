"""The learner: what acts and learns for a pack of K runs (K = 1: a run alone), as the training loop sees it.

Three kinds implement it (:mod:`dimattn.engines.learners`), chosen once per pack as a :data:`Drive`:

- ``alone``: one network and its torch Adam (a run alone, or a pack whose block cannot be vmapped:
  its runs train one after another);
- ``threaded``: K networks, each acting and learning in a worker thread of its own (a pack on the CPU);
- ``vmapped``: K networks as one vmapped network with a per-member Adam (a pack on an accelerator).

Everything that takes a learner (:func:`dimattn.engines.ppo.train_loop`, :class:`dimattn.engines.evaluation.
Evaluations`, :func:`dimattn.engines.members.save_members`) types it as :class:`Learner`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

import torch
from torch import nn

from dimattn.engines.rollout import Rollout

#: How a pack's members are driven; decided once per pack (:func:`dimattn.engines.train.prepare`).
Drive = Literal["alone", "threaded", "vmapped"]

#: SB3's PPO: Adam with eps 1e-5 and torch's betas (every learner's optimiser).
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5


class MemberState(NamedTuple):
    """One run's network and torch Adam, holding what it has learned (its checkpoint is written from them)."""

    policy: nn.Module
    optimizer: torch.optim.Optimizer


class UpdateStats(NamedTuple):
    """What one update logs, under SB3's ``train/*`` names (see :func:`dimattn.engines.progress.log_update`)."""

    pg: float
    value: float
    entropy: float
    clipfrac: float
    kl: float  # over the last epoch's minibatches, as SB3 logs it
    loss: float  # the last minibatch's, as SB3 logs it
    explained_variance: float


class Learner(Protocol):
    """K networks that act and learn together."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (K, n, 4, 84, 84) uint8 -> logits (K, n, A), values (K, n), without gradients."""

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (K, n, 4, 84, 84) uint8 -> actions, log-probs, values (K, n), each run from its own RNG."""

    def update(self, buf: Rollout, advantages: torch.Tensor, lr: float, clip: float) -> list[UpdateStats]:
        """``n_epochs`` PPO passes of each network over its part of ``buf``; advantages (T, K, N)."""

    def state(self, i: int) -> MemberState:
        """Run ``i``'s network and torch Adam, holding what it has learned (to write its checkpoint)."""

    def close(self) -> None:
        """Release what the learner holds (worker threads)."""
