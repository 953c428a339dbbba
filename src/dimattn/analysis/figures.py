"""The report's figures, drawn with rliable's plotting helpers where it has one and matplotlib
otherwise. Every builder returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes
it as PNG and SVG. Each agent has one colour in every figure (:func:`agent_colors`).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dimattn.agents.attention import AGENTS
from dimattn.agents.registry import DEFAULT_POSITION, agent_order, bias_of, blocks, split_label
from dimattn.analysis.stats import METRICS
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_savefig

#: Formats every figure is saved in.
FORMATS: tuple[str, ...] = ("png", "svg")


class AgentColors(dict):
    """{agent: RGB}, filled on first use so that any agent label has a colour, the same in every figure."""

    def __missing__(self, label: str) -> tuple[float, float, float]:
        self[label] = color = _color_of(label)
        return color


def agent_colors() -> AgentColors:
    """{agent: RGB} from seaborn's colour-blind palette (rliable's default): grey for the NA
    baseline, hues far apart for the attention agents; the palette's other hues for other blocks (in
    registry order); a darker shade of its block's hue for a block placed after conv2."""
    return AgentColors({a: _color_of(a) for a in AGENTS})


def _color_of(label: str) -> tuple[float, float, float]:
    import zlib

    import seaborn as sns

    palette = sns.color_palette("colorblind", n_colors=10)
    picks = {"NA": 7, "SWA": 1, "CWRA": 2, "CWCA": 0, "CWRCA": 4}  # grey, orange, green, blue, purple
    free = [3, 5, 6, 8, 9]  # red, tan, pink, yellow, cyan
    try:
        name, position = split_label(label)
    except DimattnError:
        name, position = label, DEFAULT_POSITION
    others = [b.name for b in blocks() if not b.study]
    if name in picks:
        rgb = palette[picks[name]]
    elif name in others:
        rgb = palette[free[others.index(name) % len(free)]]
    else:  # a block not registered here: a stable hue from its name
        rgb = palette[free[zlib.crc32(name.encode()) % len(free)]]
    return tuple(c * 0.6 for c in rgb) if position != DEFAULT_POSITION else tuple(rgb)


def save_figure(fig: Figure, stem: Path, dpi: int = 110, crop: bool = True) -> list[Path]:
    """Write ``fig`` to ``stem``.png and ``stem``.svg (atomically) and close it.

    ``crop``: trim the page to the drawing (``bbox_inches="tight"``); figures that set their own
    margins, like the many-panel learning curves, save faster without it.
    """
    paths = [atomic_savefig(fig, stem.with_suffix(f".{fmt}"), dpi=dpi, crop=crop) for fmt in FORMATS]
    plt.close(fig)
    return paths


def aggregates_figure(agg: pd.DataFrame, xlabel: str = "Human-normalised score") -> Figure:
    """rliable's interval-estimate plot: one panel per metric, one bar (95% CI) per agent."""
    from rliable import plot_utils

    agents = list(dict.fromkeys(agg["agent"]))
    cells = agg.set_index(["agent", "metric"])
    points = {a: np.array([cells.loc[(a, m), "estimate"] for m in METRICS]) for a in agents}  # (4,)
    cis = {a: np.array([[cells.loc[(a, m), k] for m in METRICS] for k in ("low", "high")]) for a in agents}  # (2, 4)
    from matplotlib.ticker import MaxNLocator

    # rliable places the x label at a fixed fraction of the figure's height; the figure is 0.6 in per agent,
    # so with few agents that fraction fell on the tick labels. Keep it ~0.45 in below the axes instead.
    height = 0.6 * len(agents)
    fig, axes = plot_utils.plot_interval_estimates(points, cis, metric_names=list(METRICS), algorithms=agents,
                                                   colors=agent_colors(), xlabel=xlabel,
                                                   xlabel_y_coordinate=-0.45 / height, subfigure_width=3.6,
                                                   row_height=0.6, wspace=0.2)  # room between panels' tick labels
    for ax in np.atleast_1d(axes):
        low, high = ax.get_xlim()
        if high - low < 0.05:  # one seed, one game: a zero-width interval would get a crowded, tiny axis
            middle = (low + high) / 2
            ax.set_xlim(middle - 0.05, middle + 0.05)
        ax.xaxis.set_major_locator(MaxNLocator(3))  # 3.6 in panels: more ticks overlap
    return fig


def profiles_figure(profiles: dict[str, np.ndarray], cis: dict[str, np.ndarray], taus: np.ndarray) -> Figure:
    """rliable's performance profiles: fraction of runs scoring above τ, with 95% CIs."""
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax, colors=agent_colors(),
                                         xlabel=r"Human-normalised score ($\tau$)",
                                         ylabel=r"Fraction of runs with score $> \tau$",
                                         labelsize="large", ticklabelsize="medium", legend=True, legendsize="medium")
    return fig


