"""Training throughput: SB3 engine vs fast engine vs the EnvPool ceiling (issue 3, item 4).

In one invocation, for each agent (default NA and CWCA): trains the same game for the same steps
with the SB3 engine and with the fast engine (no evaluation, no checkpoints), and steps EnvPool with
random actions (the machine's ceiling for these envs). Each measurement runs in its own process,
so thread settings cannot leak between them. Prints steps/s and the ratios side by side.

    PYTHONPATH=src python benchmarks/throughput.py                       # Breakout, 65,536 steps
    PYTHONPATH=src python benchmarks/throughput.py --steps 16384 --agents NA CWCA SWA CWRA CWRCA
    PYTHONPATH=src python benchmarks/throughput.py --levers              # the fast engine's CPU levers
    PYTHONPATH=src python benchmarks/throughput.py --fast-agents --agents NA SWA CWRA CWCA CWRCA
    PYTHONPATH=src python benchmarks/throughput.py --packed --steps 16384   # a pack of 2 vs two runs at once
    PYTHONPATH=src python benchmarks/throughput.py --before OLD/src --steps 16384  # this tree vs another's

steps/s is each engine's own ``time/fps`` TensorBoard scalar at the end of the run (steps over the
time since its training loop started; building envs and model is left out, for both engines alike).
Measurements are interleaved and repeated (``--repeats``) and the median is shown, because the
machine may be shared: compare the ratios printed by one invocation, not numbers across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Fast-engine variants measured by ``--levers``: name -> overrides of dimattn.engines.speed.Speed.
LEVERS: dict[str, dict] = {
    "default: 2 EnvPool groups (overlap), torch's threads (1 while acting), channels-last, fp32": {},
    "no overlap (1 EnvPool group)": {"groups": 1},
    "1 torch thread": {"torch_threads": 1},
    "torch's threads while acting too": {"collect_threads": 0},
    "EnvPool threads 2": {"env_threads": 2},
    "contiguous (not channels-last)": {"channels_last": False},
    "bf16 autocast": {"bf16": True},
    "bf16 autocast, contiguous": {"bf16": True, "channels_last": False},
    "torch.compile (compile time included)": {"compile": True},
}


def measure_training(engine: str, game: str, agent: str, steps: int, speed: dict, torch_threads: int = 0,
                     k: int = 1) -> float:
    """steps/s of one training run, or of a pack of ``k`` (all members), in this process: the engine's
    last ``time/fps`` scalar (a pack member's, times k)."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dimattn.engines.config import build_config

    if torch_threads:
        torch.set_num_threads(torch_threads)
    config = build_config(game, agent=agent, n_timesteps=steps, eval_freq=0, save_freq=0, engine=engine)
    root = Path(tempfile.mkdtemp(prefix="dimattn-throughput-"))
    try:
        t0 = time.perf_counter()
        configs = [dataclasses.replace(config, seed=s) for s in range(k)]
        dirs = [root / f"run{s}" for s in range(k)]
        if hasattr(importlib.import_module("dimattn.engines.train"), "prepare"):  # this tree: one road
            from dimattn.engines.train import train_pack

            train_pack(configs, dirs, str(root / "tb"), speed=speed if engine == "fast" else None)
        else:
            _train_before(engine, configs, dirs, str(root / "tb"), speed)
        wall = steps / (time.perf_counter() - t0)
        events = sorted((root / "tb" / config.env_id).iterdir())[0]
        acc = EventAccumulator(str(events))
        acc.Reload()
        fps = acc.Scalars("time/fps")[-1].value
        print(f"wall clock incl. setup: {k * wall:,.0f} steps/s", file=sys.stderr)
        return k * float(fps)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _train_before(engine: str, configs: list, dirs: list[Path], tb: str, speed: dict) -> None:
    """The same training through a tree from before the one road (``--before``): its fast engine's own entry."""
    if engine == "sb3":
        from dimattn.engines.sb3 import train_sb3

        train_sb3(configs[0].resolve(), dirs[0], tb)
        return
    from dimattn.engines.fast import train_pack

    runs = [c.resolve() for c in configs]
    base = _speed_api().default_speed(runs[0].device, len(runs)) if len(runs) > 1 else _speed_api().DEFAULT_SPEED
    train_pack(runs, dirs, tb, speed=dataclasses.replace(base, **speed))


def _speed_api():
    """The module holding the fast engine's Speed defaults: engines.speed, or engines.fast in a tree from before
    the engine was split by job (``--before``)."""
    try:
        from dimattn.engines import speed
    except ImportError:
        from dimattn.engines import fast as speed
    return speed


def measure_ceiling(game: str, steps: int, n_envs: int = 16) -> float:
    """steps/s of EnvPool alone (all cores, random actions, no learner)."""
    import numpy as np

    from dimattn.envs.pool import make_pool

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


def multiply_adds_per_step(agent: str, n_epochs: int = 3, batch: int = 64) -> float:
    """The network's multiply-adds per env step in PPO: one forward to act, then ``n_epochs``
    forward + backward passes over each observation (counted by ``torch.utils.flop_counter``)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from dimattn.agents.networks import ActorCritic

    net, obs = ActorCritic(4, agent), torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)

    def count(backward: bool) -> float:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # MATH: countable matmuls
            logits, value = net(obs)
            if backward:
                (logits.sum() + value.sum()).backward()
        return counter.get_total_flops() / 2 / batch

    return count(False) + n_epochs * count(True)


def matmul_peak() -> float:
    """This machine's float32 matmul rate, GFLOP/s (torch.mm of 2048² matrices, torch's default threads)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    t0, reps = time.perf_counter(), 10
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * 2048**3 * reps / (time.perf_counter() - t0) / 1e9


