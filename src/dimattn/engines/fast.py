"""The fast engine: our own PPO on EnvPool, with exactly the learner of SPEC §4 (:mod:`dimattn.engines.ppo`).

This file is its entry: what it can run (:func:`check_supported`), and :func:`train_pack`, which trains
K runs of one game and agent together (K = 1: :func:`train_fast`, a run alone). It picks, once, how the
machine is used (:mod:`dimattn.engines.speed`) and which learner acts and learns
(:func:`dimattn.engines.learners.make_learner`), builds each run's network and files
(:mod:`dimattn.engines.members`) and the envs (:mod:`dimattn.engines.acting`), and runs the training loop
(:func:`dimattn.engines.ppo.train_loop`).

Outputs match the SB3 engine (:mod:`dimattn.engines.sb3`): ``evaluations.npz``, SB3 ``.zip`` checkpoints
(loadable by :func:`dimattn.agents.checkpoints.load_agent` and by SB3's ``PPO.load``), TensorBoard scalars under
SB3's names. Evaluation plays whole games with raw scores and the stochastic policy on the Gymnasium +
SB3 ``AtariWrapper`` env (:func:`dimattn.envs.ale.evaluate`), i.e. the very protocol of the SB3 engine.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimattn.agents.registry import block_options, vmap_problem
from dimattn.engines.acting import Envs
from dimattn.engines.config import PPOArgs
from dimattn.engines.learners import make_learner
from dimattn.engines.members import Member, new_member
from dimattn.engines.ppo import train_loop
from dimattn.engines.progress import TrainingReport, tb_writer
from dimattn.engines.speed import Speed, default_speed, torch_threads
from dimattn.envs.pool import task_id
from dimattn.errors import DimattnError


def check_supported(args: PPOArgs) -> None:
    """Refuse, before anything is written, what the fast engine cannot run: no EnvPool, a game EnvPool
    lacks, or SB3 options outside SPEC §4's learner. Raises DimattnError naming ``--engine sb3``."""
    task_id(args.game)
    for key in ("clip_range_vf", "target_kl"):
        if getattr(args, key) is not None:
            raise DimattnError(f"the fast engine does not implement {key}; train with --engine sb3")
    if not args.normalize_advantage:
        raise DimattnError("the fast engine always normalises advantages; train with --engine sb3")
    pk = args.raw_policy_kwargs
    unknown = set(pk) - {"features_extractor_class", "features_extractor_kwargs", "net_arch", "activation_fn",
                         "share_features_extractor"}  # activation_fn acts on the MLP that net_arch=[] omits
    if unknown or pk.get("net_arch", []) not in ([], None) or pk.get("share_features_extractor", True) is False:
        bad = ", ".join(sorted(unknown)) or "net_arch/share_features_extractor"
        raise DimattnError(f"the fast engine builds the study's network only (net_arch=[], one shared extractor, "
                           f"SB3's init); policy_kwargs {bad} is not supported; train with --engine sb3")


