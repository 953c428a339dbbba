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


#: Up to this many evaluation steps, step axes tick at each of them and curves mark each point.
FEW_STEPS = 6


def step_unit(max_step: float) -> tuple[float, str]:
    """(divisor, axis label) for environment steps: millions from 1M steps, thousands from 10k, else steps,
    so a 30k-step demo reads 10, 20, 30 (thousands) rather than 0.010–0.030 (millions)."""
    if max_step >= 1_000_000:
        return 1e6, "Environment steps (millions)"
    if max_step >= 10_000:
        return 1e3, "Environment steps (thousands)"
    return 1.0, "Environment steps"


def _step_ticks(ax, x: np.ndarray, nbins: int) -> None:
    """Tick at each evaluation step when there are few (a locator's round numbers would fall between
    them), else at most ``nbins`` round numbers."""
    from matplotlib.ticker import MaxNLocator

    x = np.unique(x)
    if len(x) <= FEW_STEPS:
        ax.set_xticks(x, [f"{v:g}" for v in x])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins))


def _mark_points(ax, points: list[tuple[float, float, tuple]]) -> None:
    """A coloured dot at each (x, y, colour): a zero-width interval (one run per game, every bootstrap
    resample the same) draws no bar, and rliable's grey point line alone does not say which agent it is."""
    if not points:
        return
    low, high = ax.get_xlim()  # plotting rescales the axis to the data; keep the range rliable chose
    for x, y, color in points:
        ax.plot([x], [y], "o", color=color, markersize=7, zorder=3, clip_on=False)
    xs = [x for x, _, _ in points]
    pad = 0.08 * (high - low)  # a dot on the frame's edge would be cut in half
    ax.set_xlim(min(low, min(xs) - pad), max(high, max(xs) + pad))


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
    colors = agent_colors()
    for i, ax in enumerate(np.atleast_1d(axes)):
        _mark_points(ax, [(points[a][i], j, colors[a]) for j, a in enumerate(agents) if cis[a][0, i] == cis[a][1, i]])
    return fig


def profiles_figure(profiles: dict[str, np.ndarray], cis: dict[str, np.ndarray], taus: np.ndarray) -> Figure:
    """rliable's performance profiles: fraction of runs scoring above τ, with 95% CIs."""
    from rliable import plot_utils

    hidden = coinciding(profiles)
    # An agent drawn over an earlier one with the same profile would vanish: dash it instead.
    styles = {a: ((0, (5, 3)) if a in hidden else "solid") for a in profiles}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax, colors=agent_colors(),
                                         linestyles=styles,
                                         xlabel=r"Human-normalised score ($\tau$)",
                                         ylabel=r"Fraction of runs with score $> \tau$",
                                         labelsize="large", ticklabelsize="medium", legend=True, legendsize="medium")
    return fig


def coinciding(profiles: dict[str, np.ndarray]) -> dict[str, str]:
    """{agent: the earlier agent whose profile it equals}: drawn solid, it would hide that one."""
    names = list(profiles)
    same = {a: [b for b in names[:i] if np.array_equal(profiles[a], profiles[b])] for i, a in enumerate(names)}
    return {a: earlier[0] for a, earlier in same.items() if earlier}


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
    _mark_points(ax, [(r.estimate, i, colors[r.agent]) for i, r in enumerate(poi.itertuples()) if r.low == r.high])
    return fig


def sample_efficiency_figure(se: pd.DataFrame) -> Figure:
    """rliable's sample-efficiency curve: IQM of human-normalised scores per evaluation step."""
    from rliable import plot_utils

    agents = list(dict.fromkeys(se["agent"]))
    steps = np.sort(se["timestep"].unique())
    by = {a: se[se["agent"] == a].sort_values("timestep") for a in agents}
    points = {a: by[a]["iqm"].to_numpy() for a in agents}  # (T,)
    cis = {a: by[a][["low", "high"]].to_numpy().T for a in agents}  # (2, T)
    scale, xlabel = step_unit(steps.max())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # Few steps: mark each one, or two agents meeting at a step read as one line.
    plot_utils.plot_sample_efficiency_curve(steps / scale, points, cis, algorithms=agents, colors=agent_colors(),
                                            ax=ax, xlabel=xlabel, ylabel="IQM human-normalised score",
                                            labelsize="large", ticklabelsize="medium",
                                            marker="o" if len(steps) <= FEW_STEPS else "", legend=True,
                                            legendsize="medium")
    if len(steps) <= FEW_STEPS:
        _step_ticks(ax, steps / scale, 8)
    return fig


def learning_curves_figure(curves: pd.DataFrame, ncols: int = 8) -> Figure:
    """One panel per game: mean score over seeds ± standard error against environment steps.

    ``curves``: columns game, agent, timestep, mean, se and optionally n, the seeds behind each mean (see
    :func:`dimattn.analysis.stats.learning_curves`).
    """
    from matplotlib.ticker import MaxNLocator

    colors = agent_colors()
    games = sorted(curves["game"].unique())
    ncols = min(ncols, len(games))
    nrows = math.ceil(len(games) / ncols)
    width, height = 2.4 * ncols + 0.8, 1.9 * nrows + 1.0
    scale, xlabel = step_unit(curves["timestep"].max())
    few = curves["timestep"].nunique() <= FEW_STEPS  # mark each evaluation: agents meeting at one read as one line
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), sharex=True, squeeze=False)
    for ax, game in zip(axes.flat, games):
        g = curves[curves["game"] == game]
        for agent, a in g.groupby("agent", sort=False):
            a = a.sort_values("timestep")
            x = a["timestep"].to_numpy() / scale
            ax.plot(x, a["mean"], color=colors[agent], linewidth=1.2, label=agent, marker="o" if few else None,
                    markersize=4)
            ax.fill_between(x, a["mean"] - a["se"].fillna(0), a["mean"] + a["se"].fillna(0),
                            color=colors[agent], alpha=0.2, linewidth=0)
        if few:
            ax.margins(x=0.1, y=0.1)  # the axes end at the data: a marker there would be cut in half
        ax.set_title(game, fontsize=9, pad=2)
        ax.tick_params(labelsize=7, pad=1)
        ax.yaxis.set_major_locator(MaxNLocator(3))
        _step_ticks(ax, curves["timestep"].to_numpy() / scale, 4)  # a 2.4 in panel holds ~4 round step labels
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(games):]:
        ax.set_visible(False)
    present = agent_order(set(curves["agent"]))
    handles = [plt.Line2D([], [], color=colors[a], linewidth=2) for a in present]
    fig.legend(handles, present, loc="upper center", ncol=len(handles), frameon=False)
    fig.supxlabel(xlabel)
    one_seed = "n" in curves and curves["n"].max() == 1  # no spread to shade: do not promise one
    fig.supylabel("Score (one seed)" if one_seed else "Score (mean ± SE over seeds)")
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
