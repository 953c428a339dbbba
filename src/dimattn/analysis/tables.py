"""The report's tables as text: one :class:`TextTable` per table, rendered as Markdown, LaTeX,
HTML or CSV, so that every format shows the same cells.

The builders take the data frames of :mod:`dimattn.analysis.stats`.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from dimattn.analysis.stats import METRICS, SE_CONVENTIONS, agents_in, group_of, win_counts

MISSING = "—"


@dataclass
class TextTable:
    """A table of strings. ``bold`` holds (row, column) positions of the body to emphasise;
    ``footer`` rows (such as the wins row) follow a rule."""

    caption: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    footer: list[list[str]] = field(default_factory=list)
    text_columns: set[int] = field(default_factory=lambda: {0})  # left-aligned in HTML; others are numbers

    def _cells(self, mark: str) -> list[list[str]]:
        """Body rows with bold cells wrapped as ``mark`` % cell."""
        return [[mark % c if (i, j) in self.bold else c for j, c in enumerate(row)]
                for i, row in enumerate(self.rows)]

    def markdown(self) -> str:
        lines = [f"**{self.caption}**", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join(["---"] + [":-:"] * (len(self.header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self._cells("**%s**") + self.footer]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def esc(s: str) -> str:
            s = s.replace("\\", r"\textbackslash{}")
            for ch in "&%$#_{}":
                s = s.replace(ch, "\\" + ch)
            return s.replace("±", r"$\pm$").replace(MISSING, "--")

        body = [[esc(c) for c in r] for r in self.rows]
        body = [[rf"\textbf{{{c}}}" if (i, j) in self.bold else c for j, c in enumerate(r)]
                for i, r in enumerate(body)]
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 r"\begin{tabular}{l" + "r" * (len(self.header) - 1) + "}", r"\toprule",
                 " & ".join(esc(h) for h in self.header) + r" \\", r"\midrule"]
        lines += [" & ".join(r) + r" \\" for r in body]
        if self.footer:
            lines.append(r"\midrule")
            lines += [" & ".join(esc(c) for c in r) + r" \\" for r in self.footer]
        lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + esc(self.caption) + "}", r"\end{table}"]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        e = html.escape

        def tr(row: list[str], tag: str = "td") -> str:
            return "<tr>" + "".join(f'<{tag} class="{"l" if j in self.text_columns else "r"}">{e(c)}</{tag}>'
                                    for j, c in enumerate(row)) + "</tr>"

        head = tr(self.header, "th")
        body = "".join(tr(r) for r in self._cells("\0%s\1")).replace("\0", "<strong>").replace("\1", "</strong>")
        foot = "".join(tr(r) for r in self.footer)
        # The caption sits above the table, not in it: a <caption> is as narrow as its table, which
        # squeezed it into a ~150 px column beside the small tables of a small study.
        return (f'<div class="table"><p class="caption">{e(self.caption)}</p><table><thead>{head}</thead>'
                f"<tbody>{body}</tbody>" + (f"<tfoot>{foot}</tfoot>" if foot else "") + "</table></div>")


def _num(x: float, digits: int = 2) -> str:
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def frame_csv(df: pd.DataFrame) -> str:
    """A data frame as CSV text (full precision), the machine-readable twin of each table."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buf.getvalue()


# --------------------------------------------------------------------------- per-game table
def per_game_caption(table: pd.DataFrame, df: pd.DataFrame, use_last: bool, se: str) -> str:
    """Say how each number of the per-game table was made."""
    n_evals = df.groupby(["game", "agent", "seed"])["timestep"].nunique()
    evals = f"{int(n_evals.iloc[0])} evaluations" if n_evals.nunique() == 1 else "evaluations"
    per_seed = ("the last evaluation of each seed" if use_last
                else f"the mean over each seed's whole evaluation period (all its {evals})")
    seeds = table["n_seeds"]
    n = f"{int(seeds.iloc[0])} seed{'s' if seeds.iloc[0] != 1 else ''}" if seeds.nunique() == 1 else "its seeds"
    se_text = ("SE = std(ddof=0)/√n, the published convention" if SE_CONVENTIONS[se] == 0
               else "SE = sample std (ddof=1)/√n")
    if (seeds == 1).all():  # "mean over 1 seed" would promise an average and a spread that are not there
        cell = f"cell = its one seed's score ± standard error (0 with one seed; {se_text})"
    else:
        cell = f"cell = mean over {n} ± standard error ({se_text})"
    return f"Per-game scores: {per_seed}; {cell}. Bold: highest mean of the game. Last row: games won per agent."


