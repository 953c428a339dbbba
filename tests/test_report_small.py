"""``dimattn report`` on inputs as small as ``make demo``'s (2 agents, 1 game, 1 seed, 30k steps): it shows what
such input can say, says in place why a figure is left out, labels step axes in units that fit, names only the
agents that were trained and gets singular and plural words right. Real run folders, real report files."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis_fixtures import write_run, write_study
from dimattn import cli
from dimattn.analysis import figures

DEMO_STEPS = (10_000, 20_000, 30_000)
UNTRAINED = ("SWA", "CWRA", "CWRCA")


def report(source: Path, out: Path) -> str:
    """Run ``dimattn report`` as the console script does; the page's text."""
    assert cli.main(["report", str(source), "--out", str(out), "--reps", "20", "--quiet"]) == 0
    return (out / "index.html").read_text()


def svg_text(path: Path) -> list[str]:
    """The texts of a matplotlib SVG: it draws glyphs as paths and writes each text in a comment before them."""
    return re.findall(r"<!-- (.*?) -->", path.read_text())


def svg_xticks(path: Path) -> list[str]:
    """The x tick labels of a matplotlib SVG (each tick is a group ``xtick_<n>`` holding its label's comment)."""
    return re.findall(r'<g id="xtick_\d+">.*?<!-- (.*?) -->', path.read_text(), flags=re.S)


