"""Executing one run of a study in this process: under its lock, its output in ``train.log``,
a failure recorded in ``error.log``, retried; what each array task and each local worker calls."""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dimattn.engines.train import train
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.host import usable_cores
from dimattn.study.locks import lock_holder, run_lock
from dimattn.study.spec import ERROR_LOG, ERROR_TAIL, TRAIN_LOG, Run, Study
from dimattn.study.status import is_done


@dataclass
class Outcome:
    """What one attempt at a run came to: ``done``, ``busy`` (another process holds it) or ``failed``."""

    index: int
    state: str
    message: str = ""


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
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


def execute_run(study: Study, index: int, threads: int = 1, attempt: str = "1/1") -> Outcome:
    """Train (or resume) run ``index`` in this process under its lock, output appended to ``train.log``.

    Exceptions do not escape: a failure is recorded in ``error.log`` and returned as an Outcome.
    ``threads`` caps torch's intra-op threads for this run.
    """
    run = study.run(index)
    if is_done(run):
        return Outcome(index, "done", "already finished")
    with run_lock(run.dir) as mine:
        if not mine:
            return Outcome(
                index, "busy", f"being trained by {lock_holder(run.dir) or 'another process'} (its lock is held)"
            )
        if is_done(run):  # finished by another process while we waited for the lock
            return Outcome(index, "done", "already finished")
        import torch

        torch.set_num_threads(max(1, threads))
        start = time.monotonic()
        failure = None
        with _output_to(run.dir / TRAIN_LOG):
            print(f"=== {run.name}: attempt {attempt}, pid {os.getpid()} on {socket.gethostname()}, "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {threads} torch thread(s) ===", flush=True)
            try:
                train(study.config(run), run.dir, tensorboard_log=str(run.dir / "tb"))
            except BaseException as exc:  # noqa: BLE001 - a run's failure must not take the study down
                traceback.print_exc()
                failure = f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]
                if isinstance(exc, KeyboardInterrupt):
                    raise
        if failure is not None:
            record_failure(run, failure)
            outcome = Outcome(index, "failed", failure)
        else:
            (run.dir / ERROR_LOG).unlink(missing_ok=True)
            outcome = Outcome(index, "done", f"trained in {_duration(time.monotonic() - start)}")
    return outcome


def _duration(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def index_from_env() -> int:
    """The array index the scheduler gave this job: ``$PBS_ARRAY_INDEX`` (PBS Pro) or ``$SLURM_ARRAY_TASK_ID``."""
    for var in ("PBS_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"):
        value = os.environ.get(var)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise DimattnError(f"${var} is {value!r}, not an integer") from None
    raise DimattnError("no --index given and neither $PBS_ARRAY_INDEX nor $SLURM_ARRAY_TASK_ID is set; "
                       "give --index N (0-based run number)")


def run_one(root: str | Path, index: int | None = None, threads: int = 1, retries: int = 0) -> Outcome:
    """What an array job runs: run ``index`` (default: the scheduler's index), retried up to ``retries`` times."""
    study = Study.load(root, validate=False)
    index = index_from_env() if index is None else index
    run = study.run(index)
    study.check_unchanged([run])
    outcome = Outcome(index, "failed")
    for attempt in range(1, retries + 2):
        outcome = execute_run(study, index, threads, attempt=f"{attempt}/{retries + 1}")
        # one line per attempt in the scheduler's log; the run's own output is in its train.log
        print(f"run {index} {run.name}: {outcome.state}: {outcome.message}", flush=True)
        if outcome.state != "failed":
            break
    return outcome


def default_threads() -> int:
    """Torch threads per run: 1 on small machines, 2 where cores are plenty (the PPO update uses them;
    stepping the Atari envs does not)."""
    return 1 if usable_cores() < 8 else 2