def child(spec: dict) -> float:
    if spec["kind"] == "ceiling":
        return measure_ceiling(spec["game"], spec["steps"])
    if spec["kind"] == "matmul":
        return matmul_peak()
    return measure_training(spec["engine"], spec["game"], spec["agent"], spec["steps"], spec.get("speed", {}),
                            spec.get("torch_threads", 0), spec.get("k", 1))


def run_child(spec: dict) -> float:
    """Run one measurement in a fresh interpreter (importing dimattn from ``spec["src"]`` if given, else as
    this process does); returns steps/s."""
    env = {**os.environ, "PYTHONPATH": spec["src"]} if spec.get("src") else None
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"measurement {spec} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


#: Engine configurations compared: label -> child spec overrides.
ENGINE_RUNS: dict[str, dict] = {
    "sb3": {"engine": "sb3"},  # as `dimattn train --engine sb3` runs: torch's default threads
    "sb3 (1 torch thread)": {"engine": "sb3", "torch_threads": 1},
    "fast": {"engine": "fast"},
}


def median_rates(specs: dict[str, dict], repeats: int) -> dict[str, float]:
    """Run every spec ``repeats`` times, interleaved (so load changes hit all alike); medians."""
    rates: dict[str, list[float]] = {k: [] for k in specs}
    for rep in range(repeats):
        for key, spec in specs.items():
            rates[key].append(run_child(spec))
            print(f"[{rep + 1}/{repeats}] {key}: {rates[key][-1]:,.0f} steps/s", flush=True)
    return {k: float(statistics.median(v)) for k, v in rates.items()}


def engines_table(args: argparse.Namespace) -> str:
    specs = {("ceiling", ""): {"kind": "ceiling", "game": args.game, "steps": args.steps}}
    for agent in args.agents:
        for label, over in ENGINE_RUNS.items():
            specs[(label, agent)] = {"kind": "train", "game": args.game, "agent": agent, "steps": args.steps, **over}
    rate = median_rates(specs, args.repeats)
    ceiling = rate[("ceiling", "")]
    rows = ["| agent | SB3 engine | SB3 engine, 1 torch thread | fast engine | fast / SB3 | fast / SB3 (1 thread) "
            "| fast / ceiling | fast / fast NA |", "|---|---|---|---|---|---|---|---|"]
    for agent in args.agents:
        sb3, sb3_1, fast = (rate[(label, agent)] for label in ENGINE_RUNS)
        na = rate.get(("fast", "NA"))
        rows.append(f"| {agent} | {sb3:,.0f} | {sb3_1:,.0f} | {fast:,.0f} | {fast / sb3:.2f} | {fast / sb3_1:.2f} "
                    f"| {fast / ceiling:.2f} | {f'{fast / na:.2f}' if na else '—'} |")
    return (f"EnvPool ceiling (random actions, 16 envs, all cores): {ceiling:,.0f} steps/s\n\n" + "\n".join(rows)
            + "\n\n" + bound_table(args.agents, rate, run_child({"kind": "matmul"})))


def bound_table(agents: list[str], rate: dict, peak: float) -> str:
    """What the network's arithmetic allows: both engines do the same multiply-adds per env step."""
    rows = [f"Arithmetic bound (float32 matmul peak of this machine, torch.mm 2048², all cores: {peak:,.0f} GFLOP/s)",
            "", "| agent | network multiply-adds per env step | fast engine GFLOP/s (share of peak) "
            "| steps/s if the network ran at peak, nothing else | 3 × SB3 engine |", "|---|---|---|---|---|"]
    for agent in agents:
        m = multiply_adds_per_step(agent)
        fast, sb3 = rate[("fast", agent)], rate[("sb3", agent)]
        rows.append(f"| {agent} | {m / 1e6:.1f} M | {2 * m * fast / 1e9:.0f} ({2 * m * fast / 1e9 / peak:.0%}) "
                    f"| {peak * 1e9 / (2 * m):,.0f} | {3 * sb3:,.0f} |")
    return "\n".join(rows)


def agents_table(args: argparse.Namespace) -> str:
    """Fast engine only, every agent: the attention agents' speed relative to NA."""
    specs = {agent: {"kind": "train", "engine": "fast", "game": args.game, "agent": agent, "steps": args.steps}
             for agent in args.agents}
    rate = median_rates(specs, args.repeats)
    rows = ["| agent | fast engine steps/s | / NA |", "|---|---|---|"]
    rows += [f"| {a} | {rate[a]:,.0f} | {rate[a] / rate['NA']:.2f} |" for a in args.agents]
    return "\n".join(rows)


