"""The training progress bar, one for both engines: steps done of the total, steps/s, recent game score.

The fast engine moves it once per rollout, the SB3 engine (through :class:`ProgressCallback`) at every
step; both report total environment steps, which can pass the total by part of a rollout at the end,
so the bar is clamped to its total (it must read 50.0k/50.0k, not 51.2k/50.0k with its percentage gone).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class ProgressBar:
    """A tqdm bar of environment steps from ``initial`` (a resumed run's steps) to ``total``."""

    def __init__(self, total: int, initial: int = 0) -> None:
        from tqdm import tqdm

        self.total = int(total)
        self.bar = tqdm(total=self.total, initial=min(int(initial), self.total), unit="step", unit_scale=True,
                        dynamic_ncols=True, smoothing=0.1)

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
