"""``dimattn report``: every table and figure of the study (SPEC §5) from one input, plus a
self-contained ``index.html`` that shows them all.

Layout of the output folder::

    index.html                 the whole report; images embedded, opens without the other files
    notes.txt                  caveats about the input (missing seeds, dropped steps, ...)
    tables/*.md|tex|csv        per-game table, aggregates, probability of improvement, alignment, ...
    figures/*.png|svg          aggregates, performance profiles, probability of improvement,
                               sample efficiency, alignment heat map, per-game learning curves
    data/scores.csv            the tidy table (game, agent, seed, timestep, score)
    data/post_processed_results.pkl   the same data in the published pickle structure

Every file is written atomically; ``index.html`` is written last.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dimattn import console
from dimattn.analysis import figures, stats, tables
from dimattn.analysis.compare import Comparison, compare
from dimattn.analysis.compare_report import write_comparison
from dimattn.analysis.results import (
    PUBLISHED,
    TUNE_PAGE,
    DataWarning,
    align_steps,
    check_source,
    coverage_notes,
    load_results,
    note,
    save_published,
    tune_folders,
)
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.games import measured_axes


@dataclass
class Section:
    """One part of the HTML page: a heading, a short text, figures (stems) and tables."""

    title: str
    text: str
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png path, caption)
    tables: list[tables.TextTable] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text)


@dataclass
class Report:
    """What :func:`build_report` made: the output folder, its files and the caveats met."""

    out: Path
    files: list[Path]
    notes: list[str]
    wins: pd.Series


def build_report(source: str | Path, out: str | Path, *, use_last: bool = False, se: str = "ddof0",
                 reps: int = 2000, seed: int = 0, progress: bool = True, against: str | Path | None = None) -> Report:
    """Load ``source`` (study directory, folder of runs, published pickle or ``"published"``) and write the
    report to ``out``. ``against``: add the section "Compared with the published study" (``"published"``,
    or another pickle or folder: :func:`dimattn.analysis.compare.compare`), its files under ``out/compare/``.

    ``use_last``: score each seed by its last evaluation instead of the mean over all evaluations.
    ``se``: ``ddof0`` (published) or ``ddof1`` standard errors. ``reps``, ``seed``: bootstrap
    replicates and seed for every rliable interval. Caveats about the data are collected as notes.
    """
    if reps < 1:
        raise DimattnError(f"--reps must be at least 1, got {reps}")
    if se not in stats.SE_CONVENTIONS:
        raise DimattnError(f"unknown --se {se!r}; choose one of {', '.join(stats.SE_CONVENTIONS)}")
    check_source(source)
    if against is not None:
        check_source(against, "--against")
    out = Path(out)
    with console.notes_of(DataWarning) as notes:
        df = align_steps(load_results(source))
        for text in coverage_notes(df):
            note(text)
        if df.groupby(["game", "agent"])["seed"].nunique().max() == 1:
            note("every game and agent has a single seed: standard errors are 0 and the confidence intervals "
                 "show no seed-to-seed variation; train more seeds (the published study has 5) to compare agents")
        comparison = None if against is None else compare(source, against, reps=reps, seed=seed)
        files, sections, wins = _write_all(df, out, use_last=use_last, se=se, reps=reps, seed=seed,
                                           progress=progress)
    if comparison is not None:
        sections.append(_comparison_section(comparison, out / "compare", files))
    if Path(source).is_dir() and (tunes := _tune_section(Path(source), out)) is not None:
        sections.append(tunes)
    files.append(_write(out / "notes.txt", "".join(f"{n}\n" for n in notes) or "no caveats\n"))
    settings = {
        "input": ("the published study (shipped with dimattn)" if str(source) == PUBLISHED
                  else str(Path(source).resolve())),
        "games": df["game"].nunique(),
        "agents": ", ".join(stats.agents_in(df)),
        "runs": len(df.groupby(["game", "agent", "seed"])),
        "per-seed score": "last evaluation" if use_last else "mean over the evaluation period",
        "standard error": se,
        "bootstrap replicates": reps,
        "bootstrap seed": seed,
        **({"compared with": comparison.label} if comparison is not None else {}),
    }
    files.append(_write(out / "index.html", render_html(sections, settings, notes, out)))
    return Report(out, files, notes, wins)


def _comparison_section(comparison: Comparison, out: Path, files: list[Path]) -> Section:
    """Write the comparison's files (appended to ``files``) and return the page's section for it."""
    written = write_comparison(comparison, out)
    files += written.files
    protocol = tables.TextTable("Protocol differences, listed before any verdict: a comparison across protocols "
                                "is allowed, never silent.", ["Your runs against the published protocol (SPEC §3–4)"],
                                [[line] for line in comparison.protocol] or [["none: every run follows it"]])
    caveats = (" Caveats: " + "; ".join(comparison.notes) + ".") if comparison.notes else ""
    text = (f"{written.summary}. Each verdict compares your seeds with the {comparison.label} seeds at your budget "
            f"(docs/report.md says how, and how often it errs).{caveats} Files: compare/compare.md, "
            "compare/compare.csv.")
    return Section(f"Compared with the {comparison.label} study", text, written.figures, [protocol, *written.tables])


def _tune_section(source: Path, out: Path) -> Section | None:
    """A link to the page of each ``dimattn tune`` folder beside the runs (their trials are not in the report)."""
    pages = [t / TUNE_PAGE for t in tune_folders(source) if (t / TUNE_PAGE).is_file()]
    if not pages:
        return None
    links = [(os.path.relpath(p.resolve(), out.resolve()), str(p.parent.relative_to(source)) if p.parent != source
              else p.parent.name) for p in pages]
    return Section("Hyperparameter searches", "The dimattn tune searches found beside the runs: each page shows its "
                   "trials, the best point and Optuna's figures (their trials' runs are left out of this report).",
                   links=links)


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def _write_table(t: tables.TextTable, stem: Path, data: pd.DataFrame, latex: bool = True) -> list[Path]:
    """Markdown (+ LaTeX) rendering of ``t`` and the CSV of its data."""
    paths = [_write(stem.with_suffix(".md"), t.markdown()), _write(stem.with_suffix(".csv"), tables.frame_csv(data))]
    if latex:
        paths.append(_write(stem.with_suffix(".tex"), t.latex()))
    return paths


def _write_all(df: pd.DataFrame, out: Path, *, use_last: bool, se: str, reps: int, seed: int,
               progress: bool) -> tuple[list[Path], list[Section], pd.Series]:
    """Compute everything, then write every table, figure and data file; return them and the page's sections.

    Every number is computed before the first file is written, so input that cannot be analysed
    leaves no partial report behind.
    """
    a = _analyse(df, use_last=use_last, se=se, reps=reps, seed=seed, progress=progress)
    texts = _text_tables(a, df, use_last=use_last, se=se, reps=reps)
    files = _write_tables(a, texts, out / "tables")
    figure_files, pngs = _write_figures(a, out / "figures", progress)
    files += figure_files

    # Data, for other tools and the published notebooks.
    files.append(_write(out / "data" / "scores.csv", tables.frame_csv(df)))
    save_published(df, out / "data" / "post_processed_results.pkl")
    files.append(out / "data" / "post_processed_results.pkl")

    page = _Page(pngs, a.left_out, what=a.what, reps=reps, n_games=len(a.games), steps=a.steps, agents=a.agents,
                 points=_point_note(a.matrices), dashed=figures.coinciding(a.profiles),
                 one_seed=bool(a.learning["n"].max() == 1))
    sections = _sections(page, *(texts[k] for k in ("per_game", "aggregates", "probability_of_improvement",
                                                    "alignment", "alignment_measured", "wins_per_agent")))
    return files, sections, stats.win_counts(a.per_game)


@dataclass
class _Analysis:
    """Every number of the report, computed before any file is written."""

    what: str  # how a seed is scored, in words
    per_game: pd.DataFrame
    agents: list[str]
    matrices: stats.Matrices  # human-normalised (seeds, games) per agent, for rliable
    games: list[str]
    steps: np.ndarray
    taus: np.ndarray
    agg: pd.DataFrame
    poi: pd.DataFrame
    profiles: dict
    profile_cis: dict
    eff: pd.DataFrame
    align: pd.DataFrame
    align_measured: pd.DataFrame
    lists: dict
    learning: pd.DataFrame
    left_out: dict  # figure -> why it is left out


def _analyse(df: pd.DataFrame, *, use_last: bool, se: str, reps: int, seed: int, progress: bool) -> _Analysis:
    """The per-game scores and wins, rliable's aggregates (with bootstrap progress), alignment and curves."""
    per_game = stats.per_game(df, use_last=use_last, se=se)
    won, agents = stats.winners(per_game), stats.agents_in(df)
    matrices, games = stats.score_matrices(stats.human_normalized(stats.seed_scores(df, use_last)))
    curves, _, steps = stats.run_curves(stats.human_normalized(df))
    taus = _profile_taus(matrices)
    n_boot = len(matrices) * 3 + max(len(matrices) - 1, 0)
    with console.progress(total=n_boot, desc="bootstrap", unit="estimate", disable=not progress, leave=False) as bar:
        agg = stats.aggregate_metrics(matrices, reps, seed, bar.update)
        poi = stats.probability_of_improvement(matrices, "NA", reps, seed, bar.update)
        profiles, profile_cis = stats.performance_profiles(matrices, taus, reps, seed, bar.update)
        eff = stats.sample_efficiency(curves, steps, reps, seed, bar.update)
    return _Analysis(
        what="last evaluation of each seed" if use_last else "mean over each seed's evaluation period",
        per_game=per_game, agents=agents, matrices=matrices, games=games, steps=steps, taus=taus,
        agg=agg, poi=poi, profiles=profiles, profile_cis=profile_cis, eff=eff,
        align=stats.alignment(won, agents),
        # The same counts with the axes `dimattn axes` measured (docs/axes.md), beside the published ones.
        align_measured=stats.alignment(won, agents, groups=measured_axes()),
        lists=stats.win_lists(won, agents), learning=stats.learning_curves(df, se),
        left_out=_left_out(matrices, steps))


