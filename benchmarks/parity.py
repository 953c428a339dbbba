"""Learning parity: the fast engine learns what the SB3 engine learns (issue 3, item 5).

Trains NA on Breakout with both engines (same config, same seeds, SPEC §4 hyperparameters), then
plots both evaluation curves (SPEC protocol: whole games, raw score, stochastic policy) and prints
a table. Runs are resumable: rerun the same command after an interruption.

    PYTHONPATH=src python benchmarks/parity.py                      # 1M steps, seed 0, both engines
    PYTHONPATH=src python benchmarks/parity.py --steps 500000 --seeds 0 1 --eval-freq 50000
    PYTHONPATH=src python benchmarks/parity.py --engines fast --seeds 0  # one engine (e.g. in parallel)
    PYTHONPATH=src python benchmarks/parity.py --plot-only           # figure + table from what exists
    PYTHONPATH=src python benchmarks/parity.py --engines fast --pack 2 --seeds 0 1   # a pack of 2 (fast-pack2)
    PYTHONPATH=src python benchmarks/parity.py --engines fast --label fast-h100      # name the machine

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
LEVER_COLORS = ("tab:green", "tab:red", "tab:purple")


def run_dir(out: Path, label: str, seed: int) -> Path:
    return out / f"{label}_seed{seed}"


def train_one(args: argparse.Namespace, engine: str, seed: int) -> None:
    from dimattn.engines.config import build_config
    from dimattn.engines.train import train

    config = build_config(args.game, agent=args.agent, seed=seed, n_timesteps=args.steps, engine=engine,
                          eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, save_freq=args.save_freq)
    label = args.label or engine
    print(f"== {engine} seed {seed}: {args.agent} on {args.game}, {args.steps:,} steps", flush=True)
    speed = None
    if engine == "fast" and args.fast_levers:  # non-default CPU levers (e.g. bf16), to check they keep the learning
        label = "fast+" + "+".join(args.fast_levers)
        speed = {name: True for name in args.fast_levers}
    train(config, run_dir(args.out, label, seed), tensorboard_log=str(args.out / "tb"), progress=args.progress,
          verbose=1, speed=speed)


def train_pack(args: argparse.Namespace, seeds: list[int]) -> None:
    """``seeds`` trained together as one pack (dimattn.engines.train.train_pack), label fast-pack<K>."""
    from dimattn.engines.config import build_config
    from dimattn.engines.train import train_pack

    label = args.label or f"fast-pack{args.pack}"
    configs = [build_config(args.game, agent=args.agent, seed=s, n_timesteps=args.steps, engine="fast",
                            eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, save_freq=args.save_freq)
               for s in seeds]
    print(f"== pack of seeds {seeds}: {args.agent} on {args.game}, {args.steps:,} steps each", flush=True)
    train_pack(configs, [run_dir(args.out, label, s) for s in seeds], tensorboard_log=str(args.out / "tb"),
               progress=args.progress, verbose=1)


def labels(out: Path) -> list[str]:
    """Run labels on disk: sb3, fast, then fast+<levers> variants."""
    found = {d.name.rsplit("_seed", 1)[0] for d in out.glob("*_seed*") if d.is_dir()}
    return [e for e in ENGINES if e in found] + sorted(found - set(ENGINES))


def load_curves(out: Path, label: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{seed: (timesteps (E,), mean score per evaluation (E,))} of the runs on disk."""
    curves = {}
    for d in sorted(out.glob(f"{label}_seed*")):
        f = d / "evaluations.npz"
        if f.is_file():
            with np.load(f) as z:
                curves[int(d.name.split("seed")[1])] = (z["timesteps"], z["results"].mean(axis=1))
    return curves


