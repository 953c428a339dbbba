"""Reading trained agents back from SB3 ``.zip`` checkpoints, safely (SPEC §4).

A checkpoint is an SB3 zip: ``policy.pth`` (the policy's state dict) and ``data`` (JSON).
We never unpickle: ``policy.pth`` is read with ``torch.load(weights_only=True)`` and only the plain
JSON fields of ``data`` are used. Our engines add ``dimattn.json`` (agent, game, options) to the zip; since 0.2
it also holds ``block``: the block's name, position, keyword arguments (plain data), bias and the package
(and version) that provided it. Loading looks the name up in the registry; it never imports what a file names.
Checkpoints of the published code use other key names (``c1``, ``self_attn_layer.w_qs``, ...);
they are mapped onto ours here.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from dimattn.agents.attention import AGENTS
from dimattn.agents.networks import ActorCritic
from dimattn.agents.registry import DEFAULT_POSITION, check_agent, check_kwargs, load_provider, split_label
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_path

META_NAME = "dimattn.json"

# Published extractor names -> ours (SPEC §4).
_PUBLISHED_KEYS = {
    "c1.": "conv1.",
    "c2.": "conv2.",
    "l1.": "linear.",
    "self_attn_layer.w_qs.": "attention.query.",
    "self_attn_layer.w_ks.": "attention.key.",
    "self_attn_layer.w_vs.": "attention.value.",
    "self_attn_layer.alpha": "attention.alpha",
    "self_attn_layer.beta": "attention.beta",
}
_PUBLISHED_NAME = re.compile(r"(?P<game>[A-Za-z0-9]+?)(?:NoFrameskip-v4)?_(?P<agent>NA|SWA|CWRA|CWCA|CWRCA)_")


def _map_key(key: str) -> str | None:
    """A policy state-dict key -> an :class:`ActorCritic` key, or None to drop it."""
    if key.startswith(("pi_features_extractor.", "vf_features_extractor.", "mlp_extractor.")):
        return None  # shared-extractor aliases and the empty MLP of net_arch=[]
    if key.startswith("features_extractor."):
        rest = key[len("features_extractor."):]
        for old, new in _PUBLISHED_KEYS.items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        return "features_extractor." + rest
    return key


def load_tensors(raw: bytes, what: str) -> Any:
    """``torch.load(weights_only=True)`` of ``raw``, with our one line for a file holding anything else.

    torch's own message (and, in some versions, a warning) advises loading the file with
    ``weights_only=False``, i.e. running whatever code it holds: never pass that on to users.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise DimattnError(f"cannot read {what}: it holds objects other than tensors, refused (loading them "
                               "could run code); use a checkpoint written by dimattn or Stable-Baselines3") from None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict in :class:`ActorCritic` names, metadata) of an SB3 zip, without running its code.

    Metadata keys: ``agent`` (None if the file does not say), ``ada_attn``, ``norm_softmax``,
    ``n_actions``, ``features_dim``, ``game`` (None if unknown), ``num_timesteps`` (None if unknown).
    """
    path = Path(path)
    if not path.is_file():
        raise DimattnError(f"checkpoint {path} does not exist; give the path of a model .zip")
    if not zipfile.is_zipfile(path):
        raise DimattnError(f"{path} is not a checkpoint (not a zip file); give an SB3 model .zip")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "policy.pth" not in names:
                raise DimattnError(f"{path} holds no policy.pth; it is not an SB3 model checkpoint")
            raw = load_tensors(zf.read("policy.pth"), f"checkpoint {path}")
            data = json.loads(zf.read("data")) if "data" in names else {}
            ours = json.loads(zf.read(META_NAME)) if META_NAME in names else {}
    except DimattnError:
        raise
    except Exception as exc:  # corrupt zip, truncated tensor file, bad JSON
        raise DimattnError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict) or "action_net.weight" not in raw:
        raise DimattnError(f"{path} does not hold an actor-critic policy (no action_net); wrong checkpoint")

    state = {}
    for key, value in raw.items():
        new = _map_key(key)
        if new is not None:
            state[new] = value

    kwargs = (data.get("policy_kwargs") or {}).get("features_extractor_kwargs") or {}
    if not isinstance(kwargs, dict):
        kwargs = {}
    block = ours.get("block") if isinstance(ours.get("block"), dict) else {}
    meta: dict[str, Any] = {
        "agent": ours.get("agent") or kwargs.get("self_attn"),
        "ada_attn": ours.get("ada_attn", kwargs.get("ada_attn")),
        "norm_softmax": ours.get("norm_softmax", kwargs.get("norm_softmax", True)),
        "attention_after": block.get("attention_after", kwargs.get("attention_after", DEFAULT_POSITION)),
        "block_kwargs": block.get("kwargs", kwargs.get("block_kwargs")) or {},
        "block": block,
        "n_actions": int(state["action_net.weight"].shape[0]),
        "features_dim": int(state["action_net.weight"].shape[1]),  # (n_actions, features_dim)
        "game": ours.get("game"),
        "num_timesteps": ours.get("num_timesteps", data.get("num_timesteps")),
        "engine": ours.get("engine", "sb3"),
    }
    m = _PUBLISHED_NAME.match(path.name)
    if m:  # <Game>_<Agent>_<Seed>_model_checkpoint_<Steps>_steps.zip
        meta["agent"] = meta["agent"] or m.group("agent")
        meta["game"] = meta["game"] or m.group("game")
    if meta["agent"] is None and not any(".attention." in k for k in state):
        meta["agent"] = "NA"
    if meta["agent"] is not None:
        meta["agent"] = _registered_agent(path, str(meta["agent"]), meta["attention_after"], block)
        meta["attention_after"] = split_label(meta["agent"])[1]
    meta["block_kwargs"] = check_kwargs(meta["block_kwargs"], f"{path}: block_kwargs")
    return state, meta


def _registered_agent(path: Path, agent: str, position: Any, block: dict[str, Any]) -> str:
    """The canonical label of the agent a checkpoint records; one line naming what provides its block when
    that block is not registered here."""
    try:
        name, at = split_label(agent)
        if block.get("module") or block.get("package"):  # the provider it records, found by name (registry)
            load_provider(name, block, near=list(Path(path).absolute().parents)[:6])
        return check_agent(f"{name}@{position if at == DEFAULT_POSITION else at}")
    except DimattnError as exc:
        if not str(exc).startswith("unknown agent"):
            raise DimattnError(f"{path}: {exc}") from None
    package = block.get("package")
    where = (f"install {package} {block.get('version') or ''}".rstrip() + ", which provides it," if package else
             "register it")
    raise DimattnError(f"{path} holds agent {agent}, whose block is not registered here; {where} "
                       "or give --plugin MODULE that registers it (dimattn agents lists what is registered)")


def load_agent(path: str | Path, agent: str | None = None, device: str | torch.device = "cpu") -> ActorCritic:
    """Load a checkpoint (ours, either engine, or the published code's) as an :class:`ActorCritic`.

    Args:
        path: an SB3 model ``.zip``.
        agent: the agent kind you expect; an error if the checkpoint holds another. Needed only for
            attention checkpoints that do not record their kind.
        device: where to put the network.

    The returned module is in eval mode; ``module.meta`` holds the checkpoint's metadata.
    """
    state, meta = read_checkpoint(path)
    if agent is not None:
        agent = check_agent(agent)
        if meta["agent"] is not None and meta["agent"].upper() != agent.upper():
            raise DimattnError(
                f"checkpoint {path} holds a {meta['agent']} agent, not {agent}; "
                f"load it with agent={meta['agent']!r} or pick the {agent} checkpoint"
            )
        meta["agent"] = agent
    if meta["agent"] is None:
        raise DimattnError(f"checkpoint {path} does not say which attention agent it holds; pass the agent "
                           f"(one of {', '.join(AGENTS[1:])}, or a registered block)")
    ada = meta["ada_attn"]
    if ada is None:  # the published code stores alpha/beta even when unused
        state = {k: v for k, v in state.items() if not k.endswith(("attention.alpha", "attention.beta"))}
    model = ActorCritic(meta["n_actions"], meta["agent"], ada_attn=ada, norm_softmax=bool(meta["norm_softmax"]),
                        features_dim=meta["features_dim"], block_kwargs=meta["block_kwargs"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise DimattnError(f"checkpoint {path} does not fit a {meta['agent']} network: {first}") from None
    model.meta = meta
    return model.to(device).eval()


def save_sb3(model: Any, path: str | Path, meta: dict[str, Any], extra: dict[str, bytes] | None = None) -> Path:
    """Save an SB3 model to ``path`` (a ``.zip``) with our ``dimattn.json`` (and ``extra`` entries)
    inside, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        zip_tmp = tmp.with_suffix(".zip")  # SB3 appends .zip to names without it
        try:
            model.save(zip_tmp)
            with zipfile.ZipFile(zip_tmp, "a") as zf:
                zf.writestr(META_NAME, json.dumps(meta, sort_keys=True))
                for name, data in (extra or {}).items():
                    zf.writestr(name, data)
            os.replace(zip_tmp, tmp)
        finally:
            if zip_tmp.exists():
                zip_tmp.unlink()
    return path
