"""``train(config, run_dir)``: one agent on one game, by the engine that can run it.

The API behind ``dimattn train`` (the CLI builds a :class:`RunConfig` and a run folder from its options).
Every check happens before anything is written; then the configuration is resolved once into
:class:`PPOArgs` and handed to an engine (:mod:`dimattn.engines.fast` or :mod:`dimattn.engines.sb3`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dimattn.engines.config import RunConfig, resolve_device
from dimattn.engines.rundir import write_config
from dimattn.errors import DimattnError


def resolve_engine(config: RunConfig) -> RunConfig:
    """Check, before anything is written, that the engine can run ``config``; ``engine: auto`` becomes
    ``fast`` or ``sb3`` (saying why when it is sb3). Raises DimattnError for ``fast`` it cannot run."""
    config.validated()
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
        return dataclasses.replace(config, engine="sb3")
    return dataclasses.replace(config, engine="fast")


def train(config: RunConfig, run_dir: str | Path, tensorboard_log: str | None = None,
          progress: bool = False, verbose: int = 0, resume: bool = True) -> Path:
    """Train ``config`` into ``run_dir`` (created if needed), resuming from its last checkpoint.

    Returns the path of the final model. ``run_dir`` ends up in the layout of :mod:`dimattn.engines.rundir`.
    """
    config = resolve_engine(config)
    args = config.resolve()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    if args.engine == "sb3":
        from dimattn.engines.sb3 import train_sb3

        return train_sb3(args, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume)
    from dimattn.engines.fast import train_fast

    return train_fast(args, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume)
