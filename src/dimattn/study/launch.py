"""Running a study's packs on this machine (a pool of worker processes) or on a Ray cluster.

The unit of work is the pack (:mod:`dimattn.study.packs`; a run alone is a pack of one). Both backends
drive one loop (:func:`_drive`) over one queue (:class:`_Queue`): every pack with unfinished runs is
attempted, a pack's failed members are retried (as a pack, at the back of the queue) up to ``retries``
times, and a run whose lock another process holds is left to that process. Each attempt runs
:func:`dimattn.study.execute.execute` in a worker process or a Ray task; it resumes every member from its
last checkpoint and reports one outcome per member. A worker that dies without reporting (killed, out of
memory, its node lost) fails the members it had not finished, and they are retried like any failure.
The live board is :class:`dimattn.study.board.Board`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.console import Console

from dimattn.engines import stopping
from dimattn.errors import DimattnError
from dimattn.host import usable_cores
from dimattn.study.board import Board, RunSummary
from dimattn.study.execute import Outcome, append_log, default_threads, execute, failure_line, record_failure
from dimattn.study.locks import lock_holder
from dimattn.study.packs import RunGroup, form_packs
from dimattn.study.spec import Study
from dimattn.study.status import is_done


class _Queue:
    """The packs still to attempt; a pack's failed members are retried, as a pack, at the back."""

    def __init__(self, study: Study, size: int, retries: int) -> None:
        self.study, self.max_attempts = study, retries + 1
        self.todo: deque[RunGroup] = deque()
        for group in form_packs(study, size):
            left = tuple(r for r in group.runs if not is_done(r))
            if left:
                self.todo.append(RunGroup(group.index, left))
        self.attempts: dict[int, int] = {}
        self.report = RunSummary(already_done=len(study.runs) - sum(len(g.runs) for g in self.todo))

    def next(self) -> tuple[RunGroup, str] | None:
        """The next pack to start (its members not finished meanwhile) and its attempt label ("2/3"), or None."""
        while self.todo:
            group = self.todo.popleft()
            left = tuple(r for r in group.runs if not is_done(r))
            if not left:
                continue
            self.attempts[group.index] = self.attempts.get(group.index, 0) + 1
            return RunGroup(group.index, left), f"{self.attempts[group.index]}/{self.max_attempts}"
        return None

    def finished(self, group: RunGroup, outcomes: list[Outcome], board: Board) -> None:
        """Count and show each member's outcome; queue the members to try again."""
        again = []
        for outcome in outcomes:
            run = self.study.runs[outcome.index]
            retrying = outcome.state == "failed" and self.attempts[group.index] < self.max_attempts
            board.finish(run, outcome, retrying)
            if outcome.state == "done":
                self.report.done.append(run.index)
                self.report.failed.pop(run.index, None)
            elif outcome.state == "busy":
                self.report.busy.append(run.index)
            elif retrying:
                again.append(run)
            else:
                self.report.failed[run.index] = outcome.message
        if again:
            self.todo.append(RunGroup(group.index, tuple(again)))


Active = dict[Any, tuple[RunGroup, str]]  # what is in flight (a worker, a Ray reference) -> its pack, attempt


def _drive(queue: _Queue, board: Board, workers: int | None, active: Active,
           start: Callable[[RunGroup, str], Any],
           collect: Callable[[Active], list[tuple[Any, list[Outcome]]]]) -> None:
    """The loop of both backends: keep ``workers`` packs in flight (None: as many as the queue has),
    ``start`` each, ``collect`` the finished ones' outcomes (waiting a second at most), until none is left.
    ``active`` stays the caller's, to stop what is in flight when interrupted."""
    while True:
        while (workers is None or len(active) < workers) and (nxt := queue.next()) is not None:
            active[start(*nxt)] = nxt
        if not active:
            return
        board.update(run for group, _ in active.values() for run in group.runs)
        for handle, outcomes in collect(active):
            group, _ = active.pop(handle)
            queue.finished(group, outcomes, board)


def _lost(group: RunGroup, summary: str) -> list[Outcome]:
    """The worker training ``group`` died without reporting: its members' outcomes, read from their folders."""
    outcomes = []
    for run in group.runs:
        if is_done(run):
            outcomes.append(Outcome(run.index, "done"))
        elif (holder := lock_holder(run.dir)) is not None:  # the dead worker's locks are free: another's
            outcomes.append(Outcome(run.index, "busy", f"being trained by {holder}"))
        else:
            append_log(run, f"=== {summary} ===")
            record_failure(run, summary)
            outcomes.append(Outcome(run.index, "failed", summary))
    return outcomes


