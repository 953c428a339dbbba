"""The ``dimattn`` command line: a thin layer over the Python API.

Each subcommand is a pair of functions here: ``_add_<name>(subparsers)`` declares its options and
``_run_<name>(args)`` calls the API. Bad input raises :class:`DimattnError`; ``main`` prints it on one
line and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import errno
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from dimattn.engines import stopping

# What --help needs is plain values (engines.defaults, no torch): a usage error or --help answers at once,
# and each command imports the heavy modules it uses (torch, pandas, matplotlib, ...) when it runs.
from dimattn.engines.defaults import (
    DEFAULT_ENGINE,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_EVAL_FREQ,
    DEFAULT_MLRUNS,
    DEFAULT_N_TIMESTEPS,
    DEFAULT_PROJECT,
    DEFAULT_SAVE_FREQ,
    ENGINES,
    MAX_SEED,
)
from dimattn.errors import DimattnError
from dimattn.fileio import check_writable_dir, output_folder, writing
from dimattn.study.schedulers import SCHEDULERS, backends, words

if TYPE_CHECKING:
    from dimattn.engines.config import RunConfig


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help: appended where the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        shown = f"{default:,}" if isinstance(default, int) and not isinstance(default, bool) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse prints the whole usage), and every
    option's default shows in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse, but an unknown option is reported by the (sub)command it was given to, so that the
        line points to that command's ``--help``, with the flag dimattn uses for one of another tool."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._command_parser(parsed)
            parser.error(f"unrecognized arguments: {' '.join(extras)}{_flag_hints(extras, parser)}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The innermost subcommand's parser that ``parsed`` went through (``dimattn study run`` -> run's)."""
        parser: argparse.ArgumentParser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            name = getattr(parsed, subs[0].dest, None) if subs else None
            if name not in (subs[0].choices if subs else {}):
                return parser
            parser = subs[0].choices[name]


#: Options of RL Baselines3 Zoo, SB3 and CleanRL command lines a newcomer types, and dimattn's for the same.
_OTHER_TOOLS_FLAGS = {
    "--total-timesteps": "--n-timesteps", "--timesteps": "--n-timesteps", "--num-timesteps": "--n-timesteps",
    "--env-id": "--env", "--game": "--env", "--log-dir": "--log-folder", "--logdir": "--log-folder",
    "--tensorboard": "--tensorboard-log", "--tb": "--tensorboard-log", "--n-eval-episodes": "--eval-episodes",
    "--eval-frequency": "--eval-freq", "--save-frequency": "--save-freq", "--checkpoint-freq": "--save-freq",
    "--hyperparameters": "--hyperparams", "--config": "--conf-file", "--num-threads": "--threads",
    "--self-attn": "--agent", "--attention": "--agent", "--output": "--out", "--output-dir": "--out",
    "--seeds": "--seed", "--n-seeds": "--seeds", "--cuda": "--device",
}


