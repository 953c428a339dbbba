"""Executing a study's runs on this machine (a pool of worker processes) or on a Ray cluster, and watching them.

Both backends share one loop (:class:`_Queue`): every unfinished run is attempted, a failed attempt is
retried (at the back of the queue) up to ``retries`` times, a run whose lock another process holds is
left to that process. Each attempt runs :func:`dimattn.study.spec.execute_run`, which resumes from the run's
last checkpoint. A live board shows runs done / running / failed and the steps per second the study
makes, read from what the runs write to disk (checkpoints and evaluations), so it works for any engine.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from dimattn.errors import DimattnError
from dimattn.host import usable_cores
from dimattn.study.execute import Outcome, default_threads, execute_run, record_failure
from dimattn.study.locks import lock_holder
from dimattn.study.spec import ERROR_LOG, Run, Study
from dimattn.study.status import STATES, RunStatus, is_done, progress_on_disk

EXIT_BUSY = 75  # a local worker's exit status when another process holds the run's lock (EX_TEMPFAIL)


@dataclass
class RunSummary:
    """What one ``study run`` achieved, by run index."""

    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # index -> the last attempt's error summary
    busy: list[int] = field(default_factory=list)  # trained by another process meanwhile
    already_done: int = 0


class Board:
    """Live display: runs done / running / failed / pending and steps per second (rich; plain lines when
    the output is not a terminal, e.g. a cluster job's log)."""

    def __init__(self, study: Study, console: Console | None = None, running_label: str = "running") -> None:
        self.study, self.label = study, running_label
        if console is None:  # logs (not a terminal) get wide lines rather than rich's 80 columns
            console = Console(stderr=True)
            console = console if console.is_terminal else Console(stderr=True, width=160)
        self.console = console
        self.done = sum(is_done(r) for r in study.runs)
        self.failed = self.busy = self.running = 0
        self.start = time.monotonic()
        self.base: dict[int, int] = {}  # steps on disk when this process first saw the run active
        self.now: dict[int, int] = {}
        self.last_read = 0.0
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("runs · {task.fields[info]}"), TimeElapsedColumn(), console=self.console)
        self.task = self.progress.add_task(study.spec.name, total=len(study.runs), completed=self.done, info="")

    def __enter__(self) -> Board:
        self.update([], force=True)
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update([], force=True)
        self.progress.stop()

    def event(self, run: Run, text: str) -> None:
        self.progress.console.print(f"{run.index:>4} {run.name}: {text}", highlight=False)

    def update(self, active: Iterable[Run], force: bool = False) -> None:
        """Refresh counts; re-read the active runs' steps from disk every 2 s (less often for many runs)."""
        active = list(active)
        self.running = len(active)
        if force or time.monotonic() - self.last_read > max(2.0, len(active) / 50):
            self.last_read = time.monotonic()
            for run in active:
                steps = progress_on_disk(run)[0]
                self.base.setdefault(run.index, steps)
                self.now[run.index] = steps
        made = sum(self.now[i] - self.base[i] for i in self.now)
        rate = made / max(time.monotonic() - self.start, 1e-9)
        pending = len(self.study.runs) - self.done - self.failed - self.busy - self.running
        info = (f"{self.label} {self.running} · failed {self.failed} · pending {pending}"
                + (f" · elsewhere {self.busy}" if self.busy else "") + f" · {rate:,.0f} steps/s")
        self.progress.update(self.task, completed=self.done, info=info)

    def finish(self, run: Run, outcome: Outcome, retrying: bool) -> None:
        steps = progress_on_disk(run)
        self.base.setdefault(run.index, steps[0])
        self.now[run.index] = steps[0]
        if outcome.state == "done":
            self.done += 1
            score = "" if steps[1] is None else f", last score {steps[1]:.2f}"
            self.event(
                run, f"[green]done[/] ({steps[0]:,} steps{score})" + (f" {outcome.message}" if outcome.message else "")
            )
        elif outcome.state == "busy":
            self.busy += 1
            self.event(run, f"[yellow]skipped[/]: {outcome.message}")
        else:
            self.failed += 0 if retrying else 1
            self.event(run, f"[red]failed[/]: {outcome.message}" + ("; retrying" if retrying else ""))


class _Queue:
    """The runs still to attempt, with retries at the back."""

    def __init__(self, study: Study, retries: int) -> None:
        self.study, self.max_attempts = study, retries + 1
        self.todo = deque(r for r in study.runs if not is_done(r))
        self.attempts: dict[int, int] = {}
        self.report = RunSummary(already_done=len(study.runs) - len(self.todo))

    def next(self) -> tuple[Run, str] | None:
        """The next run to start and its attempt label ("2/3"), or None; skips runs finished or locked meanwhile."""
        while self.todo:
            run = self.todo.popleft()
            if is_done(run):
                continue
            self.attempts[run.index] = self.attempts.get(run.index, 0) + 1
            return run, f"{self.attempts[run.index]}/{self.max_attempts}"
        return None

    def finished(self, run: Run, outcome: Outcome, board: Board) -> None:
        retrying = outcome.state == "failed" and self.attempts[run.index] < self.max_attempts
        if tally(self.report, board, run, outcome, retrying):
            self.todo.append(run)


