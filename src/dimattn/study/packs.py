"""Packed runs (``dimattn study run --pack K``): the seeds of one game and agent trained together in one process.

The study's runs are grouped into *packs*: the runs of one (game, agent), in the study's order of seeds, in
chunks of K (the last chunk of a (game, agent) may be smaller). Packs are numbered 0..P-1 in run order;
PBS Pro / Slurm array tasks and ``dimattn study run-one --pack K --index N`` use these numbers. A pack is one
unit of work (a local worker process, a Ray task, an array task) that trains its members with
:func:`dimattn.engines.train.train_pack`. Each member keeps its own run folder, exactly as if trained alone.

An attempt at a pack (:func:`execute_pack`):

1. members already finished are dropped;
2. every other member's lock is taken (:func:`dimattn.study.locks.run_lock`); a member whose lock another
   process holds is left to it (reported *busy*);
3. each member is checked: its ``config.yml`` readable, recorded by the fast engine and as the spec gives it,
   its ``evaluations.npz`` and newest checkpoint readable. A member failing its check is reported *failed*
   with the reason (``error.log``, as for any failed run) and the others train;
4. the remaining members train together. The pack's output goes to the first member's ``train.log``; every
   other member's ``train.log`` gets a line naming the pack and where its output is. If training fails,
   every member of the pack gets ``error.log`` with the end of that output, and is retried as usual.

Members resume from their own newest checkpoints; members that stopped at different checkpoints are
resumed as sub-packs of equal step count, one after another (:func:`dimattn.engines.fast.train_pack`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection
import os
import socket
import time
import traceback
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from dimattn.engines.config import RunConfig
from dimattn.engines.rundir import CONFIG, read_config
from dimattn.errors import DimattnError
from dimattn.host import usable_cores
from dimattn.study.execute import Outcome, _duration, _output_to, default_threads, index_from_env, record_failure
from dimattn.study.launch import (
    Board,
    RunSummary,
    _context,
    _die_with_runner,
    connect_ray,
    exit_summary,
    import_ray,
    record_crash,
    tally,
)
from dimattn.study.locks import lock_holder, run_lock
from dimattn.study.spec import ERROR_LOG, TRAIN_LOG, Run, Study
from dimattn.study.status import is_done


@dataclass(frozen=True)
class Pack:
    """Up to K runs of one (game, agent) trained together; ``index`` is the pack's number."""

    index: int
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        first = self.runs[0]
        return f"{first.game}/{first.agent}/seed{','.join(str(r.seed) for r in self.runs)}"


def form_packs(study: Study, size: int) -> list[Pack]:
    """The study's packs of at most ``size`` runs: each (game, agent)'s runs in seed order, in chunks."""
    if not isinstance(size, int) or size < 1:
        raise DimattnError(f"--pack must be a positive integer, got {size!r}")
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in study.runs:  # games × agents × seeds: a (game, agent)'s runs are consecutive
        groups.setdefault((run.game, run.agent), []).append(run)
    chunks = [runs[i:i + size] for runs in groups.values() for i in range(0, len(runs), size)]
    return [Pack(n, tuple(chunk)) for n, chunk in enumerate(chunks)]


def check_packable(study: Study, size: int, runs: list[Run] | None = None) -> None:
    """Refuse, before anything is written, a study whose runs cannot share a process (``size`` > 1): the
    SB3 engine, or configurations the fast engine cannot run. Also refuse a spec edited after runs started
    (:meth:`Study.check_unchanged`), except for members whose ``config.yml`` is unreadable: those fail alone
    when their pack runs."""
    runs = study.runs if runs is None else runs
    if size > 1:
        if study.spec.engine == "sb3":
            raise DimattnError("packed runs need the fast engine, and this study's engine is sb3: "
                               "run it without --pack (or with --pack 1)")
        from dimattn.engines.train import resolve_engine

        for game, agent in dict.fromkeys((r.game, r.agent) for r in runs):
            config = study._build(game, agent)
            try:
                resolve_engine(dataclasses.replace(config, engine="fast"))
            except DimattnError as exc:
                raise DimattnError(f"packed runs need the fast engine, which cannot run {game}/{agent}: {exc}") \
                    from None
    readable = []
    for run in runs:
        if (run.dir / CONFIG).is_file():
            try:
                read_config(run.dir)
            except Exception:  # noqa: BLE001 - a corrupt member: reported failed with its reason when its pack runs
                continue
            readable.append(run)
    study.check_unchanged(readable)