def _flag_hints(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """``; for --total-timesteps dimattn uses -n/--n-timesteps`` (or a close spelling) for each unknown option."""
    spelled = {o: "/".join(a.option_strings) for a in parser._actions for o in a.option_strings}
    hints = []
    for flag in dict.fromkeys(e.split("=")[0] for e in extras if e.startswith("-") and len(e) > 1):
        ours = _OTHER_TOOLS_FLAGS.get(flag.lower().replace("_", "-"))
        if ours in spelled:
            hints.append(f"for {flag} dimattn uses {spelled[ours]}")
        elif close := difflib.get_close_matches(flag, [o for o in spelled if o.startswith("--")], n=1, cutoff=0.75):
            hints.append(f"did you mean {close[0]}?")
    return "".join(f"; {h}" for h in hints)


# ASCII digits only (int() would take "٣" and "1_000"), an optional fraction and exponent (RL Zoo writes 2e5).
_INTEGER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_DIGITS = 100  # far beyond every limit below, and cheap to compare: 1e999999999 is refused unexpanded


def integer(text: str) -> int:
    """``5``, ``200000``, ``2e5`` or ``2.5e6`` -> int, exactly: parsed as a decimal, never through float
    (so ``99999999999999999999`` stays what was typed)."""
    if len(text) > _MAX_DIGITS or not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer (write digits 0-9, e.g. 200000 or 2e5)")
    value = Decimal(text)
    if value.adjusted() >= _MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{text} has more than {_MAX_DIGITS} digits")
    if value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(value)


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an :func:`integer` from ``low`` to ``high`` (a count a user types has a sane range)."""
    def parse(text: str) -> int:
        value = integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be at least {low:,} and at most {high:,}, got {text}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


# The ranges of the counts and seeds a user types (the fast engine's own limits live in engines.config).
SEEDS = bounded(0, MAX_SEED)
PLAY_STEPS = bounded(1, 1_000_000)   # axes/recommend: 2,000 by default; 10^6 is hours of play
THREADS = bounded(1, 1024)           # what a job script may ask of one node


def positive_int(text: str) -> int:
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def gpu_share(text: str) -> float:
    """``1``, ``0.5`` (a share of a GPU, as Ray's ``num_gpus`` takes it) -> float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


# --------------------------------------------------------------------------- train
def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options that define a run (shared by ``train`` and ``study init``)."""
    p.add_argument("-n", "--n-timesteps", type=positive_int, default=None,
                   help=f"total environment steps (default: the hyperparameters' n_timesteps, {DEFAULT_N_TIMESTEPS:,})")
    p.add_argument("--eval-freq", type=integer, default=DEFAULT_EVAL_FREQ,
                   help="evaluate every N total environment steps, counted across all envs (<=0: never)")
    p.add_argument(
        "--eval-episodes", type=positive_int, default=DEFAULT_EVAL_EPISODES, help="whole games per evaluation"
    )
    p.add_argument("--save-freq", type=integer, default=DEFAULT_SAVE_FREQ,
                   help="checkpoint every N total environment steps, counted across all envs (<=0: never). "
                        "A checkpoint is written where training next stops to look, so its step count is "
                        "rounded up: to a rollout (n_envs*n_steps, 2,048 steps by default) in the fast engine, "
                        "e.g. --save-freq 25000 writes rl_model_26624_steps.zip; to n_envs steps in the SB3 "
                        "engine (rl_model_25008_steps.zip)")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help=f"training engine (default {DEFAULT_ENGINE}): fast = our PPO on EnvPool, "
                        "sb3 = Stable-Baselines3's PPO (the reference), auto = fast where it can run, else sb3")
    p.add_argument("-params", "--hyperparams", nargs="+", metavar="KEY:VALUE", default=None,
                   help="override hyperparameters, e.g. n_envs:8 learning_rate:lin_1e-4 "
                        "policy_kwargs:\"dict(features_extractor_kwargs=dict(self_attn='CWCA'))\" "
                        "(values are parsed, never executed)")
    p.add_argument("-conf", "--conf-file", default=None, help="RL Zoo-style YAML of hyperparameters")
    p.add_argument("--protocol", choices=("study", "machado"), default=None,
                   help="the environment: the study's (SPEC §3, the default) or Machado et al. 2018's (sticky "
                        "actions 0.25, full action set, no loss-of-life signal); env_kwargs in --hyperparams go "
                        "on top")


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", default="ppo", help="only ppo (kept for the RL Zoo command line)")
    p.add_argument("--env", default=None, help="game: Pong, PongNoFrameskip-v4 or ALE/Pong-v5 (required, unless "
                   "--resume)")
    p.add_argument("--agent", default=None, help="NA, SWA, CWRA, CWCA, CWRCA or any registered block (dimattn "
                   "agents); NAME@conv2 places it after the second convolution (policy_kwargs' self_attn, "
                   "attention_after)")
    p.add_argument("-f", "--log-folder", default="logs", help="runs go to <log-folder>/ppo/<EnvId>_<n>[_<uuid>]")
    p.add_argument("-tb", "--tensorboard-log", default=None, help="TensorBoard log folder")
    p.add_argument("--seed", type=integer, default=0, help="random seed (default 0)")
    p.add_argument("--vec-env", choices=("dummy", "subproc"), default="dummy",
                   help="SB3 engine: envs in this process (dummy) or one process each (subproc); the fast "
                        "engine always steps an EnvPool (config.yml records vec_env: envpool)")
    p.add_argument("--uuid", action="store_true", help="append a UUID to the run folder's name")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")
    p.add_argument("-P", "--progress", action="store_true", help="show a progress bar")
    p.add_argument("--verbose", type=bounded(0, 2), default=0, help="SB3 verbosity (0: quiet, 1: training stats)")
    p.add_argument("--speed", nargs="+", metavar="FIELD=VALUE", default=None,
                   help="the fast engine's levers on top of the device's defaults, e.g. bf16=true "
                        "channels_last=false env_threads=4 (fields of dimattn.engines.speed.Speed; they change "
                        "how the machine is used, never what is learned, bf16 aside: docs/fast-engine.md)")
    _add_run_arguments(p)
    _add_daily_arguments(p)


def _add_daily_arguments(p: argparse.ArgumentParser) -> None:
    """Continue, resume and track a run (RL Zoo's flags; docs/tracking.md)."""
    p.add_argument("-i", "--trained-agent", default=None, metavar="MODEL.zip",
                   help="continue training from this model into a new run folder: a dimattn checkpoint brings "
                        "its weights, optimizer, RNG states and step count back (as a resume does), any SB3 zip its "
                        "weights")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="go on with a run stopped (signal, kill, crash) from its last checkpoint, in its folder and "
                        "with its config.yml")
    _add_tracking_arguments(p)


def _add_tracking_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking (docs/tracking.md; pip install dimattn[track])")
    g.add_argument("--track", action="store_true", help="send the run to Weights & Biases (WANDB_MODE=offline "
                   "keeps it on disk, under <run>/wandb)")
    g.add_argument("--wandb-project-name", default=DEFAULT_PROJECT, help="W&B project")
    g.add_argument("--wandb-entity", default=None, help="W&B team or user (default: your default entity)")
    g.add_argument("--wandb-tags", nargs="*", default=[], metavar="TAG", help="W&B tags of the run")
    g.add_argument("--mlflow", nargs="?", const=DEFAULT_MLRUNS, default=None, metavar="URI",
                   help=f"send the run to MLflow: a tracking URI, or a folder (default ./{DEFAULT_MLRUNS})")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    from dimattn.engines.config import build_config

    options = {"seed": args.seed, "eval_freq": args.eval_freq, "eval_episodes": args.eval_episodes,
               "save_freq": args.save_freq, "engine": args.engine}
    for name in ("device", "vec_env"):
        if hasattr(args, name):
            options[name] = getattr(args, name)
    if args.n_timesteps is not None:
        options["n_timesteps"] = args.n_timesteps
    options["protocol"] = _protocol_of(args, [args.env])
    return build_config(args.env, agent=args.agent, hyperparams=args.hyperparams,
                        conf_file=args.conf_file, **options)


def _protocol_of(args: argparse.Namespace, games: list[str]) -> str:
    """``--protocol``, or the study's; a v5 id without it keeps the study's, said once."""
    from dimattn.envs.protocol import DEFAULT_PROTOCOL

    v5 = [g for g in games if str(g).strip().endswith("-v5")]
    if args.protocol is None and v5:
        print(f"note: {v5[0]} is trained with the study's protocol (no sticky actions, minimal action set, "
              "SPEC §3), not v5's defaults; give --protocol machado for sticky actions and the full action set",
              flush=True)
    return args.protocol or DEFAULT_PROTOCOL


def _speed_from_args(args: argparse.Namespace) -> dict | None:
    if not args.speed:
        return None
    from dimattn.engines.speed import speed_overrides

    return speed_overrides(args.speed)


def done_message(run_dir: Path, final: Path, config: RunConfig | None = None) -> str:
    """What a finished run wrote, naming only files that exist (no evaluations with --eval-freq 0, ...), and
    why a run asked to evaluate has no evaluations (``config``: the run's; a short run with the default
    --eval-freq ends before its first evaluation)."""
    from dimattn.engines.rundir import EVALUATIONS

    lines = ["done.", f"  run folder:   {run_dir}"]
    if (run_dir / EVALUATIONS).exists():
        lines.append(f"  evaluations:  {run_dir / EVALUATIONS}")
    elif config is not None and config.eval_freq > 0:
        lines.append(f"  evaluations:  none: the run's {config.n_timesteps:,} steps ended before the first "
                     f"evaluation (--eval-freq {config.eval_freq:,}); give a smaller --eval-freq, e.g. "
                     f"{max(config.n_timesteps // 4, 1):,}, to evaluate")
    lines.append(f"  final model:  {final}")
    saved = [str(run_dir / pattern) for pattern in ("rl_model_*_steps.zip", "best_model.zip")
             if any(run_dir.glob(pattern))]
    if saved:
        lines.append(f"  checkpoints:  {', '.join(saved)}")
    return "\n".join(lines)


def _train_from_args(args: argparse.Namespace) -> None:
    if args.algo.lower() != "ppo":
        raise DimattnError(f"--algo {args.algo} is not supported; dimattn trains ppo")
    if args.resume:
        return _resume_from_args(args)
    from dimattn.engines import resume, tracking
    from dimattn.engines.rundir import discard_unstarted, new_run_dir
    from dimattn.engines.train import prepare, run_plan

    plan = prepare([_config_from_args(args)], _speed_from_args(args))  # every check, before anything is written
    config = plan.configs[0]
    trained = resume.check_trained_agent(args.trained_agent, config) if args.trained_agent else None
    track = tracking.settings_from_args(args)
    if args.tensorboard_log:  # probed before the run folder exists, so a refusal leaves nothing behind
        check_writable_dir(args.tensorboard_log, "TensorBoard folder", "--tensorboard-log")
    run_dir = new_run_dir(args.log_folder, config.env_id, uuid=args.uuid)
    print(f"training {config.agent} on {config.env_id} (seed {config.seed}, {config.n_timesteps:,} steps, "
          f"{config.engine} engine) into {run_dir}", flush=True)
    try:
        with writing(run_dir, "run folder"):  # e.g. the disk fills up during training
            if trained is not None:
                resume.seed_run(trained, config, run_dir)
            tb = tracking.start(run_dir, config, track, args.tensorboard_log)
            with tracking.tracked(run_dir, config):
                (final,) = run_plan(plan, [run_dir], tb, progress=args.progress, verbose=args.verbose)
    except stopping.Stopped as exc:  # a checkpoint was written: say how to go on
        exc.args = (f"{exc}; resume it: {resume.resume_command(run_dir)}",)
        raise
    except BaseException as exc:  # interrupted or failed before it wrote anything of a run: leave no run folder
        if discard_unstarted(run_dir) and isinstance(exc, stopping.Terminated):  # say which: gone, not resumable
            raise stopping.Terminated(f"{exc} before its first rollout: removed {run_dir}, which held nothing to "
                                      "resume") from None
        raise
    print(done_message(run_dir, final, config))
    if args.tensorboard_log:
        print(f"  TensorBoard:  tensorboard --logdir {args.tensorboard_log}")


#: train's options that define a run: --resume takes them from the run's config.yml instead
_RUN_OPTIONS = ("env", "agent", "seed", "n_timesteps", "eval_freq", "eval_episodes", "save_freq", "engine",
                "hyperparams", "conf_file", "vec_env", "trained_agent", "protocol")


def _resume_from_args(args: argparse.Namespace) -> None:
    """``dimattn train --resume RUN_DIR``: the run's own configuration, its folder, the study's resume."""
    from dimattn.engines import resume, tracking
    from dimattn.engines.train import prepare, run_plan

    given = _given(args, _RUN_OPTIONS)
    if given:
        raise DimattnError(f"--resume takes the run's options from its config.yml; drop {', '.join(given)}")
    run_dir = Path(args.resume)
    config = resume.check_resumable(run_dir)
    if args.device != "auto":  # where it trains, never what it learns
        config = dataclasses.replace(config, device=args.device)
    plan = prepare([config], _speed_from_args(args))
    config = plan.configs[0]
    track = tracking.settings_from_args(args)
    print(f"resuming {config.agent} on {config.env_id} (seed {config.seed}, {config.n_timesteps:,} steps) in "
          f"{run_dir} from {resume.newest_checkpoint(run_dir)}", flush=True)
    try:
        with writing(run_dir, "run folder"):
            tb = tracking.start(run_dir, config, track, args.tensorboard_log)
            with tracking.tracked(run_dir, config):
                (final,) = run_plan(plan, [run_dir], tb, progress=args.progress, verbose=args.verbose)
    except stopping.Stopped as exc:
        exc.args = (f"{exc}; resume it: {resume.resume_command(run_dir)}",)
        raise
    print(done_message(run_dir, final, config))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one agent on one Atari game", description=(
        "Train one agent on one Atari game with the study's PPO protocol (SPEC §4). Accepts the "
        "published RL Zoo command line verbatim; with -optimize, searches hyperparameters as dimattn tune does."))
    _add_train_arguments(p)
    p.add_argument("-optimize", "--optimize-hyperparameters", action="store_true",
                   help="search hyperparameters (RL Zoo's flag): the same as dimattn tune with these options")
    _add_tune_options(p)


