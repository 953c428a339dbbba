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
from dimattn.analysis.stats import METRICS
from dimattn.fileio import atomic_savefig

#: Formats every figure is saved in.
FORMATS: tuple[str, ...] = ("png", "svg")


def agent_colors() -> dict[str, tuple[float, float, float]]:
    """{agent: RGB} from seaborn's colour-blind palette (rliable's default): grey for the NA
    baseline, and hues far apart for the attention agents."""
    import seaborn as sns

    palette = sns.color_palette("colorblind", n_colors=10)
    picks = {"NA": 7, "SWA": 1, "CWRA": 2, "CWCA": 0, "CWRCA": 4}  # grey, orange, green, blue, purple
    return {a: palette[picks[a]] for a in AGENTS}


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
    fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=list(METRICS), algorithms=agents,
                                                colors=agent_colors(), xlabel=xlabel, xlabel_y_coordinate=-0.14,
                                                subfigure_width=3.6, row_height=0.6)
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
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(games):]:
        ax.set_visible(False)
    present = [a for a in AGENTS if a in set(curves["agent"])]
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
    fig, ax = plt.subplots(figsize=(1.2 * len(agents) + 3.2, 0.6 * len(groups) + 1.4))
    im = ax.imshow(wide.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, g in enumerate(groups):
        for j, a in enumerate(agents):
            share = wide.loc[g, a]
            ax.text(j, i, f"{int(wins.loc[g, a])}/{int(n[g])}", ha="center", va="center", fontsize=10,
                    color="black" if share > 0.6 else "white")
    ax.set_xticks(range(len(agents)), agents)
    ax.set_yticks(range(len(groups)), [f"{g} ({int(n[g])})" for g in groups])
    ax.set_xlabel("Agent (bias: SWA, CWRA vertical; CWCA horizontal; CWRCA both)")
    fig.colorbar(im, ax=ax, label="Share of the group's games won")
    fig.tight_layout()
    return fig
