"""``dimattn train``: one agent on one game, the published RL Zoo command line accepted verbatim.

    dimattn train --algo ppo --env PongNoFrameskip-v4 --tensorboard-log logs --eval-freq 200000 \\
      --eval-episodes 5 --save-freq 500000 --log-folder logs --seed 0 --vec-env subproc --uuid \\
      --hyperparams policy_kwargs:"dict(features_extractor_class=SelfAttnCNNPPO, \\
                                        features_extractor_kwargs=dict(self_attn='NA'), net_arch=[])"

:func:`train` is the API (a :class:`RunConfig` and a run directory in, a finished run directory out);
the CLI builds both from its arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from dimattn.cli import integer, positive_int
from dimattn.config import RunConfig, build_config, resolve_device
from dimattn.errors import DimattnError
from dimattn.rundir import EVALUATIONS, new_run_dir, write_config

ENGINES = ("auto", "fast", "sb3")
#: ``auto``: the fast engine where it can run the config (EnvPool installed, the game in EnvPool, SPEC §4
#: options), else the SB3 engine. Both learn the same (docs/benchmarks.md, learning parity).
DEFAULT_ENGINE = "auto"


def resolve_engine(config: RunConfig) -> RunConfig:
    """Check, before anything is written, that the engine can run ``config``; ``engine: auto`` becomes
    ``fast`` or ``sb3`` (saying why when it is sb3). Raises DimattnError for ``fast`` it cannot run."""
    resolve_device(config.device)  # a bad device is an error for either engine, not a reason to switch
    if config.engine == "sb3":
        return config
    from dimattn.ppo import check_supported

    try:
        check_supported(config)
    except DimattnError as exc:
        if config.engine == "fast":
            raise
        print(f"note: the fast engine cannot run this ({exc}); using the SB3 engine", flush=True)
        return dataclasses.replace(config, engine="sb3")
    return dataclasses.replace(config, engine="fast")


def train(config: RunConfig, run_dir: str | Path, tensorboard_log: str | None = None,
          progress: bool = False, verbose: int = 0, resume: bool = True) -> Path:
    """Train ``config`` into ``run_dir`` (created if needed), resuming from its last checkpoint.

    Returns the path of the final model. ``run_dir`` ends up in the layout of :mod:`dimattn.rundir`.
    """
    config = resolve_engine(config.validated())
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    if config.engine == "sb3":
        from dimattn.sb3_engine import train_sb3

        return train_sb3(config, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume)
    if config.engine == "fast":
        from dimattn.ppo import train_fast

        return train_fast(config, run_dir, tensorboard_log, progress=progress, verbose=verbose, resume=resume)
    raise DimattnError(f"unknown engine {config.engine!r}; choose one of {', '.join(ENGINES)}")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options that define a run (shared by ``train`` and ``study init``)."""
    p.add_argument("-n", "--n-timesteps", type=positive_int, default=None,
                   help="total environment steps (default: the hyperparameters' n_timesteps, 10M)")
    p.add_argument("--eval-freq", type=integer, default=200_000,
                   help="evaluate every N total environment steps, counted across all envs (<=0: never)")
    p.add_argument("--eval-episodes", type=positive_int, default=5, help="whole games per evaluation")
    p.add_argument("--save-freq", type=integer, default=500_000,
                   help="checkpoint every N total environment steps, counted across all envs (<=0: never)")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"training engine (default {DEFAULT_ENGINE}): fast = our PPO on EnvPool, "
                        "sb3 = Stable-Baselines3's PPO (the reference), auto = fast where it can run, else sb3")
    p.add_argument("-params", "--hyperparams", nargs="+", metavar="KEY:VALUE", default=None,
                   help="override hyperparameters, e.g. n_envs:8 learning_rate:lin_1e-4 "
                        "policy_kwargs:\"dict(features_extractor_kwargs=dict(self_attn='CWCA'))\" "
                        "(values are parsed, never executed)")
    p.add_argument("-conf", "--conf-file", default=None, help="RL Zoo-style YAML of hyperparameters")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", default="ppo", help="only ppo (kept for the RL Zoo command line)")
    p.add_argument("--env", required=True, help="game: Pong, PongNoFrameskip-v4 or ALE/Pong-v5")
    p.add_argument("--agent", default=None, help="NA, SWA, CWRA, CWCA or CWRCA (short for policy_kwargs' self_attn)")
    p.add_argument("-f", "--log-folder", default="logs", help="runs go to <log-folder>/ppo/<EnvId>_<n>[_<uuid>]")
    p.add_argument("-tb", "--tensorboard-log", default=None, help="TensorBoard log folder")
    p.add_argument("--seed", type=integer, default=0, help="random seed (default 0)")
    p.add_argument("--vec-env", choices=("dummy", "subproc"), default="dummy",
                   help="SB3 engine: envs in this process (dummy) or one process each (subproc)")
    p.add_argument("--uuid", action="store_true", help="append a UUID to the run folder's name")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")
    p.add_argument("-P", "--progress", action="store_true", help="show a progress bar")
    p.add_argument("--verbose", type=int, default=0, help="SB3 verbosity (0: quiet, 1: training stats)")
    add_run_arguments(p)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    options = {"seed": args.seed, "eval_freq": args.eval_freq, "eval_episodes": args.eval_episodes,
               "save_freq": args.save_freq, "engine": args.engine}
    for name in ("device", "vec_env"):
        if hasattr(args, name):
            options[name] = getattr(args, name)
    if args.n_timesteps is not None:
        options["n_timesteps"] = args.n_timesteps
    return build_config(args.env, agent=args.agent, hyperparams=args.hyperparams,
                        conf_file=args.conf_file, **options)


def train_from_args(args: argparse.Namespace) -> Path:
    if args.algo.lower() != "ppo":
        raise DimattnError(f"--algo {args.algo} is not supported; dimattn trains ppo")
    config = resolve_engine(config_from_args(args))  # every check happens before anything is written
    run_dir = new_run_dir(args.log_folder, config.env_id, uuid=args.uuid)
    print(f"training {config.agent} on {config.env_id} (seed {config.seed}, {config.n_timesteps:,} steps, "
          f"{config.engine} engine) into {run_dir}", flush=True)
    final = train(config, run_dir, args.tensorboard_log, progress=args.progress, verbose=args.verbose)
    print(f"done.\n  run folder:   {run_dir}\n  evaluations:  {run_dir / EVALUATIONS}\n"
          f"  final model:  {final}\n  checkpoints:  {run_dir}/rl_model_*_steps.zip, {run_dir}/best_model.zip")
    if args.tensorboard_log:
        print(f"  TensorBoard:  tensorboard --logdir {args.tensorboard_log}")
    return run_dir