def _prepare(study: Study, run: Run) -> RunConfig:
    """The member's configuration, once its folder is known to be usable; DimattnError saying why not."""
    from dimattn.agents.checkpoints import read_checkpoint
    from dimattn.engines.common import resume_point

    config = study.config(run)
    if (run.dir / CONFIG).is_file():
        found = read_config(run.dir)
        if found.engine != "fast":
            raise DimattnError(f"{run.dir} was started with the {found.engine} engine and a pack needs the fast "
                               "engine; train this run alone (without --pack)")
        study.check_unchanged([run])
    _, checkpoint, _ = resume_point(run.dir, True)  # reads evaluations.npz up to the newest checkpoint
    if checkpoint is not None:
        read_checkpoint(checkpoint)
    return config


def _header(run: Run, attempt: str, threads: int) -> str:
    return (f"=== {run.name}: attempt {attempt}, pid {os.getpid()} on {socket.gethostname()}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {threads} torch thread(s)")


def _append(run: Run, text: str) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    with open(run.dir / TRAIN_LOG, "a") as log:
        log.write(text + "\n")


def execute_pack(study: Study, indices: list[int], threads: int = 1, attempt: str = "1/1") -> list[Outcome]:
    """Train (or resume) runs ``indices`` (one game and agent) together in this process, under their locks.

    Returns one Outcome per run, in the order given: ``done``, ``busy`` (another process holds its lock) or
    ``failed`` (its folder failed the check, or training failed). Exceptions do not escape.
    """
    runs = [study.run(i) for i in indices]
    outcomes: dict[int, Outcome] = {}
    with ExitStack() as locks:
        mine: list[Run] = []
        for run in runs:
            if is_done(run):
                outcomes[run.index] = Outcome(run.index, "done", "already finished")
            elif not locks.enter_context(run_lock(run.dir)):
                holder = lock_holder(run.dir) or "another process"
                outcomes[run.index] = Outcome(run.index, "busy", f"being trained by {holder} (its lock is held)")
            elif is_done(run):  # finished by another process while we waited for the lock
                outcomes[run.index] = Outcome(run.index, "done", "already finished")
            else:
                mine.append(run)
        ready: list[Run] = []
        configs: list[RunConfig] = []
        for run in mine:
            try:
                configs.append(_prepare(study, run))
                ready.append(run)
            except Exception as exc:  # noqa: BLE001 - a corrupt folder fails its member, not the pack
                failure = f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]
                _append(run, f"{_header(run, attempt, threads)}, in a pack ===\n{failure}")
                record_failure(run, failure)
                outcomes[run.index] = Outcome(run.index, "failed", failure)
        if ready:
            outcomes.update(_train(study, ready, configs, threads, attempt))
    return [outcomes[i] for i in indices]


def _train(study: Study, ready: list[Run], configs: list[RunConfig], threads: int,
           attempt: str) -> dict[int, Outcome]:
    import torch

    from dimattn.engines.train import train_pack

    torch.set_num_threads(max(1, threads))
    first = ready[0]
    names = ", ".join(r.name for r in ready)
    for run in ready[1:]:
        _append(run, f"{_header(run, attempt, threads)}, in a pack of {len(ready)} ({names}); "
                     f"its output is in {first.dir / TRAIN_LOG} ===")
    start = time.monotonic()
    failure = None
    with _output_to(first.dir / TRAIN_LOG):
        print(f"{_header(first, attempt, threads)}, a pack of {len(ready)}: {names} ===", flush=True)
        try:
            train_pack(configs, [r.dir for r in ready], tensorboard_log=[str(r.dir / "tb") for r in ready])
        except BaseException as exc:  # noqa: BLE001 - a pack's failure must not take the study down
            traceback.print_exc()
            failure = f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]
            if isinstance(exc, KeyboardInterrupt):
                raise
    outcomes = {}
    for run in ready:
        if failure is not None:
            record_failure(run, failure, output_of=first)
            outcomes[run.index] = Outcome(run.index, "failed", failure)
        else:
            (run.dir / ERROR_LOG).unlink(missing_ok=True)
            outcomes[run.index] = Outcome(
                run.index, "done", f"trained in {_duration(time.monotonic() - start)}, a pack of {len(ready)}")
    return outcomes