def levers_table(args: argparse.Namespace) -> str:
    specs = {name: {"kind": "train", "engine": "fast", "game": args.game, "agent": args.agents[0],
                    "steps": args.steps, "speed": speed} for name, speed in LEVERS.items()}
    rate = median_rates(specs, args.repeats)
    base = rate[next(iter(LEVERS))]
    rows = ["| fast engine variant | steps/s | vs plain |", "|---|---|---|"]
    rows += [f"| {name} | {rate[name]:,.0f} | {rate[name] / base:.2f} |" for name in LEVERS]
    return "\n".join(rows)


def packed_table(args: argparse.Namespace) -> str:
    """A pack of 2 runs in one process vs the same 2 runs as separate processes at once (aggregate
    steps/s), and one run alone; each run process with 1 torch thread, as a study runs them side by side.
    The pack: its CPU defaults (members in threads, 1 torch thread each, EnvPool threads = cores), with one
    EnvPool thread, and as on a GPU (one vmapped network, 2 torch threads)."""
    from concurrent.futures import ThreadPoolExecutor

    agent = args.agents[0]
    one = {"kind": "train", "engine": "fast", "game": args.game, "agent": agent, "steps": args.steps,
           "torch_threads": 1}
    packs = {"a pack of 2 (default: members in 2 threads, 1 torch thread each, a thread per core per EnvPool)": {},
             "a pack of 2, 1 thread per EnvPool": {"env_threads": 1},
             "a pack of 2, vmapped as on a GPU (2 torch threads, 2 threads per EnvPool)":
                 {"vmap": True, "torch_threads": 2, "env_threads": 2}}
    rates: dict[str, list[float]] = {"one run alone": [], "two runs at once (2 processes)": []}
    rates.update({name: [] for name in packs})
    for rep in range(args.repeats):
        rates["one run alone"].append(run_child(one))
        with ThreadPoolExecutor(2) as pool:
            rates["two runs at once (2 processes)"].append(sum(pool.map(run_child, [one, one])))
        for name, speed in packs.items():
            rates[name].append(run_child({**one, "k": 2, "torch_threads": 0, "speed": speed}))
        print(f"[{rep + 1}/{args.repeats}] " + ", ".join(f"{k}: {v[-1]:,.0f}" for k, v in rates.items()), flush=True)
    med = {k: float(statistics.median(v)) for k, v in rates.items()}
    base = med["two runs at once (2 processes)"]
    rows = [f"| {agent}, fast engine | steps/s (all runs) | / two processes |", "|---|---|---|"]
    rows += [f"| {k} | {v:,.0f} | {v / base:.2f} |" for k, v in med.items()]
    return "\n".join(rows)


def before_after_table(args: argparse.Namespace) -> str:
    """The fast engine of this tree against the one in ``--before`` (another checkout's src/), interleaved in
    one invocation: each agent's run alone, and a pack of 2 of the first agent (its CPU defaults)."""
    here = str(Path(__file__).resolve().parent.parent / "src")
    specs: dict[tuple[str, str], dict] = {}
    for label, agent, k in [*((a, a, 1) for a in args.agents), (f"{args.agents[0]}, a pack of 2", args.agents[0], 2)]:
        for side, src in (("before", str(args.before.resolve())), ("after", here)):
            specs[(label, side)] = {"kind": "train", "engine": "fast", "game": args.game, "agent": agent,
                                    "steps": args.steps, "k": k, "src": src}
    rate = median_rates(specs, args.repeats)
    rows = [f"| fast engine | before ({args.before}) steps/s | after steps/s | after / before |", "|---|---|---|---|"]
    for label in dict.fromkeys(label for label, _ in specs):
        before, after = rate[(label, "before")], rate[(label, "after")]
        rows.append(f"| {label} | {before:,.0f} | {after:,.0f} | {after / before:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=65_536)
    p.add_argument("--agents", nargs="+", default=["NA", "CWCA"])
    p.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the median is shown")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--levers", action="store_true", help="measure the fast engine's CPU levers instead")
    mode.add_argument("--packed", action="store_true", help="a pack of 2 vs two separate runs at once")
    mode.add_argument("--fast-agents", action="store_true",
                      help="fast engine only: each of --agents relative to NA (give NA among them)")
    mode.add_argument("--before", type=Path, metavar="SRC",
                      help="this tree's fast engine vs the one in SRC (another checkout's src/), interleaved")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(child(json.loads(args.child)))
        return 0
    table = (levers_table(args) if args.levers else agents_table(args) if args.fast_agents
             else packed_table(args) if args.packed else before_after_table(args) if args.before
             else engines_table(args))
    header = (f"{args.game}, {args.steps:,} steps per run, agents {' '.join(args.agents)}; "
              f"`python benchmarks/throughput.py {' '.join(sys.argv[1:])}`".strip())
    print("\n" + header + "\n\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    name = ("levers.md" if args.levers else "agents.md" if args.fast_agents else "packed.md" if args.packed
            else "before_after.md" if args.before else "throughput.md")
    (args.out / name).write_text(header + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