# --------------------------------------------------------------------------- local pool
def _die_with_runner(lifeline: multiprocessing.connection.Connection) -> None:
    """Make this worker die with the ``study run`` process, however that dies (SIGKILL included).

    ``lifeline`` is the read end of a pipe whose write end only the runner holds; the kernel closes it
    when the runner dies, so a thread blocked reading it wakes up (EOF) and kills this process. The
    kernel then releases the runs' locks, and the next ``study run`` resumes the runs. A parent-death
    signal alone is not enough: forkserver workers are children of the fork server, which outlives
    the runner as long as a worker holds its pipe. It is set too (SIGKILL), for the spawn context.
    """
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()  # the runner never writes: this returns only at EOF (its death)
        os.kill(os.getpid(), signal.SIGKILL)

    # started at once: a runner that died before this point gives EOF right away
    threading.Thread(target=watch, name="dimattn-lifeline", daemon=True).start()


def record_crash(root: str, indices: list[int], attempt: str, exc: BaseException) -> str:
    """Record an attempt that raised as the failure of every run in ``indices`` (the pack's members);
    returns the one-line summary. A study that cannot take the record (gone, read-only) is said in one
    line instead."""
    summary = failure_line(attempt, exc)
    try:
        study = Study.load(root, validate=False)
        for index in indices:
            record_failure(study.run(index), summary)
    except Exception as again:  # noqa: BLE001 - e.g. the study became read-only: say it once, in one line
        which = ", ".join(str(i) for i in indices)
        print(f"dimattn: cannot record the failure of run {which}: {type(again).__name__}: {again}",
              file=sys.stderr)
    return summary


def _child(root: str, indices: list[int], threads: int, attempt: str,
           report: multiprocessing.connection.Connection, lifeline: multiprocessing.connection.Connection) -> None:
    """A local worker process: one attempt at one pack; sends the members' outcomes to the parent."""
    _die_with_runner(lifeline)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the runner passes it on
    try:
        outcomes = execute(Study.load(root, validate=False), indices, threads, attempt=attempt)
    except BaseException as exc:  # noqa: BLE001 - e.g. the study directory vanished
        traceback.print_exc()
        summary = record_crash(root, indices, attempt, exc)
        outcomes = [Outcome(index, "failed", summary) for index in indices]
    report.send(outcomes)
    report.close()


def _context() -> mp.context.BaseContext:
    # forkserver: children fork from a clean server that has imported torch once, not from this
    # process (which may hold threads); spawn where forkserver does not exist.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["dimattn.study.spec", "dimattn.envs.ale"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover


