"""Learning parity: the fast engine learns what the SB3 engine learns (issue 3, item 5).

Trains NA on Breakout with both engines (same config, same seeds, SPEC §4 hyperparameters), then
plots both evaluation curves (SPEC protocol: whole games, raw score, stochastic policy) and prints
a table. Runs are resumable: rerun the same command after an interruption.

    PYTHONPATH=src python benchmarks/parity.py                      # 1M steps, seed 0, both engines
    PYTHONPATH=src python benchmarks/parity.py --steps 500000 --seeds 0 1 --eval-freq 50000
    PYTHONPATH=src python benchmarks/parity.py --engines fast --seeds 0  # one engine (e.g. in parallel)
    PYTHONPATH=src python benchmarks/parity.py --plot-only           # figure + table from what exists

Outputs under ``--out`` (default benchmarks/out/parity): one run folder per (engine, seed),
``parity.png`` and ``parity.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ENGINES = ("sb3", "fast")
COLORS = {"sb3": "tab:blue", "fast": "tab:orange"}


def run_dir(out: Path, engine: str, seed: int) -> Path:
    return out / f"{engine}_seed{seed}"


def train_one(args: argparse.Namespace, engine: str, seed: int) -> None:
    from dimattn.config import build_config
    from dimattn.train import train

    config = build_config(args.game, agent=args.agent, seed=seed, n_timesteps=args.steps, engine=engine,
                          eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, save_freq=args.save_freq)
    print(f"== {engine} seed {seed}: {args.agent} on {args.game}, {args.steps:,} steps", flush=True)
    train(config, run_dir(args.out, engine, seed), tensorboard_log=str(args.out / "tb"), progress=args.progress,
          verbose=1)


def load_curves(out: Path, engine: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{seed: (timesteps (E,), mean score per evaluation (E,))} of the runs on disk."""
    curves = {}
    for d in sorted(out.glob(f"{engine}_seed*")):
        f = d / "evaluations.npz"
        if f.is_file():
            with np.load(f) as z:
                curves[int(d.name.split("seed")[1])] = (z["timesteps"], z["results"].mean(axis=1))
    return curves


def report(out: Path, window: float) -> str:
    """Write parity.png and parity.md; return the Markdown table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rows = ["| engine | seeds | evaluations | mean score, last {:.0%} of steps (per seed) |".format(window),
            "|---|---|---|---|"]
    for engine in ENGINES:
        curves = load_curves(out, engine)
        if not curves:
            continue
        finals = []
        for seed, (steps, scores) in curves.items():
            ax.plot(steps, scores, color=COLORS[engine], alpha=0.35, lw=1)
            late = steps >= steps.max() * (1 - window)
            finals.append(float(scores[late].mean()))
        n = min(len(s) for s, _ in curves.values())
        steps = next(iter(curves.values()))[0][:n]
        stack = np.stack([c[1][:n] for c in curves.values()])  # (seeds, E)
        ax.plot(steps, stack.mean(0), color=COLORS[engine], lw=2.2, label=f"{engine} ({len(curves)} seed(s))")
        if len(curves) > 1:
            ax.fill_between(steps, stack.min(0), stack.max(0), color=COLORS[engine], alpha=0.15)
        rows.append(f"| {engine} | {len(curves)} | {n} | {np.mean(finals):.2f} "
                    f"({', '.join(f'{f:.2f}' for f in finals)}) |")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation score (whole games, raw)")
    ax.set_title("NA on Breakout: SB3 engine vs fast engine")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "parity.png", dpi=110)
    table = "\n".join(rows)
    (out / "parity.md").write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--game", default="Breakout")
    p.add_argument("--agent", default="NA")
    p.add_argument("--eval-freq", type=int, default=100_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--save-freq", type=int, default=100_000, help="checkpoints, so a killed run resumes")
    p.add_argument("--window", type=float, default=0.2, help="share of the last steps averaged in the table")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads for both engines (1 is fastest on a busy 2-core machine)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/parity"))
    p.add_argument("--progress", action="store_true")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        import torch

        torch.set_num_threads(args.torch_threads)
        for seed in args.seeds:
            for engine in args.engines:
                train_one(args, engine, seed)
    print(report(args.out, args.window))
    print(f"figure: {args.out / 'parity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
