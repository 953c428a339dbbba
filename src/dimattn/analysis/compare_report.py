"""A :class:`~dimattn.analysis.compare.Comparison` as files people read, and as the report's section.

Layout of the output folder (``dimattn compare --out DIR``; ``<report>/compare/`` in ``dimattn report
--against``)::

    compare.md            protocol differences first, then the per-game table, your new agents' record,
                          the aggregates, and the caveats
    compare.csv           one row per (game, agent, versus): budget, yours, published, difference, interval,
                          verdict, and the same for the last evaluation (columns: dimattn.analysis.compare)
    versus.csv            your agents the other side lacks: wins / ties / losses against each of its agents
    aggregates.csv        median, IQM, mean HNS (95% CIs) yours and theirs; P(yours > theirs)
    figures/curves.png|svg       per (game, agent): your seeds thin, your mean, their mean ± SE to your budget
    figures/aggregates.png|svg   the aggregates as rliable interval plots

Everything is computed before the first file is written, and every file is written atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dimattn.analysis import figures, tables
from dimattn.analysis.compare import Comparison
from dimattn.fileio import atomic_write_text

VERDICT_COLORS = {"below": "#c0392b", "consistent": "#555555", "above": "#1e8449", "too few seeds": "#999999"}


@dataclass
class Written:
    """What :func:`write_comparison` wrote, and what the HTML report shows of it."""

    files: list[Path]
    figures: list[tuple[Path, str]]
    tables: list[tables.TextTable]
    summary: str


def _num(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


# --------------------------------------------------------------------------- tables
def cells_table(c: Comparison) -> tables.TextTable:
    """Your agents the other side has: one row per (game, agent)."""
    same = c.cells[c.cells["same_agent"]]
    protocol = bool(same["protocol"].astype(bool).any())  # a column only where some run differs
    rows = []
    for r in same.itertuples():
        rows.append([r.game, r.agent, f"{r.budget:,}", f"{r.seeds} / {r.seeds_published}", _num(r.mine),
                     f"{_num(r.published)} ± {_num(r.published_se)}",
                     f"{r.diff:+,.2f} [{_num(r.low)}, {_num(r.high)}]", r.verdict,
                     f"{_num(r.mine_last)} / {_num(r.published_last)} ({r.verdict_last})"]
                    + ([r.protocol or "none"] if protocol else []))
    pct = f"{100 * c.level:g}%"
    caption = (f"Your runs against the {c.label} runs of the same agent, at your budget (the last evaluation step "
               f"both have): per seed the mean of its evaluations on the matched grid (SPEC §5's score up to the "
               f"budget); difference = yours − {c.label} with a {pct} interval (Welch; a prediction interval for a "
               f"single seed); verdict below / above where the interval excludes 0. Last column: the last "
               f"evaluation, yours / {c.label} (its verdict).")
    header = ["Game", "Agent", "Budget", "Seeds", "Yours", f"{c.label.capitalize()} ± SE", f"Difference [{pct}]",
              "Verdict", "Last evaluation"] + (["Protocol differences"] if protocol else [])
    return tables.TextTable(caption, header, rows, text_columns={0, 1, 7, 9})


def versus_table(c: Comparison) -> tables.TextTable | None:
    """Your agents the other side lacks: per game, the difference and verdict against each of its agents."""
    new = c.cells[~c.cells["same_agent"]]
    if new.empty:
        return None
    others = list(dict.fromkeys(new["versus"]))
    rows = []
    for (game, agent), g in new.groupby(["game", "agent"], sort=False):
        by = g.set_index("versus")
        rows.append([game, agent, f"{g['budget'].iloc[0]:,}",
                     *[f"{by.loc[o, 'diff']:+,.2f} ({by.loc[o, 'verdict']})" if o in by.index else "—"
                       for o in others]])
    footer = []
    for agent, v in c.versus.groupby("agent", sort=False):
        by = v.set_index("versus")
        footer.append(["Wins / ties / losses", agent, "", *[
            f"{by.loc[o, 'wins']} / {by.loc[o, 'ties']} / {by.loc[o, 'losses']}" if o in by.index else "—"
            for o in others]])
    caption = (f"Your agents that the {c.label} runs lack, against each of their agents on the same games, at your "
               f"budget: difference (yours − theirs) and verdict; a win is a game where yours is above, a loss "
               f"one where it is below.")
    return tables.TextTable(caption, ["Game", "Agent", "Budget", *others], rows, footer=footer, text_columns={0, 1})


def aggregates_table(c: Comparison) -> tables.TextTable | None:
    """One row per (your agent, entry): median, IQM, mean HNS with CIs, and P(yours > it) where computed."""
    if c.aggregates.empty:
        return None
    metrics = [m for m in ("Median", "IQM", "Mean", "P(yours > it)") if m in set(c.aggregates["metric"])]
    cells = c.aggregates.set_index(["agent", "entry", "metric"])
    rows = []
    for (agent, entry), g in c.aggregates.groupby(["agent", "entry"], sort=False):
        rows.append([agent, entry, str(g["games"].iloc[0]), *[
            f"{_num(cells.loc[(agent, entry, m), 'estimate'], 3)} [{_num(cells.loc[(agent, entry, m), 'low'], 3)}, "
            f"{_num(cells.loc[(agent, entry, m), 'high'], 3)}]" if (agent, entry, m) in cells.index else "—"
            for m in metrics]])
    caption = (f"Human-normalised scores at your budget over the games each agent of yours was compared on: median, "
               f"IQM and mean with 95% stratified-bootstrap CIs ({c.reps} replicates, rliable); for an agent the "
               f"{c.label} runs lack, P(yours > it): the chance a run of yours beats a run of theirs on a game.")
    return tables.TextTable(caption, ["Your agent", "Entry", "Games", *metrics], rows, text_columns={0, 1})


def summary(c: Comparison) -> str:
    same = c.cells[c.cells["same_agent"]]
    counts = same["verdict"].value_counts()
    parts = [f"{int(counts.get(v, 0))} {v}" for v in ("consistent", "below", "above", "too few seeds")
             if counts.get(v, 0)]
    text = (f"{len(same)} (game, agent) compared with the {c.label} runs: {', '.join(parts)}" if len(same)
            else f"no agent of yours is among the {c.label} runs'")
    for r in c.versus.itertuples():
        text += f"; {r.agent} against {r.versus}: {r.wins} wins, {r.ties} ties, {r.losses} losses"
    return text + _one_seed(c)


def _one_seed(c: Comparison) -> str:
    """What a one-seed verdict could have seen: the true difference flagged 80% of the time (dimattn plan)."""
    one = c.cells[c.cells["test"] == "prediction"]
    if one.empty:
        return ""
    se = (one["detectable"] / one["published_se"]).replace(np.inf, np.nan)
    if len(one) == 1:
        r = one.iloc[0]
        return (f"; from one seed, the smallest difference this verdict detects (80% of the time) is "
                f"{r.detectable:,.2f} points ({se.iloc[0]:.1f} {c.label} SEs): a smaller one may pass as "
                "consistent (dimattn plan --seeds N tells what N seeds detect)")
    return (f"; {len(one)} verdict(s) from one seed detect (80% of the time) only differences of "
            f"{se.min():.1f}–{se.max():.1f} {c.label} SEs or more (column detectable; dimattn plan --seeds N)")


def markdown(c: Comparison, parts: list[tables.TextTable]) -> str:
    lines = [f"# Your runs compared with the {c.label} study", "",
             f"- yours: `{c.sources['mine']}`", f"- against: `{c.sources['against']}`",
             f"- interval: {100 * c.level:g}%; verdicts: {summary(c)}", "", "## Protocol differences", ""]
    lines += [f"- {p}" for p in c.protocol] or ["- none: every run follows the published protocol (SPEC §3–4)"]
    lines += ["", "## Per game", ""] + [t.markdown() for t in parts]
    if c.notes:
        lines += ["## Caveats", ""] + [f"- {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures
#: Your runs in the curves: vermillion, a colour of the palette that no published agent has.
MINE_COLOR = "#d55e00"
#: The other side's runs of your agent.
THEIRS_COLOR = "#333333"


def _color(agent: str) -> tuple[float, float, float]:
    return figures.agent_colors().get(agent, (0.1, 0.1, 0.1))


def curves_figure(c: Comparison) -> Figure:
    """One panel per (game, agent): your seeds (thin), your mean (thick), the other side's mean ± SE up to
    your budget (band) and beyond it (faint); for an agent they lack, each of their agents' means."""
    from matplotlib.ticker import MaxNLocator

    panels = list(c.cells.groupby(["game", "agent"], sort=False))
    many = len(panels) > 16  # a whole study (280 panels): small panels, fixed margins (tight_layout takes minutes)
    ncols = min(8 if many else 4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    pw, ph = (2.3, 1.9) if many else (3.4, 2.6)
    width, height = pw * ncols + 0.6, ph * nrows + 0.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    for ax, ((game, agent), cells) in zip(axes.flat, panels):
        grid = c.grids[game]
        for other in cells["versus"]:
            _their_curve(ax, c.theirs[(c.theirs["game"] == game) & (c.theirs["agent"] == other)], grid, other,
                         band=len(cells) == 1)
        mine = c.mine[(c.mine["game"] == game) & (c.mine["agent"] == agent)]
        mine = mine[mine["timestep"] <= grid.budget]
        for _, run in mine.groupby("seed"):
            ax.plot(run["timestep"] / 1e6, run["score"], color=MINE_COLOR, linewidth=0.6, alpha=0.6)
        mean = mine.groupby("timestep")["score"].mean()
        ax.plot(mean.index / 1e6, mean.to_numpy(), color=MINE_COLOR, linewidth=2.2, marker="o", markersize=3)
        if len(cells) > 1:
            ax.legend(fontsize=6, ncol=2, frameon=False, loc="best")
        ax.axvline(grid.budget / 1e6, color="k", linestyle=":", linewidth=0.8)
        r = cells.iloc[0]
        verdict = r.verdict if len(cells) == 1 else ", ".join(f"{v}: {n}" for v, n in
                                                              cells["verdict"].value_counts().items())
        ax.set_title(f"{game} · {agent}" + ("" if len(cells) == 1 else " vs all"), fontsize=8 if many else 9,
                     pad=11 if many else 12)
        if len(cells) == 1:
            verdict = f"{verdict}  {r['diff']:+.2f} [{_num(r.low)}, {_num(r.high)}]"
        ax.text(0.5, 1.01, verdict,
                transform=ax.transAxes, ha="center", va="bottom", fontsize=6 if many else 8,
                color=VERDICT_COLORS.get(r.verdict, "k") if len(cells) == 1 else "k")
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=MINE_COLOR, linewidth=0.6, alpha=0.6),
               plt.Line2D([], [], color=MINE_COLOR, linewidth=2.2),
               plt.Rectangle((0, 0), 1, 1, color=THEIRS_COLOR, alpha=0.3),
               plt.Line2D([], [], color=THEIRS_COLOR, alpha=0.3, linestyle="--"),
               plt.Line2D([], [], color="k", linestyle=":", linewidth=0.8)]
    fig.legend(handles, ["your seeds", "your mean", f"{c.label} mean ± SE", f"{c.label}, beyond your budget",
                         "your budget"], loc="upper center", ncol=5, frameon=False, fontsize=8)
    fig.supxlabel("Environment steps (millions)", fontsize=9)
    fig.supylabel("Score (mean of an evaluation's episodes)", fontsize=9)
    if many:
        fig.subplots_adjust(left=0.95 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.8 / height,
                            wspace=0.3, hspace=0.65)
    else:
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    return fig


