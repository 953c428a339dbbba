"""dimattn: dimensional self-attention agents for visual deep RL on Atari.

The Python API behind the ``dimattn`` command line::

    from dimattn import build_attention, AGENTS, SelfAttnCNN, ActorCritic, load_agent
"""

from dimattn.agents.attention import AGENTS, build_attention
from dimattn.agents.checkpoints import load_agent
from dimattn.agents.networks import ActorCritic, SelfAttnCNN, SelfAttnCNNPPO
from dimattn.errors import DimattnError

__version__ = "0.1.0"
__all__ = ["AGENTS", "ActorCritic", "DimattnError", "SelfAttnCNN", "SelfAttnCNNPPO", "build_attention",
           "load_agent", "__version__"]