def improvement_figure(poi: pd.DataFrame) -> Figure:
    """rliable's probability-of-improvement plot: P(X > Y) with 95% CIs, one row per pair."""
    from rliable import plot_utils

    colors = agent_colors()
    keys = [f"{r.agent},{r.baseline}" for r in poi.itertuples()]
    points = {k: r.estimate for k, r in zip(keys, poi.itertuples())}
    cis = {k: np.array([r.low, r.high]) for k, r in zip(keys, poi.itertuples())}
    fig, ax = plt.subplots(figsize=(5, 0.6 + 0.55 * len(keys)))
    plot_utils.plot_probability_of_improvement(points, cis, ax=ax, colors=[colors[r.agent] for r in poi.itertuples()],
                                               xticks=[0.0, 0.25, 0.5, 0.75, 1.0], xlabel="P(X > Y)",
                                               left_ylabel="Agent X", right_ylabel="Agent Y")
    ax.axvline(0.5, color="k", linestyle=":", linewidth=1)
    return fig


def sample_efficiency_figure(se: pd.DataFrame) -> Figure:
    """rliable's sample-efficiency curve: IQM of human-normalised scores per evaluation step."""
    from rliable import plot_utils

    agents = list(dict.fromkeys(se["agent"]))
    steps = np.sort(se["timestep"].unique())
    by = {a: se[se["agent"] == a].sort_values("timestep") for a in agents}
    points = {a: by[a]["iqm"].to_numpy() for a in agents}  # (T,)
    cis = {a: by[a][["low", "high"]].to_numpy().T for a in agents}  # (2, T)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_sample_efficiency_curve(steps / 1e6, points, cis, algorithms=agents, colors=agent_colors(), ax=ax,
                                            xlabel="Environment steps (millions)", ylabel="IQM human-normalised score",
                                            labelsize="large", ticklabelsize="medium", marker="", legend=True,
                                            legendsize="medium")
    return fig


def learning_curves_figure(curves: pd.DataFrame, ncols: int = 8) -> Figure:
    """One panel per game: mean score over seeds ± standard error against environment steps.

    ``curves``: columns game, agent, timestep, mean, se (see :func:`dimattn.analysis.stats.learning_curves`).
    """
    from matplotlib.ticker import MaxNLocator

    colors = agent_colors()
    games = sorted(curves["game"].unique())
    ncols = min(ncols, len(games))
    nrows = math.ceil(len(games) / ncols)
    width, height = 2.4 * ncols + 0.8, 1.9 * nrows + 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), sharex=True, squeeze=False)
    for ax, game in zip(axes.flat, games):
        g = curves[curves["game"] == game]
        for agent, a in g.groupby("agent", sort=False):
            a = a.sort_values("timestep")
            x = a["timestep"].to_numpy() / 1e6
            ax.plot(x, a["mean"], color=colors[agent], linewidth=1.2, label=agent)
            ax.fill_between(x, a["mean"] - a["se"].fillna(0), a["mean"] + a["se"].fillna(0),
                            color=colors[agent], alpha=0.2, linewidth=0)
        ax.set_title(game, fontsize=9, pad=2)
        ax.tick_params(labelsize=7, pad=1)
        ax.yaxis.set_major_locator(MaxNLocator(3))
        ax.xaxis.set_major_locator(MaxNLocator(4))  # a 2.4 in panel holds ~4 step labels without overlap
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(games):]:
        ax.set_visible(False)
    present = agent_order(set(curves["agent"]))
    handles = [plt.Line2D([], [], color=colors[a], linewidth=2) for a in present]
    fig.legend(handles, present, loc="upper center", ncol=len(handles), frameon=False)
    fig.supxlabel("Environment steps (millions)")
    fig.supylabel("Score (mean ± SE over seeds)")
    # Fixed margins: tight_layout over 56 panels costs more than drawing them.
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.15 / width, bottom=0.6 / height, top=1 - 0.6 / height,
                        wspace=0.32, hspace=0.38)
    return fig


def alignment_figure(align: pd.DataFrame) -> Figure:
    """Heat map of the share of each axis group's games won by each agent, annotated "wins/games"."""
    agents = list(dict.fromkeys(align["agent"]))
    groups = list(dict.fromkeys(align["group"]))
    wide = align.pivot(index="group", columns="agent", values="share").loc[groups, agents]  # (groups, agents)
    wins = align.pivot(index="group", columns="agent", values="wins").loc[groups, agents]
    n = align.groupby("group")["n_games"].first().loc[groups]
    # at least 2.6 in tall: the colour bar's label runs along it and must not reach the x label
    fig, ax = plt.subplots(figsize=(1.2 * len(agents) + 3.2, max(0.6 * len(groups) + 1.4, 2.6)))
    im = ax.imshow(wide.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, g in enumerate(groups):
        for j, a in enumerate(agents):
            share = wide.loc[g, a]
            ax.text(j, i, f"{int(wins.loc[g, a])}/{int(n[g])}", ha="center", va="center", fontsize=10,
                    color="black" if share > 0.6 else "white")
    ax.set_xticks(range(len(agents)), [f"{a}\n{bias_of(a)}" for a in agents])
    ax.set_yticks(range(len(groups)), [f"{g} ({int(n[g])})" for g in groups])
    ax.set_xlabel("Agent and its declared bias")
    fig.colorbar(im, ax=ax, label="Share of games won")
    fig.tight_layout()
    return fig