def _their_curve(ax, runs: pd.DataFrame, grid, agent: str, band: bool) -> None:
    """The other side's mean (± SE, std ddof=0 / √n, where ``band``) up to the budget, faint beyond it."""
    g = runs.groupby("timestep")["score"]
    mean, se = g.mean(), g.std(ddof=0) / np.sqrt(g.count())
    cut = grid.theirs[-1]
    x = mean.index.to_numpy() / 1e6
    inside = mean.index <= cut
    color = THEIRS_COLOR if band else _color(agent)
    ax.plot(x[inside], mean[inside], color=color, linewidth=1.3, label=agent)
    if band:
        ax.fill_between(x[inside], (mean - se)[inside], (mean + se)[inside], color=color, alpha=0.2, linewidth=0)
    # Your budget, not their 10M, sets the view: the faint rest shows where their curve goes next. Only the
    # part in view is drawn, so that the scores of their last millions of steps do not set the y-axis.
    right = min(x[-1], max(3 * grid.budget / 1e6, x[inside][-1] * 1.05))
    after = (mean.index >= cut) & (x <= right)
    ax.plot(x[after], mean[after], color=color, linewidth=1.0, alpha=0.3, linestyle="--")
    ax.set_xlim(0, right)


def aggregates_figure(c: Comparison) -> Figure | None:
    """rliable interval plots of median, IQM and mean HNS, yours beside theirs."""
    from rliable import plot_utils

    agg = c.aggregates[c.aggregates["metric"].isin(["Median", "IQM", "Mean"])]
    if agg.empty:
        return None
    # One entry (NA published, say) can be measured on two agents' different game sets: name the set then.
    sets = agg.groupby("entry")["agent"].nunique()
    agg = agg.assign(label=[e if sets[e] == 1 else f"{e} on {a}'s games" for a, e in zip(agg["agent"], agg["entry"])])
    labels = list(dict.fromkeys(agg["label"]))
    cells = agg.set_index(["label", "metric"])
    metrics = ["Median", "IQM", "Mean"]
    points = {lb: np.array([cells.loc[(lb, m), "estimate"] for m in metrics]) for lb in labels}
    cis = {lb: np.array([[cells.loc[(lb, m), k] for m in metrics] for k in ("low", "high")]) for lb in labels}
    colors = {}
    for lb in labels:
        base = np.array(_color(lb.split(" (")[0]))
        colors[lb] = tuple(base) if "(yours)" in lb else tuple(0.55 * base + 0.45)  # theirs: the same hue, paler
    height = 0.45 * len(labels)
    fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=metrics, algorithms=labels, colors=colors,
                                                xlabel="Human-normalised score at your budget",
                                                xlabel_y_coordinate=-0.5 / max(height, 0.9), subfigure_width=3.4,
                                                row_height=0.45, wspace=0.25)
    return fig


