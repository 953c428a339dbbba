"""RL Baselines3 Zoo's hyperparameter files: the shipped ``data/ppo.yml`` (SPEC §4), ``--conf-file`` files
and ``--hyperparams key:value`` items, read into plain dicts of parsed values.

Which keys a run may set (:data:`PPO_KEYS`) lives here; what the values mean is
:mod:`dimattn.engines.config`'s (RunConfig checks them).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dimattn.engines.literals import parse_value
from dimattn.errors import DimattnError

#: Hyperparameters a run may set (PPO's own, plus RL Zoo's keys that we honour or ignore).
PPO_KEYS = (
    "n_envs", "n_steps", "n_epochs", "batch_size", "learning_rate", "clip_range", "clip_range_vf",
    "vf_coef", "ent_coef", "gamma", "gae_lambda", "max_grad_norm", "normalize_advantage",
    "target_kl", "policy_kwargs", "policy", "n_timesteps", "env_wrapper", "frame_stack", "env_kwargs",
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
