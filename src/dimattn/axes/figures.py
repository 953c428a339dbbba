"""The per-game figure of ``dimattn axes``: what was measured, checkable at a glance.

Left: a screen from the middle of the run with the tracks of the most energetic objects drawn over it
(orange: mostly horizontal persistent energy, blue: mostly vertical), and the effects of the action
probes as arrows (red: what firing adds, the agent's shots; white: the player's moves). Middle: motion
energy per direction (0° and 180° horizontal, 90° vertical). Right: the three measures of the rule, each
as its horizontal share, with the thresholds; the one that decided is drawn solid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dimattn.axes.control import FIRE, MOVE, Control
from dimattn.axes.decide import CONFINED, Decision
from dimattn.axes.measure import TAU, AxisMeasure
from dimattn.fileio import atomic_path

H_COLOUR, V_COLOUR = "#ff8c00", "#1e90ff"


def axes_figure(game: str, screen: np.ndarray | None, m: AxisMeasure, d: Decision, control: Control,
                caption: str = "") -> Figure:
    """The three panels for one game (``screen`` (H, W, 3) uint8, or None for a blank field)."""
    fig = Figure(figsize=(9.6, 3.6))
    ax_img, ax_hist, ax_e = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.3, 0.9]})
    ax_img.imshow(screen if screen is not None else np.zeros((210, 160, 3), np.uint8), interpolation="nearest")
    for xy, ex, ey in m.segments:
        ax_img.plot(xy[:, 0], xy[:, 1], "-", lw=1.0, alpha=0.7, color=H_COLOUR if ex >= ey else V_COLOUR)
    for kind, colour in ((MOVE, "white"), (FIRE, "red")):
        e = control.effects  # (N, 7): probe, kind, dx, dy, x0, y0, w
        rows = e[(e[:, 1] == kind) & (np.abs(e[:, 2:4]).sum(axis=1) > 0) & (e[:, 6] > 0)]
        top = rows[:, 6].max() if len(rows) else 1.0
        for _, _, dx, dy, x0, y0, w in rows[:60]:  # a trained agent's unlikely shots fade
            ax_img.annotate("", xy=(x0 + dx, y0 + dy), xytext=(x0, y0),
                            arrowprops=dict(arrowstyle="->", color=colour, lw=0.9, alpha=0.15 + 0.75 * w / top))
    ax_img.set_xlim(-0.5, (screen.shape[1] if screen is not None else 160) - 0.5)
    ax_img.set_ylim((screen.shape[0] if screen is not None else 210) - 0.5, -0.5)
    ax_img.set_axis_off()
    ax_img.set_title(f"{game}\ntracks; shots (red), moves (white)", fontsize=8)

    centres = np.arange(5, 180, 10)
    colours = [H_COLOUR if (c < 45 or c > 135) else V_COLOUR for c in centres]
    ax_hist.bar(centres, m.hist / max(m.hist.sum(), 1e-12), width=9, color=colours)
    ax_hist.set_xticks([0, 45, 90, 135, 180], ["0° →", "45°", "90° ↕", "135°", "180° ←"])
    ax_hist.set_ylabel("share of motion energy")
    ax_hist.set_title(f"direction of motion of small objects (axial {m.axial:.2f})", fontsize=8)

    shares = [d.shots_h, None if d.player_x is None else 1 - d.player_x, d.motion_h]
    names = [f"shots\n{d.shot_votes[0]}H/{d.shot_votes[1]}V", "player, across\n(1 − x-share)", "motion\nh"]
    for i, (value, source) in enumerate(zip(shares, ("shots", "player", "motion"), strict=True)):
        if value is None:
            ax_e.text(i, 0.5, "none", ha="center", fontsize=8, color="#888")
            continue
        colour = H_COLOUR if value >= 0.5 else V_COLOUR
        ax_e.bar(i, value, color=colour, alpha=1.0 if source == d.source else 0.3,
                 edgecolor="k" if source == d.source else "none")
        ax_e.text(i, value + 0.02, f"{value:.2f}", ha="center", fontsize=7)
    for y in (TAU, 1 - TAU):
        ax_e.axhline(y, color="k", ls=":", lw=1)
    for y in (CONFINED, 1 - CONFINED):
        ax_e.plot([0.6, 1.4], [y, y], color="k", ls="--", lw=1)
    ax_e.set_xticks(range(3), names, fontsize=7)
    ax_e.set_ylim(0, 1.12)
    ax_e.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax_e.set_ylabel("horizontal share")
    ax_e.set_title(f"{d.label} by {d.source} (conf. {d.confidence:.2f})", fontsize=8)
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.05 if caption else 0, 1, 1))
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 72) -> Path:
    """Write ``fig`` to ``path`` atomically (small: 72 dpi)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