def section(page: str, title: str) -> str:
    """One section of the page, entities decoded."""
    return html.unescape(page.split(f"<h2>{title}</h2>", 1)[1].split("</section>", 1)[0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """What `make demo` leaves: two RL Zoo runs (NA ``_1``, CWCA ``_2``) of Breakout, seed 0, evaluated at
    10k, 20k and 30k steps with 2 episodes each, and their report."""
    root = tmp_path_factory.mktemp("demo")
    logs = root / "demo-logs"
    write_run(logs / "ppo" / "BreakoutNoFrameskip-v4_1", "Breakout", "NA", 0, DEMO_STEPS, [[1, 2], [2, 1], [3, 2]])
    write_run(logs / "ppo" / "BreakoutNoFrameskip-v4_2", "Breakout", "CWCA", 0, DEMO_STEPS, [[1, 1], [2, 3], [2, 3]])
    out = logs / "report"
    return out, report(logs, out)


def test_a_single_run_per_agent_leaves_out_the_interval_figures_and_says_why(demo):
    out, page = demo
    for name, title in (("aggregates", "Aggregate metrics"),
                        ("probability_of_improvement", "Probability of improvement"),
                        ("performance_profiles", "Performance profiles")):
        assert not (out / "figures" / f"{name}.png").exists(), name
        text = section(page, title)
        assert "No figure: " in text and "each agent has a single run (1 game, 1 seed)" in text, title
        assert "<img" not in text, title
    assert "its bootstrap interval a single point" in section(page, "Aggregate metrics")
    assert "bars are" not in section(page, "Aggregate metrics")  # no figure, so no bars to speak of
    # The numbers stay, as tables.
    assert (out / "tables" / "aggregates.md").is_file() and (out / "tables" / "probability_of_improvement.md").is_file()
    assert "P(CWCA > NA)" in section(page, "Probability of improvement")
    assert page.count('<img src="data:image/png;base64,') == 3  # sample efficiency, alignment, learning curves


def test_the_alignment_outputs_name_only_the_trained_agents(demo):
    out, page = demo
    align = pd.read_csv(out / "tables" / "alignment.csv", keep_default_na=False)
    assert sorted(set(align["agent"])) == ["CWCA", "NA"]
    for name in ("alignment.md", "alignment.tex", "alignment_measured.md", "wins_per_agent.md", "wins_per_agent.csv"):
        text = (out / "tables" / name).read_text()
        assert "CWCA" in text and not any(a in text for a in UNTRAINED), name
    labels = " ".join(svg_text(out / "figures" / "alignment.svg"))
    assert "CWCA" in labels and "NA" in labels and not any(a in labels for a in UNTRAINED), labels
    assert not any(a in section(page, "Alignment of biases") for a in UNTRAINED)


def test_30k_step_axes_are_in_thousands_at_the_evaluation_steps(demo):
    out, _ = demo
    for name in ("sample_efficiency", "learning_curves"):
        labels = svg_text(out / "figures" / f"{name}.svg")
        assert "Environment steps (thousands)" in labels and "Environment steps (millions)" not in labels, name
        assert svg_xticks(out / "figures" / f"{name}.svg") == ["10", "20", "30"], name  # not 0.010 ... 0.030
    assert "Score (one seed)" in svg_text(out / "figures" / "learning_curves.svg")  # no spread to promise


def test_the_words_of_a_one_game_one_seed_report_are_singular_where_they_should_be(demo):
    out, page = demo
    text = re.sub(r"<[^>]+>", " ", page)
    for wrong in ("1 games", "1 seeds", "1 runs", "1 evaluation steps", "mean over 1 seed"):
        assert wrong not in text, wrong
    assert "over 1 game " in text and "its one seed's score" in (out / "tables" / "per_game.md").read_text()
    assert "at each of the 3 evaluation steps" in text
    assert "Per game: the score of the single seed at every evaluation." in text


@pytest.mark.parametrize("max_step,scale,label", [(256, 1.0, "Environment steps"),
                                                  (30_000, 1e3, "Environment steps (thousands)"),
                                                  (999_999, 1e3, "Environment steps (thousands)"),
                                                  (10_000_000, 1e6, "Environment steps (millions)")])
def test_step_units_fit_the_largest_step(max_step, scale, label):
    assert figures.step_unit(max_step) == (scale, label)


def test_one_seed_on_several_games_draws_each_point_interval_as_a_dot(tmp_path):
    """Intervals from one seed per game have no width: the figures are drawn (games make them say something),
    and the page says why the bars are dots."""
    study = write_study(tmp_path / "s", games=("Pong", "Breakout", "Boxing"), agents=("NA", "CWCA"), seeds=(0,),
                        n_evals=3, episodes=2)
    page = report(study, tmp_path / "report")
    for name in ("aggregates", "probability_of_improvement", "performance_profiles", "sample_efficiency"):
        assert (tmp_path / "report" / "figures" / f"{name}.png").is_file(), name
    said = "every agent has one seed per game: the bootstrap resamples each game's seeds"
    assert said in section(page, "Aggregate metrics") and "drawn as a dot" in section(page, "Aggregate metrics")
    assert said in section(page, "Probability of improvement") and said in section(page, "Sample efficiency")
    assert "No figure" not in page
    # 25k–75k steps: thousands again, ticked at the three evaluations
    assert svg_xticks(tmp_path / "report" / "figures" / "sample_efficiency.svg") == ["25", "50", "75"]


def test_agents_with_the_same_profile_are_both_visible(tmp_path):
    """Two agents with the same scores: the later one's profile is dashed, so the earlier one shows through."""
    for seed in (0, 1):
        for n, agent in enumerate(("NA", "CWCA")):
            write_run(tmp_path / "logs" / "ppo" / f"PongNoFrameskip-v4_{2 * seed + n + 1}", "Pong", agent, seed,
                      DEMO_STEPS, [[-10.0 + 3 * seed], [0.0], [5.0 + seed]])
    page = report(tmp_path / "logs", tmp_path / "report")
    assert "Dashed: CWCA, whose profile is the same as NA's." in section(page, "Performance profiles")
    svg = (tmp_path / "report" / "figures" / "performance_profiles.svg").read_text()
    assert "stroke-dasharray" in svg


def test_profiles_of_tiny_scores_spread_over_the_axis(tmp_path):
    """Scores far below human level (a short run) used to fall in the first step of τ in [0, 1], so every
    profile dropped at once and the agents' curves coincided; τ now spans the scores."""
    for seed in range(3):
        for n, (agent, bump) in enumerate((("NA", 0.0), ("CWCA", 1.0))):
            write_run(tmp_path / "logs" / "ppo" / f"BreakoutNoFrameskip-v4_{2 * seed + n + 1}", "Breakout", agent,
                      seed, DEMO_STEPS, [[1.0 + seed + bump, 2.0]] * 3)
    report(tmp_path / "logs", tmp_path / "report")
    profiles = pd.read_csv(tmp_path / "report" / "tables" / "performance_profiles.csv", keep_default_na=False)
    assert profiles["tau"].max() < 0.2  # the best Breakout score here is ~0.05 of human
    for agent, p in profiles.groupby("agent"):
        inside = p["fraction"][(p["fraction"] > 0) & (p["fraction"] < 1)]
        assert len(inside) > 5, agent  # the profile steps down over the axis, not in its first τ
    na, cwca = (profiles[profiles["agent"] == a]["fraction"].to_numpy() for a in ("NA", "CWCA"))
    assert not np.array_equal(na, cwca)


def test_a_single_evaluation_step_leaves_out_the_sample_efficiency_curve(tmp_path):
    for n, agent in enumerate(("NA", "CWCA")):
        write_run(tmp_path / "logs" / "ppo" / f"PongNoFrameskip-v4_{n + 1}", "Pong", agent, 0, [256], [[-20.0 + n]])
    page = report(tmp_path / "logs", tmp_path / "report")
    text = section(page, "Sample efficiency")
    assert "at the one evaluation step." in text and "No figure: the runs share a single evaluation step" in text
    assert not (tmp_path / "report" / "figures" / "sample_efficiency.png").exists()
    curves = tmp_path / "report" / "figures" / "learning_curves.svg"
    assert "Environment steps" in svg_text(curves) and svg_xticks(curves) == ["256"]  # plain steps, at the evaluation
