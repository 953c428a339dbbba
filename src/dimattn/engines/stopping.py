"""Stopping cleanly on a signal: the step in progress is finished, a checkpoint written, nothing else lost.

A cluster ends a job with SIGTERM (its walltime, ``scancel``, a preemption), then SIGKILL a little later
(Slurm's ``KillWait``, 30 s by default; PBS Pro's ``kill_delay``, 10 s); Slurm can also warn ahead of the
walltime with SIGUSR1 (``#SBATCH --signal=B:USR1@120``, which the study's job scripts ask for).

While runs train (inside :func:`listening`, which the engines enter around their training loop), either
signal only records that a stop was asked for (:func:`requested`). The loops look after each iteration (the
fast engine: after a rollout and its update; the SB3 engine: at its next environment step), write a
checkpoint of every run they train, exactly like a periodic one (so a resume from it is like any other),
and raise :class:`Stopped`. ``dimattn`` then exits with :data:`EXIT_STOPPED`, and a study marks the run
stopped, resumable. Outside training, :func:`terminate_on_sigterm` makes SIGTERM raise :class:`Terminated`,
which the CLI reports in one line (exit 143), as it does Ctrl-C.

Signals can be caught in the main thread only; elsewhere (a Ray task's thread) :func:`listening` changes
nothing and the process ends as it would have.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_STOPPED = 75  # EX_TEMPFAIL (sysexits.h): stopped on request with a checkpoint; run it again to go on
EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended

_asked: list[str] = []  # the signals received while listening, first first
_depth = [0]  # nested listening() blocks


class Stopped(Exception):
    """Training stopped on a signal after writing ``checkpoints`` (one per run) at ``steps``."""

    def __init__(self, signal_name: str, steps: int, checkpoints: Sequence[Path]) -> None:
        self.signal, self.steps, self.checkpoints = signal_name, steps, list(checkpoints)
        name = self.checkpoints[0].name if self.checkpoints else "its checkpoint"
        where = name if len(self.checkpoints) <= 1 else f"each run's {name}"
        super().__init__(f"stopped by {signal_name} at {steps:,} steps, after saving {where} (resumable)")


class Terminated(BaseException):  # like KeyboardInterrupt: `except Exception` does not swallow it
    """SIGTERM outside training."""


def requested() -> str | None:
    """The name of the signal that asked for a stop in the current :func:`listening` block, or None."""
    return _asked[0] if _asked else None


def _note(signum: int, frame: FrameType | None) -> None:
    _asked.append(signal.Signals(signum).name)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by {signal.Signals(signum).name}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def listening() -> Iterator[None]:
    """Within the block, SIGTERM and SIGUSR1 ask for a clean stop (:func:`requested`) instead of ending
    the process; the handlers before it come back after it."""
    if not _in_main_thread():
        yield
        return
    saved: dict[int, Any] = {}
    if _depth[0] == 0:
        _asked.clear()
        saved = {s: signal.signal(s, _note) for s in SIGNALS}
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextmanager
def evaluating() -> Iterator[None]:
    """Around an evaluation inside :func:`listening`: Ctrl-C (SIGINT) asks for the same clean stop as SIGTERM.
    The evaluation (minutes of play) finishes and is recorded, then the loop checkpoints and stops; a
    KeyboardInterrupt would have lost it and every step since the last checkpoint."""
    if not _in_main_thread() or _depth[0] == 0:
        yield
        return
    saved = signal.signal(signal.SIGINT, _note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def terminate_on_sigterm() -> Any:
    """From now on, SIGTERM outside training raises :class:`Terminated`; returns the handler it replaced
    (for :func:`restore`), or None outside the main thread (nothing changed)."""
    return signal.signal(signal.SIGTERM, _raise) if _in_main_thread() else None


def restore(handler: Any) -> None:
    """Put back the SIGTERM handler :func:`terminate_on_sigterm` replaced."""
    if handler is not None and _in_main_thread():
        signal.signal(signal.SIGTERM, handler)
