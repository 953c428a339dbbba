"""Run configuration: the study's hyperparameters, RL Zoo-style overrides, parsed without ``eval``.

The hyperparameters ship as ``data/ppo.yml`` (RL Baselines3 Zoo's format, SPEC §4). Users override
them with ``--conf-file`` (same format) and ``--hyperparams key:value ...``, whose values are Python
expressions *parsed* by :func:`parse_value`: literals, ``dict(...)``, ``lin_<x>`` schedules and a few
known names (``SelfAttnCNNPPO``, ``nn.ReLU``, ...). Nothing the user writes is executed.

Two forms of one run's configuration:

- :class:`RunConfig`: what ``config.yml`` holds, in the RL Zoo form users know (``hyperparams`` as
  written: ``lin_2.5e-4``, ``policy_kwargs`` with class names as strings);
- :class:`PPOArgs`: the same, fully resolved once by :meth:`RunConfig.resolve` (schedules split into
  start + linear flag, the torch device, SB3 ``policy_kwargs`` with classes). The engines read its fields.

The defaults of a run (10M steps, evaluate every 200k, 5 games, save every 500k, engine auto) live here.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import torch

from dimattn.agents.attention import ADA_ATTN, check_agent
from dimattn.errors import DimattnError
from dimattn.games import canonical_game, v4_id

#: Names a ``--hyperparams`` value may mention, kept as strings in the config and resolved when the
#: model is built (see :func:`resolve_policy_kwargs`).
KNOWN_NAMES = ("SelfAttnCNNPPO", "SelfAttnCNN", "nn.ReLU", "nn.Tanh", "nn.LeakyReLU", "nn.ELU")
_EXTRACTORS = ("SelfAttnCNNPPO", "SelfAttnCNN")
_SCHEDULE = re.compile(r"^lin_([0-9.eE+-]+)$")

#: Hyperparameters a run may set (PPO's own, plus RL Zoo's keys that we honour or ignore).
PPO_KEYS = (
    "n_envs", "n_steps", "n_epochs", "batch_size", "learning_rate", "clip_range", "clip_range_vf",
    "vf_coef", "ent_coef", "gamma", "gae_lambda", "max_grad_norm", "normalize_advantage",
    "target_kl", "policy_kwargs", "policy", "n_timesteps", "env_wrapper", "frame_stack",
)


def parse_value(text: str) -> Any:
    """Parse one ``--hyperparams`` value: ``0.1``, ``'lin_2.5e-4'``, ``lin_2.5e-4``, ``[64, 64]``,
    ``dict(a=1, b=dict(c='x'))``, ``SelfAttnCNNPPO``, ``nn.ReLU``. Raises DimattnError otherwise."""
    text = text.strip()
    if _SCHEDULE.match(text):
        return text
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise DimattnError(f"cannot parse hyperparameter value {text!r}: not a Python literal") from None
    return _literal(tree.body, text)


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, text) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise DimattnError(f"cannot parse {text!r}: dict(**...) is not allowed")
        return {kw.arg: _literal(kw.value, text) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = ast.unparse(node)
        if name in KNOWN_NAMES:
            return name
        raise DimattnError(
            f"unknown name {name!r} in hyperparameter value {text!r}; known names: {', '.join(KNOWN_NAMES)}"
        )
    raise DimattnError(
        f"cannot parse hyperparameter value {text!r}: only literals, dict(...), lin_<x> and known names "
        f"are allowed (never code)"
    )


def parse_hyperparams(items: list[str] | None) -> dict[str, Any]:
    """``["n_envs:8", 'policy_kwargs:dict(net_arch=[])']`` -> ``{"n_envs": 8, "policy_kwargs": {...}}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise DimattnError(f"malformed --hyperparams item {item!r}; write key:value, e.g. n_envs:8")
        key = key.strip()
        if key not in PPO_KEYS:
            raise DimattnError(f"unknown hyperparameter {key!r} in --hyperparams; known: {', '.join(PPO_KEYS)}")
        out[key] = parse_value(value)
    return out


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DimattnError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise DimattnError(f"{source} must be a YAML mapping of env ids (or 'atari') to hyperparameters")
    return doc


def default_hyperparams() -> dict[str, Any]:
    """The study's hyperparameters (SPEC §4) from the shipped ``ppo.yml``, values parsed."""
    doc = _load_yaml(resources.files("dimattn").joinpath("data/ppo.yml").read_text(), "ppo.yml")
    return _section(doc["atari"], "ppo.yml")


