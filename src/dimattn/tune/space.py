"""The search space: RL Zoo's PPO space, the attention options, a plugin block's declared ranges, a YAML file.

One dimension per name, written the same way in a space file (``--space FILE``), in :data:`RL_ZOO_PPO` and in
a block's registration (``register(..., space={...})``)::

    learning_rate: {low: 1.0e-5, high: 2.0e-3, log: true}   # a range: float, or int when both ends are ints
    n_steps: [32, 64, 128]                                  # a list: one of these values
    clip_range: 0.2                                         # one value: fixed, not searched
    ent_coef: null                                          # not searched: the base configuration's value
    block_kwargs: {reduction: [2, 4, 8]}                    # a plugin block's keyword arguments

A space file overrides or narrows the default space name by name. Each bound and choice is checked as
the run's own value would be (:data:`dimattn.engines.config.RANGES`); each trial's whole configuration is
then checked by :func:`dimattn.engines.config.build_config` (a combination that cannot run is pruned, as
RL Zoo prunes it).

RL Zoo samples ``one_minus_gamma`` and ``one_minus_gae_lambda`` on a log scale; they become ``gamma`` and
``gae_lambda``. RL Zoo's ``net_arch`` and ``activation_fn`` are left out: the study's network is fixed
(SPEC §1), and the attention block is what a search here is about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimattn.agents.attention import ADA_ATTN, AGENTS
from dimattn.agents.registry import POSITIONS, get, split_label
from dimattn.engines.config import RANGES
from dimattn.errors import DimattnError
from dimattn.yamlfile import load_yaml

#: RL Baselines3 Zoo's PPO space (rl_zoo3/hyperparams_opt.py, sample_ppo_params), less net_arch/activation_fn.
RL_ZOO_PPO: dict[str, Any] = {
    "batch_size": [32, 64, 128, 256, 512],
    "n_steps": [32, 64, 128, 256, 512, 1024, 2048],
    "one_minus_gamma": {"low": 0.0001, "high": 0.03, "log": True},
    "one_minus_gae_lambda": {"low": 0.0001, "high": 0.1, "log": True},
    "learning_rate": {"low": 1e-5, "high": 0.002, "log": True},
    "ent_coef": {"low": 1e-8, "high": 0.1, "log": True},
    "clip_range": [0.1, 0.2, 0.3, 0.4],
    "n_epochs": [1, 5, 10, 20],
    "max_grad_norm": {"low": 0.3, "high": 2.0},
}
#: The study blocks' own options (SPEC §2) and the block's place: searched for every agent but NA.
ATTENTION: dict[str, Any] = {
    "norm_softmax": [True, False],
    "ada_attn": [None, *ADA_ATTN],
    "attention_after": list(POSITIONS),
}
#: PPO's names a space may search (besides RL Zoo's ``one_minus_*``); ints must stay positive integers.
PPO_NAMES = ("n_envs", "n_steps", "n_epochs", "batch_size", "learning_rate", "clip_range", "clip_range_vf",
             "vf_coef", "ent_coef", "gamma", "gae_lambda", "max_grad_norm", "target_kl", "normalize_advantage",
             "one_minus_gamma", "one_minus_gae_lambda")
INTEGERS = ("n_envs", "n_steps", "n_epochs", "batch_size")
BLOCK_KWARGS = "block_kwargs"


@dataclass(frozen=True)
class Dim:
    """One dimension: ``choices`` (categorical), or ``low``..``high`` (``log`` scale; ints when ``integer``),
    or ``fixed`` (one value, not searched)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    fixed: Any = None
    is_fixed: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def to_data(self) -> Any:
        """The dimension as a space file writes it."""
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return list(self.choices)
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {})}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) and not (
        isinstance(value, float) and not math.isfinite(value))


