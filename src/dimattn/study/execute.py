"""Executing one pack of a study in this process (a run alone is a pack of one): what every local worker,
Ray task and array task calls. Exceptions do not escape; what happened comes back as one Outcome per run.

An attempt at a pack (:func:`execute`):

1. members already finished are dropped;
2. every other member's lock is taken (:func:`dimattn.study.locks.run_lock`); a member whose lock another
   process holds is left to it (reported *busy*);
3. each member is checked: its ``config.yml`` readable and as the spec gives it; in a pack of several, also
   recorded by the fast engine, its ``evaluations.npz`` and newest checkpoint readable. A member failing its
   check is reported *failed* with the reason (``error.log``, as for any failed run) and the others train;
4. the remaining members train together with :func:`dimattn.engines.train.train_pack` (a run alone: any
   engine; several: the fast engine, members that stopped at different checkpoints resuming as sub-packs of
   equal step count). The output goes to the first member's
   ``train.log``; every other member's ``train.log`` gets a line naming the pack and where its output is.
   If training fails, every member gets ``error.log`` with the end of that output, and is retried as usual.

:func:`run_one` is what an array task runs: one pack, its failed members retried.

A training stopped by SIGTERM/SIGUSR1 (a walltime) writes every member's checkpoint first; each member is then
*stopped* (``stopped.log``, :func:`record_stop`): resumable, not retried by this attempt, not failed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dimattn.engines import stopping
from dimattn.engines import train as trainer  # looked up at each call: tests stand in for train_pack
from dimattn.engines.rundir import CONFIG, read_config
from dimattn.engines.tracking import tracked
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.host import usable_cores
from dimattn.study.locks import lock_holder, run_lock
from dimattn.study.packs import check_runnable, pack_of
from dimattn.study.schedulers import SCHEDULERS, words
from dimattn.study.spec import ERROR_LOG, ERROR_TAIL, STOP_LOG, TRAIN_LOG, Run, Study
from dimattn.study.status import is_done


@dataclass
class Outcome:
    """What one attempt at a run came to: ``done``, ``busy`` (another process holds it), ``failed``, or
    ``stopped`` (on SIGTERM/SIGUSR1, after writing its checkpoint: resumable)."""

    index: int
    state: str
    message: str = ""


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C code's output too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def log_tail(run: Run, n: int = ERROR_TAIL) -> list[str]:
    path = run.dir / TRAIN_LOG
    return path.read_text(errors="replace").splitlines()[-n:] if path.is_file() else []


def record_failure(run: Run, summary: str, output_of: Run | None = None) -> None:
    """Write ``error.log``: a one-line summary, then the last lines of the run's output (of ``output_of``'s
    ``train.log`` where another run's log holds it: a pack writes its output into its first member's)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    source = output_of or run
    where = TRAIN_LOG if source == run else str(source.dir / TRAIN_LOG)
    text = (
        f"{summary} ({stamp}, {socket.gethostname()})\n--- last lines of {where} ---\n"
        + "\n".join(log_tail(source))
        + "\n"
    )
    atomic_write_text(run.dir / ERROR_LOG, text)


def append_log(run: Run, line: str) -> None:
    """Add one line to the run's ``train.log`` (for what its own output cannot say: a pack, a killed worker)."""
    run.dir.mkdir(parents=True, exist_ok=True)
    with open(run.dir / TRAIN_LOG, "a") as log:
        log.write(line + "\n")


def _header(run: Run, attempt: str, threads: int) -> str:
    return (f"=== {run.name}: attempt {attempt}, pid {os.getpid()} on {socket.gethostname()}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {threads} torch thread(s)")


def failure_line(attempt: str, exc: BaseException) -> str:
    """The one-line summary of an attempt that raised ``exc`` (``error.log``'s first line, the outcome's message)."""
    return f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]


