"""The machine a process runs on: its cores, its free memory, and whether a rollout fits in it.

One home for facts about the host, read by the engines (threads, a rollout's memory) and by the study
(how many runs fit on a machine). Nothing here knows about runs beyond a rollout's sizes.

May import: the base modules (errors). Nothing above.
"""

from __future__ import annotations

import os
from pathlib import Path

from dimattn.errors import DimattnError

#: Bytes of one stacked observation (4 × 84 × 84 uint8).
OBS_BYTES = 4 * 84 * 84


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