def _text_tables(a: _Analysis, df: pd.DataFrame, *, use_last: bool, se: str,
                 reps: int) -> dict[str, tables.TextTable | None]:
    """The page's tables by file stem (None: nothing to show for this input)."""
    n_games = f"{len(a.games)} game" + ("" if len(a.games) == 1 else "s")
    return {
        "per_game": tables.per_game_table(a.per_game, tables.per_game_caption(a.per_game, df, use_last, se)),
        "aggregates": tables.aggregates_table(a.agg, f"{a.what}, {n_games}, {reps} bootstrap replicates"),
        "probability_of_improvement": tables.improvement_table(a.poi, reps) if len(a.poi) else None,
        "alignment": tables.alignment_table(a.align) if len(a.align) else None,
        "alignment_measured": tables.alignment_table(a.align_measured, "axes measured by dimattn axes, random "
                                                     "policy; docs/axes.md") if len(a.align_measured) else None,
        "wins_per_agent": tables.win_list_table(a.lists),
    }


def _write_tables(a: _Analysis, texts: dict[str, tables.TextTable | None], tdir: Path) -> list[Path]:
    """Each table as Markdown, LaTeX and CSV, and the curves' data as CSV."""
    data = {"per_game": a.per_game, "aggregates": a.agg, "probability_of_improvement": a.poi,
            "alignment": a.align, "alignment_measured": a.align_measured}
    files: list[Path] = []
    for stem, frame in data.items():
        if texts[stem] is not None:
            files += _write_table(texts[stem], tdir / stem, frame)
    wins = pd.DataFrame([{"agent": agent, "wins": len(g), "games": " ".join(g)} for agent, g in a.lists.items()])
    files += _write_table(texts["wins_per_agent"], tdir / "wins_per_agent", wins, latex=False)
    profile_rows = [{"agent": agent, "tau": t, "fraction": p, "low": lo, "high": hi}
                    for agent in a.profiles for t, p, lo, hi in zip(a.taus, a.profiles[agent], *a.profile_cis[agent])]
    files.append(_write(tdir / "performance_profiles.csv", tables.frame_csv(pd.DataFrame(profile_rows))))
    files.append(_write(tdir / "sample_efficiency.csv", tables.frame_csv(a.eff)))
    files.append(_write(tdir / "learning_curves.csv", tables.frame_csv(a.learning)))
    return files