#: train's options that a search (-optimize) does not use: its trials' runs are its own
_NOT_TUNED = ("eval_freq", "save_freq", "speed", "uuid", "tensorboard_log", "trained_agent", "resume", "device",
              "vec_env", "protocol", "track", "mlflow")


def _given(args: argparse.Namespace, dests: Sequence[str]) -> list[str]:
    """The flags among ``dests`` that ``dimattn train`` was given (not left at their defaults)."""
    sub = _Parser(add_help=False).add_subparsers()
    _add_train(sub)
    train = sub.choices["train"]
    return [next(a.option_strings[-1] for a in train._actions if a.dest == k) for k in dests
            if hasattr(args, k) and getattr(args, k) != train.get_default(k)]


def _check_train_usage(args: argparse.Namespace) -> None:
    """What argparse cannot say for ``train`` (a game, or a run to resume), before any plugin loads torch."""
    if args.env is None and args.resume is None and not args.optimize_hyperparameters:
        raise DimattnError("--env is required (a game, e.g. --env Pong), or give --resume RUN_DIR "
                           "(see dimattn train --help)")


def _run_train(args: argparse.Namespace) -> int:
    if args.optimize_hyperparameters:
        if given := _given(args, _NOT_TUNED):
            raise DimattnError(f"-optimize searches with runs of its own, which {', '.join(given)} would not "
                               "reach; drop it (docs/tune.md)")
        return _run_tune(args)
    tuning = [f for f in _given(args, [a.dest for a in _tune_option_actions()]) if f != "--seed"]
    if tuning:
        raise DimattnError(f"{', '.join(tuning)} {'sets' if len(tuning) == 1 else 'set'} a hyperparameter search, "
                           "which train runs only with -optimize; add -optimize, or drop it")
    _train_from_args(args)
    return 0


def _tune_option_actions() -> list[argparse.Action]:
    """The actions of the search's options (``_add_tune_options``)."""
    p = _Parser(add_help=False)
    _add_tune_options(p)
    return [a for a in p._actions if a.option_strings]


# --------------------------------------------------------------------------- tune
def _add_tune_options(p: argparse.ArgumentParser) -> None:
    """The search's options, RL Zoo's names (shared by ``tune`` and ``train -optimize``)."""
    g = p.add_argument_group("hyperparameter search (dimattn tune, train -optimize; docs/tune.md)")
    g.add_argument("--n-trials", type=bounded(1, 1_000_000), default=500, help="trials this command runs")
    g.add_argument("--n-jobs", type=bounded(1, 1024), default=1,
                   help="worker processes of this machine sharing the study (each trial's runs are processes too)")
    g.add_argument("--sampler", default="tpe", help="tpe, random or cmaes")
    g.add_argument("--pruner", default="median", help="median, halving or none")
    g.add_argument("--n-startup-trials", type=bounded(0, 1_000_000), default=10,
                   help="random trials before TPE / CMA-ES, and trials before the median pruner prunes")
    g.add_argument("--n-evaluations", type=bounded(1, 10_000), default=None,
                   help="evaluations per run of a trial, what pruning looks at (default: one per 100k steps)")
    g.add_argument("--storage", default=None, help="Optuna storage: a journal file path (several workers, any "
                   "machine that sees it) or a database URL such as sqlite:///tune.db (default: "
                   "<log-folder>/tune/<study-name>/journal.log)")
    g.add_argument("--study-name", default=None, help="the search's name (default: <agent>_<games>); the same name "
                   "and storage go on with a search")
    g.add_argument("--max-total-trials", type=bounded(1, 1_000_000), default=None,
                   help="stop once the study holds this many trials, counting every worker's")
    g.add_argument("--games", default=None, help="tune on several games (comma-separated, or a set such as "
                   "paper56): the objective is their mean human-normalised score")
    g.add_argument("--space", default=None, metavar="FILE.yml", help="YAML file overriding or narrowing the "
                   "search space, name by name (docs/tune.md)")
    g.add_argument("--n-seeds", type=bounded(1, 100), default=1, help="runs per game in each trial: seeds "
                   "--seed, --seed+1, ...")
    g.add_argument("--threads", type=THREADS, default=None, help="torch threads per run of a trial")
    g.add_argument("--worker-rank", type=bounded(0, 1_000_000), default=0,
                   help="this command's workers' ranks start here: worker k samples with seed --seed + k (give each "
                        "array task or machine its own, e.g. $SLURM_ARRAY_TASK_ID, so workers draw apart)")


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="search hyperparameters with Optuna (RL Zoo's -optimize)", description=(
        "Search hyperparameters of one agent with Optuna, RL Zoo's way: RL Zoo's PPO space plus the attention "
        "block's options (or --space FILE), each trial a tiny study of its games x seeds, pruned on its "
        "evaluations. Resumable; several workers may share the storage. Writes best.yml (a conf file), "
        "trials.csv and tune.html to <log-folder>/tune/<study-name>/ (docs/tune.md)."))
    p.add_argument("--algo", default="ppo", help="only ppo (kept for the RL Zoo command line)")
    p.add_argument("--env", default=None, help="the game (RL Zoo's); or --games for several")
    p.add_argument("--agent", default=None, help="NA, SWA, CWRA, CWCA, CWRCA or any registered block")
    p.add_argument("-f", "--log-folder", default="logs", help="the search goes to <log-folder>/tune/<study-name>/")
    p.add_argument("--seed", type=SEEDS, default=0, help="sampler seed (worker k: seed + k) and the runs' first seed")
    p.add_argument("-n", "--n-timesteps", type=positive_int, default=None,
                   help="environment steps of each run of a trial (default: the hyperparameters' n_timesteps)")
    p.add_argument("--eval-episodes", type=positive_int, default=DEFAULT_EVAL_EPISODES, help="games per evaluation")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="training engine of the runs")
    p.add_argument("-params", "--hyperparams", nargs="+", metavar="KEY:VALUE", default=None,
                   help="the base hyperparameters the space's values go on top of (e.g. n_envs:8)")
    p.add_argument("-conf", "--conf-file", default=None, help="RL Zoo-style YAML of base hyperparameters")
    _add_tune_options(p)
    w = p.add_argument_group("workers elsewhere (each runs this search against the same --storage)")
    w.add_argument("--backend", choices=backends(), default="local",
                   help="local: --n-jobs processes here; ray: --workers Ray tasks; slurm, pbs: write an array "
                        "script of --workers tasks to <tune folder>/jobs/ (the tune folder and storage must be on "
                        "a file system every node sees)")
    w.add_argument("--workers", type=bounded(1, 10_000), default=1, help="Ray tasks or array tasks")
    w.add_argument("--ray-address", default=None, help="the Ray cluster to join (default: a local Ray)")
    w.add_argument("--walltime", default="24:00:00", help="each array task's walltime")
    w.add_argument("--mem", default="8gb", help="each array task's memory")
    w.add_argument("--queue", default=None, help="queue (PBS) or partition (Slurm)")
    w.add_argument("--account", default=None, help="account to charge")
    w.add_argument("--setup", action="append", default=[], help="a shell line each task runs first (repeatable)")