def train_fast(args: PPOArgs, run_dir: Path, tensorboard_log: str | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True,
               speed: Speed | None = None, overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) one run with the fast engine; returns the final model's path.

    ``speed`` picks how the machine is used (never what is learned); the default is the measured best
    for the run's device (:func:`default_speed`), with ``overrides`` (:func:`speed_overrides`) set on
    top; the run's log says what was used.
    """
    return train_pack([args], [run_dir], tensorboard_log, progress=progress, verbose=verbose, resume=resume,
                      speed=speed, overrides=overrides)[0]


def train_pack(runs: list[PPOArgs], run_dirs: list[Path],
               tensorboard_log: str | Sequence[str | None] | None = None,
               progress: bool = False, verbose: int = 0, resume: bool = True,
               speed: Speed | None = None, overrides: dict[str, Any] | None = None) -> list[Path]:
    """Train (or resume) K runs of one game and agent together (:mod:`dimattn.engines.learners`); K = 1 is a
    run alone. Returns each run's final model; each run's folder is exactly what it would be alone.

    ``tensorboard_log``: one TensorBoard root for every run (each logs under ``<root>/<EnvId>/<run
    folder's name>_1``), or a list with each run's own root (None: that run logs nothing).

    Members resume from their own newest checkpoints. A pack saves all members at the same steps, so
    they normally agree; members that stopped at different checkpoints (a pack killed while saving,
    or runs trained before apart) are resumed as sub-packs of equal step count, one after another.
    """
    check_pack(runs)
    tb_roots = pack_tb_roots(tensorboard_log, len(runs))
    speed = default_speed(runs[0].device, len(runs)) if speed is None else speed
    speed = dataclasses.replace(speed, **(overrides or {}))
    with torch_threads(speed.torch_threads):  # restored after: a Python caller's torch is left as it was
        return _train_packs(runs, run_dirs, tb_roots, progress, verbose, resume, speed)


def _train_packs(runs: list[PPOArgs], run_dirs: list[Path], tb_roots: list[str | None], progress: bool,
                 verbose: int, resume: bool, speed: Speed) -> list[Path]:
    """:func:`train_pack` once its speed is settled: the runs as one pack, or as sub-packs of equal start."""
    np.random.seed(runs[0].seed)
    print(f"fast engine on {runs[0].device}: {len(runs)} run(s), {speed.groups} EnvPool group(s), "
          f"{speed.env_threads or 'all'} EnvPool thread(s) each, {torch.get_num_threads()} torch thread(s)"
          + (f" ({speed.collect_threads} while acting)" if speed.collect_threads else "")
          + "".join(f", {k}" for k in ("bf16", "channels_last", "cuda_graph", "compile", "vmap")
                    if getattr(speed, k)), flush=True)
    stacked = len(runs) > 1 and speed.vmap
    if stacked and (why := _vmap_problem(runs[0])):
        print(f"note: {runs[0].agent}'s block does not run under torch.func.vmap ({why}); its runs train as "
              "packs of one", flush=True)
        return [train_pack([a], [d], [tb], progress, verbose, resume, speed)[0]
                for a, d, tb in zip(runs, run_dirs, tb_roots)]
    members = [new_member(a, Path(d), len(runs), stacked, resume) for a, d in zip(runs, run_dirs)]
    finals: dict[int, Path] = {}
    for start in sorted({m.start for m in members}):
        group = [i for i, m in enumerate(members) if m.start == start]
        if len(group) < len(members):
            print(f"runs {', '.join(str(members[i].run_dir) for i in group)} resume at {start:,} steps "
                  "(the others at another checkpoint): trained as a pack of their own", flush=True)
        try:
            paths = _train([members[i] for i in group], [tb_roots[i] for i in group], progress, verbose,
                           speed, stacked)
        except torch.OutOfMemoryError:  # checkpoints are written atomically: the last one of each run is intact
            names = ", ".join(str(members[i].run_dir) for i in group)
            raise DimattnError(f"{names}: the {runs[0].device} device ran out of memory; the last checkpoints are "
                               "intact: rerun to resume, with fewer runs per pack, a smaller n_envs, or another "
                               "device (--device)") from None
        finals.update(zip(group, paths))
    return [finals[i] for i in range(len(members))]


def _vmap_problem(args: PPOArgs) -> str | None:
    """Why the run's attention block cannot be vmapped (checked on a dummy batch), or None."""
    kw = args.raw_policy_kwargs["features_extractor_kwargs"]
    return vmap_problem(args.agent, block_options(kw.get("block_kwargs"), args.ada_attn, args.norm_softmax))


def check_pack(runs: list[PPOArgs]) -> None:
    """A pack shares envs and one forward pass: its runs differ only in their seeds (and folders)."""
    if not runs:
        raise DimattnError("a pack needs at least one run")
    first = runs[0]
    for a in runs:
        check_supported(a)
        mine = dataclasses.replace(a, seed=first.seed, config=first.config)
        if mine != first:
            diff = next(f.name for f in dataclasses.fields(a) if getattr(mine, f.name) != getattr(first, f.name))
            raise DimattnError(f"runs of a pack must differ only in their seeds; {diff} differs "
                               f"({getattr(a, diff)!r} vs {getattr(first, diff)!r}): train them in separate packs")
    seeds = [a.seed for a in runs]
    if len(set(seeds)) < len(seeds):
        raise DimattnError(f"runs of a pack need different seeds, got {seeds}")


def pack_tb_roots(tensorboard_log: str | Sequence[str | None] | None, k: int) -> list[str | None]:
    """Each run's TensorBoard root: the one root for all, or the list given (checked to have k entries)."""
    if tensorboard_log is None or isinstance(tensorboard_log, (str, os.PathLike)):
        return [tensorboard_log] * k
    roots = list(tensorboard_log)
    if len(roots) != k:
        raise DimattnError(f"a pack of {k} runs needs {k} TensorBoard folders, got {len(roots)}")
    return roots


def _train(members: list[Member], tb_roots: list[str | None], progress: bool, verbose: int, speed: Speed,
           stacked: bool) -> list[Path]:
    """K members that resume at the same step: their envs, learner and logs, then the training loop."""
    args = members[0].args
    envs = Envs(args.game, [m.args.seed for m in members], args.n_envs, speed, pin=args.device.type == "cuda")
    learner = make_learner(members, speed, stacked)
    for m, tb_root in zip(members, tb_roots):
        m.writer = tb_writer(tb_root, m.args.env_id, m.run_dir)
        if m.checkpoint is not None:
            print(f"resuming {m.run_dir} from {m.checkpoint.name} (EnvPool restarts with fresh games)", flush=True)
    report = TrainingReport([m.writer for m in members], args.n_timesteps, members[0].start, progress, verbose)
    try:
        return train_loop(members, learner, envs, speed, report, verbose)
    finally:
        envs.close()
        learner.close()
        report.close()
