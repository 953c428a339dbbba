"""Dimensional self-attention blocks (SPEC §2).

Every block maps a feature map ``H1`` of shape (N, C, H, W) to a map of the same shape.
The kinds differ only in which dimensions of ``q @ kᵀ`` form the attention matrix:

=======  ==========================  ====================  ===  ==================
kind     layout fed to SDPA          attention matrix      d    mixes
=======  ==========================  ====================  ===  ==================
SWA      (N, C, H, W) as is          (N, C, H, H)          W    rows with rows
CWRA     (N, W, H, C)                (N, W, H, H)          C    along a column
CWCA     (N, H, W, C)                (N, H, W, W)          C    along a row
CWRCA    CWRA + CWCA (same q, k, v)  both                  C    both
=======  ==========================  ====================  ===  ==================

``NA`` is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dimattn.errors import DimattnError

#: The five agents of the study, in the study's order. One source of truth for agent names.
AGENTS: tuple[str, ...] = ("NA", "SWA", "CWRA", "CWCA", "CWRCA")
#: Learnable residual mixing options (SPEC §2, ``ada_attn``).
ADA_ATTN: tuple[str, ...] = ("alpha", "beta", "alpha_beta")


def check_agent(kind: str) -> str:
    """Return ``kind`` upper-cased if it names an agent, else raise a one-line error."""
    k = str(kind).strip().upper()
    if k not in AGENTS:
        raise DimattnError(f"unknown agent {kind!r}; choose one of {', '.join(AGENTS)}")
    return k


def _vmapped_on_cpu(t: torch.Tensor) -> bool:
    """Whether ``t`` is a CPU tensor batched by ``torch.func.vmap`` (a vmapped pack's K members), at any level.

    Under ``vmap(grad(f))`` (a vmapped pack's update) ``f`` sees a grad wrapper around the batched tensor,
    so the wrappers are peeled one by one. Only the CPU: torch has vmap batching rules for SDPA's CUDA
    kernels (flash, efficient, cuDNN), not for its CPU one. Not asked while torch.compile traces (it cannot
    trace these calls, and a compiled network is a run alone)."""
    if t.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(t):
        if functorch.is_batchedtensor(t):
            return True
        t = functorch.get_unwrapped(t)
    return False


def _softmax_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v with plain ops: (..., L, d) x3 -> (..., L, d); SDPA's arithmetic.

    For vmap on the CPU: torch has no batching rule for ``_scaled_dot_product_flash_attention_for_cpu``,
    so under vmap SDPA runs member by member and torch warns of a performance drop; matmul and softmax
    have rules. The two cost within 3-8% of each other for a pack of 2 or 4 (benchmarks/vmap_attention.py,
    docs/benchmarks.md): this path is taken to keep the warning from arising, not for speed."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (..., L, L)
    return torch.softmax(scores, dim=-1) @ v  # (..., L, L) @ (..., L, d) -> (..., L, d)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, norm_softmax: bool) -> torch.Tensor:
    """Attention over the last two dims: (..., L, d) x3 -> (..., L, d)."""
    if norm_softmax:
        if _vmapped_on_cpu(q):
            return _softmax_attend(q, k, v)
        # softmax(q kᵀ / sqrt(d)) v, d = q.size(-1): exactly SDPA's default scale. A run alone (and a
        # vmapped pack on an accelerator) keeps SDPA's fused kernel.
        return F.scaled_dot_product_attention(q, k, v)
    return (q @ k.transpose(-2, -1)) @ v


class DimensionalAttention(nn.Module):
    """Self-attention over one (or two) dimensions of a (N, C, H, W) feature map.

    Args:
        kind: ``SWA``, ``CWRA``, ``CWCA`` or ``CWRCA``.
        channels: C, the number of channels of the input map.
        ada_attn: ``None``, ``"alpha"``, ``"beta"`` or ``"alpha_beta"`` (learnable residual mixing).
        norm_softmax: ``False`` for plain ``(q @ kᵀ) @ v`` without scaling or softmax.

    Attributes ``query``, ``key``, ``value`` are the three 1×1 projections (Conv2d C→C, with bias).
    """

    def __init__(
        self, kind: str, channels: int = 16, ada_attn: str | None = None, norm_softmax: bool = True
    ) -> None:
        super().__init__()
        kind = check_agent(kind)
        if kind == "NA":
            raise DimattnError("NA has no attention block; use build_attention('NA') for the identity")
        if ada_attn not in (None, *ADA_ATTN):
            raise DimattnError(f"unknown ada_attn {ada_attn!r}; choose one of {', '.join(ADA_ATTN)} or none")
        self.kind, self.ada_attn, self.norm_softmax = kind, ada_attn, norm_softmax
        self.query = nn.Conv2d(channels, channels, kernel_size=1)
        self.key = nn.Conv2d(channels, channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        if ada_attn in ("alpha", "alpha_beta"):
            self.alpha = nn.Parameter(torch.zeros(1))  # starts as the identity block
        if ada_attn in ("beta", "alpha_beta"):
            self.beta = nn.Parameter(torch.ones(1))

    def _packed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The q, k, v projections stacked: weight (3C, C), bias (3C,) — one matmul instead of three."""
        c = self.query.in_channels
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight]).view(3 * c, c)
        return weight, torch.cat([self.query.bias, self.key.bias, self.value.bias])

    def attention(self, h1: torch.Tensor) -> torch.Tensor:
        """The attention term alone, before the residual: (N, C, H, W) -> (N, C, H, W)."""
        weight, bias = self._packed()
        if self.kind == "SWA":
            # per channel, rows of length W attend: (N, C, H, W) as is; weights (N, C, H, H)
            q, k, v = F.conv2d(h1, weight[:, :, None, None], bias).chunk(3, dim=1)  # 3 × (N, C, H, W)
            return _attend(q, k, v, self.norm_softmax)
        # channels last, so that each position's C-vector is contiguous for SDPA (~1.3x faster than
        # attending over permuted (N, C, H, W) maps; benchmarks/attention.py): (N, H, W, C) @ (C, 3C)
        q, k, v = F.linear(h1.permute(0, 2, 3, 1), weight, bias).chunk(3, dim=-1)  # 3 × (N, H, W, C)
        out: torch.Tensor | None = None  # (N, H, W, C)
        if self.kind in ("CWCA", "CWRCA"):
            # per row, the W positions attend over C-vectors; weights (N, H, W, W)
            out = _attend(q, k, v, self.norm_softmax)
        if self.kind in ("CWRA", "CWRCA"):
            # (N, H, W, C) -> (N, W, H, C): per column, the H positions attend; weights (N, W, H, H)
            col = _attend(*(t.transpose(1, 2) for t in (q, k, v)), self.norm_softmax).transpose(1, 2)
            out = col if out is None else out + col
        return out.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)

    def forward(self, h1: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W): attention mixed with the residual ``h1``."""
        att = self.attention(h1)
        if hasattr(self, "alpha"):
            att = self.alpha * att
        return att + (self.beta * h1 if hasattr(self, "beta") else h1)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, ada_attn={self.ada_attn}, norm_softmax={self.norm_softmax}"


def build_attention(
    kind: str, channels: int = 16, ada_attn: str | None = None, norm_softmax: bool = True
) -> nn.Module:
    """The attention block of agent ``kind``: (N, C, H, W) -> (N, C, H, W). ``NA`` gives the identity."""
    if check_agent(kind) == "NA":
        return nn.Identity()
    return DimensionalAttention(kind, channels, ada_attn=ada_attn, norm_softmax=norm_softmax)


def attention_weights(block: nn.Module, h1: torch.Tensor) -> dict[str, torch.Tensor]:
    """The softmax attention matrices of a block, for inspection.

    Returns ``{"rows": (N, C, H, H)}`` for SWA, ``{"columns": (N, W, H, H)}`` for CWRA,
    ``{"row_positions": (N, H, W, W)}`` for CWCA, both of the last two for CWRCA; ``{}`` for NA.
    """
    if not isinstance(block, DimensionalAttention):
        return {}
    q, k = block.query(h1), block.key(h1)

    def weights(qq: torch.Tensor, kk: torch.Tensor) -> torch.Tensor:
        s = qq @ kk.transpose(-2, -1)
        return torch.softmax(s / math.sqrt(qq.size(-1)), dim=-1) if block.norm_softmax else s

    out: dict[str, torch.Tensor] = {}
    if block.kind == "SWA":
        out["rows"] = weights(q, k)
    if block.kind in ("CWRA", "CWRCA"):
        out["columns"] = weights(q.permute(0, 3, 2, 1), k.permute(0, 3, 2, 1))
    if block.kind in ("CWCA", "CWRCA"):
        out["row_positions"] = weights(q.permute(0, 2, 3, 1), k.permute(0, 2, 3, 1))
    return out