def execute(study: Study, indices: list[int], threads: int = 1, attempt: str = "1/1") -> list[Outcome]:
    """Train (or resume) the pack ``indices`` in this process under their locks: one run, or several of one
    game and agent trained together. ``threads`` caps torch's intra-op threads.

    Returns one Outcome per run, in the order given: ``done``, ``busy`` (another process holds its lock),
    ``failed`` (its folder failed the check, or training failed) or ``stopped`` (by SIGTERM/SIGUSR1, its
    checkpoint written: resumable). Exceptions do not escape.
    """
    outcomes: dict[int, Outcome] = {}
    with ExitStack() as locks:
        mine = _claim(study, indices, locks, outcomes)
        packed = len(indices) > 1
        ready = [run for run in mine if _member_ready(study, run, packed, attempt, threads, outcomes)]
        if ready:
            outcomes.update(_train(study, ready, threads, attempt))
    return [outcomes[i] for i in indices]


def _claim(study: Study, indices: list[int], locks: ExitStack, outcomes: dict[int, Outcome]) -> list[Run]:
    """The runs this process is to train, their locks held until ``locks`` closes; the others' outcomes
    (finished, or another process's) go to ``outcomes``."""
    mine = []
    for run in (study.run(i) for i in indices):
        if is_done(run):
            outcomes[run.index] = Outcome(run.index, "done", "already finished")
        elif not locks.enter_context(run_lock(run.dir)):
            holder = lock_holder(run.dir) or "another process"
            outcomes[run.index] = Outcome(run.index, "busy", f"being trained by {holder} (its lock is held)")
        elif is_done(run):  # finished by another process while we waited for the lock
            outcomes[run.index] = Outcome(run.index, "done", "already finished")
        else:
            mine.append(run)
    return mine


def _member_ready(study: Study, run: Run, packed: bool, attempt: str, threads: int,
                  outcomes: dict[int, Outcome]) -> bool:
    """Check a pack's member before it trains: its config.yml (every pack, a run alone too) and, in a pack of
    several, its evaluations and newest checkpoint; a member whose folder is unusable fails alone, with the
    reason."""
    from dimattn.agents.checkpoints import read_checkpoint
    from dimattn.engines.common import resume_point

    try:
        study.config(run)
        if (run.dir / CONFIG).is_file():
            found = read_config(run.dir)
            if packed and found.engine != "fast":
                raise DimattnError(f"{run.dir} was started with the {found.engine} engine and a pack needs the fast "
                                   "engine; train this run alone (without --pack)")
            study.check_unchanged([run])
        if packed:  # one member's unreadable files must not take its pack down; a run alone meets them itself
            _, checkpoint, _ = resume_point(run.dir, True)  # reads evaluations.npz up to the newest checkpoint
            if checkpoint is not None:
                read_checkpoint(checkpoint)
        return True
    except Exception as exc:  # noqa: BLE001 - a corrupt folder fails its member, not the pack
        failure = failure_line(attempt, exc)
        append_log(run, f"{_header(run, attempt, threads)}{', in a pack' * packed} ===\n{failure}")
        record_failure(run, failure)
        outcomes[run.index] = Outcome(run.index, "failed", failure)
        return False


def _train(study: Study, ready: list[Run], threads: int, attempt: str) -> dict[int, Outcome]:
    """Train ``ready`` (one run, or a pack) in this process; its output in the first run's ``train.log``."""
    import torch

    torch.set_num_threads(max(1, threads))
    first, names, size = ready[0], ", ".join(r.name for r in ready), len(ready)
    packed = size > 1
    for run in ready[1:]:
        append_log(run, f"{_header(run, attempt, threads)}, in a pack of {size} ({names}); "
                        f"its output is in {first.dir / TRAIN_LOG} ===")
    start = time.monotonic()
    failure, stopped = None, None
    for run in ready:  # this attempt is the run's state now
        (run.dir / STOP_LOG).unlink(missing_ok=True)
    with output_to(first.dir / TRAIN_LOG):
        print(_header(first, attempt, threads) + (f", a pack of {size}: {names}" if packed else "") + " ===",
              flush=True)
        try:
            # what `study run --track/--mlflow` recorded in the run's folder (a run alone: tracking refuses packs)
            with tracked(first.dir, study.config(first)) if not packed else contextlib.nullcontext():
                trainer.train_pack([study.config(r) for r in ready], [r.dir for r in ready],
                                   tensorboard_log=[str(r.dir / "tb") for r in ready])
        except stopping.Stopped as exc:  # every member's checkpoint is written: resumable
            print(exc, flush=True)
            stopped = exc
        except BaseException as exc:  # noqa: BLE001 - a run's failure must not take the study down
            traceback.print_exc()
            failure = failure_line(attempt, exc)
            if isinstance(exc, (KeyboardInterrupt, stopping.Terminated)):
                raise
    took = f"trained in {_duration(time.monotonic() - start)}" + (f", a pack of {size}" if packed else "")
    outcomes = {}
    for run in ready:
        if stopped is not None:
            record_stop(run, stopped)
            outcomes[run.index] = Outcome(run.index, "stopped", str(stopped))
        elif failure is not None:
            record_failure(run, failure, output_of=first)
            outcomes[run.index] = Outcome(run.index, "failed", failure)
        else:
            (run.dir / ERROR_LOG).unlink(missing_ok=True)
            outcomes[run.index] = Outcome(run.index, "done", took)
    return outcomes