def pack_of(study: Study, size: int, index: int) -> Pack:
    packs = form_packs(study, size)
    if not 0 <= index < len(packs):
        raise DimattnError(f"pack index {index} is out of range: study {study.spec.name} with --pack {size} has "
                           f"packs 0-{len(packs) - 1}")
    return packs[index]


def run_one_pack(root: str | Path, size: int, index: int | None = None, threads: int = 1,
                 retries: int = 0) -> list[Outcome]:
    """What an array task runs with ``--pack``: pack ``index`` (default: the scheduler's array index), its
    failed members retried up to ``retries`` times. One Outcome per member."""
    study = Study.load(root, validate=False)
    index = index_from_env() if index is None else index
    pack = pack_of(study, size, index)
    check_packable(study, size, list(pack.runs))
    outcomes: dict[int, Outcome] = {}
    todo = [r.index for r in pack.runs]
    for attempt in range(1, retries + 2):
        for outcome in execute_pack(study, todo, threads, attempt=f"{attempt}/{retries + 1}"):
            outcomes[outcome.index] = outcome
            # one line per member and attempt in the scheduler's log; the output is in the runs' train.log
            print(f"run {outcome.index} {study.runs[outcome.index].name}: {outcome.state}: {outcome.message}",
                  flush=True)
        todo = [i for i in todo if outcomes[i].state == "failed"]
        if not todo:
            break
    return [outcomes[r.index] for r in pack.runs]


# --------------------------------------------------------------------------- the queue of packs
class _PackQueue:
    """The packs still to attempt; a pack's failed members are retried, as a pack, at the back."""

    def __init__(self, study: Study, size: int, retries: int) -> None:
        self.study, self.max_attempts = study, retries + 1
        self.todo: deque[Pack] = deque()
        for pack in form_packs(study, size):
            left = tuple(r for r in pack.runs if not is_done(r))
            if left:
                self.todo.append(Pack(pack.index, left))
        self.attempts: dict[int, int] = {}
        self.report = RunSummary(already_done=len(study.runs) - sum(len(p.runs) for p in self.todo))

    def next(self) -> tuple[Pack, str] | None:
        """The next pack to start (its members not finished meanwhile) and its attempt label ("2/3"), or None."""
        while self.todo:
            pack = self.todo.popleft()
            left = tuple(r for r in pack.runs if not is_done(r))
            if not left:
                continue
            self.attempts[pack.index] = self.attempts.get(pack.index, 0) + 1
            return Pack(pack.index, left), f"{self.attempts[pack.index]}/{self.max_attempts}"
        return None

    def finished(self, pack: Pack, outcomes: list[Outcome], board: Board) -> None:
        again = []
        for outcome in outcomes:
            run = self.study.runs[outcome.index]
            retrying = outcome.state == "failed" and self.attempts[pack.index] < self.max_attempts
            if tally(self.report, board, run, outcome, retrying):
                again.append(run)
        if again:
            self.todo.append(Pack(pack.index, tuple(again)))


def _lost(pack: Pack, summary: str) -> list[Outcome]:
    """The worker training ``pack`` died without reporting: its members' outcomes, read from their folders."""
    outcomes = []
    for run in pack.runs:
        if is_done(run):
            outcomes.append(Outcome(run.index, "done"))
        elif (holder := lock_holder(run.dir)) is not None:  # the dead worker's locks are free: another's
            outcomes.append(Outcome(run.index, "busy", f"being trained by {holder}"))
        else:
            _append(run, f"=== {summary} ===")
            record_failure(run, summary)
            outcomes.append(Outcome(run.index, "failed", summary))
    return outcomes


# --------------------------------------------------------------------------- local pool
def _pack_child(root: str, indices: list[int], threads: int, attempt: str,
                report: multiprocessing.connection.Connection, lifeline: multiprocessing.connection.Connection) -> None:
    """A local worker process: one attempt at one pack; sends the members' outcomes to the parent."""
    _die_with_runner(lifeline)
    try:
        study = Study.load(root, validate=False)
        outcomes = execute_pack(study, indices, threads, attempt=attempt)
    except BaseException as exc:  # noqa: BLE001 - e.g. the study directory vanished
        traceback.print_exc()
        summary = record_crash(root, indices, attempt, exc)
        outcomes = [Outcome(index, "failed", summary) for index in indices]
    report.send(outcomes)
    report.close()