def _write_figures(a: _Analysis, fdir: Path, progress: bool) -> tuple[list[Path], dict[str, Path]]:
    """The figures, except those that would only repeat a table (the page says why in their place): every
    file written, and each figure's PNG by name."""
    drawn = {
        "aggregates": lambda: figures.aggregates_figure(a.agg),
        "performance_profiles": lambda: figures.profiles_figure(a.profiles, a.profile_cis, a.taus),
        "probability_of_improvement": (lambda: figures.improvement_figure(a.poi)) if len(a.poi) else None,
        "sample_efficiency": lambda: figures.sample_efficiency_figure(a.eff),
        "alignment": (lambda: figures.alignment_figure(a.align)) if len(a.align) else None,
        "learning_curves": lambda: figures.learning_curves_figure(a.learning),
    }
    files, pngs = [], {}
    for name, draw in console.progress([(k, v) for k, v in drawn.items() if v is not None and k not in a.left_out],
                                       desc="figures", unit="figure", disable=not progress, leave=False):
        # The learning-curve grid sets its own margins; cropping it would cost seconds.
        paths = figures.save_figure(draw(), fdir / name, crop=name != "learning_curves")
        files += paths
        pngs[name] = paths[0]
    return files, pngs


def _profile_taus(matrices: stats.Matrices) -> np.ndarray:
    """The thresholds τ of the performance profiles: :func:`stats.profile_taus` (0 to the 95th percentile, at
    least 1), unless 95% of the scores lie in its first tenth; then every profile would drop at once and the
    agents' curves coincide, so the range is fitted to the scores instead."""
    taus = stats.profile_taus(matrices)
    pooled = np.concatenate([m.ravel() for m in matrices.values()])
    low, high = min(0.0, float(pooled.min())), float(pooled.max())
    if np.quantile(pooled, 0.95) >= 0.1 * taus[-1] or high <= low:
        return taus
    return np.linspace(low, high + 0.05 * (high - low), len(taus))


