"""The per-game figure of ``dimattn axes``: what was measured, checkable at a glance.

Left: a screen from the middle of the run with the tracks of the most energetic objects drawn over it
(orange: mostly horizontal persistent energy, blue: mostly vertical). Middle: motion energy per
direction (0° and 180° horizontal, 90° vertical). Right: the persistent energy along x and y, with
the label, the horizontal share and the decision threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dimattn.axes.measure import TAU, AxisMeasure
from dimattn.fileio import atomic_path

H_COLOUR, V_COLOUR = "#ff8c00", "#1e90ff"


def axes_figure(game: str, screen: np.ndarray | None, m: AxisMeasure, caption: str = "") -> Figure:
    """The three panels for one game (``screen`` (210, 160, 3) uint8, or None for a blank field)."""
    fig = Figure(figsize=(9.6, 3.6))
    ax_img, ax_hist, ax_e = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.3, 0.8]})
    ax_img.imshow(screen if screen is not None else np.zeros((210, 160, 3), np.uint8), interpolation="nearest")
    for xy, ex, ey in m.segments:
        ax_img.plot(xy[:, 0], xy[:, 1], "-", lw=1.2, alpha=0.85, color=H_COLOUR if ex >= ey else V_COLOUR)
    ax_img.set_axis_off()
    ax_img.set_title(f"{game}: tracks of the top {len(m.segments)} objects", fontsize=9)

    centres = np.arange(5, 180, 10)
    colours = [H_COLOUR if (c < 45 or c > 135) else V_COLOUR for c in centres]
    ax_hist.bar(centres, m.hist / max(m.hist.sum(), 1e-12), width=9, color=colours)
    ax_hist.set_xticks([0, 45, 90, 135, 180], ["0° →", "45°", "90° ↕", "135°", "180° ←"])
    ax_hist.set_ylabel("share of motion energy")
    ax_hist.set_title(f"direction of motion (axial share {m.axial:.2f})", fontsize=9)

    total = m.energy_x + m.energy_y
    shares = [m.energy_x / total, m.energy_y / total] if total > 0 else [0.0, 0.0]
    ax_e.bar(["x (horizontal)", "y (vertical)"], shares, color=[H_COLOUR, V_COLOUR])
    ax_e.axhline(TAU, color="k", ls=":", lw=1)
    ax_e.set_ylim(0, 1)
    ax_e.set_title(f"{m.label} (h = {m.h_share:.2f}, conf. {m.confidence:.2f})", fontsize=9)
    ax_e.set_ylabel("share of persistent energy")
    ax_e.tick_params(axis="x", labelsize=8)
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.05 if caption else 0, 1, 1))
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 72) -> Path:
    """Write ``fig`` to ``path`` atomically (small: 72 dpi)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
