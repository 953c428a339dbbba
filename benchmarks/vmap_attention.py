"""A vmapped pack's attention on the CPU: SDPA's per-member fallback under vmap vs the explicit softmax path.

torch has no vmap batching rule for SDPA's CPU kernel (``_scaled_dot_product_flash_attention_for_cpu``), so
under ``torch.func.vmap`` it runs member by member (and says "There is a performance drop ..."). Under vmap
:func:`dimattn.agents.attention._attend` therefore computes ``softmax(q kᵀ / sqrt(d)) v`` with matmul and
softmax, which have batching rules. This measures both, side by side, on a pack of K members:

- the network (``ActorCritic``) forward + backward as :class:`dimattn.engines.learners.VmappedLearner`
  learns: ``vmap(grad(loss))`` of a ``functional_call`` over the K stacked parameter sets, one PPO
  minibatch (``--batch`` observations) per member;
- the block alone (``DimensionalAttention``, H1 of (16, 20, 20)), the same way;
- beside them, the K members run one after the other without vmap (SDPA, ordinary autograd), and NA's
  vmapped network, for scale.

"fallback" is SDPA under vmap (the path before this change, forced here), "explicit" the path now taken;
both are checked to give the same gradients. Times are CPU time of this thread (``time.thread_time``, one
torch thread), median of ``--repeats`` interleaved measurements; compare ratios within one run.

    PYTHONPATH=src python benchmarks/vmap_attention.py
    PYTHONPATH=src python benchmarks/vmap_attention.py --agents CWCA SWA --packs 2 4 --batch 256 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from attention import cpu_ms  # benchmarks/attention.py: this script's folder is on sys.path
from dimattn.agents import attention
from dimattn.agents.attention import AGENTS, DimensionalAttention
from dimattn.agents.networks import ActorCritic

FALLBACK_NOTE = "There is a performance drop because we have not yet implemented the batching rule"


def loss_of(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A scalar depending on every output (the network's logits and values, or the block's map)."""
    return out.sum() if isinstance(out, torch.Tensor) else sum(o.sum() for o in out)


def vmapped_step(nets: list[nn.Module], x: torch.Tensor) -> Callable[[], dict[str, torch.Tensor]]:
    """Forward + backward of K networks as one vmapped network, as VmappedLearner does: x (K, B, ...)."""
    params, buffers = stack_module_state(nets)
    params = {n: p.detach() for n, p in params.items()}  # plain tensors: gradients come from grad()
    base = copy.deepcopy(nets[0]).to("meta")  # the architecture; weights come from params

    def member_loss(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
        return loss_of(functional_call(base, (p, b), (xx,)))

    step = vmap(grad(member_loss))
    return lambda: step(params, buffers, x)


def alone_step(nets: list[nn.Module], x: torch.Tensor) -> Callable[[], None]:
    """The K members one after the other, each as a run alone (SDPA, ordinary autograd)."""
    def run() -> None:
        for k, net in enumerate(nets):
            net.zero_grad(set_to_none=True)
            loss_of(net(x[k])).backward()
    return run


def fallback(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with SDPA under vmap (the path before the explicit one): _attend sees no vmapped tensors."""
    def run() -> object:
        with mock.patch.object(attention, "_vmapped_on_cpu", lambda t: False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=FALLBACK_NOTE)  # it is what is measured here
            return fn()
    return run


def warns(fn: Callable[[], object]) -> bool:
    """Whether ``fn`` emits torch's "no batching rule" performance warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return any(FALLBACK_NOTE in str(w.message) for w in caught)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Gradients equal to float rounding, on the scale of the largest one (the key's bias gets none in exact
    arithmetic, softmax being shift-invariant, so its values are rounding of that scale)."""
    scale = max(g.abs().max().item() for g in a.values())
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5 * scale, msg=lambda m, n=name: f"{n}: {m}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", nargs="+", default=["CWCA", "SWA"], choices=AGENTS[1:])
    p.add_argument("--packs", nargs="+", type=int, default=[2, 4], help="pack sizes K")
    p.add_argument("--batch", type=int, default=256, help="observations per member (ppo.yml's batch_size)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, nproc {os.cpu_count()}, 1 torch thread; forward + backward, CPU ms "
          f"(median of {args.repeats}); per member {args.batch} observations (network) / H1s (block)\n")

    print("| what | K | fallback (SDPA under vmap) | explicit (now) | fallback / explicit | K runs alone "
          "(SDPA) | alone / explicit | NA vmapped | warned: fallback, explicit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in args.packs:
        obs = torch.randint(0, 256, (k, args.batch, 4, 84, 84), dtype=torch.uint8)  # (K, B, 4, 84, 84)
        h1 = torch.randn(k, args.batch, 16, 20, 20)  # (K, B, C, H, W): the block's input H1 per member
        na = vmapped_step([ActorCritic(4, "NA") for _ in range(k)], obs)
        for what, build, x in [(f"{kind} network", lambda kd: ActorCritic(4, kd), obs) for kind in args.agents] \
                + [(f"{kind} block", lambda kd: DimensionalAttention(kd), h1) for kind in args.agents]:
            nets = [build(what.split()[0]) for _ in range(k)]
            explicit = vmapped_step(nets, x)
            slow = fallback(explicit)
            same(slow(), explicit())
            warned = (warns(lambda e=explicit: _forced(e)), warns(explicit))
            fns = {"fallback": slow, "explicit": explicit, "alone": alone_step(nets, x)}
            if what.endswith("network"):
                fns["na"] = na
            t = cpu_ms(fns, args.repeats)
            na_ms = f"{t['na']:.0f}" if "na" in t else ""
            print(f"| {what} | {k} | {t['fallback']:.0f} | {t['explicit']:.0f} | "
                  f"**{t['fallback'] / t['explicit']:.2f}×** | {t['alone']:.0f} | {t['alone'] / t['explicit']:.2f}× | "
                  f"{na_ms} | {'yes' if warned[0] else 'no'}, {'yes' if warned[1] else 'no'} |", flush=True)


def _forced(fn: Callable[[], object]) -> object:
    """``fn`` on SDPA under vmap, warnings left as they are (to see whether torch warns)."""
    with mock.patch.object(attention, "_vmapped_on_cpu", lambda t: False):
        return fn()


if __name__ == "__main__":
    main()
