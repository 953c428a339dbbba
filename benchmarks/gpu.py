"""Training speed on a GPU node, in one unattended call: engines, packs, the emulators' ceiling (issues 11, 12).

Prints one Markdown report (and writes it to ``--out``/gpu.md with the raw figures in gpu.json):

1. one run: the SB3 engine (16 subprocess envs) vs the fast engine, NA and CWCA, steps/s and ratios;
   with --levers, the fast engine without its CUDA graph, with more EnvPool groups, with torch's threads;
2. where a fast run's time goes: collect vs update, ms per rollout (CUDA-synchronised timers);
3. packs: K runs in one process (NA and CWCA), several packs at once (the node's aggregate steps/s),
   the EnvPool ceiling with every core (random actions, as many envs), and the share of wall time a
   pack spends evaluating at the study's settings (5 games every 200k steps);
4. what the full study (56 games × 5 agents × 5 seeds × 10M steps) would take on this node.

Every measurement runs in its own process, so thread settings cannot leak between them; steps/s is
each run's own ``time/fps`` (training loop only, setup excluded, for both engines alike).

    PYTHONPATH=.gpu-site:src python benchmarks/gpu.py --out $OUT            # on the GPU node (~6 min)
    PYTHONPATH=src python benchmarks/gpu.py --device cpu --quick --out /tmp/g  # a dry run anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GAME = "Breakout"
STUDY_STEPS = 56 * 5 * 5 * 10_000_000  # games × agents × seeds × steps (SPEC §5)


# ----------------------------------------------------------------------------- children (one process each)
def _fps(tb: Path, env_id: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = sorted((tb / env_id).iterdir())[:1]
    acc = EventAccumulator(str(events))
    acc.Reload()
    return float(acc.Scalars("time/fps")[-1].value)


def train_child(spec: dict) -> dict:
    """One run (or one pack) without evaluations or checkpoints: its steps/s (a pack's: all members')."""

    import torch

    from dimattn.engines.config import build_config
    from dimattn.engines.train import train_pack

    k = spec.get("k", 1)
    configs = [build_config(GAME, agent=spec["agent"], seed=s, n_timesteps=spec["steps"], eval_freq=0, save_freq=0,
                            engine=spec["engine"], device=spec["device"], vec_env=spec.get("vec_env", "dummy"))
               for s in range(k)]
    root = Path(tempfile.mkdtemp(prefix="dimattn-gpu-"))
    try:
        if spec["engine"] == "sb3":
            train_pack(configs, [root / "r0"], str(root / "tb"))
            return {"steps_per_s": _fps(root / "tb", configs[0].env_id)}
        train_pack(configs, [root / f"r{i}" for i in range(k)], str(root / "tb"), speed=spec.get("speed", {}))
        return {"steps_per_s": k * _fps(root / "tb", configs[0].env_id), "torch_threads": torch.get_num_threads()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ceiling_child(spec: dict) -> dict:
    """EnvPool alone, random actions, ``n_envs`` envs on every core: the emulators' speed."""
    import numpy as np

    from dimattn.envs.pool import make_pool

    n = spec["n_envs"]
    pool = make_pool(GAME, n, seed=0, training=True, num_threads=0)
    rng = np.random.default_rng(0)
    pool.async_reset()
    pool.recv()
    ids = np.arange(n, dtype=np.int32)
    t0 = time.perf_counter()
    for _ in range(max(1, spec["steps"] // n)):
        pool.send(rng.integers(0, int(pool.action_space.n), n).astype(np.int32), ids)
        pool.recv()
    rate = (spec["steps"] // n) * n / (time.perf_counter() - t0)
    pool.close()
    return {"steps_per_s": rate}


def split_child(spec: dict) -> dict:
    """ms per rollout in collect and in GAE + update, K runs, the engine's own functions and defaults."""
    import numpy as np
    import torch

    from dimattn.agents.networks import ActorCritic
    from dimattn.engines.acting import Envs, act_steps
    from dimattn.engines.config import build_config
    from dimattn.engines.learners import NetworkLearner, VmappedLearner
    from dimattn.engines.ppo import collect, gae
    from dimattn.engines.rollout import Rollout
    from dimattn.engines.speed import default_speed

    k, device = spec["k"], torch.device(spec["device"])
    args = build_config(GAME, agent=spec["agent"], device=spec["device"]).resolve()
    speed = default_speed(device, k)
    if speed.torch_threads:
        torch.set_num_threads(speed.torch_threads)
    envs = Envs(GAME, list(range(k)), args.n_envs, speed, pin=device.type == "cuda")
    nets = [ActorCritic(envs.n_actions, spec["agent"]).to(device) for _ in range(k)]
    rngs = [np.random.RandomState(i) for i in range(k)]
    if k == 1:
        learner = NetworkLearner(nets[0], torch.optim.Adam(nets[0].parameters(), eps=1e-5, fused=device.type == "cuda"),
                                 args, speed)
    else:
        learner = VmappedLearner(nets, device, args, rngs, speed=speed)
    steps = act_steps(learner.act, envs, speed, device)
    buf = Rollout.empty(args.n_steps, args.n_envs, device, members=k)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {"collect": [], "update": []}
    for i in range(spec["rollouts"] + 1):  # the first rollout warms up (cuDNN autotuning, allocations)
        sync()
        t0 = time.perf_counter()
        collect(envs, steps, buf)
        sync()
        t1 = time.perf_counter()
        on = buf.to(device)
        adv = gae(on.rewards, on.values, on.done, on.trunc, on.last_value, on.last_done, on.last_trunc,
                  args.gamma, args.gae_lambda)
        learner.update(buf, adv, 2.5e-4, 0.1)
        sync()
        if i:
            times["collect"].append((t1 - t0) * 1e3)
            times["update"].append((time.perf_counter() - t1) * 1e3)
    envs.close()
    return {key: float(np.median(v)) for key, v in times.items()}


def eval_child(spec: dict) -> dict:
    """Seconds for one evaluation of a pack (K runs × 5 whole games, played together, on envs built beforehand
    as a trainer reuses them), and its game steps."""
    import numpy as np
    import torch

    from dimattn.agents.networks import ActorCritic
    from dimattn.engines.acting import sample
    from dimattn.engines.common import eval_seeds
    from dimattn.engines.config import build_config
    from dimattn.engines.learners import VmappedLearner
    from dimattn.envs.ale import action_meanings, evaluate, evaluation_envs

    k, device = spec["k"], torch.device(spec["device"])
    torch.set_num_threads(1)
    args = build_config(GAME, agent=spec["agent"], device=spec["device"]).resolve()
    pack = VmappedLearner([ActorCritic(len(action_meanings(GAME)), spec["agent"]) for _ in range(k)], device, args,
                          [np.random] * k)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return sample(pack(torch.as_tensor(obs, device=device))[0])[0].cpu().numpy()

    envs = evaluation_envs(GAME, k * spec["episodes"])  # a trainer builds them once and reuses them
    t0 = time.perf_counter()
    results = evaluate(policy, GAME, [eval_seeds(s, 0, spec["episodes"]) for s in range(k)], envs)
    frames = sum(int(lengths.sum()) for _, lengths in results)
    return {"seconds": time.perf_counter() - t0, "agent_steps": frames // 4}


CHILDREN = {"train": train_child, "ceiling": ceiling_child, "split": split_child, "eval": eval_child}


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report
def fmt(r: dict, key: str = "steps_per_s") -> str:
    return f"{r[key]:,.0f}" if key in r else f"failed: {r.get('error', '?')}"


def ratio(a: dict, b: dict) -> str:
    return f"{a['steps_per_s'] / b['steps_per_s']:.2f}" if "steps_per_s" in a and "steps_per_s" in b else "—"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=32_768, help="env steps per fast-engine run (a pack: per member)")
    p.add_argument("--sb3-steps", type=int, default=16_384, help="env steps per SB3-engine run")
    p.add_argument("--levers", action="store_true",
                   help="also the fast engine without its CUDA graph, with 4 EnvPool groups, with torch's threads")
    p.add_argument("--k", type=int, default=5, help="runs per pack")
    p.add_argument("--packs", type=int, default=3, help="packs at once, for the node's aggregate")
    p.add_argument("--quick", action="store_true", help="tiny steps: check that everything runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/gpu"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        spec = json.loads(a.child)
        print(json.dumps(CHILDREN[spec["kind"]](spec)))
        return
    if a.quick:
        a.steps, a.sb3_steps = 4096, 2048
    dev, cores, t_start = a.device, os.cpu_count() or 1, time.perf_counter()
    raw: dict[str, dict] = {}

    a.out.mkdir(parents=True, exist_ok=True)

    def measure(key: str, spec: dict) -> dict:
        raw[key] = run_child(spec)
        print(f"  {key}: {raw[key]} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
        (a.out / "gpu.json").write_text(json.dumps(raw, indent=1))  # what is measured survives a time-out
        return raw[key]

    train = {"kind": "train", "device": dev}
    for agent in ("NA", "CWCA"):
        measure(f"sb3 {agent}", {**train, "engine": "sb3", "agent": agent, "steps": a.sb3_steps, "vec_env": "subproc"})
        measure(f"fast {agent}", {**train, "engine": "fast", "agent": agent, "steps": a.steps})
    levers = {"no CUDA graph": {"cuda_graph": False}, "4 EnvPool groups": {"groups": 4},
              "torch's default threads": {"torch_threads": cores}} if a.levers else {}
    for name, speed in levers.items():
        measure(f"fast NA, {name}", {**train, "engine": "fast", "agent": "NA", "steps": a.steps, "speed": speed})
    measure("ceiling 16", {"kind": "ceiling", "n_envs": 16, "steps": 4 * a.steps})
    measure("split NA", {"kind": "split", "device": dev, "agent": "NA", "k": 1, "rollouts": 3 if a.quick else 10})
    for agent in ("NA", "CWCA"):
        measure(f"pack {agent}", {**train, "engine": "fast", "agent": agent, "steps": a.steps, "k": a.k})
    measure("split pack NA", {"kind": "split", "device": dev, "agent": "NA", "k": a.k, "rollouts": 2 if a.quick else 5})
    threads = max(1, cores // a.packs // 2)  # per EnvPool group: each pack has 2 groups
    spec = {**train, "engine": "fast", "agent": "NA", "steps": a.steps, "k": a.k,
            "speed": {"env_threads": threads, "torch_threads": 1}}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.packs) as pool:
        several = list(pool.map(run_child, [spec] * a.packs))
    raw["several packs"] = {"packs": several, "wall_s": time.perf_counter() - t0}
    print(f"  several packs: {raw['several packs']}", file=sys.stderr, flush=True)
    measure("ceiling packs", {"kind": "ceiling", "n_envs": a.k * 16 * a.packs, "steps": 8 * a.steps})
    measure("eval pack", {"kind": "eval", "device": dev, "agent": "NA", "k": a.k, "episodes": 5})

    report = render(raw, a, cores)
    print(report)
    (a.out / "gpu.md").write_text(report)
    (a.out / "gpu.json").write_text(json.dumps(raw, indent=1))
    print(f"({time.perf_counter() - t_start:.0f} s in all)", file=sys.stderr)


def render(raw: dict, a: argparse.Namespace, cores: int) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if a.device.startswith("cuda") and torch.cuda.is_available() else "no GPU"
    lines = [f"Machine: {gpu}, {cores} CPU cores, torch {torch.__version__}; {GAME}; fast runs {a.steps:,} steps "
             f"(per member), SB3 runs {a.sb3_steps:,}.", "",
             "| run | steps/s | / SB3 engine, same agent | / fast NA |", "|---|---:|---:|---:|"]
    for agent in ("NA", "CWCA"):
        lines.append(f"| SB3 engine, {agent}, 16 subprocess envs, {a.device} | {fmt(raw[f'sb3 {agent}'])} | 1.00 | |")
    for agent in ("NA", "CWCA"):
        r = raw[f"fast {agent}"]
        lines.append(f"| fast engine, {agent}, defaults | {fmt(r)} | {ratio(r, raw[f'sb3 {agent}'])} "
                     f"| {ratio(r, raw['fast NA'])} |")
    for key in (k for k in raw if k.startswith("fast NA, ")):
        lines.append(f"| {key.replace('fast NA, ', 'fast engine, NA, ')} | {fmt(raw[key])} "
                     f"| {ratio(raw[key], raw['sb3 NA'])} | {ratio(raw[key], raw['fast NA'])} |")
    lines.append(f"| EnvPool alone, 16 envs, all cores, random actions | {fmt(raw['ceiling 16'])} | | |")
    for key, what in (("split NA", "one fast run, NA"), ("split pack NA", f"a pack of {a.k}, NA")):
        s = raw[key]
        if "collect" in s:
            lines += ["", f"Where the time goes ({what}): collect {s['collect']:,.0f} ms, GAE + update "
                          f"{s['update']:,.0f} ms per rollout of {2048 * (a.k if 'pack' in key else 1):,} steps."]
    lines += ["", "| packs | steps/s (all members) | / one SB3 run (NA) | / EnvPool ceiling, same envs |",
              "|---|---:|---:|---:|"]
    ceiling = raw["ceiling packs"]
    for agent in ("NA", "CWCA"):
        r = raw[f"pack {agent}"]
        lines.append(f"| 1 pack of {a.k}, {agent} | {fmt(r)} | {ratio(r, raw['sb3 NA'])} | |")
    several = raw["several packs"]["packs"]
    total = {"steps_per_s": sum(r.get("steps_per_s", 0.0) for r in several)} if all(
        "steps_per_s" in r for r in several) else {"error": "a pack failed"}
    lines.append(f"| {a.packs} packs of {a.k} at once, NA | {fmt(total)} | {ratio(total, raw['sb3 NA'])} "
                 f"| {ratio(total, ceiling)} |")
    lines.append(f"| EnvPool alone, {a.k * 16 * a.packs} envs, all cores | {fmt(ceiling)} | | 1.00 |")
    ev = raw["eval pack"]
    if "seconds" in ev and "steps_per_s" in total:
        per_member = total["steps_per_s"] / (a.packs * a.k)  # env steps/s of one member
        train_s = 200_000 / per_member  # wall time between two evaluations of a member
        share = ev["seconds"] / (train_s + ev["seconds"])
        days = STUDY_STEPS / total["steps_per_s"] / (1 - share) / 86_400
        lines += ["", f"Evaluation at the study's settings: one evaluation of a pack ({a.k} runs × 5 whole games, "
                      f"played together, untrained agents: {ev['agent_steps']:,} agent steps) took "
                      f"{ev['seconds']:.1f} s; a member trains 200k steps in {train_s:.0f} s, so evaluating takes "
                      f"{share:.1%} of the wall time (trained agents play longer games: more).",
                  "", f"The full study (56 games × 5 agents × 5 seeds × 10M = {STUDY_STEPS / 1e9:.0f} billion steps) "
                      f"at {total['steps_per_s']:,.0f} steps/s with that evaluation share: **{days:,.1f} days** on "
                      "this node."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