def _received(receive: multiprocessing.connection.Connection) -> list[Outcome] | None:
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError):  # the worker died before it reported
        return None


def run_local_packs(study: Study, size: int, workers: int | None = None, threads: int | None = None,
                    retries: int = 1, console: Console | None = None) -> RunSummary:
    """:func:`dimattn.study.launch.run_local` with packs of ``size`` runs: ``workers`` packs at a time, each
    in its own process. ``workers`` defaults to the usable cores divided by ``threads × size``."""
    threads = threads or default_threads()
    workers = workers or max(1, usable_cores() // (threads * size))
    queue, ctx = _PackQueue(study, size, retries), _context()
    active: dict[int, tuple[Pack, str, mp.process.BaseProcess, multiprocessing.connection.Connection]] = {}
    # The workers' lifeline: they hold the read end, only this process the write end (see _die_with_runner).
    lifeline, alive = ctx.Pipe(duplex=False)
    with Board(study, console) as board:
        try:
            while True:
                while len(active) < workers and (nxt := queue.next()) is not None:
                    pack, attempt = nxt
                    receive, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_pack_child, name=f"dimattn-pack-{pack.index}",
                                       args=(str(study.root), [r.index for r in pack.runs], threads, attempt, send,
                                             lifeline))
                    proc.start()
                    send.close()  # the worker holds the only write end: EOF once it is gone
                    active[pack.index] = (pack, attempt, proc, receive)
                if not active:
                    break
                board.update(r for pack, _, _, _ in active.values() for r in pack.runs)
                multiprocessing.connection.wait([p.sentinel for _, _, p, _ in active.values()], timeout=1.0)
                for key in [k for k, (_, _, p, _) in active.items() if not p.is_alive()]:
                    pack, attempt, proc, receive = active.pop(key)
                    proc.join()
                    outcomes = _received(receive)
                    receive.close()
                    if outcomes is None:
                        outcomes = _lost(pack, exit_summary(proc.exitcode, attempt))
                    queue.finished(pack, outcomes, board)
        finally:
            for _, _, proc, _ in active.values():  # interrupted: stop our workers; their runs resume next time
                proc.terminate()
            for _, _, proc, _ in active.values():
                proc.join(timeout=30)
            lifeline.close()
            alive.close()
    return queue.report


# --------------------------------------------------------------------------- Ray
def _ray_pack_task(root: str, indices: list[int], threads: int, attempt: str) -> list[Outcome]:
    """One attempt at one pack, as a Ray task on whichever node Ray picks (the study directory is shared)."""
    return execute_pack(Study.load(root, validate=False), indices, threads, attempt=attempt)


def run_ray_packs(study: Study, size: int, address: str | None = None, workers: int | None = None,
                  threads: int | None = None, gpus: float = 0, retries: int = 1,
                  console: Console | None = None) -> RunSummary:
    """:func:`dimattn.study.launch.run_ray` with packs of ``size`` runs: one Ray task per pack needing
    ``threads`` CPUs and ``gpus`` GPUs (Ray's ``num_gpus``: 0.3 lets three packs share a GPU)."""
    ray = import_ray()
    threads = threads or default_threads()
    queue = _PackQueue(study, size, retries)
    if not queue.todo:
        return queue.report
    started = connect_ray(ray, address, workers * threads if workers else None)
    remote = ray.remote(_ray_pack_task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)  # retries: ours
    refs: dict[object, tuple[Pack, str]] = {}
    try:
        with Board(study, console, running_label="in flight") as board:
            while True:
                while (workers is None or len(refs) < workers) and (nxt := queue.next()) is not None:
                    pack, attempt = nxt
                    refs[remote.remote(str(study.root), [r.index for r in pack.runs], threads, attempt)] = (
                        pack, attempt)
                if not refs:
                    break
                board.update(r for pack, _ in refs.values() for r in pack.runs)
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=1.0)
                for ref in ready:
                    pack, attempt = refs.pop(ref)
                    try:
                        outcomes = ray.get(ref)
                    except Exception as exc:  # the worker or its node died (execute_pack itself never raises)
                        why = str(exc).splitlines()[0] if str(exc) else ""
                        outcomes = _lost(pack, f"attempt {attempt} failed: Ray: {type(exc).__name__}: {why}")
                    queue.finished(pack, outcomes, board)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return queue.report