def _run_tune(args: argparse.Namespace) -> int:
    from dimattn.tune.run import WorkerOptions, import_optuna, prepare, run_local, start

    if args.algo.lower() != "ppo":
        raise DimattnError(f"--algo {args.algo} is not supported; dimattn tunes ppo")
    if not args.env and not args.games:
        raise DimattnError("give the game to tune on: --env GAME, or --games A,B for several")
    if args.env and args.games:
        raise DimattnError("give --env GAME or --games A,B, not both")
    import_optuna()
    opts = WorkerOptions(n_trials=args.n_trials, n_jobs=args.n_jobs, sampler=args.sampler, pruner=args.pruner,
                         n_startup_trials=args.n_startup_trials, max_total_trials=args.max_total_trials,
                         seed=args.seed, threads=args.threads or _default_threads(),
                         rank=args.worker_rank).checked()
    root, spec, dims = prepare(args.games or args.env, args.agent, args.log_folder, study_name=args.study_name,
                               storage=args.storage, n_timesteps=args.n_timesteps, n_evaluations=args.n_evaluations,
                               eval_episodes=args.eval_episodes, engine=args.engine, hyperparams=args.hyperparams,
                               conf_file=args.conf_file, space_file=args.space, n_seeds=args.n_seeds,
                               seed=args.seed)
    backend = getattr(args, "backend", "local")
    start(root, spec, args.conf_file)
    if backend in SCHEDULERS:
        return _tune_jobscript(args, root, spec, opts)
    print(f"tuning {spec.agent} on {', '.join(spec.games)}: {len(dims)} dimensions, {opts.n_trials} trials "
          f"({opts.sampler} sampler, {opts.pruner} pruner), {spec.n_timesteps:,} steps x {len(spec.seeds)} "
          f"seed(s) per game each, into {root}", flush=True)
    if backend == "ray":
        from dimattn.tune.launch import run_ray
        from dimattn.tune.output import write_outputs
        from dimattn.tune.run import open_storage, open_study

        run_ray(root, spec, dims, opts, args.workers, args.ray_address)
        write_outputs(open_study(spec, open_storage(spec.storage)), root, spec)
        code = 0
    else:
        code = run_local(root, spec, dims, opts)
    print(f"done: best.yml, trials.csv and tune.html in {root}")
    return code


def _tune_jobscript(args: argparse.Namespace, root: Path, spec, opts) -> int:
    from dimattn.study.jobscripts import JobResources
    from dimattn.tune.launch import describe, worker_command, write_script

    res = JobResources(ncpus=opts.threads, mem=args.mem, walltime=args.walltime, queue=args.queue,
                       account=args.account, setup=args.setup, python=sys.executable)
    share = -(-opts.n_trials // args.workers)  # each task's trials: --n-trials over the tasks, rounded up
    command = worker_command(root, spec, opts, args.space, args.conf_file, share)
    print(describe(args.backend, [write_script(root, spec, args.backend, res, args.workers, command)]))
    return 0


def _default_threads() -> int:
    from dimattn.study.execute import default_threads

    return default_threads()


# --------------------------------------------------------------------------- explain
def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="feature maps, attention maps, Grad-CAM and attention orientation", description=(
        "For each observation draw the state-representation panel (last frame, the 16 rectified H1 "
        "maps, the 16 attention-output maps, Grad-CAM of the chosen action) and measure the attention "
        "orientation and complementarity (SPEC §6; docs/interpret.md). Writes <obs>.png per observation, "
        "explain.npz (raw arrays), measures.csv, orientation.md and orientation.png to --out."))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="MODEL.zip", help="the agent to explain (an SB3 model .zip)")
    which.add_argument("--compare", nargs="+", metavar="MODEL.zip",
                       help="several agents (e.g. the five agents of one game), drawn side by side")
    p.add_argument("--agent", help="the agent kind of --checkpoint, if the file does not record it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--obs", nargs="+", metavar="FILE.npy",
                     help="stacked observations: uint8 .npy files of shape (4,84,84) or (n,4,84,84), or `pong`: "
                          "the published study's ten Pong observations, shipped with dimattn")
    src.add_argument("--env", metavar="GAME", help="take observations from the (first) agent playing GAME")
    p.add_argument("--n-obs", type=bounded(1, 1000), default=4, help="with --env: how many observations (default 4)")
    p.add_argument("--every", type=bounded(1, 100_000), default=25,
                   help="with --env: agent steps between observations (default 25)")
    p.add_argument("--seed", type=SEEDS, default=0, help="with --env: environment and policy seed (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")


def _run_explain(args: argparse.Namespace) -> int:
    from dimattn.interpret.explain import explain_command

    with output_folder(args.out, "output folder", "--out"):
        explain_command(checkpoints=args.compare or [args.checkpoint], agent=args.agent, obs_files=args.obs,
                        game=args.env, n_obs=args.n_obs, every=args.every, seed=args.seed, out=args.out)
    return 0


# --------------------------------------------------------------------------- record
def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="a GIF/MP4 of an agent playing whole games", description=(
        "Record an agent playing whole evaluation games (SPEC §3) at full resolution, with the episode "
        "score in the corner and optionally its Grad-CAM saliency blended over the screen."))
    p.add_argument("--checkpoint", required=True, metavar="MODEL.zip", help="the agent (an SB3 model .zip)")
    p.add_argument("--agent", help="the agent kind, if the checkpoint does not record it")
    p.add_argument("--env", metavar="GAME", help="the game (default: the one the checkpoint records)")
    p.add_argument("--episodes", type=bounded(1, 100), default=1, help="whole games to record (default 1)")
    p.add_argument("--out", required=True, metavar="FILE", help="output video: .gif or .mp4")
    p.add_argument("--saliency", action="store_true", help="blend the Grad-CAM of each chosen action over the screen")
    p.add_argument("--deterministic", action="store_true", help="greedy actions (default: sampled, as in evaluation)")
    p.add_argument("--seed", type=SEEDS, default=0, help="environment and policy seed (default 0)")
    p.add_argument("--max-steps", type=bounded(1, 1_000_000), default=None,
                   help="stop each episode after this many agent steps (default: the game's own end)")
    p.add_argument("--fps", type=bounded(1, 240), default=15, help="frames per second; 15 is real time (default 15)")
    p.add_argument("--scale", type=integer, default=2,
                   help="integer upscaling of the 210x160 screen, 1 to 8 (default 2)")


