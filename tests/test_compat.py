"""Checkpoints written before the layout move (release 0.1.0, modules at the package's top level) still load.

SB3 zips store ``policy_kwargs`` with cloudpickle, so the fixture's ``data`` names
``dimattn.networks.SelfAttnCNN``; :mod:`dimattn.networks` is kept as a re-export for them.
"""

from pathlib import Path

import torch

from dimattn import ActorCritic, load_agent
from dimattn.agents.networks import SelfAttnCNN

OLD = Path(__file__).parent / "fixtures" / "pong_cwca_v0.1.0.zip"  # CWCA, Pong, features_dim 8, written by 0.1.0


def test_old_checkpoint_names_the_old_module():
    import zipfile

    assert "dimattn.networks.SelfAttnCNN" in zipfile.ZipFile(OLD).read("data").decode()


def test_old_checkpoint_loads_with_sb3_ppo_load():
    from stable_baselines3 import PPO

    model = PPO.load(OLD, device="cpu")
    assert model.policy.features_extractor_class is SelfAttnCNN
    assert model.policy.features_extractor.attention is not None
    obs = torch.randint(0, 256, (1, 4, 84, 84), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    theirs = model.policy.get_distribution(model.policy.obs_to_tensor(obs.numpy())[0]).distribution.logits
    ours = load_agent(OLD)
    assert isinstance(ours, ActorCritic) and ours.agent == "CWCA"
    torch.testing.assert_close(torch.log_softmax(ours(obs)[0], -1), theirs)  # Categorical keeps normalised logits
