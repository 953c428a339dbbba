"""The attention blocks under torch.func.vmap (a vmapped pack's K members): the explicit softmax path taken
there equals each member's own SDPA block, and torch's "no batching rule" warning does not arise."""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from dimattn.agents import attention
from dimattn.agents.attention import DimensionalAttention
from dimattn.agents.networks import ActorCritic

KINDS = ["SWA", "CWRA", "CWCA", "CWRCA"]
K, N, C, H, W = 3, 2, 4, 5, 6  # H != W, so that a swapped row/column layout would show
FALLBACK_NOTE = "There is a performance drop because we have not yet implemented the batching rule"
TOL = {"rtol": 1e-6, "atol": 1e-6}  # float32 rounding: the paths sum in other orders


def _members(kind: str) -> tuple[list[DimensionalAttention], torch.Tensor, torch.Tensor]:
    """K blocks with their own random weights, each member's H1 (K, N, C, H, W) and a fixed weighting of
    the output (so that every output element has its own gradient, not all ones)."""
    torch.manual_seed(7)
    blocks = [DimensionalAttention(kind, C, ada_attn="alpha_beta") for _ in range(K)]
    for b in blocks:
        with torch.no_grad():
            b.alpha.fill_(0.7)  # alpha starts at 0, which would hide the attention term
    return blocks, torch.randn(K, N, C, H, W), torch.randn(N, C, H, W)


def _vmapped(blocks: list[DimensionalAttention], h1: torch.Tensor, weight: torch.Tensor):
    """Outputs (K, N, C, H, W) and gradients (parameters, input) of the K blocks as one vmapped block."""
    params, buffers = stack_module_state(blocks)
    params = {n: p.detach() for n, p in params.items()}

    def member_loss(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return (functional_call(blocks[0], (p, b), (x,)) * weight).sum()

    out = vmap(lambda p, b, x: functional_call(blocks[0], (p, b), (x,)))(params, buffers, h1)
    grads, grad_h1 = vmap(grad(member_loss, argnums=(0, 2)))(params, buffers, h1)
    return out, grads, grad_h1


def _alone(blocks: list[DimensionalAttention], h1: torch.Tensor, weight: torch.Tensor):
    """The reference: member k as a run alone (SDPA, ordinary autograd), stacked (K, ...)."""
    outs, grads, grad_h1 = [], [], []
    for block, x in zip(blocks, h1):
        x = x.clone().requires_grad_(True)
        block.zero_grad(set_to_none=True)
        out = block(x)
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad for n, p in block.named_parameters()})
        grad_h1.append(x.grad)
    return (torch.stack(outs), {n: torch.stack([g[n] for g in grads]) for n in grads[0]}, torch.stack(grad_h1))


@pytest.mark.parametrize("kind", KINDS)
def test_vmapped_block_is_each_members_sdpa_block(kind):
    blocks, h1, weight = _members(kind)
    out, grads, grad_h1 = _vmapped(blocks, h1, weight)
    ref_out, ref_grads, ref_grad_h1 = _alone(blocks, h1, weight)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(grad_h1, ref_grad_h1, **TOL)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


def _caught(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("kind", KINDS)
def test_no_performance_warning_under_vmap(kind):
    blocks, h1, weight = _members(kind)
    messages = _caught(lambda: _vmapped(blocks, h1, weight))
    assert not [m for m in messages if FALLBACK_NOTE in m], messages


def test_no_performance_warning_for_a_vmapped_network():
    """The whole network, forward without gradients (acting) and forward + backward (learning)."""
    torch.manual_seed(0)
    nets = [ActorCritic(4, "CWRCA") for _ in range(2)]
    params, buffers = stack_module_state(nets)
    params = {n: p.detach() for n, p in params.items()}
    obs = torch.randint(0, 256, (2, 3, 4, 84, 84), dtype=torch.uint8)  # (K, n, 4, 84, 84)

    def loss(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        logits, values = functional_call(nets[0], (p, b), (x,))
        return logits.sum() + values.sum()

    def act_and_learn() -> None:
        with torch.no_grad():
            vmap(lambda p, b, x: functional_call(nets[0], (p, b), (x,)))(params, buffers, obs)
        vmap(grad(loss))(params, buffers, obs)

    messages = _caught(act_and_learn)
    assert not [m for m in messages if FALLBACK_NOTE in m], messages


def test_the_warning_is_caught_when_sdpa_runs_under_vmap():
    """The check above can see the warning: SDPA forced under vmap raises it (while torch has no batching rule
    for its CPU kernel; once it has one, the explicit path is no longer needed)."""
    blocks, h1, weight = _members("CWCA")
    with mock.patch.object(attention, "_vmapped_on_cpu", lambda t: False):
        messages = _caught(lambda: _vmapped(blocks, h1, weight))
    if not [m for m in messages if FALLBACK_NOTE in m]:
        pytest.skip("this torch has a vmap batching rule for SDPA's CPU kernel: the explicit path can go")


def test_a_run_alone_keeps_sdpa():
    """Outside vmap _attend is SDPA itself, bit for bit (also under torch.func.grad alone), and only
    batched CPU tensors are seen as vmapped."""
    torch.manual_seed(1)
    q, k, v = torch.randn(3, N, H, W, C).unbind(0)
    assert torch.equal(attention._attend(q, k, v, True), F.scaled_dot_product_attention(q, k, v))
    assert not attention._vmapped_on_cpu(q)
    seen: list[bool] = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(attention._vmapped_on_cpu(x))
        return x.sum()

    grad(probe)(q)
    vmap(probe)(q)
    vmap(grad(probe))(q)
    grad(lambda x: vmap(probe)(x).sum())(q)
    with torch.no_grad():
        vmap(vmap(probe))(q)
    assert seen == [False, True, True, True, True]
