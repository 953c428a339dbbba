"""The state of each run of a study, read from its folder: pending / running / done / failed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimattn.engines.rundir import EVALUATIONS, EvalHistory, checkpoints, final_model_path
from dimattn.errors import DimattnError
from dimattn.games import v4_id
from dimattn.study.locks import lock_holder
from dimattn.study.spec import ERROR_LOG, Run, Study

STATES = ("pending", "running", "done", "failed")


@dataclass
class RunStatus:
    run: Run
    state: str  # one of STATES
    steps: int  # environment steps reached on disk (last checkpoint or evaluation)
    last_score: float | None  # mean score of the last evaluation
    note: str = ""  # who holds the lock, or the error's summary


def is_done(run: Run) -> bool:
    return final_model_path(run.dir, v4_id(run.game)).is_file()


def progress_on_disk(run: Run) -> tuple[int, float | None, str]:
    """(steps, last evaluation's mean score, problem) from the run's checkpoints and ``evaluations.npz``."""
    steps = max((s for s, _ in checkpoints(run.dir)), default=0) if run.dir.is_dir() else 0
    try:
        history = EvalHistory.load(run.dir)  # empty if the run has not evaluated yet
    except DimattnError:  # a torn file cannot happen (atomic writes); a foreign one can
        return steps, None, f"{EVALUATIONS} unreadable"
    if not history.timesteps:
        return steps, None, ""
    return max(steps, history.timesteps[-1]), float(np.mean(history.results[-1])), ""


def run_status(study: Study, run: Run) -> RunStatus:
    steps, score, problem = progress_on_disk(run)
    if is_done(run):
        return RunStatus(run, "done", max(steps, study.spec.n_timesteps), score, problem)
    holder = lock_holder(run.dir) if run.dir.is_dir() else None
    if holder is not None:
        words = holder.split()
        note = f"pid {words[0]} on {words[1]} since {' '.join(words[2:])}" if len(words) >= 3 else holder
        return RunStatus(run, "running", steps, score, note)
    error = run.dir / ERROR_LOG
    if error.is_file():
        return RunStatus(run, "failed", steps, score, error.read_text(errors="replace").splitlines()[0][:160])
    return RunStatus(run, "pending", steps, score, problem)


def statuses(study: Study) -> list[RunStatus]:
    return [run_status(study, r) for r in study.runs]


