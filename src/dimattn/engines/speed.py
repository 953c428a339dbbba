"""How the fast engine uses the machine: :class:`Speed`, its measured defaults per device, and the helpers
that apply it (torch's threads, the envs' groups, the tensors' memory format). None of it changes what
is learned (docs/benchmarks.md measures each lever).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from dimattn.errors import DimattnError
from dimattn.host import usable_cores


@dataclass(frozen=True)
class Speed:
    """How the engine uses the machine; none of these changes what is learned (docs/benchmarks.md).

    ``groups``: the envs are split into this many EnvPools stepped in turn, so one group's emulators
    run while the network acts for the other (2 = overlap env stepping with inference).
    ``torch_threads``/``env_threads``: 0 = leave torch's as they are / one EnvPool thread per core
    shared out among the groups. ``collect_threads``: torch's threads while collecting and evaluating
    (0 = ``torch_threads``): acting is a small batch, and idle OpenMP threads spin on the cores the
    emulators need. ``channels_last``: NHWC tensors for the convolutions (fp32; with bf16 it makes the
    attention blocks 3× slower on the CPU: turn it off there). ``bf16``:
    bfloat16 autocast of the network's forward and backward (losses, log-probabilities and Adam stay
    float32). ``compile``: ``torch.compile`` (measured slower; it fails on the attention blocks in
    torch 2.13). ``cuda_graph``: replay the act step (forward + sampling) as a CUDA graph (a run alone).
    ``vmap``: a pack's K networks run as one vmapped network
    (:class:`dimattn.engines.learners.VmappedLearner`), as on an accelerator; on the CPU the members
    otherwise act and learn each in its own thread, one torch thread each, which measured faster there
    (docs/benchmarks.md). The defaults for each device are :func:`default_speed`'s.
    """

    groups: int = 2
    torch_threads: int = 0
    env_threads: int = 1
    collect_threads: int = 0
    channels_last: bool = False
    bf16: bool = False  # +44% (NA), but its two parity seeds learned below the SB3 seeds: opt-in for now
    compile: bool = False
    cuda_graph: bool = False
    vmap: bool = False


#: The CPU defaults, measured on 2 cores (docs/benchmarks.md): torch keeps its threads for the update (a
#: lone run) and uses one while acting, each EnvPool one thread, so the emulators and the network share
#: the cores without spinning; channels-last convolutions (+16% for NA and CWCA, in the update).
DEFAULT_SPEED = Speed(collect_threads=1, channels_last=True)


#: The most threads a --speed field may ask for (what a job script may ask of one node, as ``study run --threads``)
#: and the most EnvPool groups (each group is a pool of its own).
MAX_THREADS, MAX_GROUPS = 1024, 64
#: Fields that only an accelerator can use: asked for on the CPU they would be silently ignored.
CUDA_ONLY = ("cuda_graph",)


#: The levers a caller asks for: :class:`Speed` fields set on top of the device's measured defaults
#: (``--speed``, ``train_pack(speed=...)``; ``dataclasses.asdict(Speed(...))`` sets them all). The one form in
#: which every caller gives them; :func:`dimattn.engines.train.prepare` makes the run's Speed from it.
SpeedOverrides = Mapping[str, int | bool]


def speed_overrides(items: Sequence[str]) -> dict[str, int | bool]:
    """``["bf16=true", "env_threads=4"]`` -> ``{"bf16": True, "env_threads": 4}``: :class:`Speed` fields to set
    on top of the device's defaults (``dimattn train --speed``). Parsed, never evaluated; DimattnError on an
    unknown field, a field given twice or a bad value (integers: ASCII digits within the field's range)."""
    fields = {f.name: f.type for f in dataclasses.fields(Speed)}
    out: dict[str, int | bool] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip().replace("-", "_"), value.strip().lower()
        if not sep or not name or not value:
            raise DimattnError(f"malformed --speed item {item!r}; write field=value, e.g. --speed bf16=true")
        if name not in fields:
            raise DimattnError(f"unknown --speed field {name!r}; the fields are {', '.join(fields)}")
        if name in out:
            raise DimattnError(f"--speed {name} is given twice; give each field once")
        out[name] = _speed_value(name, value, fields[name] in (bool, "bool"))
    return out


def _speed_value(name: str, value: str, boolean: bool) -> int | bool:
    if boolean:
        if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise DimattnError(f"--speed {name} takes true or false, got {value!r}")
        return value in ("true", "1", "yes", "on")
    # ASCII digits only: str.isdigit and int() also take "٣" and "1_000"
    if not (value.isascii() and value.isdigit()):
        raise DimattnError(f"--speed {name} takes a whole number >= 0 in digits 0-9, got {value[:40]!r}")
    low, high = (1, MAX_GROUPS) if name == "groups" else (0, MAX_THREADS)
    if len(value) > 7 or not low <= int(value) <= high:
        raise DimattnError(f"--speed {name} must be at least {low} and at most {high:,}, got {value[:40]}")
    return int(value)


def check_speed_device(speed: SpeedOverrides, device: torch.device) -> None:
    """Refuse a field that only an accelerator uses when the run is on the CPU (it would do nothing)."""
    asked = [name for name in CUDA_ONLY if speed.get(name)]
    if asked and device.type == "cpu":
        raise DimattnError(f"--speed {asked[0]}=true needs a CUDA device, but this run is on the CPU; "
                           f"drop it, or train with --device cuda")


def default_speed(device: torch.device, members: int = 1) -> Speed:
    """The measured best :class:`Speed` for ``device`` and a pack of ``members`` runs (docs/benchmarks.md,
    CPU and GPU tables).

    On a GPU the network needs one CPU thread to launch its kernels; torch's default (one OpenMP thread
    per core) spins on the cores the emulators need and halves the speed. EnvPool gets the other cores.
    On the CPU a pack of K members is given K cores (a study's ``--pack K`` counts them so): the members
    work in threads of their own with one torch thread each, and the collect phase, bound by the
    emulators, gives each EnvPool K threads (the pools take turns), which measured faster than one
    (benchmarks/throughput.py --packed).
    """
    if device.type != "cpu":  # measured on an H100 node, docs/benchmarks.md: the CUDA graph gave +20%
        return Speed(groups=2, torch_threads=1, env_threads=0, cuda_graph=True, vmap=True)
    if members == 1:
        return DEFAULT_SPEED
    return dataclasses.replace(DEFAULT_SPEED, torch_threads=1, env_threads=min(members, usable_cores()))


def env_groups(n_envs: int, speed: Speed) -> list[slice]:
    """Env index ranges of the EnvPools, e.g. 16 envs, 2 groups -> [0:8, 8:16] (1 group if uneven)."""
    g = speed.groups if n_envs % speed.groups == 0 else 1
    size = n_envs // g
    return [slice(i * size, (i + 1) * size) for i in range(g)]


def memory_format(speed: Speed) -> torch.memory_format:
    """The layout of the network's input: channels-last (NHWC) or contiguous, as ``speed`` says."""
    return torch.channels_last if speed.channels_last else torch.contiguous_format


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (0: unchanged) for the block."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