def _run_record(args: argparse.Namespace) -> int:
    from dimattn.interpret.record import record_command

    with writing(args.out, "video", "--out"):
        record_command(checkpoint=args.checkpoint, agent=args.agent, game=args.env, episodes=args.episodes,
                       out=args.out, saliency=args.saliency, deterministic=args.deterministic, seed=args.seed,
                       max_steps=args.max_steps, fps=args.fps, scale=args.scale)
    return 0


# --------------------------------------------------------------------------- report
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, rliable figures and an HTML report from results", description=(
        "Write the study's per-game table, rliable aggregate metrics and figures, alignment of biases and one "
        "self-contained index.html (SPEC §5) from a study directory, a folder of RL Zoo runs or the published "
        "post-processed results pickle."))
    p.add_argument("input", help="study directory, folder of runs (evaluations.npz + config.yml), results .pkl, or "
                                 "'published' (the published study's scores, shipped with dimattn)")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--against", metavar="published|PKL|DIR",
                   help="add a 'Compared with the published study' section: the input against the published scores "
                        "(or another pickle or folder of runs), as `dimattn compare` does")
    p.add_argument("--use-last", action="store_true",
                   help="score each seed by its last evaluation instead of the mean over all evaluations")
    p.add_argument("--se", choices=("ddof0", "ddof1"), default="ddof0",
                   help="standard error over seeds: std with ddof=0 (published, default) or ddof=1")
    p.add_argument("--reps", type=bounded(1, 100_000), default=2000, help="bootstrap replicates (default: 2000)")
    p.add_argument("--seed", type=SEEDS, default=0, help="seed of the bootstrap (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from dimattn.analysis.report import build_report

    with output_folder(args.out, "report folder", "--out"):  # checked before the bootstrap starts
        report = build_report(args.input, args.out, use_last=args.use_last, se=args.se, reps=args.reps,
                              seed=args.seed, progress=not args.quiet, against=args.against)
    for text in report.notes:
        print(f"dimattn report: note: {text}", file=sys.stderr)
    wins = ", ".join(f"{a} {n}" for a, n in report.wins.items())
    print(f"wrote {len(report.files)} files to {report.out}; open {report.out / 'index.html'} (wins: {wins})")
    return 0


# --------------------------------------------------------------------------- compare
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="do my runs reproduce the published study; does my agent beat it",
                       description=(
        "Compare your runs with the published study's (shipped with dimattn) or another set, per game and agent at "
        "your budget: the difference with its interval and a calibrated verdict (consistent / below / above / too "
        "few seeds), each run's protocol against the published one, and, for agents the other side lacks, wins / "
        "ties / losses, P(improvement) and human-normalised aggregates. Writes compare.md, compare.csv and figures "
        "(docs/report.md)."))
    p.add_argument("mine", help="your study directory, folder of runs (evaluations.npz + config.yml) or results .pkl")
    p.add_argument("--against", default="published", metavar="published|PKL|DIR",
                   help="the published scores shipped with dimattn (default), a results pickle, or a folder of runs")
    p.add_argument("--out", default="compare", help="output folder")
    p.add_argument("--level", type=float, default=0.95,
                   help="confidence level of the interval; 1 - level is the verdict's nominal false-alarm rate")
    p.add_argument("--reps", type=bounded(1, 100_000), default=2000, help="bootstrap replicates of the aggregates")
    p.add_argument("--seed", type=SEEDS, default=0, help="seed of the bootstrap")


def _run_compare(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from dimattn.analysis.compare import compare
    from dimattn.analysis.compare_report import write_comparison

    with output_folder(args.out, "output folder", "--out"):  # checked before the comparison starts
        result = compare(args.mine, args.against, level=args.level, reps=args.reps, seed=args.seed)
        for line in result.protocol:
            print(f"protocol difference: {line}")  # first: a comparison across protocols is never silent
        for text in result.notes:
            print(f"dimattn compare: note: {text}", file=sys.stderr)
        written = write_comparison(result, args.out)
    # The verdicts last: the line a reader (and `make demo`) ends on.
    print(f"wrote {len(written.files)} files to {args.out}; read {Path(args.out) / 'compare.md'}\n{written.summary}")
    return 0


# --------------------------------------------------------------------------- plan
def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="seeds per game to detect a difference (or what given seeds detect), and the cost",
                       description=(
        "Before running a study: per game, the seeds your agents need for `dimattn compare` to detect a difference "
        "with the given power (--diff), or the smallest difference given seeds detect (--seeds), from the published "
        "per-seed spreads at the budget and compare's own statistic; the hours it costs here (a short measured probe, "
        "or --rate) and on a GPU node where a rate was measured; the games ranked by how much they tell per run "
        "(docs/plan.md)."))
    p.add_argument("--games", default="paper56", help="comma-separated games, or a set: paper56, atari57")
    p.add_argument("--agents", default="NA,SWA,CWRA,CWCA,CWRCA",
                   help="comma-separated agents you would train; one the study lacks (your block) is judged against "
                        "all five")
    p.add_argument("--budget", type=positive_int, default=DEFAULT_N_TIMESTEPS,
                   help="steps per run (rounded down to the published evaluation grid, every 200,000)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--diff", metavar="X{se,%,hns}",
                       help="difference to detect: 4se (published standard errors), 10%% (of the published score) "
                            "or 0.05hns (human-normalised points)")
    which.add_argument("--seeds", type=bounded(1, 50),
                       help="seeds per game and agent: the smallest difference they detect")
    p.add_argument("--power", type=float, default=0.8, help="probability that compare flags the difference")
    p.add_argument("--level", type=float, default=0.95, help="compare's confidence level")
    cost = p.add_mutually_exclusive_group()
    cost.add_argument("--rate", type=float, metavar="STEPS_PER_S",
                      help="training steps/s on your machine for every agent (instead of measuring it)")
    cost.add_argument("--no-probe", action="store_true", help="no cost on this machine (skip the probe)")
    p.add_argument("--csv", default=None, help="also write the plan per game to this CSV file")


def _probe_rate(agent: str, game: str = "Breakout", steps: int = 8192) -> tuple[float, str]:
    """``dimattn plan``'s cost here: steps/s of a short run of ``agent`` with the engine that would train it
    (its own ``time/fps`` in TensorBoard: the training loop, building envs and networks left out), and that
    engine (as the run's config.yml records it)."""
    import shutil
    import tempfile

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dimattn.engines.config import build_config
    from dimattn.engines.train import prepare, run_plan

    root = Path(tempfile.mkdtemp(prefix="dimattn-probe-"))
    try:
        plan = prepare([build_config(game, agent=agent, n_timesteps=steps, eval_freq=0, save_freq=0)])
        run_plan(plan, [root / "run"], tensorboard_log=str(root / "tb"))
        events = EventAccumulator(str(sorted((root / "tb").rglob("events.out.tfevents*"))[0]))
        events.Reload()
        return float(events.Scalars("time/fps")[-1].value), plan.engine
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_plan(args: argparse.Namespace) -> int:
    from dimattn.analysis import plan
    from dimattn.analysis.tables import frame_csv
    from dimattn.fileio import atomic_write_text
    from dimattn.games import resolve_games

    games = list(resolve_games(args.games))
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    difference = plan.parse_difference(args.diff) if args.diff else None
    if args.rate is not None and not 0 < args.rate < float("inf"):
        raise DimattnError(f"--rate must be a positive number of steps per second, got {args.rate}")
    if args.csv:  # checked before the probe trains anything
        check_writable_dir(Path(args.csv).parent, "CSV folder", "--csv")
    result = plan.make_plan(games, agents, args.budget, difference=difference, seeds=args.seeds,
                            target=args.power, level=args.level)
    if args.rate:
        plan.add_rates(result, agents, dict.fromkeys(agents, args.rate), f"given by --rate: {args.rate:,.0f} steps/s")
    elif not args.no_probe:
        probed = {a: _probe_rate(a) for a in agents}
        plan.add_rates(result, agents, {a: r for a, (r, _) in probed.items()},
                       "measured now (a short run of each agent): " + ", ".join(
                           f"{a} {r:,.0f} steps/s ({e} engine)" for a, (r, e) in probed.items()))
    print(plan.table(result).markdown())
    print("\n".join(plan.summary(result)))
    if args.csv:
        with writing(Path(args.csv).parent, "CSV folder", "--csv"):
            atomic_write_text(args.csv, frame_csv(result.games))
        print(f"wrote {args.csv}")
    return 0


