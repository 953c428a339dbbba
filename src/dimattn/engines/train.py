"""``train(config, run_dir)``: one agent on one game, by the engine that can run it.

The API behind ``dimattn train`` (the CLI builds a :class:`RunConfig` and a run folder from its options).
Every check happens before anything is written; then the configuration is resolved once into
:class:`PPOArgs` and handed to an engine (:mod:`dimattn.engines.fast` or :mod:`dimattn.engines.sb3`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dimattn.engines.config import RunConfig, resolve_device
from dimattn.engines.rundir import write_config
from dimattn.envs.protocol import using
from dimattn.errors import DimattnError


def resolve_engine(config: RunConfig) -> RunConfig:
    """Check, before anything is written, that the engine can run ``config``; ``engine: auto`` becomes
    ``fast`` or ``sb3`` (saying why when it is sb3). Raises DimattnError for ``fast`` it cannot run.
    Returns the checked config (:meth:`RunConfig.validated`), so later layers do not check it again."""
    config = config.validated()
    resolve_device(config.device)  # a bad device is an error for either engine, not a reason to switch
    if config.engine == "sb3":
        return config
    from dimattn.engines.fast import check_supported

    try:
        check_supported(config.resolve())
    except DimattnError as exc:
        if config.engine == "fast":
            raise
        print(f"note: the fast engine cannot run this ({exc}); using the SB3 engine", flush=True)
        return config.on_engine("sb3")
    if config.vec_env == "subproc":
        print("note: --vec-env subproc applies to the SB3 engine; the fast engine steps its envs in EnvPool's "
              "threads (config.yml records vec_env: envpool)", flush=True)
    # config.yml records what ran: the fast engine's envs are an EnvPool whatever --vec-env said
    return config.on_engine("fast")


def train(config: RunConfig, run_dir: str | Path, tensorboard_log: str | None = None,
          progress: bool = False, verbose: int = 0, resume: bool = True,
          speed: dict[str, Any] | None = None) -> Path:
    """Train ``config`` into ``run_dir`` (created if needed), resuming from its last checkpoint.

    Returns the path of the final model. ``run_dir`` ends up in the layout of :mod:`dimattn.engines.rundir`.
    ``speed``: fields of :class:`dimattn.engines.speed.Speed` to set on top of the device's defaults (the
    fast engine only; how the machine is used, never what is learned).
    """
    config = resolve_engine(config)
    check_speed_for(config, speed)
    args = config.resolve()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    with using(config.environment):  # the run's protocol (envs/protocol.py), for every env it builds
        if args.engine == "sb3":
            from dimattn.engines.sb3 import train_sb3

            return train_sb3(args, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume)
        from dimattn.engines.fast import train_fast

        return train_fast(args, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume,
                          overrides=speed)


def check_speed_for(config: RunConfig, speed: dict[str, Any] | None) -> None:
    """Speed settings are the fast engine's: refuse them for a run the SB3 engine trains, and a CUDA-only
    lever for a run on the CPU (before anything is written)."""
    if speed and config.engine == "sb3":
        raise DimattnError("--speed sets the fast engine's levers, but this run trains with the SB3 engine; "
                           "drop --speed, or train with --engine fast")
    if speed:
        from dimattn.engines.speed import check_speed_device

        check_speed_device(speed, resolve_device(config.device))


def train_pack(configs: list[RunConfig], run_dirs: list[str | Path],
               tensorboard_log: str | Sequence[str | None] | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True, speed: Any = None) -> list[Path]:
    """Train runs of one game and agent that differ only in their seeds together, in this process
    (:func:`dimattn.engines.fast.train_pack`). Each run's folder ends up as :func:`train` leaves it.
    ``speed``: a :class:`dimattn.engines.speed.Speed` (how the machine is used; default: the measured best).

    ``tensorboard_log``: one root for every run, or a list of each run's own root (e.g. each run's
    ``<run>/tb``, as a study gives), so each run logs where :func:`train` would have logged it.

    Every check happens before anything is written; a pack needs the fast engine.
    """
    from dimattn.engines.fast import check_pack, pack_tb_roots
    from dimattn.engines.fast import train_pack as train_fast_pack

    configs = [resolve_engine(dataclasses.replace(c, engine="fast" if c.engine == "auto" else c.engine))
               for c in configs]  # auto means fast here: a pack has no SB3 fallback
    if any(c.engine != "fast" for c in configs):
        raise DimattnError("packed runs need the fast engine; give engine fast or auto (or train runs one by one)")
    args = [c.resolve() for c in configs]
    check_pack(args)
    pack_tb_roots(tensorboard_log, len(configs))  # a list must give every run its root
    dirs = [Path(d) for d in run_dirs]
    if any(c.environment != configs[0].environment for c in configs):
        raise DimattnError("packed runs share their envs' protocol; give every run the same protocol and env_kwargs")
    for config, run_dir in zip(configs, dirs):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    with using(configs[0].environment):
        return train_fast_pack(args, dirs, tensorboard_log, progress=progress, verbose=verbose, resume=resume,
                               speed=speed)
