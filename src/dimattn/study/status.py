"""The state of each run of a study, read from its folder: pending / running / done / failed / stopped
(on a signal, after writing its checkpoint: resumable)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimattn.engines.rundir import EVALUATIONS, EvalHistory, checkpoints, final_model_path
from dimattn.errors import DimattnError
from dimattn.games import v4_id
from dimattn.study.locks import lock_holder
from dimattn.study.spec import ERROR_LOG, STOP_LOG, Run, Study

STATES = ("pending", "running", "done", "failed", "stopped")


@dataclass
class RunStatus:
    run: Run
    state: str  # one of STATES
    steps: int  # environment steps a resume keeps: the newest checkpoint (the total once done)
    last_score: float | None  # mean score of the last evaluation
    note: str = ""  # who holds the lock, or the error's summary
    eval_steps: int | None = None  # the step of the last evaluation, if any


def is_done(run: Run) -> bool:
    return final_model_path(run.dir, v4_id(run.game)).is_file()


def _on_disk(run: Run) -> tuple[int, int | None, float | None, str]:
    """(newest checkpoint's steps, last evaluation's step, its mean score, problem) of a run folder."""
    steps = max((s for s, _ in checkpoints(run.dir)), default=0) if run.dir.is_dir() else 0
    try:
        history = EvalHistory.load(run.dir)  # empty if the run has not evaluated yet
    except DimattnError:  # a torn file cannot happen (atomic writes); a foreign one can
        return steps, None, None, f"{EVALUATIONS} unreadable"
    if not history.timesteps:
        return steps, None, None, ""
    return steps, history.timesteps[-1], float(np.mean(history.results[-1])), ""


def progress_on_disk(run: Run) -> tuple[int, float | None, str]:
    """(steps reached, last evaluation's mean score, problem): the newest checkpoint or evaluation,
    whichever is later, so that a live board sees training move between checkpoints."""
    steps, eval_steps, score, problem = _on_disk(run)
    return max(steps, eval_steps or 0), score, problem


def run_status(study: Study, run: Run) -> RunStatus:
    # steps: what a resume keeps (the newest checkpoint); evaluations past it are redone on resume
    steps, eval_steps, score, problem = _on_disk(run)
    if is_done(run):
        return RunStatus(run, "done", max(steps, study.spec.n_timesteps), score, problem, eval_steps)
    holder = lock_holder(run.dir) if run.dir.is_dir() else None
    if holder is not None:
        words = holder.split()
        note = f"pid {words[0]} on {words[1]} since {' '.join(words[2:])}" if len(words) >= 3 else holder
        return RunStatus(run, "running", steps, score, note, eval_steps)
    error = run.dir / ERROR_LOG
    if error.is_file():
        first = error.read_text(errors="replace").splitlines()[:1]
        return RunStatus(run, "failed", steps, score, (first[0] if first else "error.log")[:160], eval_steps)
    stop = run.dir / STOP_LOG
    if stop.is_file():
        first = stop.read_text(errors="replace").splitlines()[:1]
        return RunStatus(run, "stopped", steps, score, (first[0] if first else STOP_LOG)[:160], eval_steps)
    return RunStatus(run, "pending", steps, score, problem, eval_steps)


def statuses(study: Study) -> list[RunStatus]:
    return [run_status(study, r) for r in study.runs]