def record_stop(run: Run, stopped: stopping.Stopped) -> None:
    """Mark a run stopped, resumable (``stopped.log``, which ``study status`` reads): what stopped it, when,
    where, and the scheduler's job; an earlier attempt's ``error.log`` no longer describes it."""
    job = next((os.environ[s.job_id_var] for s in SCHEDULERS.values() if os.environ.get(s.job_id_var)), None)
    where = f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {socket.gethostname()}" + (f", job {job}" if job else "")
    atomic_write_text(run.dir / STOP_LOG, f"{stopped} ({where})\n")
    (run.dir / ERROR_LOG).unlink(missing_ok=True)


def _duration(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def index_from_env() -> int:
    """The array index the scheduler gave this job, counted from 0: ``$PBS_ARRAY_INDEX`` (PBS Pro),
    ``$SLURM_ARRAY_TASK_ID`` (Slurm), or another scheduler's (:data:`dimattn.study.schedulers.SCHEDULERS`)."""
    for sched in SCHEDULERS.values():
        value = os.environ.get(sched.index_var)
        if value is not None:
            try:
                return int(value) - sched.index_base
            except ValueError:
                raise DimattnError(f"${sched.index_var} is {value!r}, not an integer") from None
    names = [f"${s.index_var}" for s in SCHEDULERS.values()]
    unset = f"neither {' nor '.join(names)}" if len(names) == 2 else f"none of {words(names, 'or')}"
    raise DimattnError(f"no --index given and {unset} is set; give --index N (0-based run number)")


def run_one(root: str | Path, index: int | None = None, threads: int = 1, retries: int = 0,
            pack: int = 1) -> list[Outcome]:
    """What an array task runs: pack ``index`` of the study's packs of ``pack`` runs (default 1: run
    ``index`` alone; default index: the scheduler's array index), its failed members retried up to
    ``retries`` times. One Outcome per member, and one line per member and attempt on stdout."""
    study = Study.load(root, validate=False)
    index = index_from_env() if index is None else index
    group = pack_of(study, pack, index)
    check_runnable(study, pack, list(group.runs))
    outcomes: dict[int, Outcome] = {}
    todo = [r.index for r in group.runs]
    for attempt in range(1, retries + 2):
        for outcome in execute(study, todo, threads, attempt=f"{attempt}/{retries + 1}"):
            outcomes[outcome.index] = outcome
            # the scheduler's log gets this line; the run's own output is in its train.log
            print(f"run {outcome.index} {study.runs[outcome.index].name}: {outcome.state}: {outcome.message}",
                  flush=True)
        todo = [i for i in todo if outcomes[i].state == "failed"]
        if not todo or stopping.requested():  # asked to stop: no new attempt
            break
    return [outcomes[r.index] for r in group.runs]


def default_threads() -> int:
    """Torch threads per run: 1 on small machines, 2 where cores are plenty (the PPO update uses them;
    stepping the Atari envs does not)."""
    return 1 if usable_cores() < 8 else 2