def tally(summary: RunSummary, board: Board, run: Run, outcome: Outcome, retrying: bool) -> bool:
    """Count one attempt's outcome in ``summary`` and show it; True when the run is to be tried again."""
    board.finish(run, outcome, retrying)
    if outcome.state == "done":
        summary.done.append(run.index)
        summary.failed.pop(run.index, None)
    elif outcome.state == "busy":
        summary.busy.append(run.index)
    elif retrying:
        return True
    else:
        summary.failed[run.index] = outcome.message
    return False


# --------------------------------------------------------------------------- local pool
def _die_with_runner(lifeline: multiprocessing.connection.Connection) -> None:
    """Make this worker die with the ``study run`` process, however that dies (SIGKILL included).

    ``lifeline`` is the read end of a pipe whose write end only the runner holds; the kernel closes it
    when the runner dies, so a thread blocked reading it wakes up (EOF) and kills this process. The
    kernel then releases the run's lock, and the next ``study run`` resumes the run. A parent-death
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
    """Record an attempt that raised as the failure of every run in ``indices`` (one run, or a pack's
    members); returns the one-line summary. A study that cannot take the record (gone, read-only) is
    said in one line instead."""
    summary = f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]
    try:
        study = Study.load(root, validate=False)
        for index in indices:
            record_failure(study.run(index), summary)
    except Exception as again:  # noqa: BLE001 - e.g. the study became read-only: say it once, in one line
        which = ", ".join(str(i) for i in indices)
        print(f"dimattn: cannot record the failure of run {which}: {type(again).__name__}: {again}",
              file=sys.stderr)
    return summary


def _child(root: str, index: int, threads: int, attempt: str,
           lifeline: multiprocessing.connection.Connection | None = None) -> None:
    """A local worker process: one attempt at one run; the exit status tells the parent how it went."""
    if lifeline is not None:
        _die_with_runner(lifeline)
    try:
        study = Study.load(root, validate=False)
        outcome = execute_run(study, index, threads, attempt=attempt)
    except BaseException as exc:  # noqa: BLE001 - e.g. the study directory vanished
        traceback.print_exc()
        record_crash(root, [index], attempt, exc)
        sys.exit(1)
    sys.exit({"done": 0, "busy": EXIT_BUSY}.get(outcome.state, 1))


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


def _outcome_of_exit(run: Run, code: int | None, attempt: str) -> Outcome:
    if code == 0:
        return Outcome(run.index, "done")
    if code == EXIT_BUSY:
        return Outcome(run.index, "busy", f"being trained by {lock_holder(run.dir) or 'another process'}")
    if code is not None and code < 0:  # killed by a signal: the worker could not record anything itself
        summary = exit_summary(code, attempt)
        with open(run.dir / "train.log", "a") as log:
            log.write(f"=== {summary} ===\n")
        record_failure(run, summary)
        return Outcome(run.index, "failed", summary)
    first = (
        (run.dir / ERROR_LOG).read_text(errors="replace").splitlines()[:1] if (run.dir / ERROR_LOG).is_file() else []
    )
    return Outcome(run.index, "failed", first[0] if first else exit_summary(code, attempt))


def run_local(study: Study, workers: int | None = None, threads: int | None = None, retries: int = 1,
              console: Console | None = None) -> RunSummary:
    """Run every unfinished run of ``study`` here, ``workers`` at a time, each in its own process.

    ``threads``: torch threads per run (default :func:`default_threads`); ``workers`` defaults to the
    usable cores divided by ``threads``.
    """
    threads = threads or default_threads()
    workers = workers or max(1, usable_cores() // threads)
    queue, ctx = _Queue(study, retries), _context()
    active: dict[int, tuple[Run, str, mp.process.BaseProcess]] = {}
    # The workers' lifeline: they hold the read end, only this process the write end (see _die_with_runner).
    lifeline, alive = ctx.Pipe(duplex=False)
    with Board(study, console) as board:
        try:
            while True:
                while len(active) < workers and (nxt := queue.next()) is not None:
                    run, attempt = nxt
                    proc = ctx.Process(target=_child, args=(str(study.root), run.index, threads, attempt, lifeline),
                                       name=f"dimattn-run-{run.index}")
                    proc.start()
                    active[run.index] = (run, attempt, proc)
                if not active:
                    break
                board.update(r for r, _, _ in active.values())
                multiprocessing.connection.wait([p.sentinel for _, _, p in active.values()], timeout=1.0)
                for index in [i for i, (_, _, p) in active.items() if not p.is_alive()]:
                    run, attempt, proc = active.pop(index)
                    proc.join()
                    queue.finished(run, _outcome_of_exit(run, proc.exitcode, attempt), board)
        finally:
            for _, _, proc in active.values():  # interrupted: stop our workers; their runs resume next time
                proc.terminate()
            for _, _, proc in active.values():
                proc.join(timeout=30)
            lifeline.close()
            alive.close()
    return queue.report


# --------------------------------------------------------------------------- Ray
def _ray_task(root: str, index: int, threads: int, attempt: str) -> Outcome:
    """One attempt at one run, as a Ray task on whichever node Ray picks (the study directory is shared)."""
    return execute_run(Study.load(root, validate=False), index, threads, attempt=attempt)


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
            retries: int = 1, console: Console | None = None, gpus: float = 0) -> RunSummary:
    """Run every unfinished run of ``study`` as a Ray task needing ``threads`` CPUs (and ``gpus`` GPUs).

    Connects to the Ray cluster at ``address`` (``auto``: the one this node belongs to), or starts a
    local Ray with ``workers × threads`` CPUs (default: all). A Ray already initialised in this process
    is used as is. ``workers`` also caps the tasks in flight.
    """
    ray = import_ray()
    threads = threads or default_threads()
    queue = _Queue(study, retries)
    if not queue.todo:
        return queue.report
    started = connect_ray(ray, address, workers * threads if workers else None)
    remote = ray.remote(_ray_task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)  # retries: ours, per run
    refs: dict[object, tuple[Run, str]] = {}
    try:
        with Board(study, console, running_label="in flight") as board:
            while True:
                while (workers is None or len(refs) < workers) and (nxt := queue.next()) is not None:
                    run, attempt = nxt
                    refs[remote.remote(str(study.root), run.index, threads, attempt)] = (run, attempt)
                if not refs:
                    break
                board.update(r for r, _ in refs.values())
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=1.0)
                for ref in ready:
                    run, attempt = refs.pop(ref)
                    queue.finished(run, _ray_outcome(ray, ref, run, attempt), board)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return queue.report


def _ray_outcome(ray: object, ref: object, run: Run, attempt: str) -> Outcome:
    try:
        return ray.get(ref)  # type: ignore[attr-defined]
    except Exception as exc:  # the worker or its node died (execute_run itself never raises)
        summary = f"attempt {attempt} failed: Ray: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        record_failure(run, summary)
        return Outcome(run.index, "failed", summary)


# --------------------------------------------------------------------------- report
def print_report(study: Study, report: RunSummary, write: Callable[[str], None] = print) -> None:
    """Totals, then each failed run with the last lines of its error."""
    n = len(study.runs)
    write(f"study {study.spec.name}: {report.already_done + len(report.done)}/{n} runs done "
          f"({len(report.done)} now, {report.already_done} before), {len(report.failed)} failed"
          + (f", {len(report.busy)} being trained by another process" if report.busy else ""))
    for index in sorted(report.failed):
        run = study.runs[index]
        lines = (
            (run.dir / ERROR_LOG).read_text(errors="replace").splitlines() if (run.dir / ERROR_LOG).is_file() else []
        )
        write(f"  FAILED {index} {run.name}: {report.failed[index]}")
        for line in [ln for ln in lines[2:] if ln.strip()][-6:]:
            write(f"      {line}")
    if report.failed:
        write(f"  full errors: {study.root}/runs/<Game>/<Agent>/seed<k>/{ERROR_LOG}; "
              "`dimattn study run` again retries them from their last checkpoint")



def status_table(study: Study, rows: list[RunStatus]) -> Table:
    """One line per run: state, steps a resume keeps (the newest checkpoint) / total, the last evaluation's
    step and mean score, and a note. An evaluation past the checkpoint is work a resume redoes."""
    table = Table(title=f"study {study.spec.name} ({study.root})", title_justify="left")
    for name, justify in (("#", "right"), ("game", "left"), ("agent", "left"), ("seed", "right"),
                          ("state", "left"), ("steps kept", "right"), ("last eval", "right"),
                          ("last score", "right"), ("note", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    colour = {"done": "green", "running": "cyan", "failed": "red", "pending": "white"}
    for s in rows:
        table.add_row(str(s.run.index), s.run.game, s.run.agent, str(s.run.seed),
                      f"[{colour[s.state]}]{s.state}[/]", f"{s.steps:,}/{study.spec.n_timesteps:,}",
                      "" if s.eval_steps is None else f"{s.eval_steps:,}",
                      "" if s.last_score is None else f"{s.last_score:.2f}", s.note)
    return table


def status_summary(rows: list[RunStatus]) -> str:
    counts = {state: sum(r.state == state for r in rows) for state in STATES}
    return f"{len(rows)} runs: " + ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "failed", "pending"))
