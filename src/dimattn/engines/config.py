"""A run's configuration: what ``config.yml`` holds (checked when made), and what the engines read of it.

The hyperparameters ship as ``data/ppo.yml`` (RL Baselines3 Zoo's format, SPEC §4), read by
:mod:`dimattn.engines.rlzoo`; users override them with ``--conf-file`` (same format) and
``--hyperparams key:value ...``, whose values :mod:`dimattn.engines.literals` parses (never executes).

Two forms of one run's configuration:

- :class:`RunConfig`: what ``config.yml`` holds, in the RL Zoo form users know (``hyperparams`` as
  written: ``lin_2.5e-4``, ``policy_kwargs`` with class names as strings);
- :class:`PPOArgs`: what the engines read, made once per run by :meth:`RunConfig.resolve` (schedules split
  into start + linear flag, the torch device, SB3 ``policy_kwargs`` with classes). Its other fields are the
  RunConfig's and the hyperparameters' own, taken over by name (no field is copied by hand).

A RunConfig is checked when it is made (``__post_init__``): one that exists is valid, so no layer checks it
again.

The defaults of a run (10M steps, evaluate every 200k, 5 games, save every 500k, engine auto) live in
:mod:`dimattn.engines.defaults`, which the command line reads without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from dimattn.agents.attention import ADA_ATTN
from dimattn.agents.registry import agent_of, block_options, check_agent, check_block, split_label
from dimattn.engines.defaults import (  # re-exported: the API has always found them here
    DEFAULT_ENGINE,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_EVAL_FREQ,
    DEFAULT_N_TIMESTEPS,
    DEFAULT_SAVE_FREQ,
    ENGINES,
    MAX_SEED,
    MAX_STEPS,
    VEC_ENVS,
)
from dimattn.engines.literals import as_float_schedule
from dimattn.engines.rlzoo import default_hyperparams, load_conf_file, parse_hyperparams
from dimattn.envs.protocol import DEFAULT_PROTOCOL, environment
from dimattn.errors import DimattnError
from dimattn.games import canonical_game, v4_id
from dimattn.host import check_rollout_memory

_EXTRACTORS = ("SelfAttnCNNPPO", "SelfAttnCNN")

#: SPEC §4 values' ranges: name -> (low, high, low excluded).
RANGES: dict[str, tuple[float, float, bool]] = {  # checked when a RunConfig is made
    "learning_rate": (0.0, 1.0, True),
    "clip_range": (0.0, 10.0, True),
    "clip_range_vf": (0.0, 1e6, True),
    "target_kl": (0.0, 1e6, True),
    "gamma": (0.0, 1.0, False),
    "gae_lambda": (0.0, 1.0, False),
    "vf_coef": (0.0, 1e6, False),
    "ent_coef": (0.0, 1e6, False),
    "max_grad_norm": (0.0, 1e9, True),
}
OPTIONAL = ("clip_range_vf", "target_kl")  # None: not used


def _check_range(name: str, value: Any, low: float, high: float, low_open: bool) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise DimattnError(f"{name} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise DimattnError(f"{name} must be {bounds}, got {value!r}")


@dataclass
class RunConfig:
    """Everything that defines one training run, as ``config.yml`` holds it; ``hyperparams`` in RL Zoo's form
    (``lin_2.5e-4``, class names as strings). Checked, and its game and agent names normalised, when it is
    made: DimattnError on the first bad field."""

    game: str
    agent: str = "NA"
    seed: int = 0
    n_timesteps: int = DEFAULT_N_TIMESTEPS
    eval_freq: int = DEFAULT_EVAL_FREQ
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    save_freq: int = DEFAULT_SAVE_FREQ
    engine: str = DEFAULT_ENGINE  # one of ENGINES
    device: str = "auto"
    vec_env: str = "dummy"
    hyperparams: dict[str, Any] = field(default_factory=default_hyperparams)
    #: The environment protocol (dimattn.envs.protocol): the study's, or machado; ``env_kwargs`` goes on top.
    protocol: str = DEFAULT_PROTOCOL

    def __post_init__(self) -> None:
        self.game, self.agent = canonical_game(self.game), check_agent(self.agent)
        self._check_agent()
        self._check()

    @property
    def env_id(self) -> str:
        return v4_id(self.game)

    @property
    def environment(self) -> dict[str, Any]:
        """The environment options the run's envs are built with (its protocol, then ``env_kwargs``)."""
        return environment(self.protocol, self.hyperparams.get("env_kwargs"))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_id"] = self.env_id
        d["environment"] = self.environment  # what was built, for readers (analysis/protocol.py)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in d.items() if k in names})

    def _check_agent(self) -> None:
        """The agent agrees with the network options, and its block builds and keeps its input's shape on a
        dummy batch (before anything is written)."""
        kw = self.hyperparams["policy_kwargs"]["features_extractor_kwargs"]
        if agent_of(kw) != self.agent:
            raise DimattnError(f"agent {self.agent} contradicts the network options (self_attn, attention_after) "
                               f"of the hyperparameters, which make {agent_of(kw)}; give one")
        check_block(self.agent, block_options(kw.get("block_kwargs"), kw.get("ada_attn"), kw.get("norm_softmax", True)))

    def _check(self) -> None:
        hp = self.hyperparams
        for name in ("n_timesteps", "n_envs", "n_steps", "n_epochs", "batch_size", "eval_episodes"):
            value = getattr(self, name, None) if name in ("n_timesteps", "eval_episodes") else hp.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise DimattnError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("n_timesteps", "eval_freq", "save_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise DimattnError(f"{name.replace('_', '-')} must be an integer, got {value!r}")
            if value > MAX_STEPS:
                raise DimattnError(f"{name.replace('_', '-')} {value:.3g} is above the limit of {MAX_STEPS:.0e} "
                                   "environment steps (the published study trains 1e7); give a smaller number")
        if (hp["n_envs"] * hp["n_steps"]) % hp["batch_size"]:
            raise DimattnError(
                f"batch_size {hp['batch_size']} must divide the rollout n_envs*n_steps = {hp['n_envs'] * hp['n_steps']}"
            )
        for name, (low, high, low_open) in RANGES.items():
            value = hp.get(name)
            if value is None and name in OPTIONAL:
                continue
            if name in ("learning_rate", "clip_range"):
                value = as_float_schedule(value, name)[0]
            _check_range(name, value, low, high, low_open)
        if not isinstance(hp.get("normalize_advantage", True), bool):
            raise DimattnError(f"normalize_advantage must be true or false, got {hp['normalize_advantage']!r}")
        check_rollout_memory(hp["n_envs"], hp["n_steps"], hp["batch_size"], self.engine)
        kw = hp["policy_kwargs"]["features_extractor_kwargs"]
        if kw.get("ada_attn") not in (None, *ADA_ATTN):
            raise DimattnError(f"unknown ada_attn {kw['ada_attn']!r}; choose one of {', '.join(ADA_ATTN)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise DimattnError(f"seed must be an integer from 0 to {MAX_SEED:,}, got {self.seed!r}")
        self.environment  # noqa: B018 - the protocol and env_kwargs checked
        if self.engine not in ENGINES:
            raise DimattnError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.vec_env not in VEC_ENVS or (self.vec_env == "envpool" and self.engine == "sb3"):
            raise DimattnError(f"unknown vec_env {self.vec_env!r}; choose dummy or subproc (SB3 engine), "
                               "or envpool (fast engine)")

    def on_engine(self, engine: str) -> RunConfig:
        """This config as ``engine`` runs and records it: ``fast`` steps EnvPool's envs; ``sb3`` is checked
        for its own rollout (float32 observations: 4x the memory)."""
        return dataclasses.replace(self, engine=engine, vec_env="envpool" if engine == "fast" else self.vec_env)

    def resolve(self, device: torch.device | None = None) -> PPOArgs:
        """What the engines read (:class:`PPOArgs`): schedules split, SB3's ``policy_kwargs`` with classes,
        and ``device`` (default: this config's, resolved by :func:`resolve_device`)."""
        hp = self.hyperparams
        lr, lr_linear = as_float_schedule(hp["learning_rate"], "learning_rate")
        clip, clip_linear = as_float_schedule(hp["clip_range"], "clip_range")
        kw = hp["policy_kwargs"].get("features_extractor_kwargs", {})
        names = {f.name for f in dataclasses.fields(PPOArgs)}
        taken = {**{k: v for k, v in hp.items() if k in names},  # the learner's plain values, by name
                 **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names}}
        return PPOArgs(**taken | dict(
            env_id=self.env_id, device=resolve_device(self.device) if device is None else device,
            learning_rate=lr, lr_linear=lr_linear, clip_range=clip, clip_linear=clip_linear,
            ada_attn=kw.get("ada_attn"), norm_softmax=kw.get("norm_softmax", True),
            features_dim=kw.get("features_dim", 256),
            policy_kwargs=resolve_policy_kwargs(hp["policy_kwargs"]), raw_policy_kwargs=hp["policy_kwargs"]))


@dataclass(frozen=True)
class PPOArgs:
    """One run's configuration, resolved (SPEC §4): what the engines read, like CleanRL's ``Args``.

    Made by :meth:`RunConfig.resolve`: the run's fields and the plain hyperparameters are the RunConfig's,
    taken by name; the rest is resolved from them.
    """

    # the run
    game: str
    env_id: str
    agent: str
    seed: int
    n_timesteps: int
    eval_freq: int  # total env steps between evaluations; <= 0: never
    eval_episodes: int
    save_freq: int  # total env steps between checkpoints; <= 0: never
    engine: str
    device: Any  # torch.device
    vec_env: str
    # the learner
    n_envs: int
    n_steps: int
    n_epochs: int
    batch_size: int
    learning_rate: float  # the start of the schedule when lr_linear
    lr_linear: bool
    clip_range: float  # the start of the schedule when clip_linear
    clip_linear: bool
    gamma: float
    gae_lambda: float
    ent_coef: float
    vf_coef: float
    max_grad_norm: float
    # the network
    ada_attn: str | None
    norm_softmax: bool
    features_dim: int
    policy_kwargs: dict[str, Any]  # SB3's form: classes, not names
    raw_policy_kwargs: dict[str, Any]  # as config.yml writes it
    # SB3's options outside SPEC §4 (the SB3 engine only)
    clip_range_vf: float | None = None
    target_kl: float | None = None
    normalize_advantage: bool = True

    @property
    def rollout_size(self) -> int:
        return self.n_envs * self.n_steps


def build_config(
    game: str,
    agent: str | None = None,
    hyperparams: list[str] | dict[str, Any] | None = None,
    conf_file: str | Path | None = None,
    **options: Any,
) -> RunConfig:
    """Resolve a run's configuration: shipped defaults < ``conf_file`` < ``hyperparams`` < ``agent``.

    ``policy_kwargs`` from an override is merged into the default (``features_extractor_kwargs``
    too), so ``--hyperparams policy_kwargs:"dict(features_extractor_kwargs=dict(self_attn='SWA'))"``
    changes only the agent. ``options`` are the other :class:`RunConfig` fields (seed, n_timesteps...).
    """
    game = canonical_game(game)
    hp = default_hyperparams()
    layers = []
    if conf_file is not None:
        layers.append(load_conf_file(conf_file, v4_id(game)))
    layers.append(parse_hyperparams(hyperparams) if isinstance(hyperparams, list) else dict(hyperparams or {}))
    for layer in layers:
        for key, value in layer.items():
            if key == "policy_kwargs":
                hp["policy_kwargs"] = _merge_policy_kwargs(hp["policy_kwargs"], value)
            else:
                hp[key] = value
    kw = hp["policy_kwargs"]["features_extractor_kwargs"]
    named = agent_of(kw)
    if agent is not None:  # a label: CWCA, or CWCA@conv2 (which sets attention_after too)
        agent = check_agent(agent)
        overridden = any("self_attn" in (layer.get("policy_kwargs", {}).get("features_extractor_kwargs") or {})
                         for layer in layers)
        if overridden and split_label(named)[0] != split_label(agent)[0]:
            raise DimattnError(f"--agent {agent} contradicts self_attn='{split_label(named)[0]}' in the "
                               "hyperparameters; give one")
        kw["self_attn"] = split_label(agent)[0]
        if "@" in agent:
            kw["attention_after"] = split_label(agent)[1]
    if "n_timesteps" in hp:  # RL Zoo keeps it among the hyperparameters; a run holds it once
        options.setdefault("n_timesteps", int(hp.pop("n_timesteps")))
        hp.pop("n_timesteps", None)
    return RunConfig(game=game, agent=agent_of(kw), hyperparams=hp, **options)


def _merge_policy_kwargs(base: dict[str, Any], override: Any) -> dict[str, Any]:
    if not isinstance(override, dict):
        raise DimattnError(f"policy_kwargs must be dict(...), got {override!r}")
    merged = {**base, **override}
    fe_kwargs = override.get("features_extractor_kwargs", {})
    if not isinstance(fe_kwargs, dict):
        raise DimattnError("features_extractor_kwargs must be dict(...)")
    merged["features_extractor_kwargs"] = {**base.get("features_extractor_kwargs", {}), **fe_kwargs}
    cls = merged.get("features_extractor_class", "SelfAttnCNNPPO")
    if cls not in _EXTRACTORS:
        raise DimattnError(
            f"features_extractor_class must be SelfAttnCNNPPO (or SelfAttnCNN) for a dimattn agent, got {cls}"
        )
    return merged


def resolve_policy_kwargs(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Config ``policy_kwargs`` (names as strings) -> SB3 ``policy_kwargs`` (names as classes)."""
    from torch import nn

    from dimattn.agents.networks import SelfAttnCNN

    classes = {"SelfAttnCNNPPO": SelfAttnCNN, "SelfAttnCNN": SelfAttnCNN,
               "nn.ReLU": nn.ReLU, "nn.Tanh": nn.Tanh, "nn.LeakyReLU": nn.LeakyReLU, "nn.ELU": nn.ELU}
    out = dict(policy_kwargs)
    for key in ("features_extractor_class", "activation_fn"):
        if key in out:
            out[key] = classes[out[key]]
    return out


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else the CPU (as SB3 resolves it); ``cpu``, ``cuda``,
    ``cuda:N`` as torch reads them. A GPU that is not there is an error, not a silent CPU run."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DimattnError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DimattnError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return resolved