def parse_dim(name: str, raw: Any, source: str) -> Dim | None:
    """One dimension from its written form; None for ``null`` (not searched). One line on a bad form."""
    where = f"{source}: {name}"
    if raw is None:
        return None
    if isinstance(raw, list):
        if not raw:
            raise DimattnError(f"{where} is an empty list; give at least one value, e.g. [0.1, 0.2]")
        if not all(_plain(v) for v in raw):
            raise DimattnError(f"{where}: choices must be plain values (numbers, true/false, text, null)")
        return Dim(name, choices=tuple(dict.fromkeys(raw)))
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"low", "high", "log"})
        if unknown or not {"low", "high"} <= set(raw):
            raise DimattnError(f"{where} must be {{low: L, high: H}} (optionally log: true), got {raw!r}")
        low, high, log = raw["low"], raw["high"], raw.get("log", False)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise DimattnError(f"{where}: low and high must be finite numbers, got {low!r} and {high!r}")
        if not isinstance(log, bool):
            raise DimattnError(f"{where}: log must be true or false, got {log!r}")
        if low > high:
            raise DimattnError(f"{where} is an empty range: low {low:g} is above high {high:g}")
        if log and low <= 0:
            raise DimattnError(f"{where}: a log range must stay above 0, got low {low:g}")
        integer = isinstance(low, int) and isinstance(high, int) or name in INTEGERS
        if name in INTEGERS and not (float(low).is_integer() and float(high).is_integer()):
            raise DimattnError(f"{where}: {name} is an integer; give whole bounds, got {low!r} and {high!r}")
        return Dim(name, low=low, high=high, log=log, integer=integer)
    if _plain(raw):
        return Dim(name, fixed=raw, is_fixed=True)
    raise DimattnError(f"{where} must be a list of values, {{low: L, high: H}}, one value or null; got {raw!r}")


def _check_values(dim: Dim, source: str) -> None:
    """Each bound and choice of a PPO dimension checked as a run's value is (ranges, integers)."""
    name = dim.name
    values = [dim.fixed] if dim.is_fixed else list(dim.choices) if dim.choices is not None else [dim.low, dim.high]
    for value in values:
        if name in INTEGERS and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise DimattnError(f"{source}: {name} must be a positive integer, got {value!r}")
        if name.startswith("one_minus_"):
            low, high, low_open = RANGES[name.removeprefix("one_minus_")]
            value = None if not isinstance(value, (int, float)) else 1 - value
        else:
            low, high, low_open = RANGES.get(name, (None, None, False))
        if low is None or (value is None and name in ("clip_range_vf", "target_kl")):
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
            low < value <= high if low_open else low <= value <= high)
        if not ok and name.startswith("one_minus_"):
            target = name.removeprefix("one_minus_")
            raise DimattnError(f"{source}: {name} {1 - value:g} gives {target} {value:g}, outside {target}'s range "
                               f"(from {low:g} to {high:g})")
        if not ok:
            raise DimattnError(f"{source}: {name} {value!r} is outside {name}'s range "
                               f"({'above' if low_open else 'from'} {low:g} to {high:g})")
    if name == "normalize_advantage" and not all(isinstance(v, bool) for v in values):
        raise DimattnError(f"{source}: normalize_advantage takes true or false, got {values}")


def default_space(agent: str) -> dict[str, Any]:
    """RL Zoo's PPO space plus what the agent's block offers: the study blocks' options and place, or a
    plugin block's declared keyword arguments (``register(..., space=...)``) and place. NA: PPO only."""
    name, _ = split_label(agent)
    space = dict(RL_ZOO_PPO)
    if name.upper() == "NA":
        return space
    if name.upper() in AGENTS:
        return {**space, **ATTENTION}
    block = get(name)
    space["attention_after"] = ATTENTION["attention_after"]
    declared = getattr(block, "space", None) or {}
    if declared:
        space[BLOCK_KWARGS] = dict(declared)
    return space