def exit_summary(code: int | None, attempt: str) -> str:
    """One line for a worker that ended without reporting: the signal that killed it, or its exit status."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"attempt {attempt} failed: killed by signal {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"attempt {attempt} failed: exit status {code}"


def _received(receive: multiprocessing.connection.Connection) -> list[Outcome] | None:
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError):  # the worker died before it reported
        return None


def run_local(study: Study, workers: int | None = None, threads: int | None = None, retries: int = 1,
              console: Console | None = None, pack: int = 1) -> RunSummary:
    """Run every unfinished run of ``study`` here, in packs of ``pack`` runs (default 1: each run alone),
    ``workers`` packs at a time, each in its own process.

    ``threads``: torch threads per pack (default :func:`default_threads`); ``workers`` defaults to the
    usable cores divided by ``threads × pack``.
    """
    threads = threads or default_threads()
    workers = workers or max(1, usable_cores() // (threads * pack))
    queue, ctx = _Queue(study, pack, retries), _context()
    # The workers' lifeline: they hold the read end, only this process the write end (see _die_with_runner).
    lifeline, alive = ctx.Pipe(duplex=False)
    active: Active = {}  # (process, the pipe its outcomes come back on) -> its pack, attempt

    def start(group: RunGroup, attempt: str) -> tuple[mp.process.BaseProcess, multiprocessing.connection.Connection]:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, name=f"dimattn-pack-{group.index}",
                           args=(str(study.root), [r.index for r in group.runs], threads, attempt, send, lifeline))
        proc.start()
        send.close()  # the worker holds the only write end: EOF once it is gone
        return proc, receive

    def collect(active: Active) -> list[tuple[Any, list[Outcome]]]:
        multiprocessing.connection.wait([proc.sentinel for proc, _ in active], timeout=1.0)
        finished = []
        for proc, receive in [worker for worker in active if not worker[0].is_alive()]:
            proc.join()
            outcomes = _received(receive)
            receive.close()
            if outcomes is None:
                group, attempt = active[proc, receive]
                outcomes = _lost(group, exit_summary(proc.exitcode, attempt))
            finished.append(((proc, receive), outcomes))
        return finished

    with Board(study, console) as board, _stops() as received:
        try:
            _drive(queue, board, workers, active, start, collect)
        finally:
            # interrupted: pass the stop on (SIGUSR1 as it came; else SIGTERM, which each worker's training
            # takes as SIGINT's meaning); each checkpoints its runs, which resume next time
            forward = signal.SIGUSR1 if received[:1] == [signal.SIGUSR1] else signal.SIGTERM
            for proc, _ in active:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, forward)
            for proc, _ in active:
                proc.join(timeout=30)
            lifeline.close()
            alive.close()
    return queue.report


_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


@contextlib.contextmanager
def _stops() -> Any:
    """In the runner: the first SIGTERM, SIGINT or SIGUSR1 ends the drive (:class:`stopping.Terminated`, one
    line); the signals are recorded in the yielded list, and one that comes again while the workers save
    changes nothing (SIGUSR1 would end the runner, a second SIGTERM cut their checkpoints short)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise stopping.Terminated(f"terminated by {signal.Signals(signum).name}")

    saved = {s: signal.signal(s, stop) for s in _STOPS}
    try:
        yield received
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------- Ray
def _ray_task(root: str, indices: list[int], threads: int, attempt: str) -> list[Outcome]:
    """One attempt at one pack, as a Ray task on whichever node Ray picks (the study directory is shared)."""
    return execute(Study.load(root, validate=False), indices, threads, attempt=attempt)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DimattnError("the ray backend needs Ray: pip install 'dimattn[ray]' (or ray[default])") from None
    return ray


def connect_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Join the Ray cluster at ``address``, or start a local Ray with ``num_cpus`` CPUs (None: all);
    a Ray already initialised in this process is used as is. True if this call started it."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise DimattnError(
            f"cannot connect to Ray at {address!r}: {str(exc).splitlines()[0].rstrip('.')}; start the "
            "cluster with `ray start --head`, or leave out --ray-address for a local Ray"
        ) from None
    return True


def run_ray(study: Study, address: str | None = None, workers: int | None = None, threads: int | None = None,
            retries: int = 1, console: Console | None = None, gpus: float = 0, pack: int = 1) -> RunSummary:
    """Run every unfinished run of ``study`` as Ray tasks, one per pack of ``pack`` runs (default 1: each run
    alone), each needing ``threads`` CPUs and ``gpus`` GPUs (Ray's ``num_gpus``: 0.3 lets three share a GPU).

    Connects to the Ray cluster at ``address`` (``auto``: the one this node belongs to), or starts a
    local Ray with ``workers × threads`` CPUs (default: all). A Ray already initialised in this process
    is used as is. ``workers`` also caps the tasks in flight.
    """
    ray = import_ray()
    threads = threads or default_threads()
    queue = _Queue(study, pack, retries)
    if not queue.todo:
        return queue.report
    started = connect_ray(ray, address, workers * threads if workers else None)
    remote = ray.remote(_ray_task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)  # retries: ours, per pack
    active: Active = {}  # Ray reference -> its pack, attempt

    def start(group: RunGroup, attempt: str) -> Any:
        return remote.remote(str(study.root), [r.index for r in group.runs], threads, attempt)

    def collect(active: Active) -> list[tuple[Any, list[Outcome]]]:
        ready, _ = ray.wait(list(active), num_returns=len(active), timeout=1.0)
        return [(ref, _ray_outcomes(ray, ref, *active[ref])) for ref in ready]

    try:
        with Board(study, console, running_label="in flight") as board:
            _drive(queue, board, workers, active, start, collect)
    finally:
        for ref in active:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return queue.report


def _ray_outcomes(ray: Any, ref: Any, group: RunGroup, attempt: str) -> list[Outcome]:
    try:
        return ray.get(ref)
    except Exception as exc:  # the worker or its node died (execute itself never raises)
        why = str(exc).splitlines()[0] if str(exc) else ""
        return _lost(group, f"attempt {attempt} failed: Ray: {type(exc).__name__}: {why}")
