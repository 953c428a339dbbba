"""dimattn: dimensional self-attention agents for visual deep RL on Atari.

The Python API behind the ``dimattn`` command line::

    from dimattn import build_attention, AGENTS, SelfAttnCNN, ActorCritic, load_agent

The names load on first use (PEP 562), so ``import dimattn`` and ``dimattn --help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dimattn.errors import DimattnError

if TYPE_CHECKING:
    from dimattn.agents.attention import AGENTS, build_attention
    from dimattn.agents.checkpoints import load_agent
    from dimattn.agents.networks import ActorCritic, SelfAttnCNN, SelfAttnCNNPPO

__version__ = "0.1.0"
__all__ = ["AGENTS", "ActorCritic", "DimattnError", "SelfAttnCNN", "SelfAttnCNNPPO", "build_attention",
           "load_agent", "__version__"]

#: Public name -> the module that defines it.
_LAZY = {"AGENTS": "dimattn.agents.attention", "build_attention": "dimattn.agents.attention",
         "load_agent": "dimattn.agents.checkpoints", "ActorCritic": "dimattn.agents.networks",
         "SelfAttnCNN": "dimattn.agents.networks", "SelfAttnCNNPPO": "dimattn.agents.networks"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dimattn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