def load_training_scores(out: Path, label: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{seed: (steps (U,), rollout/ep_rew_mean (U,))}: the mean raw score of the last 100 whole training
    games after each update (TensorBoard), far denser than 10-game evaluations."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = {}
    for d in sorted((out / "tb").glob(f"*/{label}_seed*_1")):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        if "rollout/ep_rew_mean" in acc.Tags()["scalars"]:
            events = acc.Scalars("rollout/ep_rew_mean")
            seed = int(d.name.rsplit("_seed", 1)[1].split("_")[0])
            curves[seed] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return curves


def report(out: Path, window: float, upto: int | None = None) -> str:
    """Write parity.png and parity.md; return the Markdown table.

    Runs may be unfinished, so the table compares every run over the steps all runs have reached:
    the SPEC score (mean of all evaluations) and the mean of the evaluations in the last ``window``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {label: load_curves(out, label) for label in labels(out)}
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return "no evaluations yet"
    common = upto or min(int(steps.max()) for curves in runs.values() for steps, _ in curves.values())
    fig, (ax, ax_train) = plt.subplots(1, 2, figsize=(13, 4.2))
    rows = [f"Compared over the first {common:,} steps" + (" (reached by every run)." if upto is None else "."), "",
            f"| run | seeds | mean of all evaluations (per seed) | mean of the last {window:.0%} (per seed) "
            f"| training score, last {window:.0%} (per seed) |",
            "|---|---|---|---|---|"]
    for i, (label, curves) in enumerate(runs.items()):
        color = COLORS.get(label, LEVER_COLORS[i % len(LEVER_COLORS)])
        whole, late = [], []
        for steps, scores in curves.values():
            ax.plot(steps, scores, color=color, alpha=0.35, lw=1)
            keep = steps <= common  # (E,)
            whole.append(float(scores[keep].mean()))
            window_scores = scores[keep & (steps >= common * (1 - window))]
            late.append(float(window_scores.mean()) if len(window_scores) else float("nan"))
        n = min(len(s) for s, _ in curves.values())
        steps = next(iter(curves.values()))[0][:n]
        stack = np.stack([c[1][:n] for c in curves.values()])  # (seeds, E)
        ax.plot(steps, stack.mean(0), color=color, lw=2.2, label=f"{label} ({len(curves)} seed(s))")
        if len(curves) > 1:
            ax.fill_between(steps, stack.min(0), stack.max(0), color=color, alpha=0.15)
        def fmt(xs: list[float]) -> str:  # a seed that has not reached the window shows "—"
            done = [x for x in xs if np.isfinite(x)]
            mean = f"{np.mean(done):.2f}" if done else "—"
            return f"{mean} ({', '.join(f'{x:.2f}' if np.isfinite(x) else '—' for x in xs)})"

        train_late = []
        for seed, (steps_t, score_t) in sorted(load_training_scores(out, label).items()):
            keep = steps_t <= common
            ax_train.plot(steps_t[keep], score_t[keep], color=color, alpha=0.8, lw=1,
                          label=f"{label}" if seed == min(curves) else None)
            in_window = keep & (steps_t >= common * (1 - window))
            train_late.append(float(score_t[in_window].mean()) if in_window.any() else float("nan"))
        rows.append(f"| {label} | {len(curves)} | {fmt(whole)} | {fmt(late)} | "
                    f"{fmt(train_late) if train_late else '—'} |")
    for axis, ylabel, title in (
            (ax, "evaluation score (whole games, raw)", "evaluations: mean score (line: seed mean, band: min-max)"),
            (ax_train, "training score (last 100 whole games, raw)",
             "training games: rollout/ep_rew_mean, one line per seed")):
        axis.axvline(common, color="grey", lw=0.8, ls=":")
        axis.set(xlabel="environment steps", ylabel=ylabel)
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle("NA on Breakout: SB3 engine vs fast engine (same config, seeds and evaluation protocol)")
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
    p.add_argument("--fast-levers", nargs="+", choices=("bf16", "channels_last", "compile"), default=[],
                   help="train the fast engine with these CPU levers on (run label fast+<levers>)")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--label", default=None, help="run label (default: the engine, or fast-pack<K>)")
    p.add_argument("--pack", type=int, default=0, help="train the seeds in packs of K (fast engine)")
    p.add_argument("--upto", type=int, default=None,
                   help="compare over the first N steps (default: the steps every run has reached)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        import torch

        torch.set_num_threads(args.torch_threads)
        if args.pack:
            for i in range(0, len(args.seeds), args.pack):
                train_pack(args, args.seeds[i:i + args.pack])
        else:
            for seed in args.seeds:
                for engine in args.engines:
                    train_one(args, engine, seed)
    print(report(args.out, args.window, args.upto))
    print(f"figure: {args.out / 'parity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
