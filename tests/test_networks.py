"""The encoder and actor-critic of SPEC §1, SB3 interoperability, and loading checkpoints back."""

import io
import json
import math
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from dimattn import ActorCritic, DimattnError, SelfAttnCNN, SelfAttnCNNPPO, load_agent
from dimattn.agents.attention import AGENTS
from dimattn.agents.networks import observation_space


@pytest.mark.parametrize("agent", AGENTS)
def test_shapes_and_maps(agent):
    torch.manual_seed(0)
    net = ActorCritic(n_actions=6, self_attn=agent)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    logits, value = net(obs)
    assert logits.shape == (3, 6) and value.shape == (3,)
    maps = net.features_extractor.maps(obs.float() / 255)
    assert maps["h1"].shape == maps["attention"].shape == maps["block"].shape == (3, 16, 20, 20)
    assert maps["h2"].shape == (3, 32, 9, 9) and maps["features"].shape == (3, 256)
    assert net.features_extractor.linear.in_features == 2592
    if agent == "NA":
        assert torch.equal(maps["block"], maps["h1"])


def test_published_name_is_the_same_class():
    assert SelfAttnCNNPPO is SelfAttnCNN


def test_same_parameters_and_init_as_sb3_policy():
    """ActorCritic has SB3 ActorCriticPolicy's names and init statistics (orthogonal, gains √2/0.01/1)."""
    torch.manual_seed(0)
    policy = ActorCriticPolicy(observation_space(), gym.spaces.Discrete(4), lambda _: 1e-3, net_arch=[],
                               features_extractor_class=SelfAttnCNN,
                               features_extractor_kwargs=dict(self_attn="CWRCA"))
    net = ActorCritic(4, "CWRCA")
    ours = net.state_dict()
    theirs = {k: v for k, v in policy.state_dict().items() if not k.startswith(("pi_", "vf_"))}
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        assert value.shape == theirs[key].shape
        if key.endswith("bias"):
            assert not value.any()
    # orthogonal with gain g: W Wᵀ = g² I on the smaller side
    w = net.action_net.weight
    torch.testing.assert_close(w @ w.T, 0.01**2 * torch.eye(4), atol=1e-6, rtol=1e-4)
    q = net.features_extractor.attention.query.weight.flatten(1)
    torch.testing.assert_close(q @ q.T, 2.0 * torch.eye(16), atol=1e-4, rtol=1e-4)
    # same outputs once weights are shared
    policy.load_state_dict({**policy.state_dict(), **ours})
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    dist = policy.get_distribution(obs.float())
    torch.testing.assert_close(net(obs)[0].log_softmax(-1), dist.distribution.logits)


class PublishedNet(nn.Module):
    """An independent re-statement of SPEC §1-2 with the published code's parameter names (CWCA)."""

    def __init__(self, n_actions):
        super().__init__()
        self.c1, self.c2, self.l1 = nn.Conv2d(4, 16, 8, 4), nn.Conv2d(16, 32, 4, 2), nn.Linear(2592, 256)
        self.w_qs, self.w_ks, self.w_vs = (nn.Conv2d(16, 16, 1) for _ in range(3))
        self.pi, self.v = nn.Linear(256, n_actions), nn.Linear(256, 1)

    def forward(self, obs):
        h1 = torch.relu(self.c1(obs.float() / 255))
        n, c, hh, ww = h1.shape
        q, k, v = (f(h1).permute(0, 2, 3, 1).reshape(n * hh, ww, c) for f in (self.w_qs, self.w_ks, self.w_vs))
        att = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(c), -1), v)
        a = att.reshape(n, hh, ww, c).permute(0, 3, 1, 2) + h1
        return self.pi(torch.relu(self.l1(torch.relu(self.c2(a)).flatten(1))))

    def sb3_state_dict(self):
        fe = {"c1": self.c1, "c2": self.c2, "l1": self.l1, "self_attn_layer.w_qs": self.w_qs,
              "self_attn_layer.w_ks": self.w_ks, "self_attn_layer.w_vs": self.w_vs}
        out = {}
        for prefix in ("features_extractor", "pi_features_extractor", "vf_features_extractor"):
            for name, mod in fe.items():
                out[f"{prefix}.{name}.weight"] = mod.weight.detach()
                out[f"{prefix}.{name}.bias"] = mod.bias.detach()
            out[f"{prefix}.self_attn_layer.alpha"] = torch.zeros(1)
            out[f"{prefix}.self_attn_layer.beta"] = torch.ones(1)
        out.update({"action_net.weight": self.pi.weight.detach(), "action_net.bias": self.pi.bias.detach(),
                    "value_net.weight": self.v.weight.detach(), "value_net.bias": self.v.bias.detach()})
        return out


def _write_published_zip(path, state, kwargs=None):
    buf = io.BytesIO()
    torch.save(state, buf)
    data = {"policy_kwargs": {":type:": "<class 'dict'>", ":serialized:": "bm90IHVzZWQ=",
                              "features_extractor_kwargs": kwargs or {}, "net_arch": []},
            "num_timesteps": 500000}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("policy.pth", buf.getvalue())
        zf.writestr("data", json.dumps(data))


def test_published_checkpoint_loads_and_computes_the_same_logits(tmp_path):
    torch.manual_seed(3)
    ref = PublishedNet(6)
    path = tmp_path / "Pong_CWCA_0_model_checkpoint_500000_steps.zip"
    _write_published_zip(path, ref.sb3_state_dict())  # agent known from the file name only
    agent = load_agent(path)
    assert agent.agent == "CWCA" and agent.meta["game"] == "Pong" and agent.meta["num_timesteps"] == 500000
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(agent(obs)[0], ref(obs))
    with pytest.raises(DimattnError, match="holds a CWCA agent, not SWA"):
        load_agent(path, agent="SWA")


def test_published_checkpoint_kind_from_policy_kwargs(tmp_path):
    ref = PublishedNet(4)
    path = tmp_path / "model.zip"
    _write_published_zip(path, ref.sb3_state_dict(), {"self_attn": "CWCA"})
    assert load_agent(path).agent == "CWCA"
    anonymous = tmp_path / "anon.zip"
    _write_published_zip(anonymous, ref.sb3_state_dict())
    with pytest.raises(DimattnError, match="does not say which attention agent"):
        load_agent(anonymous)
    assert load_agent(anonymous, agent="CWCA").agent == "CWCA"


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    ref = PublishedNet(4)
    path = tmp_path / "model.zip"
    _write_published_zip(path, ref.sb3_state_dict(), {"self_attn": "NA"})  # claims NA, holds attention
    with pytest.raises(DimattnError, match="does not fit a NA network"):
        load_agent(path)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_corrupt_files_are_refused(tmp_path, content):
    path = tmp_path / "model.zip"
    path.write_bytes(content)
    with pytest.raises(DimattnError) as err:
        load_agent(path)
    assert "\n" not in str(err.value)


def test_hostile_policy_file_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("__import__('os').system('touch /tmp/dimattn-pwned')",))

    import pickle

    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("policy.pth", pickle.dumps({"action_net.weight": Evil()}))
    with pytest.raises(DimattnError, match="cannot read checkpoint"):
        load_agent(path)
    missing = tmp_path / "nothing.zip"
    with pytest.raises(DimattnError, match="does not exist"):
        load_agent(missing)


def test_act_samples_valid_actions():
    net = ActorCritic(5, "SWA")
    actions = net.act(np.zeros((7, 4, 84, 84), dtype=np.uint8))
    assert actions.shape == (7,) and ((actions >= 0) & (actions < 5)).all()