def load_space_file(path: str | Path) -> dict[str, Any]:
    """A space file's mapping (YAML); one line when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise DimattnError(f"cannot read space file {path}: it does not exist; give an existing YAML file")
    doc = load_yaml(path, "space file")  # bounded as every YAML file dimattn reads
    if not isinstance(doc, dict):
        raise DimattnError(f"space file {path} must be a YAML mapping of names to ranges, e.g. n_steps: [64, 128]")
    return doc


def build_space(agent: str, overrides: dict[str, Any] | None = None, source: str = "space file") -> list[Dim]:
    """The dimensions of the search: :func:`default_space` with ``overrides`` (a space file's mapping)
    applied name by name. Raises DimattnError on an unknown name, an empty range or a value out of range."""
    space = default_space(agent)
    name, _ = split_label(agent)
    attention = () if name.upper() == "NA" else ("attention_after",) + (
        ("norm_softmax", "ada_attn") if name.upper() in AGENTS else ())
    known = set(PPO_NAMES) | set(attention) | ({BLOCK_KWARGS} if name.upper() not in AGENTS else set())
    for key, raw in (overrides or {}).items():
        if key not in known:
            raise DimattnError(f"{source}: unknown name {key!r} for agent {agent}; known: {', '.join(sorted(known))}")
        if key == BLOCK_KWARGS:
            if not isinstance(raw, dict):
                raise DimattnError(f"{source}: {BLOCK_KWARGS} must be a mapping of the block's keyword arguments")
            space[BLOCK_KWARGS] = {**space.get(BLOCK_KWARGS, {}), **raw}
        else:
            space[key] = raw
    for gamma in ("gamma", "gae_lambda"):  # one name of the pair: the file's, when it gives one
        if gamma in (overrides or {}):
            space.pop(f"one_minus_{gamma}", None)
    dims = []
    for key, raw in space.items():
        if key == BLOCK_KWARGS:
            dims += [d for k, v in raw.items() if (d := parse_dim(f"{BLOCK_KWARGS}.{k}", v, source))]
            continue
        dim = parse_dim(key, raw, source)
        if dim is not None:
            if key in PPO_NAMES:
                _check_values(dim, source)
            elif key == "attention_after" and not set(dim.choices or [dim.fixed]) <= set(POSITIONS):
                raise DimattnError(f"{source}: attention_after takes {', '.join(POSITIONS)}")
            elif key == "ada_attn" and not set(dim.choices or [dim.fixed]) <= {None, *ADA_ATTN}:
                raise DimattnError(f"{source}: ada_attn takes null or {', '.join(ADA_ATTN)}")
            dims.append(dim)
    return dims


def space_data(dims: list[Dim]) -> dict[str, Any]:
    """The dimensions as a space file writes them (what ``tune.yml`` records)."""
    return {d.name: d.to_data() for d in dims}


def sample(trial: Any, dims: list[Dim]) -> dict[str, Any]:
    """One point of the space: {name: value} (fixed dimensions included), suggested through ``trial``."""
    return {d.name: d.suggest(trial) for d in dims}


def to_hyperparams(point: dict[str, Any], agent: str) -> tuple[str, dict[str, Any]]:
    """A point -> (agent label, hyperparameters as ``--hyperparams`` would set them; ``policy_kwargs`` as a
    dict holding only ``features_extractor_kwargs``)."""
    hp: dict[str, Any] = {}
    extractor: dict[str, Any] = {}
    name, position = split_label(agent)
    for key, value in point.items():
        if key.startswith("one_minus_"):
            hp[key.removeprefix("one_minus_")] = 1 - value
        elif key == "attention_after":
            position = value
        elif key in ("norm_softmax", "ada_attn"):
            extractor[key] = value
        elif key.startswith(BLOCK_KWARGS + "."):
            extractor.setdefault(BLOCK_KWARGS, {})[key.split(".", 1)[1]] = value
        else:
            hp[key] = value
    if extractor:
        hp["policy_kwargs"] = {"features_extractor_kwargs": extractor}
    label = name if position == "conv1" else f"{name}@{position}"
    return label, hp


def literal_text(value: Any) -> str:
    """``value`` as ``--hyperparams`` and RL Zoo files write it: ``dict(a=1, b='x')``, ``0.0003``, ``True``."""
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={literal_text(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal_text(v) for v in value) + "]"
    return repr(value)
