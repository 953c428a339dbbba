"""The fast engine: our own PPO on EnvPool, with exactly the learner of SPEC §4 (:mod:`dimattn.engines.ppo`).

This file is its entry: what it can run (:func:`check_supported`, :func:`check_pack`), and :func:`train_fast`,
which trains a plan's K runs of one game and agent together (K = 1: a run alone). The plan
(:mod:`dimattn.engines.plan`) says how the machine is used and how the members are driven; this file builds
each run's network and files (:mod:`dimattn.engines.members`), the learner the drive names
(:func:`dimattn.engines.learners.make_learner`) and the envs (:mod:`dimattn.engines.acting`), and runs the
training loop (:func:`dimattn.engines.ppo.train_loop`).

Outputs match the SB3 engine (:mod:`dimattn.engines.sb3`): ``evaluations.npz``, SB3 ``.zip`` checkpoints
(loadable by :func:`dimattn.agents.checkpoints.load_agent` and by SB3's ``PPO.load``), TensorBoard scalars under
SB3's names. Evaluation plays whole games with raw scores and the stochastic policy on the Gymnasium +
SB3 ``AtariWrapper`` env (:func:`dimattn.envs.ale.evaluate`), i.e. the very protocol of the SB3 engine.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from dimattn.engines.acting import Envs
from dimattn.engines.config import PPOArgs
from dimattn.engines.learner import Drive
from dimattn.engines.learners import make_learner
from dimattn.engines.members import Member, new_member
from dimattn.engines.plan import TrainPlan
from dimattn.engines.ppo import train_loop
from dimattn.engines.progress import TrainingReport, tb_writer
from dimattn.engines.speed import Speed, torch_threads
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


def train_fast(plan: TrainPlan, run_dirs: list[Path], tb_roots: list[str | None], progress: bool = False,
               verbose: int = 0, resume: bool = True) -> list[Path]:
    """Train (or resume) the plan's K runs together, as its drive says; returns each run's final model. Each
    run's folder ends up exactly as it would alone; each logs to TensorBoard under ``<root>/<EnvId>/<run
    folder's name>_1`` of its root in ``tb_roots`` (None: nothing).

    Members resume from their own newest checkpoints. A pack saves all members at the same steps, so
    they normally agree; members that stopped at different checkpoints (a pack killed while saving,
    or runs trained before apart) are resumed as sub-packs of equal step count, one after another. A pack
    driven ``alone`` (its block cannot be vmapped) trains its runs one after another.
    """
    speed = plan.speed
    with torch_threads(speed.torch_threads):  # restored after: a Python caller's torch is left as it was
        np.random.seed(plan.args[0].seed)
        print(f"fast engine on {plan.device}: {plan.k} run(s) ({plan.drive}), {speed.groups} EnvPool group(s), "
              f"{speed.env_threads or 'all'} EnvPool thread(s) each, {torch.get_num_threads()} torch thread(s)"
              + (f" ({speed.collect_threads} while acting)" if speed.collect_threads else "")
              + "".join(f", {k}" for k in ("bf16", "channels_last", "cuda_graph", "compile", "vmap")
                        if getattr(speed, k)), flush=True)
        if plan.drive == "alone" and plan.k > 1:
            return [_train_group(plan, [i], run_dirs, tb_roots, progress, verbose, resume)[0] for i in range(plan.k)]
        return _train_group(plan, list(range(plan.k)), run_dirs, tb_roots, progress, verbose, resume)


def _train_group(plan: TrainPlan, runs: list[int], run_dirs: list[Path], tb_roots: list[str | None],
                 progress: bool, verbose: int, resume: bool) -> list[Path]:
    """The plan's ``runs`` as one pack, or as sub-packs of equal start."""
    if len(runs) == 1 and plan.k > 1:  # a member of a pack that trains its runs one after another
        np.random.seed(plan.args[runs[0]].seed)
    members = [new_member(plan.args[i], Path(run_dirs[i]), plan.drive, resume) for i in runs]
    finals: dict[int, Path] = {}
    for start in sorted({m.start for m in members}):
        group = [j for j, m in enumerate(members) if m.start == start]
        if len(group) < len(members):
            print(f"runs {', '.join(str(members[j].run_dir) for j in group)} resume at {start:,} steps "
                  "(the others at another checkpoint): trained as a pack of their own", flush=True)
        try:
            paths = _train([members[j] for j in group], [tb_roots[runs[j]] for j in group], progress, verbose,
                           plan.speed, plan.drive)
        except torch.OutOfMemoryError:  # checkpoints are written atomically: the last one of each run is intact
            names = ", ".join(str(members[j].run_dir) for j in group)
            raise DimattnError(f"{names}: the {plan.device} device ran out of memory; the last checkpoints are "
                               "intact: rerun to resume, with fewer runs per pack, a smaller n_envs, or another "
                               "device (--device)") from None
        finals.update(zip(group, paths))
    return [finals[j] for j in range(len(members))]


def check_pack(runs: list[PPOArgs]) -> None:
    """A pack shares envs and one forward pass: its runs differ only in their seeds (and folders)."""
    if not runs:
        raise DimattnError("a pack needs at least one run")
    first = runs[0]
    for a in runs:
        check_supported(a)
        mine = dataclasses.replace(a, seed=first.seed)
        if mine != first:
            diff = next(f.name for f in dataclasses.fields(a) if getattr(mine, f.name) != getattr(first, f.name))
            raise DimattnError(f"runs of a pack must differ only in their seeds; {diff} differs "
                               f"({getattr(a, diff)!r} vs {getattr(first, diff)!r}): train them in separate packs")
    seeds = [a.seed for a in runs]
    if len(set(seeds)) < len(seeds):
        raise DimattnError(f"runs of a pack need different seeds, got {seeds}")


def _train(members: list[Member], tb_roots: list[str | None], progress: bool, verbose: int, speed: Speed,
           drive: Drive) -> list[Path]:
    """K members that resume at the same step: their envs, learner and logs, then the training loop."""
    args = members[0].args
    envs = Envs(args.game, [m.args.seed for m in members], args.n_envs, speed, pin=args.device.type == "cuda")
    learner = make_learner(members, speed, drive)
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
