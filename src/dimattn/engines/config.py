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
import math
import os
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


#: Caps on a ``--hyperparams`` value, checked before parsing: the longest real one (policy_kwargs with
#: every option) is ~200 characters and 3 levels deep. Without them, e.g. 50,000 unary minus signs
#: exhaust Python's parser (MemoryError) or our recursive walk (RecursionError).
MAX_VALUE_CHARS = 2_000
MAX_VALUE_DEPTH = 20
_OPENERS = re.compile(r"[-+(\[{]")


def _short(text: str) -> str:
    """``text`` for an error message: long values are cut, so the message stays one readable line."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text):,} characters)"


def parse_value(text: str) -> Any:
    """Parse one ``--hyperparams`` value: ``0.1``, ``'lin_2.5e-4'``, ``lin_2.5e-4``, ``[64, 64]``,
    ``dict(a=1, b=dict(c='x'))``, ``SelfAttnCNNPPO``, ``nn.ReLU``. Raises DimattnError otherwise."""
    text = text.strip()
    if _SCHEDULE.match(text):
        return text
    if len(text) > MAX_VALUE_CHARS:
        raise DimattnError(f"hyperparameter value {_short(text)} is longer than {MAX_VALUE_CHARS:,} characters; "
                           "give a shorter value")
    # Every level of nesting needs an opening bracket or a sign, so counting them bounds the depth
    # before Python's parser (which recurses in C) ever sees the text.
    if len(_OPENERS.findall(text)) > MAX_VALUE_DEPTH and _depth_bound(text) > MAX_VALUE_DEPTH:
        raise DimattnError(f"hyperparameter value {_short(text)} is nested more than {MAX_VALUE_DEPTH} levels "
                           "deep; give a plain value")
    try:
        tree = ast.parse(text, mode="eval")
        return _literal(tree.body, text)
    except SyntaxError:
        raise DimattnError(f"cannot parse hyperparameter value {_short(text)}: not a Python literal") from None
    except (RecursionError, MemoryError):
        raise DimattnError(f"hyperparameter value {_short(text)} is too deeply nested; give a plain value") from None


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth of ``text``: brackets open, plus the longest run of signs
    (``--+-1`` is 4 unary operators deep). Brackets inside strings count too: a safe overestimate."""
    depth = deepest = run = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        run = run + 1 if ch in "+-" else 0 if not ch.isspace() else run
        deepest = max(deepest, depth + run)
    return deepest


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
            raise DimattnError(f"cannot parse {_short(text)}: dict(**...) is not allowed")
        return {kw.arg: _literal(kw.value, text) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = ast.unparse(node)
        if name in KNOWN_NAMES:
            return name
        raise DimattnError(
            f"unknown name {name!r} in hyperparameter value {_short(text)}; known names: {', '.join(KNOWN_NAMES)}"
        )
    raise DimattnError(
        f"cannot parse hyperparameter value {_short(text)}: only literals, dict(...), lin_<x> and known names "
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
#: How a run's training envs are vectorised: SB3's dummy / subproc, or (the fast engine) EnvPool.
VEC_ENVS = ("dummy", "subproc", "envpool")
DEFAULT_ENGINE = "auto"


#: Above this many steps a number is a typo (``-n 1e30``), not a plan: 1e12 steps is ~30 years of
#: training at 1,000 steps/s.
MAX_STEPS = 10**12
#: Seeds stay below 2**31 with room for the evaluation seeds (seed + 10,000 + k) and the envs (seed + i).
MAX_SEED = 2**31 - 2**20
#: SPEC §4 values' ranges: name -> (low, high, low excluded). Checked once, by RunConfig.validated.
RANGES: dict[str, tuple[float, float, bool]] = {
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
#: Bytes of one stacked observation (4 × 84 × 84 uint8).
OBS_BYTES = 4 * 84 * 84


def _check_range(name: str, value: Any, low: float, high: float, low_open: bool) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise DimattnError(f"{name} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise DimattnError(f"{name} must be {bounds}, got {value!r}")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which honours cgroups and taskset on clusters."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux' MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def rollout_memory(n_envs: int, n_steps: int, batch_size: int, engine: str) -> int:
    """Bytes a rollout needs: its observations (uint8 in the fast engine; SB3's buffer stores float32),
    a minibatch of them as float32 through the network (~3 copies: input, activations, gradients),
    and a fixed ~0.5 GiB for torch, the envs and the network."""
    per_obs = 4 * OBS_BYTES if engine == "sb3" else OBS_BYTES
    return n_envs * n_steps * per_obs + 3 * batch_size * 4 * OBS_BYTES + 2**29


def check_rollout_memory(n_envs: int, n_steps: int, batch_size: int, engine: str) -> None:
    """Refuse, from the arithmetic and before anything is allocated, a rollout that cannot fit in memory."""
    need, have = rollout_memory(n_envs, n_steps, batch_size, engine), available_memory()
    if have is not None and need > have:
        raise DimattnError(
            f"a rollout of n_envs*n_steps = {n_envs * n_steps:,} observations (batch_size {batch_size:,}) needs "
            f"{need / 2**30:,.1f} GiB of memory and this machine has {have / 2**30:,.1f} GiB available; "
            "lower n_envs, n_steps or batch_size")


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
        if self.engine not in ENGINES:
            raise DimattnError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.vec_env not in VEC_ENVS or (self.vec_env == "envpool" and self.engine == "sb3"):
            raise DimattnError(f"unknown vec_env {self.vec_env!r}; choose dummy or subproc (SB3 engine), "
                               "or envpool (fast engine)")
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
