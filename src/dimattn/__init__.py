"""dimattn: dimensional self-attention agents for visual deep RL on Atari.

The Python API behind the ``dimattn`` command line::

    from dimattn import build_attention, AGENTS, SelfAttnCNN, ActorCritic, load_agent
"""

from dimattn.attention import AGENTS, build_attention
from dimattn.checkpoints import load_agent
from dimattn.errors import DimattnError
from dimattn.networks import ActorCritic, SelfAttnCNN, SelfAttnCNNPPO

__version__ = "0.1.0"
__all__ = ["AGENTS", "ActorCritic", "DimattnError", "SelfAttnCNN", "SelfAttnCNNPPO", "build_attention",
           "load_agent", "__version__"]
