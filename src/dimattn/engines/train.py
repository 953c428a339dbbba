"""Training K ≥ 1 runs (a pack; K = 1: a run alone) into their folders: the one road from a command to a learner.

Two steps, so that every check happens before anything is written::

    plan = prepare(configs, speed)        # checks, and decides once: engine, device, speed, drive
    finals = run_plan(plan, run_dirs)     # writes each config.yml, then the engine trains

:func:`train_pack` is the two together and :func:`train` its shorthand for a run alone. Nothing after
:func:`prepare` checks or resolves again: the engines read the plan.

The engine: ``sb3`` (Stable-Baselines3's PPO, :mod:`dimattn.engines.sb3`) trains a run alone only; ``fast``
(:mod:`dimattn.engines.fast`) trains any K; ``auto`` is ``fast`` where it can run the configuration, else
``sb3`` for a run alone (said so), and always ``fast`` for a pack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dimattn.engines.config import PPOArgs, RunConfig, resolve_device
from dimattn.engines.learner import Drive
from dimattn.engines.plan import TrainPlan
from dimattn.engines.rundir import write_config
from dimattn.envs.protocol import using
from dimattn.errors import DimattnError

if TYPE_CHECKING:
    import torch

    from dimattn.engines.speed import Speed, SpeedOverrides


def prepare(configs: Sequence[RunConfig], speed: SpeedOverrides | None = None) -> TrainPlan:
    """Check ``configs`` (K ≥ 1 runs that differ only in their seeds) and decide, once, how they train.

    ``speed``: the fast engine's levers asked for (:data:`dimattn.engines.speed.SpeedOverrides`: how the
    machine is used, never what is learned); None: the device's measured defaults.
    Raises DimattnError, before anything is written, for anything that cannot run.
    """
    if not configs:
        raise DimattnError("nothing to train: give at least one run")
    asked = _asked_engine(configs)
    device = resolve_device(configs[0].device)  # a bad device is an error for either engine, not a reason to switch
    chosen = "asked for" if asked != "auto" else "chosen by --engine auto"
    if speed:  # a lever that only an accelerator uses is refused on the CPU, whichever engine
        from dimattn.engines.speed import check_speed_device

        check_speed_device(dict(speed), device)
    if asked != "sb3":
        fast = tuple(c.on_engine("fast") for c in configs)
        args = tuple(c.resolve(device) for c in fast)
        try:
            plan = _fast_plan(fast, args, device, speed, chosen)
        except DimattnError as exc:
            if asked == "fast" or len(configs) > 1:
                raise
            print(f"note: the fast engine cannot run this ({exc}); using the SB3 engine", flush=True)
        else:
            if configs[0].vec_env == "subproc":
                print("note: --vec-env subproc applies to the SB3 engine; the fast engine steps its envs in "
                      "EnvPool's threads (config.yml records vec_env: envpool)", flush=True)
            return plan
    if speed:
        raise DimattnError("--speed sets the fast engine's levers, but this run trains with the SB3 engine; "
                           "drop --speed, or train with --engine fast")
    config = configs[0].on_engine("sb3")
    return TrainPlan((config,), (config.resolve(device),), "sb3", device, None, "alone", chosen)


def _asked_engine(configs: Sequence[RunConfig]) -> str:
    """The engine the runs ask for (one for all); a pack cannot ask for the SB3 engine, nor its runs for envs
    of different protocols (they share their envs)."""
    if any(c.environment != configs[0].environment for c in configs):
        raise DimattnError("packed runs share their envs' protocol; give every run the same protocol and env_kwargs")
    asked = configs[0].engine
    if any(c.engine != asked for c in configs):
        raise DimattnError("the runs of a pack must ask for one engine; give --engine fast or auto to all")
    if len(configs) > 1 and asked == "sb3":
        raise DimattnError("packed runs need the fast engine; give engine fast or auto (or train runs one by one)")
    return asked


def _fast_plan(configs: tuple[RunConfig, ...], args: tuple[PPOArgs, ...], device: torch.device,
               speed: SpeedOverrides | None, chosen: str) -> TrainPlan:
    """The fast engine's plan: the runs checked (what it can run, a pack's runs differing only in their
    seeds), its levers and its drive. DimattnError when it cannot run them."""
    from dimattn.engines.fast import check_pack
    from dimattn.engines.speed import default_speed

    check_pack(list(args))
    levers = dataclasses.replace(default_speed(device, len(args)), **dict(speed or {}))
    drive = _drive(args[0], levers, len(args))
    # the CUDA graph was measured for a run alone; a pack's act step runs without it (not measured)
    levers = dataclasses.replace(levers, cuda_graph=levers.cuda_graph and drive == "alone")
    return TrainPlan(configs, args, "fast", device, levers, drive, chosen)


def _drive(args: PPOArgs, speed: Speed, k: int) -> Drive:
    """A run alone; a pack vmapped where its levers say so and its block runs under vmap (else its runs train
    alone, one after another); else threaded."""
    if k == 1:
        return "alone"
    if not speed.vmap:
        return "threaded"
    from dimattn.agents.registry import block_options, vmap_problem

    kw = args.raw_policy_kwargs["features_extractor_kwargs"]
    why = vmap_problem(args.agent, block_options(kw.get("block_kwargs"), args.ada_attn, args.norm_softmax))
    if why is None:
        return "vmapped"
    print(f"note: {args.agent}'s block does not run under torch.func.vmap ({why}); its runs train as "
          "packs of one", flush=True)
    return "alone"


def run_plan(plan: TrainPlan, run_dirs: Sequence[str | Path],
             tensorboard_log: str | Sequence[str | None] | None = None,
             progress: bool = False, verbose: int = 0, resume: bool = True) -> list[Path]:
    """Train (or resume, from each folder's newest checkpoint) the plan's runs into ``run_dirs`` (created if
    needed, each in the layout of :mod:`dimattn.engines.rundir`); returns each run's final model.

    ``tensorboard_log``: one TensorBoard root for every run, or a list with each run's own root (None: that run
    logs nothing), e.g. each run's ``<run>/tb`` as a study gives.
    """
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) != plan.k:
        raise DimattnError(f"{plan.k} run(s) need {plan.k} run folder(s), got {len(dirs)}")
    tb_roots = _tb_roots(tensorboard_log, plan.k)
    for config, run_dir in zip(plan.configs, dirs):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    print(f"engine: {plan.engine} ({plan.chosen})", flush=True)
    with using(plan.configs[0].environment):  # the runs' protocol (envs/protocol.py), for every env they build
        if plan.engine == "sb3":
            from dimattn.engines.sb3 import train_sb3

            return [train_sb3(plan.args[0], dirs[0], tb_roots[0], progress=progress, verbose=verbose,
                              resume=resume)]
        from dimattn.engines.fast import train_fast

        return train_fast(plan, dirs, tb_roots, progress=progress, verbose=verbose, resume=resume)


def _tb_roots(tensorboard_log: str | Sequence[str | None] | None, k: int) -> list[str | None]:
    """Each run's TensorBoard root: the one root for all, or the list given (checked to have k entries)."""
    if tensorboard_log is None or isinstance(tensorboard_log, (str, Path)):
        return [None if tensorboard_log is None else str(tensorboard_log)] * k
    roots = list(tensorboard_log)
    if len(roots) != k:
        raise DimattnError(f"a pack of {k} runs needs {k} TensorBoard folders, got {len(roots)}")
    return roots


def train_pack(configs: Sequence[RunConfig], run_dirs: Sequence[str | Path],
               tensorboard_log: str | Sequence[str | None] | None = None, progress: bool = False,
               verbose: int = 0, resume: bool = True, speed: SpeedOverrides | None = None) -> list[Path]:
    """:func:`prepare` then :func:`run_plan`: train K ≥ 1 runs that differ only in their seeds, each into its
    folder (each folder ends up exactly as the run alone would leave it); returns each run's final model."""
    return run_plan(prepare(configs, speed), run_dirs, tensorboard_log, progress=progress, verbose=verbose,
                    resume=resume)


def train(config: RunConfig, run_dir: str | Path, tensorboard_log: str | None = None, progress: bool = False,
          verbose: int = 0, resume: bool = True, speed: SpeedOverrides | None = None) -> Path:
    """:func:`train_pack` for a run alone: train ``config`` into ``run_dir``; returns the final model's path."""
    return train_pack([config], [run_dir], tensorboard_log, progress, verbose, resume, speed)[0]
