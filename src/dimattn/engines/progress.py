"""What a training shows while it runs: the progress bar (both engines), and the fast engine's report.

The progress bar shows steps done of the total, steps/s, recent game score. The fast engine moves it
once per rollout, the SB3 engine (through :class:`ProgressCallback`) at every step; both report total
environment steps, which can pass the total by part of a rollout at the end,
so the bar is clamped to its total (it must read 50.0k/50.0k, not 51.2k/50.0k with its percentage gone).

:class:`TrainingReport` is the fast engine's after each update: every run's TensorBoard scalars under SB3's
names (so TensorBoard shows both engines' runs side by side), the bar or a status line every 30 s, and
the closing line.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dimattn.console import progress


class ProgressBar:
    """A tqdm bar of environment steps from ``initial`` (a resumed run's steps) to ``total``; plain lines
    every 30 s when the output is not a terminal (:func:`dimattn.console.progress`)."""

    def __init__(self, total: int, initial: int = 0) -> None:
        self.total = int(total)
        self.bar = progress(total=self.total, initial=min(int(initial), self.total), desc="training", unit="step",
                            unit_scale=True, dynamic_ncols=True, smoothing=0.1)

    def update_to(self, steps: int, scores: Iterable[float] | None = None) -> None:
        """Move the bar to ``steps`` (clamped to the total); ``scores``: the recent games' scores, if any."""
        steps = min(int(steps), self.total)
        scores = list(scores or [])
        if scores:
            self.bar.set_postfix_str(f"game score {np.mean(scores):.1f}", refresh=False)
        if steps > self.bar.n:
            self.bar.update(steps - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def sb3_progress_callback(total: int) -> Any:
    """An SB3 callback driving a :class:`ProgressBar` (instead of SB3's own rich bar, so both engines
    show the same bar). Made on demand, so the fast engine never imports Stable-Baselines3 for it."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProgressCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.bar: ProgressBar | None = None

        def _on_training_start(self) -> None:
            self.bar = ProgressBar(total, self.num_timesteps)

        def _on_step(self) -> bool:
            self.bar.update_to(self.num_timesteps)
            return True

        def _on_rollout_end(self) -> None:  # SB3's recent games (ep_info_buffer: Monitor's raw game scores)
            self.bar.update_to(self.num_timesteps, [info["r"] for info in self.model.ep_info_buffer])

        def _on_training_end(self) -> None:
            self.bar.close()

    return ProgressCallback()


class TrainingReport:
    """The fast engine's logs of K runs trained together from step ``start``: ``writers`` are each run's
    TensorBoard SummaryWriter (or None); ``progress`` shows the bar, ``verbose`` status lines."""

    def __init__(self, writers: Sequence[Any], total: int, start: int, progress: bool, verbose: int) -> None:
        self.writers, self.k, self.start, self.verbose = list(writers), len(writers), start, verbose
        self.bar = ProgressBar(self.k * total, self.k * start) if progress else None
        self.total = total
        self.start_clock()

    def start_clock(self) -> None:
        """steps/s count from now (the training loop's start: building envs and networks is left out)."""
        self.t0 = self.last_status = time.perf_counter()

    def after_update(self, steps: int, stats: Sequence[Any], lr: float, clip: float,
                     finished: Sequence[deque[tuple[float, int]]], n_updates: Sequence[int]) -> None:
        """``stats``: each run's :class:`dimattn.engines.ppo.UpdateStats`; ``finished``: each run's recent
        games (score, frames)."""
        fps = self.k * (steps - self.start) / (time.perf_counter() - self.t0)
        for writer, s, games, n in zip(self.writers, stats, finished, n_updates):
            if writer is not None:
                log_update(writer, steps, s, lr, clip, fps / self.k, n, games)
        if self.bar is not None:
            self.bar.update_to(self.k * steps, [score for score, _ in finished[0]])
        elif self.verbose and time.perf_counter() - self.last_status > 30:
            self.last_status = time.perf_counter()
            score = f", game score {np.mean([s for s, _ in finished[0]]):.1f}" if finished[0] else ""
            runs = f" each, {fps:,.0f} steps/s over {self.k} runs" if self.k > 1 else f", {fps:,.0f} steps/s"
            print(f"{steps:,}/{self.total:,} steps{runs}{score}", flush=True)

    def done(self, steps: int, eval_seconds: float) -> None:
        if self.verbose:
            wall = time.perf_counter() - self.t0
            print(f"trained {self.k} run(s) to {steps:,} steps in {wall:,.0f} s, {eval_seconds:,.0f} s of it "
                  f"evaluating ({eval_seconds / max(wall, 1e-9):.0%})", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for writer in self.writers:
            if writer is not None:
                writer.close()


def tb_writer(tensorboard_log: str | None, env_id: str, run_dir: Path) -> Any:
    """A run's SummaryWriter, where SB3 would write it (``<root>/<EnvId>/<run folder>_1``), or None."""
    if tensorboard_log is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(tensorboard_log) / env_id / f"{Path(run_dir).name}_1"))


def log_update(writer: Any, steps: int, stats: Any, lr: float, clip: float, fps: float, n_updates: int,
               finished: deque[tuple[float, int]]) -> None:
    """One update's scalars under SB3's names; ``stats``: a :class:`dimattn.engines.ppo.UpdateStats`."""
    scalars = {"train/policy_gradient_loss": stats.pg, "train/value_loss": stats.value,
               "train/entropy_loss": stats.entropy, "train/approx_kl": stats.kl,
               "train/clip_fraction": stats.clipfrac, "train/learning_rate": lr,
               "train/loss": stats.loss, "train/explained_variance": stats.explained_variance,
               "train/clip_range": clip, "train/n_updates": n_updates, "time/fps": fps}
    if finished:
        scalars["rollout/ep_rew_mean"] = float(np.mean([s for s, _ in finished]))
        scalars["rollout/ep_len_mean"] = float(np.mean([n for _, n in finished]))
    for name, value in scalars.items():
        writer.add_scalar(name, value, steps)
