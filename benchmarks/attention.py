"""The attention blocks on the CPU: speed of dimattn's formulation vs SDPA, and each agent's cost vs NA.

For each agent, on one PPO minibatch (256 observations, one torch thread, forward + backward):

- the block alone: the textbook formulation (three 1×1 convs, permutes, ``scaled_dot_product_attention``)
  vs :class:`dimattn.agents.attention.DimensionalAttention` (one fused projection, channels last,
  matmul + softmax), checked to give the same output;
- the whole network (``ActorCritic``) and its ratio to NA, beside the ratio of their arithmetic
  (multiply-adds counted by ``torch.utils.flop_counter``): an agent whose network does 1.23× NA's
  arithmetic cannot train faster than 1/1.23 = 0.81 of NA at equal efficiency.

Times are CPU time of this thread (``time.thread_time``), median of ``--repeats`` interleaved
measurements, so a busy machine changes them less than wall time; still compare ratios within one run.

    PYTHONPATH=src python benchmarks/attention.py
    PYTHONPATH=src python benchmarks/attention.py --batch 256 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dimattn.agents.attention import AGENTS, DimensionalAttention
from dimattn.agents.networks import ActorCritic


def sdpa_block(block: DimensionalAttention, h1: torch.Tensor) -> torch.Tensor:
    """The block as SPEC §2 writes it: separate q/k/v convs, permuted views, PyTorch's SDPA."""
    q, k, v = block.query(h1), block.key(h1), block.value(h1)  # (N, C, H, W)
    if block.kind == "SWA":
        return F.scaled_dot_product_attention(q, k, v) + h1
    out = torch.zeros_like(h1)
    if block.kind in ("CWRA", "CWRCA"):  # (N, W, H, C)
        out = out + F.scaled_dot_product_attention(*(t.permute(0, 3, 2, 1) for t in (q, k, v))).permute(0, 3, 2, 1)
    if block.kind in ("CWCA", "CWRCA"):  # (N, H, W, C)
        out = out + F.scaled_dot_product_attention(*(t.permute(0, 2, 3, 1) for t in (q, k, v))).permute(0, 3, 1, 2)
    return out + h1


def fwd_bwd(fn, x: torch.Tensor):
    def run() -> None:
        out = fn(x)
        out = out if isinstance(out, torch.Tensor) else out[0].sum() + out[1].sum()
        out.sum().backward()
    return run


def cpu_ms(fns: dict[str, object], repeats: int) -> dict[str, float]:
    """Median CPU milliseconds of each callable, measured in turn (interleaved) ``repeats`` times."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.thread_time()
            fn()
            samples[name].append((time.thread_time() - t0) * 1000)
    return {name: statistics.median(s) for name, s in samples.items()}


def macs(fn) -> float:
    """Multiply-adds of ``fn`` (SDPA's math backend, so that its matmuls are counted)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    h1 = torch.randn(args.batch, 16, 20, 20, requires_grad=True)  # the block's input, H1
    obs = torch.randint(0, 256, (args.batch, 4, 84, 84), dtype=torch.uint8)
    print(f"one minibatch of {args.batch}, forward + backward, 1 torch thread, CPU ms (median of {args.repeats})\n")

    print("| block | SDPA formulation | dimattn | speed-up |")
    print("|---|---:|---:|---:|")
    for kind in AGENTS[1:]:
        block = DimensionalAttention(kind)
        torch.testing.assert_close(block(h1), sdpa_block(block, h1), rtol=1e-4, atol=1e-5)
        t = cpu_ms({"sdpa": fwd_bwd(lambda x, b=block: sdpa_block(b, x), h1), "ours": fwd_bwd(block, h1)},
                   args.repeats)
        print(f"| {kind} | {t['sdpa']:.1f} | {t['ours']:.1f} | {t['sdpa'] / t['ours']:.2f}× |")

    nets = {kind: ActorCritic(4, kind) for kind in AGENTS}
    times = cpu_ms({kind: fwd_bwd(net, obs) for kind, net in nets.items()}, args.repeats)
    work = {kind: macs(fwd_bwd(net, obs)) for kind, net in nets.items()}
    print("\n| agent | network ms | NA / agent (time) | multiply-adds (M per obs) | NA / agent (arithmetic) |")
    print("|---|---:|---:|---:|---:|")
    for kind in AGENTS:
        print(f"| {kind} | {times[kind]:.1f} | {times['NA'] / times[kind]:.2f} | "
              f"{work[kind] / args.batch / 1e6:.2f} | {work['NA'] / work[kind]:.2f} |")


if __name__ == "__main__":
    main()