def _section(raw: dict[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if key not in PPO_KEYS:
            raise DimattnError(f"unknown hyperparameter {key!r} in {source}; known: {', '.join(PPO_KEYS)}")
        out[key] = parse_value(value) if key == "policy_kwargs" and isinstance(value, str) else value
    return out


def load_conf_file(path: str | Path, env_id: str) -> dict[str, Any]:
    """Hyperparameters for ``env_id`` from an RL Zoo-style YAML file (its ``env_id`` or ``atari`` entry)."""
    path = Path(path)
    if not path.is_file():
        raise DimattnError(f"--conf-file {path} does not exist")
    doc = _load_yaml(path.read_text(), str(path))
    for key in (env_id, "atari"):
        if key in doc:
            if not isinstance(doc[key], dict):
                raise DimattnError(f"{path}: entry {key!r} must be a mapping of hyperparameters")
            return _section(doc[key], str(path))
    raise DimattnError(f"{path} has no entry for {env_id} nor 'atari'")


def as_float_schedule(value: Any, name: str) -> tuple[float, bool]:
    """``'lin_2.5e-4'`` -> (2.5e-4, True); ``0.1`` -> (0.1, False)."""
    if isinstance(value, str):
        m = _SCHEDULE.match(value)
        if not m:
            raise DimattnError(f"{name} must be a number or lin_<x>, got {value!r}")
        return float(m.group(1)), True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    raise DimattnError(f"{name} must be a number or lin_<x>, got {value!r}")


#: A run's defaults (SPEC §4-§5), used by ``dimattn train``, ``dimattn study init`` and the API alike.
DEFAULT_N_TIMESTEPS = 10_000_000
DEFAULT_EVAL_FREQ = 200_000
DEFAULT_EVAL_EPISODES = 5
DEFAULT_SAVE_FREQ = 500_000
#: ``auto``: the fast engine where it can run the config (EnvPool installed, the game in EnvPool, SPEC §4
#: options), else the SB3 engine. Both learn the same (docs/benchmarks.md, learning parity).
ENGINES = ("auto", "fast", "sb3")
DEFAULT_ENGINE = "auto"


@dataclass
class RunConfig:
    """Everything that defines one training run. ``hyperparams`` holds SPEC §4's values, resolved."""

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

    @property
    def env_id(self) -> str:
        return v4_id(self.game)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_id"] = self.env_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}).validated()

    def validated(self) -> RunConfig:
        """Check every field, normalise names; raise DimattnError on the first bad one."""
        self.game = canonical_game(self.game)
        self.agent = check_agent(self.agent)
        hp = self.hyperparams
        for name in ("n_timesteps", "n_envs", "n_steps", "n_epochs", "batch_size", "eval_episodes"):
            value = getattr(self, name, None) if name in ("n_timesteps", "eval_episodes") else hp.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise DimattnError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if (hp["n_envs"] * hp["n_steps"]) % hp["batch_size"]:
            raise DimattnError(
                f"batch_size {hp['batch_size']} must divide the rollout n_envs*n_steps = {hp['n_envs'] * hp['n_steps']}"
            )
        for name in ("learning_rate", "clip_range"):
            as_float_schedule(hp[name], name)
        kw = hp["policy_kwargs"]["features_extractor_kwargs"]
        if kw.get("ada_attn") not in (None, *ADA_ATTN):
            raise DimattnError(f"unknown ada_attn {kw['ada_attn']!r}; choose one of {', '.join(ADA_ATTN)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise DimattnError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.engine not in ENGINES:
            raise DimattnError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        return self

    def resolve(self) -> PPOArgs:
        """Check and resolve everything once (schedules, device, policy kwargs) for the engines."""
        self.validated()
        hp = self.hyperparams
        lr, lr_linear = as_float_schedule(hp["learning_rate"], "learning_rate")
        clip, clip_linear = as_float_schedule(hp["clip_range"], "clip_range")
        kw = hp["policy_kwargs"].get("features_extractor_kwargs", {})
        return PPOArgs(
            config=self, game=self.game, env_id=self.env_id, agent=self.agent, seed=self.seed,
            n_timesteps=self.n_timesteps, eval_freq=self.eval_freq, eval_episodes=self.eval_episodes,
            save_freq=self.save_freq, engine=self.engine, device=resolve_device(self.device), vec_env=self.vec_env,
            n_envs=hp["n_envs"], n_steps=hp["n_steps"], n_epochs=hp["n_epochs"], batch_size=hp["batch_size"],
            learning_rate=lr, lr_linear=lr_linear, clip_range=clip, clip_linear=clip_linear,
            clip_range_vf=hp.get("clip_range_vf"), target_kl=hp.get("target_kl"),
            normalize_advantage=hp.get("normalize_advantage", True), gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
            ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
            ada_attn=kw.get("ada_attn"), norm_softmax=kw.get("norm_softmax", True),
            features_dim=kw.get("features_dim", 256),
            policy_kwargs=resolve_policy_kwargs(hp["policy_kwargs"]), raw_policy_kwargs=hp["policy_kwargs"],
        )


@dataclass(frozen=True)
class PPOArgs:
    """One run's configuration, fully resolved (SPEC §4): what the engines read, like CleanRL's ``Args``.

    Made by :meth:`RunConfig.resolve`; ``config`` is the RunConfig it came from (for ``config.yml``).
    """

    config: RunConfig
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
    clip_range_vf: float | None
    target_kl: float | None
    normalize_advantage: bool
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
    named = check_agent(kw.get("self_attn", "NA"))
    if agent is not None:
        agent = check_agent(agent)
        overridden = any("self_attn" in (layer.get("policy_kwargs", {}).get("features_extractor_kwargs") or {})
                         for layer in layers)
        if overridden and named != agent:
            raise DimattnError(f"--agent {agent} contradicts self_attn='{named}' in the hyperparameters; give one")
        kw["self_attn"] = agent
    if "n_timesteps" in hp:  # RL Zoo keeps it among the hyperparameters; a run holds it once
        options.setdefault("n_timesteps", int(hp.pop("n_timesteps")))
        hp.pop("n_timesteps", None)
    return RunConfig(game=game, agent=kw["self_attn"], hyperparams=hp, **options).validated()


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
