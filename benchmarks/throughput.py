"""Training throughput: SB3 engine vs fast engine vs the EnvPool ceiling (issue 3, item 4).

In one invocation, for each agent (default NA and CWCA): trains the same game for the same steps
with the SB3 engine and with the fast engine (no evaluation, no checkpoints), and steps EnvPool with
random actions (the machine's ceiling for these envs). Each measurement runs in its own process,
so thread settings cannot leak between them. Prints steps/s and the ratios side by side.

    PYTHONPATH=src python benchmarks/throughput.py                       # Breakout, 65,536 steps
    PYTHONPATH=src python benchmarks/throughput.py --steps 16384 --agents NA CWCA SWA CWRA CWRCA
    PYTHONPATH=src python benchmarks/throughput.py --levers              # the fast engine's CPU levers

Wall time per run includes building the envs and the model (a few seconds), for both engines alike.
The machine may be shared: compare the ratios printed by one invocation, not numbers across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Fast-engine variants measured by ``--levers``: name -> overrides of dimattn.ppo.Speed.
LEVERS: dict[str, dict] = {
    "default": {},
    "no overlap (1 EnvPool group)": {"groups": 1},
    "torch threads 2": {"torch_threads": 2},
    "EnvPool threads 2": {"env_threads": 2},
    "channels-last": {"channels_last": True},
    "bf16 autocast": {"bf16": True},
    "channels-last + bf16": {"channels_last": True, "bf16": True},
    "torch.compile": {"compile": True},
}


def measure_training(engine: str, game: str, agent: str, steps: int, speed: dict) -> float:
    """steps/s of one training run (in this process)."""
    from dimattn.config import build_config

    config = build_config(game, agent=agent, n_timesteps=steps, eval_freq=0, save_freq=0, engine=engine)
    run_dir = Path(tempfile.mkdtemp(prefix="dimattn-throughput-"))
    try:
        t0 = time.perf_counter()
        if engine == "fast":
            from dimattn.ppo import DEFAULT_SPEED, train_fast

            train_fast(config, run_dir, speed=dataclasses.replace(DEFAULT_SPEED, **speed))
        else:
            from dimattn.sb3_engine import train_sb3

            train_sb3(config, run_dir)
        return steps / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def measure_ceiling(game: str, steps: int, n_envs: int = 16) -> float:
    """steps/s of EnvPool alone (all cores, random actions, no learner)."""
    import numpy as np

    from dimattn.envpool_envs import make_pool

    pool = make_pool(game, n_envs, seed=0, training=True)
    n_actions = int(pool.action_space.n)
    rng = np.random.default_rng(0)
    pool.async_reset()
    pool.recv()
    ids = np.arange(n_envs, dtype=np.int32)
    t0 = time.perf_counter()
    for _ in range(steps // n_envs):
        pool.send(rng.integers(0, n_actions, n_envs).astype(np.int32), ids)
        pool.recv()
    rate = steps / (time.perf_counter() - t0)
    pool.close()
    return rate


def child(spec: dict) -> float:
    if spec["kind"] == "ceiling":
        return measure_ceiling(spec["game"], spec["steps"])
    return measure_training(spec["engine"], spec["game"], spec["agent"], spec["steps"], spec.get("speed", {}))


def run_child(spec: dict) -> float:
    """Run one measurement in a fresh interpreter; returns steps/s."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measurement {spec} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def engines_table(args: argparse.Namespace) -> str:
    ceiling = run_child({"kind": "ceiling", "game": args.game, "steps": args.steps})
    print(f"EnvPool ceiling (random actions, 16 envs): {ceiling:,.0f} steps/s", flush=True)
    rows = ["| agent | SB3 engine steps/s | fast engine steps/s | fast / SB3 | fast / ceiling | fast / fast NA |",
            "|---|---|---|---|---|---|"]
    fast_na = None
    for agent in args.agents:
        rate = {}
        for engine in ("sb3", "fast"):
            rate[engine] = run_child({"kind": "train", "engine": engine, "game": args.game,
                                      "agent": agent, "steps": args.steps})
            print(f"{agent:6s} {engine:4s}: {rate[engine]:,.0f} steps/s", flush=True)
        fast_na = rate["fast"] if agent == "NA" else fast_na
        rel = f"{rate['fast'] / fast_na:.2f}" if fast_na else "—"
        rows.append(f"| {agent} | {rate['sb3']:,.0f} | {rate['fast']:,.0f} | {rate['fast'] / rate['sb3']:.2f} "
                    f"| {rate['fast'] / ceiling:.2f} | {rel} |")
    return f"EnvPool ceiling: {ceiling:,.0f} steps/s\n\n" + "\n".join(rows)


def levers_table(args: argparse.Namespace) -> str:
    rows = ["| fast engine variant | steps/s | vs default |", "|---|---|---|"]
    base = None
    for name, speed in LEVERS.items():
        rate = run_child({"kind": "train", "engine": "fast", "game": args.game, "agent": args.agents[0],
                          "steps": args.steps, "speed": speed})
        base = base or rate
        print(f"{name:32s}: {rate:,.0f} steps/s", flush=True)
        rows.append(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=65_536)
    p.add_argument("--agents", nargs="+", default=["NA", "CWCA"])
    p.add_argument("--levers", action="store_true", help="measure the fast engine's CPU levers instead")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(child(json.loads(args.child)))
        return 0
    table = levers_table(args) if args.levers else engines_table(args)
    header = (f"{args.game}, {args.steps:,} steps per run, agents {' '.join(args.agents)}; "
              f"`python benchmarks/throughput.py {' '.join(sys.argv[1:])}`".strip())
    print("\n" + header + "\n\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("levers.md" if args.levers else "throughput.md")).write_text(header + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
