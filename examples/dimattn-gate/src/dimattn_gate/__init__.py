"""GATE: a CBAM-style gate (Woo et al. 2018) as a dimattn attention block.

A channel gate (which maps matter) then a spatial gate (where on the map), each a sigmoid in [0, 1]
multiplying the features, kept as a residual: ``out = x + x * gates``. No axis is preferred: bias
``spatial``. Importing this module registers the block; dimattn imports it through the entry point
in ``pyproject.toml`` (or ``--plugin dimattn_gate`` where it is only on the path).
"""

from __future__ import annotations

import torch
from torch import nn

from dimattn.agents.registry import register


class Gate(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): x + x * channel_gate(x) * spatial_gate(x)."""

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 3) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel gate (N, C, 1, 1) and spatial gate (N, 1, H, W), each in [0, 1]."""
        avg, peak = x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)  # (N, C, 1, 1) each
        channel = torch.sigmoid(self.channel(avg) + self.channel(peak))
        y = x * channel
        pooled = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return channel, torch.sigmoid(self.spatial(pooled))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The term added to the residual: x * gates, (N, C, H, W)."""
        channel, spatial = self.gates(x)
        return x * channel * spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(x)


def gate_maps(block: Gate, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What ``dimattn explain`` shows: the spatial gate (N, 1, H, W) and the channel gate (N, C)."""
    channel, spatial = block.gates(x)
    return {"spatial_gate": spatial, "channel_gate": channel.flatten(1)}


register(
    "GATE",
    build=lambda shape, reduction=4, kernel_size=3: Gate(shape[0], reduction, kernel_size),
    description="CBAM-style channel and spatial gate, residual (an example plugin)",
    bias="spatial",
    maps=gate_maps,
)
