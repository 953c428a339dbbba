"""Attention blocks by name: the five study agents first, then any block a plugin registers.

A block is an ``nn.Module`` mapping a feature map (N, C, H, W) to one of the same shape. It is
registered with a name, a one-line description, its *bias* (which axis it mixes along, what the
alignment of biases compares with a game's axis) and, optionally, a function returning its attention
maps for ``dimattn explain``::

    from dimattn.agents.registry import register

    register("GATE", build=lambda shape, reduction=4: Gate(shape[0], reduction),
             description="CBAM-style channel and spatial gate", bias="spatial")

Plugins register from their own package through the entry-point group ``dimattn.agents`` (its value:
a module, imported, or a function, called), or from any importable module given to ``--plugin MODULE``.

An *agent* is a block at a position in the network: ``CWCA`` (after conv1, the study) or
``CWCA@conv2``. Files store the agent's label, the block's keyword arguments as plain data, and the
package (and version) that provided it: never a class or an import path that loading would follow.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dimattn.agents.attention import AGENTS, attention_weights, build_attention
from dimattn.errors import DimattnError

#: What a block's bias may be (SPEC §0's table, plus ``spatial`` and ``unknown``).
BIASES: tuple[str, ...] = ("horizontal", "vertical", "both", "spatial", "none", "unknown")
#: Where a block may sit: after the first convolution (the study) or after the second. The value is the
#: shape (C, H, W) of the map there for the study's 84x84 input (SPEC §1).
POSITIONS: dict[str, tuple[int, int, int]] = {"conv1": (16, 20, 20), "conv2": (32, 9, 9)}
DEFAULT_POSITION = "conv1"
#: The entry-point group third-party packages register their blocks under.
ENTRY_POINT_GROUP = "dimattn.agents"
#: Modules the ``--plugin`` option imported, passed on to the processes a command starts (study workers).
PLUGINS_ENV = "DIMATTN_PLUGINS"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")

Builder = Callable[..., nn.Module]
MapsFn = Callable[[nn.Module, torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Block:
    """One registered attention block. ``build(shape, **kwargs)`` makes it for maps of ``shape`` (C, H, W)."""

    name: str
    build: Builder
    description: str
    bias: str
    maps: MapsFn | None = None
    module: str = ""            # the module that registered it
    package: str | None = None  # the installed distribution providing it (None: not installed)
    version: str | None = None
    #: The ranges ``dimattn tune`` searches its keyword arguments over, as a space file writes them
    #: ({"reduction": [2, 4, 8]}, {"gain": {"low": 0.1, "high": 2.0}}): plain data (dimattn.tune.space).
    space: Mapping[str, Any] | None = None
    plugin: str | None = None   # the --plugin module (or recorded one) whose import registered it

    @property
    def study(self) -> bool:
        return self.name in AGENTS

    @property
    def source(self) -> str:
        if self.study:
            return "dimattn (the study)"
        if self.package:
            return f"{self.package} {self.version or ''}".strip()
        return f"module {self.module}"  # not from an installed package: a --plugin module, a notebook


_BLOCKS: dict[str, Block] = {}  # upper-cased name -> block, in registration order
_loaded: set[str] = set()        # entry points and --plugin modules already imported
_importing: list[str] = []       # the --plugin module being imported now (what its blocks record)
_ENTRY_POINTS_DONE = "<entry points>"


def register(name: str, build: Builder, description: str, bias: str = "unknown",
             maps: MapsFn | None = None, space: Mapping[str, Any] | None = None) -> Block:
    """Register an attention block under ``name``; a second block of the same name is an error. ``space``:
    the ranges of its keyword arguments that ``dimattn tune`` searches (see :class:`Block`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DimattnError(f"block name {name!r} is not allowed; use a letter then letters, digits, _ or - "
                           "(at most 32), e.g. GATE")
    if not callable(build):
        raise DimattnError(f"block {name}: build must be a function or class taking the map's shape (C, H, W)")
    if bias not in BIASES:
        raise DimattnError(f"block {name}: unknown bias {bias!r}; choose one of {', '.join(BIASES)}")
    module = getattr(build, "__module__", None) or "?"
    space = check_kwargs(None if space is None else dict(space), f"block {name}: space")
    block = Block(name, build, " ".join(str(description).split()), bias, maps, module, *_distribution(module),
                  space=space or None, plugin=_importing[-1] if _importing else None)
    old = _BLOCKS.get(name.upper())
    if old is not None:
        if old.build is build and old.module == module:
            return old  # the same module imported twice (entry point and --plugin)
        raise DimattnError(f"two blocks named {old.name}: one from {old.source}, one from {block.source}; "
                           "rename one of them (names are compared without case)")
    _BLOCKS[name.upper()] = block
    return block


def unregister(name: str) -> None:
    """Forget a block registered in this process (a notebook redefining its block; tests). The five stay."""
    if str(name).upper() in AGENTS:
        raise DimattnError(f"{name} is one of the study's five agents; it cannot be unregistered")
    _BLOCKS.pop(str(name).upper(), None)


def _distribution(module: str) -> tuple[str | None, str | None]:
    """(distribution, version) that installed ``module``'s top-level package, or (None, None)."""
    top = module.split(".")[0]
    for dist in ["dimattn"] if top == "dimattn" else _distributions().get(top, []):
        try:
            return dist, md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None, None


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()  # top-level module -> distributions; scans site-packages once


# --------------------------------------------------------------------------- plugins
def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import every installed ``dimattn.agents`` entry point (once), then ``modules`` (``--plugin``),
    then the modules named in ``$DIMATTN_PLUGINS``. Any failure is one line naming the plugin."""
    for ep in () if _ENTRY_POINTS_DONE in _loaded else md.entry_points(group=ENTRY_POINT_GROUP):
        key = f"ep:{ep.value}"
        if key in _loaded:
            continue
        dist = getattr(ep, "dist", None)
        package = dist.name if dist else ep.name
        who = f"plugin {ep.name!r} of package {package}"
        try:
            target = ep.load()
            if callable(target) and not isinstance(target, type(sys)):
                target()
        except DimattnError as exc:
            raise DimattnError(f"{who}: {exc}") from None
        except (Exception, SystemExit) as exc:  # sys.exit in a plugin would end dimattn without a word
            raise DimattnError(f"{who} failed to load ({_failure(exc)}".splitlines()[0]
                               + f"); fix it, or uninstall it: pip uninstall {package}") from None
        _loaded.add(key)
    _loaded.add(_ENTRY_POINTS_DONE)  # installed packages do not change while a command runs
    env = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m]
    for module in [*modules, *env]:
        import_plugin(module)


def import_plugin(module: str) -> None:
    """Import ``module`` (``--plugin``), which registers blocks; a failure is one line."""
    module = str(module).strip()
    if module in _loaded:
        return
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", module):
        raise DimattnError(f"--plugin {module!r} is not a module name; give an importable module, e.g. my_blocks "
                           "(a file my_blocks.py in this folder or on PYTHONPATH)")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # like python -m: a module in the working folder is found
    _importing.append(module)
    try:
        importlib.import_module(module)
    except DimattnError as exc:
        raise DimattnError(f"--plugin {module}: {exc}") from None
    except (Exception, SystemExit) as exc:  # sys.exit in a plugin would end dimattn without a word
        raise DimattnError(f"--plugin {module} failed to import ({_failure(exc)}".splitlines()[0]
                           + "); fix the module or its name") from None
    finally:
        _importing.pop()
    _loaded.add(module)
    names = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m]
    os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*names, module]))


def _failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) on import; a plugin module only registers blocks"
    return f"{type(exc).__name__}: {exc}"


def blocks() -> list[Block]:
    """Every registered block: the five study agents first, then the others in registration order."""
    load_plugins()
    return list(_BLOCKS.values())


def get(name: str) -> Block:
    """The block registered as ``name`` (any case); one line naming the way to register it otherwise."""
    load_plugins()
    block = _BLOCKS.get(str(name).strip().upper())
    if block is None:
        typed = str(name).strip().upper()
        close = difflib.get_close_matches(typed, list(_BLOCKS), n=3, cutoff=0.6)
        close.sort(key=lambda c: sorted(c) != sorted(typed))  # two letters swapped first: CWAC -> CWCA
        hint = f" (did you mean {', '.join(_BLOCKS[c].name for c in close)}?)" if close else ""
        raise DimattnError(f"unknown agent {name!r}{hint}; registered: {', '.join(b.name for b in _BLOCKS.values())} "
                           "(a block of your own: install its package, or give --plugin MODULE; see docs/agents.md)")
    return block


def block_problem(name: str) -> str | None:
    """Why block ``name`` cannot train where the study puts it, from the checks ``train`` makes (built with
    no arguments, its output on a dummy batch), or None."""
    try:
        build_block(name, POSITIONS[DEFAULT_POSITION])
    except DimattnError as exc:
        return str(exc)
    return None


def listing() -> str:
    """``dimattn agents``: one line per registered block (name, bias, source, description), each checked as
    ``train`` checks it: a broken block is marked BROKEN, with why, under its line."""
    rows, problems = [("name", "bias", "source", "description")], {}
    for b in blocks():
        problem = None if b.name in AGENTS else block_problem(b.name)  # the five are tested
        rows.append((b.name, b.bias, b.source, ("BROKEN: " if problem else "") + b.description))
        if problem:
            problems[b.name] = problem
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if r[0] in problems:
            lines.append(" " * (sum(widths) + 6) + f"  why: {problems[r[0]]}")
    lines.append(f"positions: {', '.join(POSITIONS)} (default {DEFAULT_POSITION}, the study); "
                 "write NAME@conv2 for another, e.g. CWCA@conv2")
    return "\n".join(lines)


# --------------------------------------------------------------------------- agents: a block at a position
def split_label(label: str) -> tuple[str, str]:
    """``CWCA`` -> (CWCA, conv1); ``CWCA@conv2`` -> (CWCA, conv2). Only the syntax is checked here."""
    name, sep, position = str(label).strip().partition("@")
    position = position.strip().lower() if sep else DEFAULT_POSITION
    if position not in POSITIONS:
        raise DimattnError(f"unknown position {position!r} in agent {label!r}; a block sits after "
                           f"{' or '.join(POSITIONS)} (the study's network has two convolutions), e.g. CWCA@conv2")
    if not _NAME.match(name.strip()):
        raise DimattnError(f"agent {label!r} is not a block name (letters, digits, _ or -), optionally @conv2")
    return name.strip(), position


def agent_label(name: str, position: str = DEFAULT_POSITION) -> str:
    """The name tables, folders and files use: the block's name, plus ``@conv2`` away from the study's place."""
    return name if position == DEFAULT_POSITION else f"{name}@{position}"


def agent_of(kwargs: Mapping[str, Any]) -> str:
    """The agent label that ``features_extractor_kwargs`` describe (``self_attn``, ``attention_after``)."""
    name, at = split_label(kwargs.get("self_attn", "NA"))
    position = kwargs.get("attention_after", DEFAULT_POSITION)
    if not isinstance(position, str):
        raise DimattnError(f"attention_after must be one of {', '.join(POSITIONS)}, got {position!r}")
    if "@" in str(kwargs.get("self_attn")) and position not in (DEFAULT_POSITION, at):
        raise DimattnError(f"self_attn={kwargs['self_attn']!r} contradicts attention_after={position!r}; give one")
    return check_agent(f"{name}@{at if at != DEFAULT_POSITION else position}")


def block_options(block_kwargs: Mapping[str, Any] | None, ada_attn: str | None = None,
                  norm_softmax: bool = True) -> dict[str, Any]:
    """The keyword arguments a block is built with: ``block_kwargs`` plus the study's two options where
    they differ from their defaults (published configs keep them beside ``self_attn``)."""
    out = check_kwargs(dict(block_kwargs or {}))
    if ada_attn is not None:
        out["ada_attn"] = ada_attn
    if not norm_softmax:
        out["norm_softmax"] = False
    return out


def check_agent(label: str) -> str:
    """The canonical label of a registered block at a known position (``cwca@Conv2`` -> ``CWCA@conv2``)."""
    name, position = split_label(label)
    return agent_label(get(name).name, position)


def _try_get(name: str) -> Block | None:
    try:
        return get(name)
    except DimattnError:
        return None


def bias_of(label: str) -> str:
    """The declared bias of an agent's block; ``unknown`` for a block not registered here."""
    try:
        name, _ = split_label(label)
    except DimattnError:
        return "unknown"
    block = _BLOCKS.get(name.upper()) or _try_get(name)
    return block.bias if block else "unknown"


def agent_order(labels: Iterable[str]) -> list[str]:
    """``labels`` in report order: the five study agents (study order, each position after the study's
    own), then every other, in registration order, unregistered ones last (alphabetical)."""
    names = [b.name.upper() for b in blocks()]

    def key(label: str) -> tuple[int, int, str]:
        try:
            name, position = split_label(label)
        except DimattnError:
            return (len(names) + 1, 0, label)
        rank = names.index(name.upper()) if name.upper() in names else len(names)
        return (rank, list(POSITIONS).index(position), label)

    return sorted(dict.fromkeys(labels), key=key)


# --------------------------------------------------------------------------- building and checking
def check_kwargs(kwargs: Any, what: str = "block_kwargs") -> dict[str, Any]:
    """``kwargs`` if it is a mapping of plain data (what JSON and YAML hold), else one line."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise DimattnError(f"{what} must be dict(name=value, ...) of plain values, got {kwargs!r}")
    try:
        if json.loads(json.dumps(kwargs)) != kwargs:
            raise TypeError("changed by a JSON round trip")
    except (TypeError, ValueError):
        raise DimattnError(f"{what} {kwargs!r} must hold plain data only (numbers, strings, booleans, None, "
                           "lists, dicts): files store it as such") from None
    return dict(kwargs)


def build_block(label: str, shape: tuple[int, int, int], kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the block of agent ``label`` for maps of ``shape`` (C, H, W), checked on a dummy batch:
    its output must have its input's shape. Uses no global randomness (SB3's initialisation follows)."""
    name, _ = split_label(label)
    block = get(name)
    kwargs = check_kwargs(dict(kwargs or {}))
    try:
        module = block.build(tuple(shape), **kwargs)
    except DimattnError:
        raise
    except TypeError as exc:
        raise DimattnError(f"block {block.name} ({block.source}) cannot be built with {kwargs or 'no arguments'}: "
                           f"{exc}".splitlines()[0]) from None
    except Exception as exc:
        raise DimattnError(f"block {block.name} ({block.source}) failed to build: {type(exc).__name__}: "
                           f"{exc}".splitlines()[0]) from None
    if not isinstance(module, nn.Module):
        raise DimattnError(f"block {block.name} ({block.source}): build returned {type(module).__name__}, "
                           "not a torch.nn.Module")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))  # (2, C, H, W)
    was = module.training
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except Exception as exc:
        raise DimattnError(f"block {block.name} ({block.source}) fails on a dummy batch of shape {tuple(x.shape)}: "
                           f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    finally:
        module.train(was)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DimattnError(f"block {block.name} ({block.source}) maps a (N, C, H, W) = {tuple(x.shape)} batch to "
                           f"{got}; a block must return its input's shape")
    if not torch.isfinite(y).all():  # training on it would learn NaN weights
        raise DimattnError(f"block {block.name} ({block.source}) returns values that are not finite (NaN or "
                           f"infinite) on a dummy batch of shape {tuple(x.shape)}; fix the block")
    return module


def check_block(label: str, kwargs: Mapping[str, Any] | None = None) -> None:
    """Build agent ``label``'s block where it sits in the study's network, on a dummy batch: every check
    :func:`build_block` makes, before a run writes anything."""
    build_block(label, POSITIONS[split_label(label)[1]], kwargs)


def attention_maps(label: str, module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attention maps the block of agent ``label`` provides for input ``x`` ({} if none)."""
    block = _try_get(split_label(label)[0])
    if block is None or block.maps is None:
        return {}
    return dict(block.maps(module, x))


def vmap_problem(label: str, kwargs: Mapping[str, Any] | None = None,
                 shape: tuple[int, int, int] | None = None) -> str | None:
    """Why agent ``label``'s block cannot run under ``torch.func.vmap`` (a vmapped pack's K stacked networks),
    tried on a dummy batch of two members, or None. ``shape``: the map's (C, H, W), by default where it sits."""
    from torch.func import functional_call, stack_module_state, vmap

    shape = POSITIONS[split_label(label)[1]] if shape is None else shape
    try:
        nets = [build_block(label, shape, kwargs) for _ in range(2)]
        params, buffers = stack_module_state(nets)
        x = torch.zeros(2, 3, *shape)  # (K=2, N=3, C, H, W)

        def one(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
            return functional_call(nets[0], (p, b), (xx,))

        with torch.no_grad():
            y = vmap(one)(params, buffers, x)
        if y.shape != x.shape:
            return f"under vmap it returns {tuple(y.shape)} for {tuple(x.shape)}"
    except Exception as exc:  # any failure means: train its runs one by one
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None


def block_record(label: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What files store about an agent's block: plain data, never code. ``module``: the --plugin module
    that registered it (a name, imported by :func:`load_provider` only when the block is missing)."""
    name, position = split_label(label)
    block = get(name)
    return {"name": block.name, "attention_after": position, "kwargs": check_kwargs(dict(kwargs or {})),
            "bias": block.bias, "package": block.package, "version": block.version, **provider(block.name)}


def provider(name: str) -> dict[str, Any]:
    """Where a block not of the study comes from, by name: ``{"module": M}`` (a --plugin module) and/or
    ``{"package": P, "version": V}`` (an installed distribution); ``{}`` for the study's five."""
    block = get(name)
    if block.study:
        return {}
    out: dict[str, Any] = {"module": block.plugin} if block.plugin else {}
    return {**out, **({"package": block.package, "version": block.version} if block.package else {})}


def load_provider(name: str, record: Mapping[str, Any] | None, near: Iterable[Any] = ()) -> None:
    """Register block ``name`` from where ``record`` (a :func:`provider` record, as study.yml, config.yml and
    checkpoints keep it) says it comes from, if it is not registered yet: its module imported by name (found
    on the path, in this folder or in ``near``: e.g. beside the study folder), or its package's entry point.
    Nothing is loaded but a name; a provider that is missing is one line naming it and how to install it."""
    if not isinstance(record, Mapping) or not _NAME.match(str(name)):
        return
    load_plugins()
    if str(name).upper() in _BLOCKS:
        return
    module, package = record.get("module"), record.get("package")
    if isinstance(module, str) and module:
        for folder in near:  # appended: a recorded name never shadows an installed module
            if str(folder) not in sys.path:
                sys.path.append(str(folder))
        install = f"put {module}.py beside the study folder or on PYTHONPATH" + (
            f", or pip install {package}" if package else "")
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found and module not in _loaded:
            raise DimattnError(f"agent {name} comes from module {module} (as recorded), which is not found here; "
                               f"{install}")
        try:
            import_plugin(module)
        except DimattnError as exc:
            raise DimattnError(f"agent {name} comes from module {module} (as recorded): {exc}") from None
    if str(name).upper() not in _BLOCKS:
        where = (f"package {package} {record.get('version') or ''}".rstrip() + f", which is not installed here: "
                 f"pip install {package}" if package and not module else f"module {module}, which does not "
                 "register it" if module else "no recorded provider: give --plugin MODULE that registers it")
        raise DimattnError(f"agent {name} is not registered; it comes from {where}")


# --------------------------------------------------------------------------- the five study agents
_STUDY = {
    "NA": ("no attention: the identity (the baseline)", "none"),
    "SWA": ("spatial-wise attention: per channel, rows attend to rows", "vertical"),
    "CWRA": ("channel-wise row attention: per column, the H positions attend", "vertical"),
    "CWCA": ("channel-wise column attention: per row, the W positions attend", "horizontal"),
    "CWRCA": ("CWRA + CWCA from the same q, k, v", "both"),
}


def _study_builder(kind: str) -> Builder:
    def build(shape: tuple[int, int, int], ada_attn: str | None = None, norm_softmax: bool = True) -> nn.Module:
        return build_attention(kind, shape[0], ada_attn=ada_attn, norm_softmax=norm_softmax)

    return build


for _kind in AGENTS:
    register(_kind, _study_builder(_kind), _STUDY[_kind][0], _STUDY[_kind][1],
             maps=None if _kind == "NA" else attention_weights)
