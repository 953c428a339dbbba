"""What ``dimattn tune`` costs per trial beyond the training of the trial's runs.

Runs a real search (``python -m dimattn tune``, one worker, tiny runs of NA on Breakout), then splits its wall
time: each run's own training is the span from its ``config.yml`` (written as ``train`` starts, in the run's
process) to its final model; everything else, divided by the trials, is the tuning overhead per trial: the
sampler, the trial's study folder, starting the run's process, reading evaluations, Optuna's storage, the
tables after each trial and the page at the end, and the process's own start.

    python benchmarks/tune_overhead.py --trials 4 --steps 512

Prints one Markdown table (docs/benchmarks.md records it). Needs the tune extra (optuna, plotly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACE = "n_steps: [64]\nbatch_size: [64]\nn_epochs: [1]\nclip_range: null\nmax_grad_norm: null\n" \
        "one_minus_gamma: null\none_minus_gae_lambda: null\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=512, help="environment steps per run")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp, "space.yml")
        space.write_text(SPACE)
        cmd = [sys.executable, "-m", "dimattn", "tune", "--env", "Breakout", "--agent", "NA", "-f", tmp,
               "--space", str(space), "-n", str(a.steps), "--n-evaluations", "2", "--eval-episodes", "1",
               "--threads", "1", "--hyperparams", "n_envs:2", "--n-trials", str(a.trials), "--pruner", "none",
               "--sampler", "random"]
        start = time.time()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        end = time.time()
        runs = [c.parent for c in Path(tmp, "tune").glob("*/trials/*/runs/*/*/seed*/config.yml")]
        spans = sorted(((r / "config.yml").stat().st_mtime, (r / "BreakoutNoFrameskip-v4.zip").stat().st_mtime)
                       for r in runs)
    assert len(spans) == a.trials, f"expected {a.trials} runs, found {len(spans)}"
    wall = end - start
    training = sum(e - s for s, e in spans)
    between = [s2 - e1 for (_, e1), (s2, _) in zip(spans, spans[1:])]  # one run's end to the next one's start
    once = (spans[0][0] - start) + (end - spans[-1][1])  # the command's start and its last outputs
    print("| trials | steps per run | wall (s) | training per trial (s) | overhead per trial, between trials (s) | "
          "once per command (s) | all overhead per trial (s) |\n|---|---|---|---|---|---|---|\n"
          f"| {a.trials} | {a.steps:,} | {wall:.1f} | {training / a.trials:.1f} | {sum(between) / len(between):.1f} | "
          f"{once:.1f} | {(wall - training) / a.trials:.1f} |")


if __name__ == "__main__":
    main()
