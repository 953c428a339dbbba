"""Protocol check: each run's ``config.yml`` (and ``evaluations.npz``) against the published study's
protocol (SPEC §3–4), so that a comparison across protocols is never silent.

The published protocol is not restated here: it is dimattn's defaults (``data/ppo.yml`` through
:func:`dimattn.engines.rlzoo.default_hyperparams`, and the run defaults of
:mod:`dimattn.engines.config`), which are SPEC §4's, plus the engine the study ran (SB3's PPO in RL
Baselines3 Zoo). The environment (frame skip 4, no sticky actions, up to 30 no-ops, SPEC §3): dimattn's
``config.yml`` records its ``protocol`` (``study`` or ``machado``, ``--protocol``) and the ``environment`` it
built (sticky actions, action set, loss of life, frame cap: dimattn.envs.protocol); a config that records
such a key elsewhere (at the top, under ``env_kwargs``) is checked too; one that records none (older runs) is
the study's.

Reads, per run folder::

    <run>/config.yml        game, agent, seed, n_timesteps, eval_freq, eval_episodes, engine, hyperparams
    <run>/evaluations.npz   results (E, episodes): the episodes actually played per evaluation
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from dimattn.analysis.results import PUBLISHED, find_runs, read_evaluations
from dimattn.analysis.results import _read_config as read_config
from dimattn.engines.config import DEFAULT_EVAL_EPISODES, DEFAULT_EVAL_FREQ, DEFAULT_N_TIMESTEPS
from dimattn.engines.rlzoo import default_hyperparams
from dimattn.engines.rundir import CONFIG, EVALUATIONS
from dimattn.envs.protocol import DEFAULT_PROTOCOL, PROTOCOLS
from dimattn.errors import DimattnError
from dimattn.yamlfile import load_yaml

#: The engine the published runs trained with (RL Baselines3 Zoo's fork, SB3's PPO).
PUBLISHED_ENGINE = "sb3"
#: SPEC §3's environment, checked where a config records it (dimattn's config.yml: ``protocol`` and the
#: ``environment`` it built, dimattn.envs.protocol; older ones record neither: the study's).
ENVIRONMENT: dict[str, Any] = {"frame_skip": 4, "noop_max": 30, **PROTOCOLS[DEFAULT_PROTOCOL]}
#: Keys of the hyperparameters that say nothing about the protocol (the extractor's class name, the
#: RL Zoo wrapper path) or are checked elsewhere (the schedule's length is ``n_timesteps``).
_NOT_PROTOCOL = ("env_wrapper", "policy", "n_timesteps", "policy_kwargs", "env_kwargs")


def published_protocol() -> dict[str, Any]:
    """{field: value} of the published protocol, in the order the differences are listed."""
    hp = default_hyperparams()
    pk = hp["policy_kwargs"]
    return {
        "n_timesteps": DEFAULT_N_TIMESTEPS,  # the length of the learning-rate and clip-range schedules
        "eval_freq": DEFAULT_EVAL_FREQ,
        "eval_episodes": DEFAULT_EVAL_EPISODES,
        "engine": PUBLISHED_ENGINE,
        **{k: v for k, v in hp.items() if k not in _NOT_PROTOCOL},
        "net_arch": pk.get("net_arch", []),
        "attention options": {},  # features_extractor_kwargs beyond self_attn (ada_attn, norm_softmax, ...)
        "protocol": DEFAULT_PROTOCOL,
        **ENVIRONMENT,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def run_protocol(config: dict[str, Any], episodes: int | None) -> dict[str, Any]:
    """What one run's ``config.yml`` (and its evaluations' episode count) says of each protocol field;
    a field the config does not record is left out."""
    hp = config.get("hyperparams") if isinstance(config.get("hyperparams"), dict) else {}
    seen: dict[str, Any] = {k: config[k] for k in ("n_timesteps", "eval_freq", "eval_episodes", "engine",
                                                   "protocol") if k in config}
    if episodes is not None:
        seen["eval_episodes"] = episodes  # what was played beats what was asked for
    seen.update({k: v for k, v in hp.items() if k not in _NOT_PROTOCOL})
    pk = hp.get("policy_kwargs")
    if isinstance(pk, dict):
        seen["net_arch"] = pk.get("net_arch", [])
        fk = pk.get("features_extractor_kwargs") or {}
        seen["attention options"] = {k: v for k, v in fk.items() if k != "self_attn"} if isinstance(fk, dict) else fk
    sources = [config, *(config.get(k) for k in ("env_kwargs", "environment")), hp.get("env_kwargs")]
    seen.update({k: v for src in sources if isinstance(src, dict) for k, v in src.items() if k in ENVIRONMENT})
    return seen


def differences(seen: dict[str, Any], protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """{field: the run's value} for every field that differs from the published protocol."""
    protocol = published_protocol() if protocol is None else protocol
    return {k: v for k, v in seen.items() if k in protocol and not _same(v, protocol[k])}


def _episodes(run: Path) -> int | None:
    try:
        read = read_evaluations(run / EVALUATIONS)
    except DimattnError:
        return None  # the loader reports unreadable evaluations
    return None if read is None or not len(read[1]) else int(read[1].shape[1])


def check_folder(folder: str | Path, label: str = "your runs") -> list[str]:
    """One line per protocol field on which runs under ``folder`` differ from the published protocol,
    saying how many runs and with which values; ``[]`` when every run follows it."""
    protocol = published_protocol()
    runs = find_runs(folder)
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    unrecorded: dict[str, int] = defaultdict(int)
    for run in runs:
        try:
            config = load_yaml(run / CONFIG, CONFIG)
        except DimattnError:
            continue  # the loader reports an unreadable config
        if not isinstance(config, dict):
            continue
        seen = run_protocol(config, _episodes(run))
        for field, value in differences(seen, protocol).items():
            found[field][_show(value)] += 1
        for field in protocol:
            # a config.yml without them is the study's environment (dimattn built no other before --protocol)
            if field not in seen and field not in ENVIRONMENT and field != "protocol":
                unrecorded[field] += 1
    lines = []
    for field in protocol:
        if field in found:
            values = ", ".join(f"{v} ({n} of {len(runs)} runs)" for v, n in found[field].items())
            lines.append(f"{label}: {field} {values}; published: {_show(protocol[field])}")
    if unrecorded:
        most = max(unrecorded.values())
        lines.append(f"{label}: config.yml does not record {', '.join(unrecorded)} (up to {most} of {len(runs)} "
                     "runs); not checked")
    return lines


def cell_differences(source: str | Path) -> dict[tuple[str, str], str]:
    """{(game, agent): "field value; ..."} of the runs under ``source`` that differ from the published
    protocol (empty for the shipped scores and pickles, whose protocol lines say what is known)."""
    path = Path(source)
    if str(source) == PUBLISHED or not path.is_dir():
        return {}
    protocol = published_protocol()
    found: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for run in find_runs(path):
        try:
            config = load_yaml(run / CONFIG, CONFIG)
            key = read_config(run / CONFIG)[:2]
        except DimattnError:
            continue  # the loader reports it
        if isinstance(config, dict):
            for field, value in differences(run_protocol(config, _episodes(run)), protocol).items():
                found[key].setdefault(field, _show(value))
    return {key: "; ".join(f"{f} {v}" for f, v in fields.items()) for key, fields in found.items()}


def _show(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return f"{int(value):,}"
    return str(value)


def protocol_lines(source: str | Path, label: str) -> list[str]:
    """The protocol differences of ``source`` as lines for the top of the output: a folder of runs is
    checked run by run; the shipped published scores follow the protocol; a pickle records none."""
    path = Path(source)
    if str(source) == PUBLISHED:
        return []
    if path.is_dir():
        return check_folder(path, label)
    return [f"{label}: {path.name} is a results pickle, which records no protocol; it is taken as the published one"]
