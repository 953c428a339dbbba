"""Kept for checkpoints written before the package was split into layers (when the network lived here): SB3
stores ``policy_kwargs`` with cloudpickle, so their zips name ``dimattn.networks.SelfAttnCNN``. New code imports
:mod:`dimattn.agents.networks`."""

from dimattn.agents.networks import ActorCritic, SelfAttnCNN, SelfAttnCNNPPO

__all__ = ["ActorCritic", "SelfAttnCNN", "SelfAttnCNNPPO"]