def _left_out(matrices: stats.Matrices, steps: np.ndarray) -> dict[str, str]:
    """{figure: why it is not drawn} for the figures that could only repeat a number of the tables."""
    out = {}
    if all(m.size == 1 for m in matrices.values()):
        one = "each agent has a single run (1 game, 1 seed)"
        out["aggregates"] = (f"No figure: {one}, so each metric is that run's human-normalised score and its "
                             "bootstrap interval a single point; the table gives the numbers.")
        out["probability_of_improvement"] = (f"No figure: {one}, so P(X > NA) is 1, 0.5 or 0 (which run scored "
                                             "higher) and its interval a single point; the table gives it.")
        out["performance_profiles"] = ("No figure: a profile shows how an agent's runs spread over scores, and "
                                       f"{one}, so each profile is one step down at that run's score (the aggregate "
                                       "table's mean). Train more seeds or games to draw it.")
    if len(steps) == 1:
        out["sample_efficiency"] = ("No figure: the runs share a single evaluation step, so there is no curve; "
                                    "the aggregate table's IQM is the score at that step.")
    return out


def _point_note(matrices: stats.Matrices) -> str:
    """Say which agents' intervals are points: the stratified bootstrap resamples each game's runs, so with one
    run per game every resample is the data itself."""
    ones = [a for a, m in matrices.items() if m.shape[0] == 1]
    if not ones:
        return ""
    verb = "has" if len(ones) == 1 else "have"
    who = "every agent has" if len(ones) == len(matrices) else f"{', '.join(ones)} {verb}"
    return (f" Here {who} one seed per game: the bootstrap resamples each game's seeds, so each such interval is "
            "its point estimate")


