"""The study's CNN encoder with an attention block, and the actor-critic built on it (SPEC §1).

    x (N,4,84,84) uint8 --/255--> conv1 8x8/4 + ReLU -> H1 (N,16,20,20)
      -> attention block (identity for NA)       -> A  (N,16,20,20)   attention_after: conv1 (the study)
      -> conv2 4x4/2 + ReLU                      -> H2 (N,32,9,9)
         [-> attention block                     -> A2 (N,32,9,9)]    attention_after: conv2
      -> flatten (C,H,W order) -> linear + ReLU  -> features (N,256)
    logits = action_net(features) (N,n_actions); value = value_net(features) (N,1)

The block is any registered one (:mod:`dimattn.agents.registry`), built by name with plain keyword
arguments; it keeps the module name ``attention`` wherever it sits, so state dicts keep their keys.

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

from dimattn.agents.registry import DEFAULT_POSITION, agent_label, block_options, build_block, get, split_label
from dimattn.errors import DimattnError

OBS_SHAPE = (4, 84, 84)


class SelfAttnCNN(BaseFeaturesExtractor):
    """Encoder of SPEC §1 with the attention block of agent ``self_attn`` after ``attention_after``.

    Args:
        observation_space: a Box of shape (4, 84, 84) (channel-first stacked frames).
        features_dim: size of the output features (256 in the study).
        self_attn: the agent: ``NA``, ``SWA``, ``CWRA``, ``CWCA``, ``CWRCA`` or any registered block
            (a label such as ``CWCA@conv2`` also sets the position).
        ada_attn: ``None``, ``"alpha"``, ``"beta"`` or ``"alpha_beta"`` (the study's blocks).
        norm_softmax: ``False`` for unscaled attention without softmax (the study's blocks).
        attention_after: ``conv1`` (the study) or ``conv2``.
        block_kwargs: the block's keyword arguments, plain data.

    ``forward`` takes observations already scaled to [0, 1], (N, 4, 84, 84) -> (N, features_dim).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        self_attn: str = "NA",
        ada_attn: str | None = None,
        norm_softmax: bool = True,
        attention_after: str = DEFAULT_POSITION,
        block_kwargs: dict | None = None,
    ) -> None:
        super().__init__(observation_space, features_dim)
        name, position = split_label(self_attn)
        if "@" in str(self_attn) and attention_after not in (DEFAULT_POSITION, position):
            raise DimattnError(f"agent {self_attn} contradicts attention_after={attention_after!r}; give one")
        position = split_label(f"{name}@{attention_after}")[1] if position == DEFAULT_POSITION else position
        n_input, height, width = observation_space.shape
        h1 = (16, (height - 8) // 4 + 1, (width - 8) // 4 + 1)  # conv1 8x8/4: (16, 20, 20) for 84x84
        h2 = (32, (h1[1] - 4) // 2 + 1, (h1[2] - 4) // 2 + 1)  # conv2 4x4/2: (32, 9, 9)
        kwargs = block_options(block_kwargs, ada_attn, norm_softmax)
        # conv1, attention, conv2, linear: the order SB3's initialisation draws its random weights in
        self.conv1 = nn.Conv2d(n_input, 16, kernel_size=8, stride=4)
        self.attention = build_block(name, h1 if position == "conv1" else h2, kwargs)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=4, stride=2)
        self.linear = nn.Linear(h2[0] * h2[1] * h2[2], features_dim)
        self.position = position
        self.agent = agent_label(get(name).name, position)

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, 84, 84) in [0,1] -> H2 (N, 32, 9, 9), the block after conv1 or conv2."""
        h = torch.relu(self.conv1(x))
        if self.position == "conv1":
            h = self.attention(h)
        h = torch.relu(self.conv2(h))
        return self.attention(h) if self.position == "conv2" else h

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(self._convs(observations).flatten(1)))

    def maps(self, observations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate maps for inspection: ``h1`` (N,16,20,20), ``input`` (the block's input: H1, or H2
        after conv2), ``attention`` (the block's term before the residual: ``block - input`` for blocks
        without an ``attention`` method; zeros for NA), ``block`` (the block's output), ``h2`` (N,32,9,9),
        ``features`` (N,256)."""
        h1 = torch.relu(self.conv1(observations))
        inp = h1 if self.position == "conv1" else torch.relu(self.conv2(h1))
        block = self.attention(inp)
        att = self.attention.attention(inp) if hasattr(self.attention, "attention") else block - inp
        h2 = torch.relu(self.conv2(block)) if self.position == "conv1" else block
        return {"h1": h1, "input": inp, "attention": att, "block": block, "h2": h2,
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
        attention_after: str = DEFAULT_POSITION,
        block_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.features_extractor = SelfAttnCNN(
            observation_space(obs_shape), features_dim, self_attn, ada_attn, norm_softmax,
            attention_after=attention_after, block_kwargs=block_kwargs,
        )
        self.action_net = nn.Linear(features_dim, n_actions)
        self.value_net = nn.Linear(features_dim, 1)
        self.config = dict(n_actions=n_actions, self_attn=self.features_extractor.agent,
                           ada_attn=ada_attn, norm_softmax=norm_softmax, features_dim=features_dim,
                           attention_after=self.features_extractor.position, block_kwargs=dict(block_kwargs or {}))
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