# --------------------------------------------------------------------------- files
def write_comparison(c: Comparison, out: str | Path) -> Written:
    """Write every output of ``c`` under ``out`` (see the module docstring); figures are drawn first."""
    out = Path(out)
    parts = [t for t in (cells_table(c), versus_table(c), aggregates_table(c)) if t is not None]
    if not c.cells["same_agent"].any():
        parts = parts[1:]  # the same-agent table would be empty
    drawn = {"curves": curves_figure(c), "aggregates": aggregates_figure(c)}
    files, pngs = [], []
    captions = {"curves": f"Per game and agent: your seeds (thin), your mean, the {c.label} mean ± SE up to your "
                          "budget (dotted line) and faint beyond it; above each panel the verdict, difference and "
                          f"{100 * c.level:g}% interval.",
                "aggregates": "Human-normalised scores at your budget, yours (strong colour) and theirs (pale), "
                              "95% stratified-bootstrap CIs."}
    for name, fig in drawn.items():
        if fig is None:
            continue
        # A whole study's grid sets its own margins; cropping it would cost seconds.
        paths = figures.save_figure(fig, out / "figures" / name, crop=name != "curves" or len(fig.axes) <= 16)
        files += paths
        pngs.append((paths[0], captions[name]))
    for name, frame in (("compare", c.cells), ("versus", c.versus), ("aggregates", c.aggregates)):
        if len(frame):
            atomic_write_text(out / f"{name}.csv", tables.frame_csv(frame))
            files.append(out / f"{name}.csv")
    atomic_write_text(out / "compare.md", markdown(c, parts))
    files.append(out / "compare.md")
    return Written(files, pngs, parts, summary(c))