def per_game_table(table: pd.DataFrame, caption: str) -> TextTable:
    """Long per-game table (see :func:`dimattn.analysis.stats.per_game`) -> Game × agent text table."""
    agents = list(agents_in(table))
    cells = table.set_index(["game", "agent"])
    rows, bold = [], set()
    for i, game in enumerate(sorted(set(table["game"]))):
        row = [game]
        for j, agent in enumerate(agents, start=1):
            if (game, agent) not in cells.index:
                row.append(MISSING)
                continue
            c = cells.loc[(game, agent)]
            row.append(f"{_num(c['mean'])} ± {_num(c['se'])}")
            if c["winner"]:
                bold.add((i, j))
        rows.append(row)
    wins = win_counts(table)
    return TextTable(caption, ["Game", *agents], rows, bold, [["Wins", *[str(wins[a]) for a in agents]]])


# --------------------------------------------------------------------------- aggregates
def aggregates_table(agg: pd.DataFrame, what: str) -> TextTable:
    """rliable aggregates (agent, metric, estimate, low, high) -> agent × metric table."""
    agents = list(dict.fromkeys(agg["agent"]))
    cells = agg.set_index(["agent", "metric"])
    rows = [[a, *[f"{_num(cells.loc[(a, m), 'estimate'], 3)} [{_num(cells.loc[(a, m), 'low'], 3)}, "
                  f"{_num(cells.loc[(a, m), 'high'], 3)}]" for m in METRICS]] for a in agents]
    # Best per metric in bold: highest, except the optimality gap (lower is better).
    bold = set()
    for j, m in enumerate(METRICS, start=1):
        est = [cells.loc[(a, m), "estimate"] for a in agents]
        best = min(est) if m == "Optimality Gap" else max(est)
        bold |= {(i, j) for i, v in enumerate(est) if v == best}
    caption = (f"Aggregate human-normalised scores ({what}) with 95% stratified-bootstrap confidence "
               "intervals. Bold: best point estimate (lowest optimality gap).")
    return TextTable(caption, ["Agent", *METRICS], rows, bold)


def improvement_table(poi: pd.DataFrame, reps: int) -> TextTable:
    rows = [[f"P({r.agent} > {r.baseline})", _num(r.estimate, 3), f"[{_num(r.low, 3)}, {_num(r.high, 3)}]"]
            for r in poi.itertuples()]
    caption = ("Probability of improvement over the baseline: the chance that a run of the agent beats a run "
               f"of the baseline on a game, averaged over games; 95% CI from {reps} stratified bootstrap replicates.")
    return TextTable(caption, ["Comparison", "P", "95% CI"], rows)


# --------------------------------------------------------------------------- alignment of biases
def alignment_table(align: pd.DataFrame, classification: str = "the published study's classification") -> TextTable:
    """Alignment (group, agent, bias, wins, n_games, share) -> group × agent table of "wins (share)";
    each agent's column names its declared bias (``unknown`` where its block is not registered)."""
    agents = list(dict.fromkeys(align["agent"]))
    bias = dict(zip(align["agent"], align["bias"])) if "bias" in align else {}
    groups = list(dict.fromkeys(align["group"]))
    cells = align.set_index(["group", "agent"])
    rows, bold = [], set()
    for i, g in enumerate(groups):
        wins = [int(cells.loc[(g, a), "wins"]) for a in agents]
        n = int(cells.loc[(g, agents[0]), "n_games"])
        rows.append([g, str(n), *[f"{w} ({100 * w / n:.0f}%)" for w in wins]])
        bold |= {(i, j + 2) for j, w in enumerate(wins) if w == max(wins) and w > 0}
    caption = ("Alignment of biases: games won by each agent within each axis-of-dynamics group "
               f"({classification}), "
               "count and share of the group's games. Bold: the agent that wins most of the group. "
               "Each agent's declared bias in brackets.")
    heads = [f"{a} ({bias[a]})" if a in bias else a for a in agents]
    return TextTable(caption, ["Axis group", "Games", *heads], rows, bold)


def win_list_table(lists: Mapping[str, list[str]]) -> TextTable:
    rows = [[a, str(len(games)), ", ".join(f"{g} ({_axis_tag(g)})" for g in games) or MISSING]
            for a, games in lists.items()]
    caption = ("Games won per agent; the letter gives the game's axis of dynamics "
               "(H horizontal, V vertical, O other, ? unclassified).")
    return TextTable(caption, ["Agent", "Wins", "Games won"], rows, text_columns={0, 2})


def _axis_tag(game: str) -> str:
    group = group_of(game)
    return {"horizontal": "H", "vertical": "V"}.get(group, "O" if group.startswith("other") else "?")
