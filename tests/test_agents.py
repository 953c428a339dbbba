"""Attention blocks of your own: the registry, ``--plugin``, the positions, and bad input (one line, exit 2,
nothing written). The example plugin package's whole path (install, train, study, report, explain,
``PPO.load``) is tests/test_agents_plugin.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from dimattn.agents import registry
from dimattn.agents.attention import AGENTS
from dimattn.agents.networks import ActorCritic
from dimattn.errors import DimattnError

REPO = Path(__file__).resolve().parents[1]
TINY = ["-n", "256", "--eval-freq", "256", "--eval-episodes", "1", "--save-freq", "0",
        "--hyperparams", "n_envs:2", "n_steps:128", "batch_size:64", "n_epochs:1"]

#: A block a researcher could write in a minute: each row's mean over the width, mixed back into the row
#: (horizontal), with a learnable 1x1 convolution.
ROWPOOL = '''
import torch
from torch import nn
from dimattn.agents.registry import register


class RowPool(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x):  # (N, C, H, W) -> (N, C, H, W)
        return x + self.mix(x.mean(3, keepdim=True)).expand_as(x)


register("ROWPOOL", lambda shape: RowPool(shape[0]), "each row's mean mixed back into the row", "horizontal")
'''
BAD_PLUGINS = {
    "shrink": "import torch.nn as nn\nfrom dimattn.agents.registry import register\n"
              "register('SHRINK', lambda shape: nn.MaxPool2d(2), 'halves the map', 'spatial')\n",
    "twice": "import torch.nn as nn\nfrom dimattn.agents.registry import register\n"
             "register('CWCA', lambda shape: nn.Identity(), 'a second CWCA', 'horizontal')\n",
    "broken": "import not_a_module_anywhere\n",
}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m dimattn ...`` in a fresh process (a clean registry), run in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop(registry.PLUGINS_ENV, None)
    return subprocess.run([sys.executable, "-m", "dimattn", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def scratch_block():
    names = []
    yield names
    for name in names:
        registry.unregister(name)


def test_the_five_come_first_with_their_bias():
    listed = registry.blocks()
    assert tuple(b.name for b in listed[:5]) == AGENTS
    assert {b.name: b.bias for b in listed[:5]} == {"NA": "none", "SWA": "vertical", "CWRA": "vertical",
                                                    "CWCA": "horizontal", "CWRCA": "both"}
    assert all(b.source == "dimattn (the study)" for b in listed[:5])
    text = registry.listing()
    assert text.splitlines()[1].split()[:2] == ["NA", "none"] and "conv2" in text.splitlines()[-1]


def test_labels_name_a_block_and_its_place():
    assert registry.check_agent("cwca@Conv2") == "CWCA@conv2"
    assert registry.check_agent("swa@conv1") == "SWA"
    assert registry.agent_order(["CWCA@conv2", "ZZZ", "CWCA", "NA"]) == ["NA", "CWCA", "CWCA@conv2", "ZZZ"]
    assert registry.bias_of("CWCA@conv2") == "horizontal" and registry.bias_of("ZZZ") == "unknown"
    with pytest.raises(DimattnError, match="unknown position 'conv3'.*conv1 or conv2"):
        registry.check_agent("CWCA@conv3")
    with pytest.raises(DimattnError, match="unknown agent 'NOPE'.*--plugin"):
        registry.check_agent("NOPE")


def test_a_block_after_conv2_sees_h2_and_keeps_the_state_dict_keys():
    torch.manual_seed(0)
    net = ActorCritic(4, "CWCA@conv2")
    assert net.agent == "CWCA@conv2" and net.features_extractor.attention.query.in_channels == 32
    maps = net.features_extractor.maps(torch.rand(2, 4, 84, 84))
    assert maps["input"].shape == maps["attention"].shape == maps["block"].shape == (2, 32, 9, 9)
    assert maps["h1"].shape == (2, 16, 20, 20)
    assert {k.split(".")[1] for k in net.state_dict() if k.startswith("features_extractor.")} == \
        {"conv1", "attention", "conv2", "linear"}


def test_the_study_network_is_unchanged_by_the_registry():
    """The five at conv1 draw the same initial weights as before (SB3's order: conv1, attention, conv2)."""
    torch.manual_seed(3)
    a = ActorCritic(6, "CWRCA").state_dict()
    torch.manual_seed(3)
    b = ActorCritic(6, "CWRCA", attention_after="conv1", block_kwargs={}).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_blocks_are_one_line_errors(scratch_block):
    with pytest.raises(DimattnError, match="two blocks named CWCA"):
        registry.register("cwca", lambda shape: nn.Identity(), "another", "horizontal")
    with pytest.raises(DimattnError, match="unknown bias 'diagonal'"):
        registry.register("DIAG", lambda shape: nn.Identity(), "d", "diagonal")
    with pytest.raises(DimattnError, match="not allowed"):
        registry.register("A@B", lambda shape: nn.Identity(), "d", "none")
    scratch_block += ["SHRINKS", "TAKESK"]
    registry.register("SHRINKS", lambda shape: nn.MaxPool2d(2), "halves the map", "spatial")
    with pytest.raises(DimattnError, match=r"maps a \(N, C, H, W\) = \(2, 16, 20, 20\) batch to \(2, 16, 10, 10\)"):
        registry.check_block("SHRINKS")
    registry.register("TAKESK", lambda shape, k=1: nn.Identity(), "takes k", "none")
    registry.check_block("TAKESK@conv2", {"k": 3})
    with pytest.raises(DimattnError, match="plain data"):
        registry.check_block("TAKESK", {"k": object()})
    with pytest.raises(DimattnError, match="cannot be built with"):
        registry.check_block("TAKESK", {"j": 1})
    with pytest.raises(DimattnError, match="cannot be built with.*ada_attn"):
        registry.check_block("TAKESK", registry.block_options({}, ada_attn="alpha"))


def test_vmap_check_names_why_a_block_cannot_be_packed(scratch_block):
    assert registry.vmap_problem("CWRCA") is None and registry.vmap_problem("CWCA@conv2") is None

    class ItemGate(nn.Module):  # .item() leaves the tensor world: no vmap
        def forward(self, x):
            return x * float(x.mean().item() > 0)

    scratch_block.append("ITEMGATE")
    registry.register("ITEMGATE", lambda shape: ItemGate(), "a data-dependent gate", "none")
    problem = registry.vmap_problem("ITEMGATE")
    assert problem and "\n" not in problem


@pytest.mark.parametrize("args, message", [
    (["train", "--env", "Pong", "--agent", "CWCA@conv3"], "unknown position 'conv3'"),
    (["train", "--env", "Pong", "--plugin", "shrink", "--agent", "SHRINK"], "must return its input's shape"),
    (["train", "--env", "Pong", "--plugin", "twice", "--agent", "CWCA"], "two blocks named CWCA"),
    (["train", "--env", "Pong", "--plugin", "broken", "--agent", "NA"], "--plugin broken failed to import"),
    (["study", "init", "study", "--games", "Pong", "--agents", "NA,SHRINK", "--plugin", "shrink"],
     "must return its input's shape"),
    (["study", "init", "study", "--games", "Pong", "--agents", "NA,CWCA@conv7"], "unknown position 'conv7'"),
])
def test_bad_agents_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    for name, text in BAD_PLUGINS.items():
        (tmp_path / f"{name}.py").write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(tmp_path, *args, "-f", "logs") if args[0] == "train" else cli(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == before


def test_a_block_from_plugin_only_trains_records_and_loads(tmp_path):
    (tmp_path / "rowpool.py").write_text(ROWPOOL)
    listed = cli(tmp_path, "agents", "--plugin", "rowpool")
    assert listed.returncode == 0 and "ROWPOOL  horizontal  module rowpool " in listed.stdout

    train = cli(tmp_path, "train", "--plugin", "rowpool", "--env", "Pong", "--agent", "rowpool@conv2",
                "-f", "logs", *TINY)
    assert train.returncode == 0, train.stderr
    run = next((tmp_path / "logs" / "ppo").iterdir())
    final = run / "PongNoFrameskip-v4.zip"
    config = (run / "config.yml").read_text()
    assert "agent: ROWPOOL@conv2" in config and "attention_after: conv2" in config and "module: rowpool" in config
    with zipfile.ZipFile(final) as zf:
        meta = json.loads(zf.read("dimattn.json"))
    assert meta["agent"] == "ROWPOOL@conv2"
    assert meta["block"] == {"name": "ROWPOOL", "attention_after": "conv2", "kwargs": {}, "bias": "horizontal",
                             "package": None, "version": None, "module": "rowpool"}  # its provider, by name

    # Loading needs the block registered: found again by the module name it records (no --plugin), else one line
    (tmp_path / "rowpool.py").rename(tmp_path / "moved.py")
    refused = cli(tmp_path, "explain", "--checkpoint", str(final), "--env", "Pong", "--n-obs", "1", "--out", "ex")
    assert refused.returncode == 2 and "module rowpool" in refused.stderr and "not found" in refused.stderr
    assert not (tmp_path / "ex").exists()
    (tmp_path / "moved.py").rename(tmp_path / "rowpool.py")
    explained = cli(tmp_path, "explain", "--checkpoint", str(final), "--env", "Pong", "--n-obs", "1", "--out", "ex")
    assert explained.returncode == 0, explained.stderr
    assert "ROWPOOL@conv2" in (tmp_path / "ex" / "orientation.md").read_text()
    recorded = cli(tmp_path, "record", "--plugin", "rowpool", "--checkpoint", str(final), "--max-steps", "20",
                   "--saliency", "--out", "play.gif")
    assert recorded.returncode == 0 and (tmp_path / "play.gif").stat().st_size > 0, recorded.stderr


def test_a_block_that_cannot_be_vmapped_trains_its_pack_as_packs_of_one(tmp_path, scratch_block, capsys):
    from dimattn.engines.config import build_config
    from dimattn.engines.rundir import EvalHistory
    from dimattn.engines.speed import Speed
    from dimattn.engines.train import train_pack

    class ItemGate(nn.Module):
        def forward(self, x):
            return x * float(x.mean().item() > 0)

    scratch_block.append("ITEMGATE")
    registry.register("ITEMGATE", lambda shape: ItemGate(), "a data-dependent gate", "none")
    configs = [build_config("Pong", agent="ITEMGATE", seed=s, n_timesteps=256, engine="fast", eval_freq=256,
                            eval_episodes=1, save_freq=0, hyperparams=["n_envs:2", "n_steps:128", "batch_size:64",
                                                                        "n_epochs:1"]) for s in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    train_pack(configs, dirs, speed=dataclasses.asdict(Speed(torch_threads=1, vmap=True)))
    out = capsys.readouterr().out
    assert "ITEMGATE's block does not run under torch.func.vmap" in out and "packs of one" in out
    assert [EvalHistory.load(d).timesteps for d in dirs] == [[256], [256]]


def test_a_block_after_conv2_is_the_same_network_in_sb3():
    """SB3's policy built from config.yml's kwargs (self_attn, attention_after) is our ActorCritic, key for key,
    and computes the same outputs once the weights are shared."""
    import gymnasium as gym
    from stable_baselines3.common.policies import ActorCriticPolicy

    from dimattn.agents.networks import SelfAttnCNN, observation_space

    policy = ActorCriticPolicy(observation_space(), gym.spaces.Discrete(4), lambda _: 1e-3, net_arch=[],
                               features_extractor_class=SelfAttnCNN,
                               features_extractor_kwargs=dict(self_attn="CWCA", attention_after="conv2"))
    net = ActorCritic(4, "CWCA@conv2")
    ours = net.state_dict()
    theirs = {k: v for k, v in policy.state_dict().items() if not k.startswith(("pi_", "vf_"))}
    assert list(ours) == list(theirs) and all(ours[k].shape == theirs[k].shape for k in ours)
    policy.load_state_dict({**policy.state_dict(), **ours})
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        logits, value = net(obs)
        dist = policy.get_distribution(obs.float())
        torch.testing.assert_close(dist.distribution.logits, torch.log_softmax(logits, -1))
        torch.testing.assert_close(policy.predict_values(obs.float()).squeeze(-1), value)
