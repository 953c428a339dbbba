"""The figures of ``dimattn explain``: the published "state representation" panel per observation
(last frame, H1 maps, attention maps, Grad-CAM) and the orientation/complementarity plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dimattn.fileio import atomic_savefig
from dimattn.interpret.measures import SIDE_MARGIN, Explanation, side


def mosaic(maps: np.ndarray, cols: int = 4) -> np.ndarray:
    """Tile maps (C, h, w) into one image (rows·(h+1)-1, cols·(w+1)-1), each map min-max scaled to
    [0, 1] on its own (a constant map is 0), with NaN separators one pixel wide."""
    c, h, w = maps.shape
    rows = -(-c // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k, m in enumerate(maps.astype(np.float64)):
        span = m.max() - m.min()
        r, q = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = (m - m.min()) / span if span > 0 else 0.0
    return out


def _map_grid(fig, spec, maps: np.ndarray, title: str) -> None:
    """Draw C maps (C, h, w) as a mosaic (4×4 for 16; 6 columns for the 32 after conv2) in one gridspec cell,
    each map on its own colour scale."""
    import matplotlib as mpl

    cmap = mpl.colormaps["inferno"].with_extremes(bad="white")
    ax = fig.add_subplot(spec)
    ax.imshow(mosaic(maps, cols=4 if len(maps) <= 16 else 6), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9, loc="left")
    ax.axis("off")


def _frame_panel(fig, spec, frame: np.ndarray, title: str, cam: np.ndarray | None = None) -> None:
    """The 84×84 frame in grey, with the Grad-CAM map (84, 84) in [0, 1] blended where it is high."""
    ax = fig.add_subplot(spec)
    ax.imshow(frame, cmap="gray", vmin=0, vmax=255)
    if cam is not None:  # per-pixel alpha: unsalient regions keep the plain frame
        ax.imshow(cam, cmap="jet", vmin=0, vmax=1, alpha=0.75 * np.clip(cam, 0, 1))
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xticks([])
    ax.set_yticks([])


def state_representation_figure(obs: np.ndarray, name: str, explanations: Sequence[Explanation], i: int,
                                path: str | Path) -> None:
    """One figure for observation ``i``: a row per agent with the last frame, the 16 H1 maps, the 16
    attention-output maps and the Grad-CAM overlay, titled with the action and the two measures."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    frame = obs[i, -1]  # (84, 84): the newest frame of the stack
    rows = len(explanations)
    # Square panels: 4 cells of `cell` inches with `gap` between them; `title` inches above each row.
    width, left, right, cell_gap = 12.5, 0.4, 0.12, 0.1
    cell = (width - left - right) / (4 + 3 * cell_gap)
    title, head, foot = 0.5, 0.45, 0.1
    height = head + rows * (title + cell) + foot
    fig = Figure(figsize=(width, height))
    outer = fig.add_gridspec(rows, 4, left=left / width, right=1 - right / width, bottom=foot / height,
                             top=1 - (head + title) / height, wspace=cell_gap, hspace=title / cell)
    for r, e in enumerate(explanations):
        _frame_panel(fig, outer[r, 0], frame, "last frame")
        fig.text(0.012, outer[r, 0].get_position(fig).y0 + 0.5 * outer[r, 0].get_position(fig).height,
                 e.label, rotation=90, va="center", ha="center", fontsize=12, fontweight="bold")
        _map_grid(fig, outer[r, 1], e.h1[i], "H1: rectified conv1 maps (16 × 20×20)")
        if e.agent == "NA":
            ax = fig.add_subplot(outer[r, 2])
            ax.text(0.5, 0.5, "NA: no attention block", ha="center", va="center", fontsize=10, color="0.4")
            ax.axis("off")
        else:
            o, c = float(e.orientation[i]), float(e.complementarity[i])
            where, inp = ("", "H1") if "@" not in e.agent else (" after conv2", "H2")  # the block's place, input
            _map_grid(fig, outer[r, 2], e.attention[i],
                      f"attention output{where} (before residual)\nO = {o:+.2f} ({side(o)}) · r({inp}, att) = {c:+.2f}")
        _frame_panel(fig, outer[r, 3], frame, f"Grad-CAM of action {e.action_name(i)}", cam=e.gradcam[i])
    fig.suptitle(f"State representation · {name}", fontsize=12, y=1 - 0.12 / height, va="top")
    atomic_savefig(fig, path)


def orientation_figure(names: Sequence[str], explanations: Sequence[Explanation], path: str | Path) -> None:
    """Orientation of every agent on every observation (dots) and its mean (bar), with the two sides marked."""
    from matplotlib.figure import Figure

    shown = [e for e in explanations if np.isfinite(e.orientation).any()]
    fig = Figure(figsize=(1.3 + 1.2 * max(len(shown), 1), 3.6))
    ax = fig.add_subplot()
    ax.axhspan(SIDE_MARGIN, 1.05, color="tab:orange", alpha=0.08)
    ax.axhspan(-1.05, -SIDE_MARGIN, color="tab:blue", alpha=0.08)
    ax.axhline(0, color="k", lw=0.8)
    rng = np.random.default_rng(0)  # jitter only, so the dots of one agent do not overlap
    for k, e in enumerate(shown):
        o = e.orientation[np.isfinite(e.orientation)]
        ax.bar(k, o.mean(), width=0.6, color="tab:orange" if o.mean() > 0 else "tab:blue", alpha=0.5)
        ax.scatter(k + rng.uniform(-0.18, 0.18, len(o)), o, s=14, color="k", zorder=3)
    ax.set_xticks(range(len(shown)), [e.label for e in shown])
    ax.set_xlim(-0.6, max(len(shown), 1) - 0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("orientation O")
    ax.text(1.01, 0.97, "horizontal", transform=ax.transAxes, va="top", rotation=90, color="tab:orange")
    ax.text(1.01, 0.03, "vertical", transform=ax.transAxes, va="bottom", rotation=90, color="tab:blue")
    ax.set_title(f"Attention orientation on {len(names)} observation(s)", fontsize=10)
    atomic_savefig(fig, path)
