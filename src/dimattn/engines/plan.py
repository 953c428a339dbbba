"""A training plan: K runs of one game and agent (K = 1: a run alone), checked and resolved once.

Made by :func:`dimattn.engines.train.prepare`; read by :func:`dimattn.engines.train.run_plan` and the engines,
which never check or resolve again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dimattn.engines.config import PPOArgs, RunConfig
from dimattn.engines.learner import Drive
from dimattn.engines.speed import Speed


@dataclass(frozen=True)
class TrainPlan:
    """K runs of one game and agent, checked and resolved once by :func:`dimattn.engines.train.prepare`.

    ``configs``: what each run's ``config.yml`` records (its engine ``fast`` or ``sb3``, never ``auto``);
    ``args``: what the engines read; ``speed``: the fast engine's levers (None for ``sb3``); ``drive``: how
    the members act and learn (:data:`dimattn.engines.learner.Drive`); ``chosen``: how the engine was chosen,
    printed with the run.
    """

    configs: tuple[RunConfig, ...]
    args: tuple[PPOArgs, ...]
    engine: str
    device: torch.device
    speed: Speed | None
    drive: Drive
    chosen: str

    @property
    def k(self) -> int:
        return len(self.configs)