# --------------------------------------------------------------------------- study
def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="define, run, resume and watch a study (games × agents × seeds)", description=(
        "A study is every (game, agent, seed) of a grid, defined once in <dir>/study.yml. Run it here, on Ray, "
        "or as a PBS Pro / Slurm job array; run it again after any failure to resume; watch it with status."))
    ss = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=_Parser)
    ss.required = True
    _add_study_init(ss)
    _add_study_run(ss)
    _add_study_run_one(ss)
    _add_study_status(ss)


def _add_study_init(ss: argparse._SubParsersAction) -> None:
    q = ss.add_parser("init", help="write a study spec (study.yml)", description=(
        "Write <dir>/study.yml. Takes the run options of `dimattn train`. Example (the published study): "
        "dimattn study init paper56 --games paper56 --agents NA,SWA,CWRA,CWCA,CWRCA --seeds 0-4 -n 10000000"))
    q.add_argument("dir", help="study directory (created)")
    q.add_argument("--games", required=True, help="paper56 (the published study's 56 games), atari57, or a "
                                                  "comma-separated list such as Pong,Breakout")
    q.add_argument("--agents", default="NA,SWA,CWRA,CWCA,CWRCA",
                   help="comma-separated agents: the five (the default), any registered block (dimattn agents), "
                        "NAME@conv2 for a block after the second convolution, e.g. NA,CWCA,CWCA@conv2")
    q.add_argument("--seeds", default="0-4", help="seeds: 0-4, 0,2,5 or 0-2,7 (default 0-4)")
    q.add_argument("--name", default=None, help="study name (default: the directory's name)")
    _add_run_arguments(q)


def _add_study_run(ss: argparse._SubParsersAction) -> None:
    r = ss.add_parser("run", help="run every unfinished run (resumes; skips finished ones)", description=(
        "Train every run of the study that is not finished, resuming each from its last checkpoint. "
        f"local: worker processes on this machine; ray: Ray tasks; {'/'.join(SCHEDULERS)}: write a job-array "
        "script (and submit it with --submit)."))
    r.add_argument("dir", help="study directory")
    r.add_argument(
        "--backend",
        choices=backends(),
        default="local",
        help="where runs execute (default local)",
    )
    r.add_argument("--workers", type=bounded(1, 1024), default=None,
                   help="local: runs at once (default: usable cores / --threads); ray: most tasks in flight, "
                        "and a local Ray gets workers × threads CPUs")
    r.add_argument("--threads", type=THREADS, default=None,
                   help="CPUs per run: torch threads, Ray num_cpus, PBS ncpus, Slurm cpus-per-task "
                        "(default: 1 below 8 cores, else 2; pbs/slurm: 2)")
    r.add_argument("--retries", type=bounded(0, 100), default=1, help="retry a failed run this many times (default 1)")
    r.add_argument(
        "--ray-address", default=None, help="ray: the cluster to join, e.g. auto (default: start a local Ray)"
    )
    r.add_argument("--pack", type=bounded(1, 1000), default=1, metavar="K",
                   help="train up to K seeds of one game and agent together in one process (fast engine): a "
                        "local worker, Ray task or array task trains a pack; --workers then counts packs "
                        "(default 1: each run alone)")
    r.add_argument("--gpus", type=gpu_share, default=None, metavar="G",
                   help="GPUs per run, or per pack with --pack: Ray num_gpus per task (fractions share a GPU, "
                        "e.g. 0.3; default 0); pbs/slurm: the same as --ngpus (whole GPUs)")
    _add_job_script_arguments(r.add_argument_group(" / ".join(SCHEDULERS)))
    _add_tracking_arguments(r)


def _add_job_script_arguments(g: argparse._ArgumentGroup) -> None:
    """study run's options for PBS Pro and Slurm: the job scripts' resources, submission and chains."""
    g.add_argument("--submit", action="store_true", help="submit the script(s) with qsub / sbatch")
    g.add_argument("--mem", default="8gb", help="memory per run, e.g. 8gb (default 8gb)")
    g.add_argument(
        "--walltime", default="24:00:00", help="time limit per run, H:MM:SS or D-HH:MM:SS (default 24:00:00)"
    )
    g.add_argument("--ngpus", type=bounded(0, 64), default=0,
                   help="GPUs per array task: per run, or per pack with --pack (default 0; --gpus is the same)")
    g.add_argument("--queue", default=None, help="PBS queue / Slurm partition")
    g.add_argument("--account", default=None, help="account / project to charge")
    g.add_argument("--max-parallel", type=bounded(1, 1_000_000), default=None,
                   help="at most this many runs at once (array %%N)")
    g.add_argument("--array-size", type=bounded(1, 1_000_000), default=None,
                   help="split into arrays of at most N tasks (default: slurm 1000, or the cluster's MaxArraySize "
                        "with --submit; pbs 10000)")
    g.add_argument("--chain", type=bounded(1, 1000), default=1, metavar="N",
                   help="with --submit: submit each script N times, each waiting for the one before to end "
                        "(afterany), so runs stopped by a walltime resume by themselves; finished runs exit at "
                        "once (default 1)")
    g.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="shell line to run before training, e.g. 'module load python' (repeatable)")
    g.add_argument("--python", default=None, help="Python interpreter on the compute nodes (default: this one; "
                                                  "give python to use the one your --setup lines activate)")


def _add_study_run_one(ss: argparse._SubParsersAction) -> None:
    o = ss.add_parser("run-one", help="train (or resume) one run: what each array task calls", description=(
        "Train or resume run number --index (0-based, games × agents × seeds order). Without --index, "
        f"the index is {words([f'${s.index_var}' for s in SCHEDULERS.values()], 'or')}."))
    o.add_argument("dir", help="study directory")
    o.add_argument(
        "--index", type=bounded(0, 10**9), default=None,
        help="run number, or pack number with --pack (default: the scheduler's array index)"
    )
    o.add_argument("--pack", type=bounded(1, 1000), default=1, metavar="K",
                   help="train pack --index of the study's packs of up to K seeds of one game and agent, together "
                        "(as `study run --pack K` forms them; default 1: one run)")
    o.add_argument(
        "--threads", type=THREADS, default=None, help="torch threads (default: 1 below 8 cores, else 2)"
    )
    o.add_argument("--retries", type=bounded(0, 100), default=1, help="retry a failed run this many times (default 1)")