@dataclass
class _Page:
    """What the page's texts depend on besides the tables."""

    pngs: dict[str, Path]
    left_out: dict[str, str]
    what: str
    reps: int
    n_games: int
    steps: np.ndarray
    agents: list[str]
    points: str  # the zero-width-interval sentence (unfinished: each figure says how it draws them), or ""
    dashed: dict[str, str]  # {agent: the earlier agent whose performance profile it repeats}
    one_seed: bool

    def fig(self, name: str, caption: str) -> list[tuple[Path, str]]:
        return [(self.pngs[name], caption)] if name in self.pngs else []

    def why(self, name: str) -> str:
        """The reason a figure is left out, as a sentence after the section's text; "" when it is drawn."""
        return " " + self.left_out[name] if name in self.left_out else ""

    def point_intervals(self, name: str, tail: str) -> str:
        """The zero-width-interval sentence ended by ``tail`` (how figure ``name`` draws them); "" when the
        intervals have width or the figure is not drawn."""
        return self.points + tail if self.points and name in self.pngs else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _sections(page: _Page, t_game, t_agg, t_poi, t_align, t_align_measured, t_lists) -> list[Section]:
    """The page, in reading order. A section with nothing to show says why, in place."""
    poi_text = ("How likely a run of each attention agent beats a run of NA on a game, averaged over games; 0.5 "
                "means no difference.")
    if t_poi is None:
        poi_text += (" Not computed here: it needs runs of NA and of at least one attention agent, and the input "
                     f"holds {', '.join(page.agents)} only.")
    dashed = "".join(f" Dashed: {a}, whose profile is the same as {b}'s." for a, b in page.dashed.items())
    dot = ", drawn as a dot."  # a zero-width bar is not drawn at all
    return [
        Section("Per-game scores", "One score per seed, then mean ± standard error over seeds for each game and "
                "agent, as in the published study's table.",
                tables=[t_game]),
        Section("Aggregate metrics", f"rliable's median, interquartile mean (IQM), mean and optimality gap of "
                f"human-normalised scores over {_plural(page.n_games, 'game')} ({page.what}); "
                + ("bars" if "aggregates" in page.pngs else "intervals")
                + f" are 95% stratified-bootstrap confidence intervals from {page.reps} replicates."
                + page.point_intervals("aggregates", dot) + page.why("aggregates"),
                page.fig("aggregates", "Aggregate human-normalised scores with 95% CIs (higher is better, "
                         "except the optimality gap)."), [t_agg]),
        Section("Probability of improvement", poi_text + page.point_intervals("probability_of_improvement", dot)
                + page.why("probability_of_improvement"),
                page.fig("probability_of_improvement", "P(X > NA) with 95% CIs; the dotted line marks 0.5."),
                [t for t in (t_poi,) if t is not None]),
        Section("Performance profiles", "For every threshold τ, the fraction of runs (over all games and seeds) "
                "whose human-normalised score exceeds τ." + page.why("performance_profiles"),
                page.fig("performance_profiles", "Score-distribution performance profiles with 95% CIs." + dashed)),
        Section("Sample efficiency",
                ("IQM of human-normalised scores at the one evaluation step." if len(page.steps) == 1 else
                 f"IQM of human-normalised scores at each of the {len(page.steps)} evaluation steps.")
                + page.point_intervals("sample_efficiency", ".") + page.why("sample_efficiency"),
                page.fig("sample_efficiency", "IQM human-normalised score against environment steps, 95% CIs.")),
        Section("Alignment of biases", "Games won by each agent within each axis-of-dynamics group: an agent "
                "whose attention axis matches a game's main axis of dynamics should win more of that group.",
                page.fig("alignment", "Share of each group's games won per agent (wins/games in each cell)."),
                [t for t in (t_align, t_align_measured, t_lists) if t is not None]),
        Section("Learning curves", "Per game: the score of the single seed at every evaluation." if page.one_seed
                else "Per game: score (mean ± standard error over seeds) at every evaluation.",
                page.fig("learning_curves", "Per-game learning curves.")),
    ]


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.3em 0 1em;font-size:.9em} .caption{color:#444;font-size:.9em;
max-width:60em;margin:1em 0 .2em} th,td{border:1px solid #ddd;padding:.25em .6em}
.r{text-align:right} .l{text-align:left} tfoot td{font-weight:600;background:#f6f6f6}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9em} .notes{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em} dt{font-weight:600}
"""


def render_html(sections: list[Section], settings: dict, notes: list[str], out: Path) -> str:
    """The whole report as one HTML page; PNGs are embedded as data URIs so it stands alone."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             "<title>dimattn report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Dimensional self-attention in visual deep RL: results</h1>",
             "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items()) + "</dl>"]
    if notes:
        parts.append('<div class="notes"><strong>Caveats about the input</strong><ul>'
                     + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></div>")
    for s in sections:
        parts.append(f"<section><h2>{e(s.title)}</h2><p>{e(s.text)}</p>")
        for png, caption in s.figures:
            data = base64.b64encode(png.read_bytes()).decode()
            svg = png.with_suffix(".svg").relative_to(out).as_posix()
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                         f'<figcaption>{e(caption)} (<a href="{e(svg)}">SVG</a>)</figcaption></figure>')
        parts += [t.html() for t in s.tables]
        if s.links:
            parts.append("<ul>" + "".join(f'<li><a href="{e(href)}">{e(text)}</a></li>' for href, text in s.links)
                         + "</ul>")
        parts.append("</section>")
    parts.append("<footer><p>Tables as Markdown, LaTeX and CSV are in <code>tables/</code>; the data in "
                 "<code>data/</code>. Made by <code>dimattn report</code>.</p></footer></body></html>")
    return "\n".join(parts) + "\n"
