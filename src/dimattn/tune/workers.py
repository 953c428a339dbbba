"""Workers of one search: who is alive, what a killed one left, and the processes, array tasks and Ray tasks
that run trials against the same storage.

Optuna's storage (a journal file with its own lock, or a database) is what the workers share; each asks it for
the next trial. A worker killed mid-trial leaves that trial RUNNING in the storage, and a journal file has no
heartbeat to tell it from a live one. So each worker holds a lock (``flock``, :mod:`dimattn.study.locks`) on
``workers/<id>/`` for its life and records its id on every trial it starts; the kernel frees the lock when the
worker dies, however it dies. Before each trial, a worker takes ``workers/.lock`` and marks each RUNNING trial
whose worker's lock is free as failed, and enqueues its parameters again (Optuna's
``RetryHeartbeatStaleTrialCallback``): the retried trial finds the runs in ``trials/<key>/`` and resumes them
from their checkpoints. (On a cluster, the tune folder must be on a file system whose ``flock`` every node
sees, as for a study.)
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dimattn.study.locks import lock_holder, run_lock

WORKERS = "workers"


@contextmanager
def alive(root: Path) -> Iterator[str]:
    """Hold this worker's lock for the ``with`` body; yields the worker's id (host, pid and a random tail)."""
    worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    folder = root / WORKERS / worker
    try:
        with run_lock(folder) as held:
            assert held  # a fresh folder: nobody else can hold it
            yield worker
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def recover(study: Any, root: Path) -> list[int]:
    """Mark the trials that dead workers left RUNNING as failed and enqueue their parameters again, once
    (under ``workers/.lock``, so two workers never retry the same trial). Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    lost = []
    with run_lock(root / WORKERS, wait=600) as held:
        if not held:
            return []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker is None or lock_holder(root / WORKERS / str(worker)) is not None:
                continue  # alive (or asked for a trial an instant ago and not yet said who it is)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)
            shutil.rmtree(root / WORKERS / str(worker), ignore_errors=True)
            lost.append(trial.number)
    return lost