def _add_study_status(ss: argparse._SubParsersAction) -> None:
    s = ss.add_parser("status", help="table of runs: pending / running / done / failed / stopped; exit 0 only when "
                                     "all are done", description=(
        "One row per run: its state (pending, running, done, failed, or stopped: on a signal such as a walltime's, "
        "after writing its checkpoint, resumable), the steps a resume would keep (its "
        "newest checkpoint; an evaluation made after it is shown apart, as its work is redone on resume), "
        "the last evaluation's score, and who holds a running run's lock or why a run failed or stopped. Exit status 0 "
        "only when every run is done, 1 otherwise."))
    s.add_argument("dir", help="study directory")
    s.add_argument("--only", default=None, help="show only these states, e.g. failed,running (the summary counts all)")


def _run_study(args: argparse.Namespace) -> int:
    return {"init": _study_init, "run": _study_run, "run-one": _study_run_one, "status": _study_status}[
        args.study_command](args)


def _study_init(args: argparse.Namespace) -> int:
    from dimattn.study.spec import init_study, spec_from_options

    spec = spec_from_options(args.dir, games=args.games, agents=args.agents, seeds=args.seeds, name=args.name,
                             n_timesteps=args.n_timesteps, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
                             save_freq=args.save_freq, engine=args.engine, hyperparams=args.hyperparams,
                             conf_file=args.conf_file, protocol=_protocol_of(args, args.games.split(",")))
    with writing(args.dir, "study folder"):
        study, created = init_study(args.dir, spec, conf_file=args.conf_file)
    s = study.spec
    n_games = len(s.game_list)
    verb = "wrote" if created else "unchanged (same spec):"
    def count(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    print(f"{verb} {study.root / 'study.yml'}: {count(len(study.runs), 'run')} = {count(n_games, 'game')} × "
          f"{count(len(s.agents), 'agent')} ({','.join(s.agents)}) × {count(len(s.seeds), 'seed')}, "
          f"{s.n_timesteps:,} steps each, {s.engine} engine\n"
          f"next: dimattn study run {study.root}")
    return 0


def _study_run(args: argparse.Namespace) -> int:
    from dimattn.study.spec import Study

    _check_backend_options(args)
    study = Study.load(args.dir)  # every configuration is checked before anything starts
    _check_gpus(args)
    # A study that cannot be written (read-only, full) is refused here in one line, not by every worker.
    _check_study_writable(study.root)
    from dimattn.study.packs import check_runnable

    check_runnable(study, args.pack)  # a spec edited after runs started; with --pack K > 1, the engine
    _track_study(args, study)
    if args.backend in SCHEDULERS:
        return _study_jobscripts(args, study)
    from dimattn.study.board import print_report
    from dimattn.study.launch import run_local, run_ray

    if args.backend == "ray":  # the unit of work is the pack: --pack 1 (the default) is each run alone
        report = run_ray(study, address=args.ray_address, workers=args.workers, threads=args.threads,
                         retries=args.retries, gpus=args.gpus or 0, pack=args.pack)
    else:
        report = run_local(study, workers=args.workers, threads=args.threads, retries=args.retries, pack=args.pack)
    print_report(study, report)
    return 1 if report.failed else 0


def _track_study(args: argparse.Namespace, study) -> None:
    """``study run --track/--mlflow``: each unfinished run's folder records its tracked runs (grouped by
    study, game and agent), which every worker reads; a resumed run goes on with the same ones."""
    from dimattn.engines import tracking
    from dimattn.study.status import is_done

    settings = tracking.settings_from_args(args)
    runs = [(r.dir, study.config(r)) for r in study.runs if not is_done(r)]
    if tracking.start_study(study.spec.name, runs, settings, args.pack):
        print(f"tracking {len(runs)} run(s) of study {study.spec.name}", flush=True)


def _check_study_writable(root: Path) -> None:
    """Refuse, in one line, a study whose folder cannot be written or whose ``runs`` is not a folder.
    Creates nothing: the study folder exists, and its probe file is deleted."""
    check_writable_dir(root, "study folder")
    runs = root / "runs"
    with writing(runs, "study's runs folder"):
        if runs.exists() and not runs.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(runs))
    if runs.is_symlink() and not runs.exists():
        raise DimattnError(f"cannot write study's runs folder {runs}: it links to {os.readlink(runs)}, which does not "
                           "exist; mount that storage or point the link at a folder")
    if runs.is_dir():  # a folder, or a link to storage elsewhere: probed as the study folder is
        check_writable_dir(runs, "study's runs folder")


def _backend_only() -> dict[tuple[str, ...], tuple[str, ...]]:
    """study run's options that only some backends read, by those backends: with another, an option would do
    nothing (read at each call: a scheduler may be registered after import)."""
    return {
        tuple(SCHEDULERS): ("submit", "mem", "walltime", "ngpus", "queue", "account", "max_parallel", "array_size",
                           "chain", "setup", "python"),
        ("ray",): ("ray_address",),
        ("local", "ray"): ("workers",),
    }


def _check_backend_options(args: argparse.Namespace) -> None:
    """Refuse an option that ``--backend`` would ignore (``--chain`` with local workers, ...), in one line."""
    ss = _Parser(prog="dimattn study").add_subparsers(parser_class=_Parser)
    _add_study_run(ss)
    run = ss.choices["run"]  # its defaults: an option left at its default was not given
    for which, dests in _backend_only().items():
        if args.backend in which:
            continue
        for dest in dests:
            if getattr(args, dest) != run.get_default(dest):
                flag = next(a.option_strings[-1] for a in run._actions if a.dest == dest)
                raise DimattnError(f"{flag} is for the {words(list(which))} backend{'s' * (len(which) > 1)}; "
                                   f"--backend {args.backend} would ignore it: drop it, or choose --backend "
                                   f"{which[0]}")


def _check_gpus(args: argparse.Namespace) -> None:
    """``--gpus``: Ray's num_gpus per task; for a scheduler the same as ``--ngpus``; not for local workers."""
    if args.gpus is None:
        return
    if args.backend == "local":
        raise DimattnError(f"--gpus is for the {words([b for b in backends() if b != 'local'])} backends; local "
                           "workers use the device the runs' configuration names (device auto: the GPU when there is "
                           "one)")
    if args.backend in SCHEDULERS:
        if not float(args.gpus).is_integer():
            raise DimattnError(f"--gpus {args.gpus:g}: {args.backend} gives whole GPUs to a task; give an integer")
        if args.ngpus and args.ngpus != int(args.gpus):
            raise DimattnError(f"--gpus {args.gpus:g} and --ngpus {args.ngpus} disagree; give one of them")
        args.ngpus = int(args.gpus)


def _study_jobscripts(args: argparse.Namespace, study) -> int:
    import sys

    from dimattn.study.jobscripts import LOGS, JobResources, site_array_size, submit, submit_commands, write_scripts

    res = JobResources(ncpus=args.threads or 2, mem=args.mem, walltime=args.walltime, ngpus=args.ngpus,
                       queue=args.queue, account=args.account, max_parallel=args.max_parallel,
                       array_size=args.array_size, setup=args.setup, python=args.python or sys.executable)
    if args.submit and res.array_size is None:
        res.array_size = site_array_size(args.backend)  # a cluster's MaxArraySize below the default
    paths = write_scripts(study, args.backend, res, retries=args.retries, pack=args.pack)
    serial = args.max_parallel is not None and len(paths) > 1  # %N caps one array: arrays go one after another
    for path in paths:
        print(f"wrote {path}")
    if args.submit:
        for path, jobs in zip(paths, submit(args.backend, paths, study.root / LOGS, args.chain, serial)):
            print(f"submitted {path.name}: job {jobs[0]}"
                  + (f", then {', '.join(jobs[1:])}, each after the one before ends" if len(jobs) > 1 else ""))
        print(f"watch it: dimattn study status {study.root}")
    else:
        print(f"submit with: {submit_commands(args.backend, paths, study.root / LOGS, args.chain, serial)}"
              f"   (or add --submit); watch it: dimattn study status {study.root}")
    return 0


