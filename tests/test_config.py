"""Hyperparameters: the shipped SPEC §4 values, RL Zoo-style overrides, parsing without eval."""

import pytest

from dimattn.cli import _config_from_args as config_from_args
from dimattn.cli import build_parser
from dimattn.engines.config import build_config
from dimattn.engines.literals import parse_value
from dimattn.engines.rlzoo import default_hyperparams, parse_hyperparams
from dimattn.errors import DimattnError

PUBLISHED = (
    "train --algo ppo --env PongNoFrameskip-v4 --tensorboard-log logs --eval-freq 200000 --eval-episodes 5 "
    "--save-freq 500000 --log-folder logs --seed 0 --vec-env subproc --uuid --hyperparams"
).split() + [
    "policy_kwargs:dict(features_extractor_class=SelfAttnCNNPPO, "
    "features_extractor_kwargs=dict(self_attn='NA'), net_arch=[])"
]


def test_spec_hyperparameters_are_shipped():
    hp = default_hyperparams()
    assert {k: hp[k] for k in ("n_envs", "n_steps", "n_epochs", "batch_size", "learning_rate", "clip_range",
                               "vf_coef", "ent_coef", "gamma", "gae_lambda", "max_grad_norm")} == {
        "n_envs": 16, "n_steps": 128, "n_epochs": 3, "batch_size": 256, "learning_rate": "lin_2.5e-4",
        "clip_range": "lin_0.1", "vf_coef": 1.0, "ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95,
        "max_grad_norm": 0.5}
    assert hp["n_timesteps"] == 1e7 and hp["normalize_advantage"] is True
    assert hp["policy_kwargs"] == {"features_extractor_class": "SelfAttnCNNPPO",
                                   "features_extractor_kwargs": {"self_attn": "NA"}, "net_arch": []}


def test_published_command_line_parses_to_the_study_config():
    args = build_parser().parse_args(PUBLISHED)
    config = config_from_args(args)
    assert (config.game, config.env_id, config.agent, config.seed) == ("Pong", "PongNoFrameskip-v4", "NA", 0)
    assert (config.eval_freq, config.eval_episodes, config.save_freq) == (200_000, 5, 500_000)
    assert config.n_timesteps == 10_000_000 and config.vec_env == "subproc"
    assert args.uuid and args.tensorboard_log == "logs" and args.log_folder == "logs"
    assert config.hyperparams["n_envs"] == 16 and config.hyperparams["learning_rate"] == "lin_2.5e-4"


@pytest.mark.parametrize("agent", ["SWA", "CWRA", "CWCA", "CWRCA"])
def test_agent_from_hyperparams_or_short_form(agent):
    line = [a.replace("'NA'", f"'{agent}'") for a in PUBLISHED]
    assert config_from_args(build_parser().parse_args(line)).agent == agent
    short = build_parser().parse_args(["train", "--env", "Breakout", "--agent", agent.lower(), "-n", "1e5"])
    config = config_from_args(short)
    assert config.agent == agent and config.n_timesteps == 100_000
    assert config.hyperparams["policy_kwargs"]["features_extractor_kwargs"]["self_attn"] == agent


def test_agent_contradiction_is_an_error():
    args = build_parser().parse_args(PUBLISHED + ["--agent", "CWCA"])
    with pytest.raises(DimattnError, match="contradicts"):
        config_from_args(args)


@pytest.mark.parametrize("text,value", [
    ("8", 8), ("-1.5", -1.5), ("lin_2.5e-4", "lin_2.5e-4"), ("'lin_1e-3'", "lin_1e-3"), ("[64, 64]", [64, 64]),
    ("dict(a=1, b=dict(c='x'), d=[])", {"a": 1, "b": {"c": "x"}, "d": []}), ("True", True), ("None", None),
    ("{'pi': [64]}", {"pi": [64]}), ("nn.ReLU", "nn.ReLU"), ("SelfAttnCNNPPO", "SelfAttnCNNPPO"),
])
def test_values_are_parsed(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "open('/etc/passwd')", "dict(**x)", "lambda: 1", "os.system",
    "[x for x in range(3)]", "1 +", "dict(a=exec('1'))",
])
def test_code_is_never_executed(text):
    with pytest.raises(DimattnError):
        parse_value(text)


@pytest.mark.parametrize("items,match", [
    (["n_envs"], "malformed"), (["nope:1"], "unknown hyperparameter"), ([":1"], "malformed"),
])
def test_malformed_items(items, match):
    with pytest.raises(DimattnError, match=match):
        parse_hyperparams(items)


def test_policy_kwargs_override_is_merged():
    config = build_config(
        "Breakout",
        hyperparams=["policy_kwargs:dict(features_extractor_kwargs=dict(self_attn='CWCA', ada_attn='alpha'))"],
    )
    kw = config.hyperparams["policy_kwargs"]
    assert kw["features_extractor_class"] == "SelfAttnCNNPPO" and kw["net_arch"] == []
    assert kw["features_extractor_kwargs"] == {"self_attn": "CWCA", "ada_attn": "alpha"}
    with pytest.raises(DimattnError, match="ada_attn"):
        build_config("Breakout", hyperparams=["policy_kwargs:dict(features_extractor_kwargs=dict(ada_attn='x'))"])


def test_conf_file(tmp_path):
    conf = tmp_path / "ppo.yml"
    conf.write_text("PongNoFrameskip-v4:\n  n_envs: 8\n  batch_size: 128\natari:\n  n_envs: 4\n")
    assert build_config("Pong", conf_file=conf).hyperparams["n_envs"] == 8
    assert build_config("Breakout", conf_file=conf).hyperparams["n_envs"] == 4
    # --hyperparams beats the conf file
    assert build_config("Pong", conf_file=conf, hyperparams=["n_envs:2"]).hyperparams["n_envs"] == 2
    conf.write_text("atari: [1, 2]\n")
    with pytest.raises(DimattnError, match="mapping"):
        build_config("Pong", conf_file=conf)
    with pytest.raises(DimattnError, match="does not exist"):
        build_config("Pong", conf_file=tmp_path / "missing.yml")


@pytest.mark.parametrize("hp,match", [
    (["n_envs:0"], "n-envs must be a positive"), (["batch_size:100"], "must divide"),
    (["learning_rate:'fast'"], "learning_rate"), (["n_steps:1.5"], "n-steps"),
])
def test_invalid_values(hp, match):
    with pytest.raises(DimattnError, match=match):
        build_config("Pong", hyperparams=hp)


@pytest.mark.parametrize("name", ["Pong", "pong", "PongNoFrameskip-v4", "ALE/Pong-v5"])
def test_game_ids(name):
    assert build_config(name).env_id == "PongNoFrameskip-v4"
