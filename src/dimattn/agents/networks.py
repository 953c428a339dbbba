"""The study's CNN encoder with an attention block, and the actor-critic built on it (SPEC §1).

    x (N,4,84,84) uint8 --/255--> conv1 8x8/4 + ReLU -> H1 (N,16,20,20)
      -> attention block (identity for NA)       -> A  (N,16,20,20)
      -> conv2 4x4/2 + ReLU                      -> H2 (N,32,9,9)
      -> flatten (C,H,W order) -> linear + ReLU  -> features (N,256)
    logits = action_net(features) (N,n_actions); value = value_net(features) (N,1)

:class:`SelfAttnCNN` is an SB3 ``BaseFeaturesExtractor`` (SB3 divides images by 255 before it).
:class:`ActorCritic` is the same network as SB3's ``ActorCriticPolicy`` with ``net_arch=[]``,
with the same parameter names and initialisation, for engines and tools that do not need SB3.
"""

from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from dimattn.agents.attention import build_attention

OBS_SHAPE = (4, 84, 84)


class SelfAttnCNN(BaseFeaturesExtractor):
    """Encoder of SPEC §1 with the attention block of agent ``self_attn`` after the first conv.

    Args:
        observation_space: a Box of shape (4, 84, 84) (channel-first stacked frames).
        features_dim: size of the output features (256 in the study).
        self_attn: the agent: ``NA``, ``SWA``, ``CWRA``, ``CWCA`` or ``CWRCA``.
        ada_attn: ``None``, ``"alpha"``, ``"beta"`` or ``"alpha_beta"``.
        norm_softmax: ``False`` for unscaled attention without softmax.

    ``forward`` takes observations already scaled to [0, 1], (N, 4, 84, 84) -> (N, features_dim).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        self_attn: str = "NA",
        ada_attn: str | None = None,
        norm_softmax: bool = True,
    ) -> None:
        super().__init__(observation_space, features_dim)
        n_input = observation_space.shape[0]
        self.conv1 = nn.Conv2d(n_input, 16, kernel_size=8, stride=4)
        self.attention = build_attention(self_attn, 16, ada_attn=ada_attn, norm_softmax=norm_softmax)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=4, stride=2)
        with torch.no_grad():
            sample = torch.zeros(1, *observation_space.shape)
            n_flat = self._convs(sample).flatten(1).shape[1]  # 32*9*9 = 2592 for 84x84
        self.linear = nn.Linear(n_flat, features_dim)
        self.agent = str(self_attn).upper()

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, 84, 84) in [0,1] -> H2 (N, 32, 9, 9)."""
        h1 = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(self.attention(h1)))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self._convs(observations).flatten(1)))

    def maps(self, observations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate maps for inspection: ``h1`` (N,16,20,20), ``attention`` (N,16,20,20),
        ``block`` (N,16,20,20, the block's output incl. residual), ``h2`` (N,32,9,9),
        ``features`` (N,256). ``attention`` is zeros for NA."""
        h1 = torch.relu(self.conv1(observations))
        att = self.attention.attention(h1) if hasattr(self.attention, "attention") else torch.zeros_like(h1)
        block = self.attention(h1)
        h2 = torch.relu(self.conv2(block))
        return {"h1": h1, "attention": att, "block": block, "h2": h2,
                "features": torch.relu(self.linear(h2.flatten(1)))}


#: The name the published code gave its extractor; accepted in ``--hyperparams`` and pickles.
SelfAttnCNNPPO = SelfAttnCNN


def observation_space(shape: tuple[int, ...] = OBS_SHAPE) -> gym.spaces.Box:
    """The uint8 Box of stacked frames the network expects."""
    return gym.spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)


class ActorCritic(nn.Module):
    """Policy and value heads on one shared :class:`SelfAttnCNN` (SB3 ``CnnPolicy``, ``net_arch=[]``).

    Parameter names match SB3's ``ActorCriticPolicy`` (``features_extractor.*``, ``action_net.*``,
    ``value_net.*``), so state dicts move between the two. Initialisation is SB3's ``ortho_init``:
    orthogonal weights, zero biases, gain √2 for the extractor, 0.01 for ``action_net``, 1 for ``value_net``.
    """

    def __init__(
        self,
        n_actions: int,
        self_attn: str = "NA",
        ada_attn: str | None = None,
        norm_softmax: bool = True,
        features_dim: int = 256,
        obs_shape: tuple[int, ...] = OBS_SHAPE,
    ) -> None:
        super().__init__()
        self.features_extractor = SelfAttnCNN(
            observation_space(obs_shape), features_dim, self_attn, ada_attn, norm_softmax
        )
        self.action_net = nn.Linear(features_dim, n_actions)
        self.value_net = nn.Linear(features_dim, 1)
        self.config = dict(n_actions=n_actions, self_attn=self.features_extractor.agent,
                           ada_attn=ada_attn, norm_softmax=norm_softmax, features_dim=features_dim)
        for module, gain in ((self.features_extractor, np.sqrt(2)), (self.action_net, 0.01),
                             (self.value_net, 1.0)):
            module.apply(partial(BasePolicy.init_weights, gain=gain))

    @property
    def agent(self) -> str:
        return self.features_extractor.agent

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (N, 4, 84, 84) uint8 (or float in [0,255]) -> logits (N, n_actions), value (N,)."""
        features = self.features_extractor(obs.float() / 255.0)
        # Under bf16 autocast (the fast engine's opt-in lever) the heads still run in float32: their
        # outputs are the log-probabilities and values that PPO's ratios and losses compare.
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            return self.action_net(features), self.value_net(features).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        """Actions (N,) for observations (N, 4, 84, 84); sampled unless ``deterministic``."""
        device = next(self.parameters()).device
        logits, _ = self(torch.as_tensor(np.asarray(obs), device=device))
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        return torch.distributions.Categorical(logits=logits).sample().cpu().numpy()