def _study_run_one(args: argparse.Namespace) -> int:
    from dimattn.study.execute import default_threads, run_one

    if (Path(args.dir) / "study.yml").is_file():  # a missing study is run_one's to explain
        _check_study_writable(Path(args.dir))
    outcomes = run_one(args.dir, index=args.index, threads=args.threads or default_threads(), retries=args.retries,
                       pack=args.pack)
    if any(o.state == "failed" for o in outcomes):
        return 1
    return stopping.EXIT_STOPPED if any(o.state == "stopped" for o in outcomes) else 0


def _study_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from dimattn.study.board import status_summary, status_table
    from dimattn.study.jobscripts import chain_lines
    from dimattn.study.spec import Study
    from dimattn.study.status import STATES, statuses

    only = None
    if args.only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        if not only <= set(STATES):
            raise DimattnError(f"--only takes states among {', '.join(STATES)}, got {args.only!r}")
    study = Study.load(args.dir, validate=False)
    rows = statuses(study)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(status_table(study, [r for r in rows if only is None or r.state in only]))
    console.print(status_summary(rows), highlight=False)
    for line in chain_lines(study):  # the jobs of the last --submit, as the scheduler sees them
        console.print(line, highlight=False)
    return 0 if all(r.state == "done" for r in rows) else 1


# --------------------------------------------------------------------------- axes, recommend
def _add_axes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("axes", help="measure the main axis of dynamics of games from play", description=(
        "Play each game (a random policy, or a trained agent with --checkpoint), probe what its actions do on "
        "cloned emulator states (where the agent's shots go, which way its player can move), track its small "
        "moving objects, and label the main axis of dynamics horizontal, vertical or other, with the scores it "
        "rests on and a confidence (docs/axes.md). --out writes axes.csv and one figure per game."))
    p.add_argument("game", nargs="*", help="games: names (Pong), v4 or v5 ids")
    p.add_argument("--games", default=None,
                   help="a game set (paper56: the published study's 56 games; atari57) or a comma-separated list")
    p.add_argument("--checkpoint", metavar="MODEL.zip", nargs="+", default=[],
                   help="play trained agents instead of a random policy: one checkpoint per game, matched by the game "
                        "it records (with no game named: every checkpoint's game)")
    p.add_argument("--agent", help="the agent kind of --checkpoint, if the files do not record it")
    p.add_argument("--steps", type=PLAY_STEPS, default=2000, help="agent steps played per game (default 2000)")
    p.add_argument("--seed", type=SEEDS, default=0, help="environment, policy and bootstrap seed (default 0)")
    p.add_argument("--out", metavar="DIR", help="write axes.csv and <game>.png here")


def _run_axes(args: argparse.Namespace) -> int:
    from dimattn.axes.run import axes_command

    games = list(args.game) + [g for g in (args.games or "").split(",") if g.strip()]  # --games A,B as documented
    axes_command(games, steps=args.steps, seed=args.seed, checkpoints=args.checkpoint, agent=args.agent,
                 out=args.out)
    return 0


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="the agent the published alignment of biases favours for a game", description=(
        "Say a game's axis of dynamics (the published study's label for its 56 games, else measured by playing) and "
        "the agent that won most published games of that axis, with the counts and the runner-up."))
    p.add_argument("game", help="a game name (Pong), v4 or v5 id")
    p.add_argument("--results", metavar="PATH", help="published results pickle or study directory to count wins "
                                                     "from (default: the shipped summary of the published study)")
    p.add_argument("--steps", type=PLAY_STEPS, default=2000, help="agent steps played to measure a game outside the 56")
    p.add_argument("--seed", type=SEEDS, default=0, help="seed of that play (default 0)")


def _run_recommend(args: argparse.Namespace) -> int:
    from dimattn.analysis.results import DataWarning
    from dimattn.axes.recommend import recommend
    from dimattn.console import notes_of

    try:
        with notes_of(DataWarning) as notes:  # caveats about --results: one line each, as report's
            text = recommend(args.game, results=args.results, steps=args.steps, seed=args.seed).text()
    finally:  # said before an error too: they may be its cause
        for note in notes:
            print(f"dimattn recommend: note: {note}", file=sys.stderr)
    print(text)
    return 0


def _add_agents(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("agents", help="list the registered attention blocks, with bias and source", description=(
        "The attention blocks every command knows by name: the five study agents, then those that installed "
        "packages (entry-point group dimattn.agents) and --plugin modules register. An agent is a block at a "
        "place in the network: CWCA (after conv1, the study) or CWCA@conv2. How to add one: docs/agents.md."))


def _run_agents(args: argparse.Namespace) -> int:
    from dimattn.agents.registry import listing

    print(listing())
    return 0


def _add_plugin_option(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable) on a command and on each of its subcommands (study init, run, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for p in [c for a in subs for c in a.choices.values()] or [parser]:
        p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                       help="import MODULE first: it registers attention blocks of your own (repeatable; "
                            "installed plugin packages need no option; docs/agents.md)")


# Subcommands in the order `dimattn --help` lists them.
COMMANDS: list[tuple[str, Callable, Callable]] = [
    ("train", _add_train, _run_train),
    ("tune", _add_tune, _run_tune),
    ("study", _add_study, _run_study),
    ("report", _add_report, _run_report),
    ("compare", _add_compare, _run_compare),
    ("plan", _add_plan, _run_plan),
    ("explain", _add_explain, _run_explain),
    ("record", _add_record, _run_record),
    ("axes", _add_axes, _run_axes),
    ("recommend", _add_recommend, _run_recommend),
    ("agents", _add_agents, _run_agents),
]


def build_parser() -> argparse.ArgumentParser:
    from dimattn import __version__

    parser = _Parser(prog="dimattn", description=(
        "Self-attention over dimensions of a CNN feature map in visual deep RL: train agents, run "
        "studies, analyse results and look inside trained agents."))
    parser.add_argument("--version", action="version", version=f"dimattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for _, add, _ in COMMANDS:
        add(sub)
    for parser_of_command in sub.choices.values():
        _add_plugin_option(parser_of_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, 2) or --help / --version (0): a code, as every error
        return int(exc.code or 0)
    run = {name: run for name, _, run in COMMANDS}[args.command]
    handler = stopping.terminate_on_sigterm()  # SIGTERM: one line, as Ctrl-C (training stops cleanly instead)
    try:
        if args.command == "train":  # a usage error answers at once, before the plugins below load torch
            _check_train_usage(args)
        if hasattr(args, "plugin"):  # every block registered before a name is looked up
            from dimattn.agents.registry import load_plugins

            load_plugins(args.plugin)
        code = int(run(args) or 0)
        sys.stdout.flush()  # a reader gone away shows here, not as an error at exit
        return code
    except DimattnError as exc:
        print(f"dimattn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dimattn {args.command}: interrupted", file=sys.stderr)
        return 130
    except stopping.Terminated as exc:
        print(f"dimattn {args.command}: {exc}", file=sys.stderr)
        return stopping.EXIT_TERMINATED
    except stopping.Stopped as exc:  # a checkpoint was written: training can resume from it
        print(f"dimattn {args.command}: {exc}", file=sys.stderr)
        return stopping.EXIT_STOPPED
    except BrokenPipeError:  # the reader went away (`dimattn axes ... | head -1`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    finally:
        stopping.restore(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
