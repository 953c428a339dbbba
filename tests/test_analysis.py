"""The study's numbers: per-game table (SPEC §5 rows), human-normalised scores, rliable
estimates, alignment of biases, and incomplete input."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import metrics

from analysis_fixtures import PUBLISHED, write_study
from dimattn.agents.attention import AGENTS
from dimattn.analysis import results, stats, tables
from dimattn.errors import DimattnError
from dimattn.games import AXIS_GROUPS, reference_scores

# SPEC §5, verbatim: two rows of the published per-game table.
SPEC_ROWS = """
|Alien | 713.25 ± 23.93 | 783.05 ± 33.57 | **820.38 ± 55.90** | 796.17 ± 25.60 | 761.62 ± 27.09 |
|Pong  | 9.91 ± 0.53    | 8.32 ± 0.74    | 7.30 ± 1.60        | **12.64 ± 0.43** | -0.02 ± 4.01   |
"""


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def published():
    return results.load_published(PUBLISHED)


@pytest.fixture(scope="module")
def raw():
    return results.restricted_load(PUBLISHED)


@pytest.fixture(scope="module")
def table(published):
    return stats.per_game(published)


@pytest.fixture(scope="module")
def matrices(published):
    return stats.score_matrices(stats.human_normalized(stats.seed_scores(published)))[0]


def test_per_game_table_reproduces_the_spec_rows_cell_for_cell(published, table):
    text = tables.per_game_table(table, "caption").markdown()
    rows = {_cells(line)[0]: _cells(line) for line in text.splitlines() if line.startswith("| ")}
    assert rows["Game"] == ["Game", *AGENTS]
    for line in SPEC_ROWS.strip().splitlines():
        expected = _cells(line)
        assert rows[expected[0]] == expected


def test_wins_row_counts_every_game_once_and_matches_the_raw_data(raw, table):
    wins = tables.per_game_table(table, "c").footer[0]
    counted = {a: 0 for a in AGENTS}
    for per_agent in raw.values():
        means = [per_agent[a]["mean_per_eval"].mean() for a in AGENTS]  # over 50 evals x 5 seeds
        counted[AGENTS[int(np.argmax(means))]] += 1
    assert wins == ["Wins", *[str(counted[a]) for a in AGENTS]]
    assert sum(counted.values()) == 56


def test_horizontal_group_winner_counts_come_from_the_data(raw, table):
    align = stats.alignment(stats.winners(table))
    horizontal = align[align["group"] == "horizontal"].set_index("agent")
    expected = {a: 0 for a in AGENTS}
    for game in AXIS_GROUPS["horizontal"]:
        per_agent = raw[f"{game}NoFrameskip-v4"]
        expected[max(AGENTS, key=lambda a: per_agent[a]["mean_per_eval"].mean())] += 1
    assert horizontal["wins"].to_dict() == expected
    assert (horizontal["n_games"] == 12).all()
    np.testing.assert_allclose(horizontal["share"].sum(), 1.0)
    assert set(align["group"]) == set(AXIS_GROUPS)


def test_standard_error_conventions_and_last_evaluation(published, raw, table):
    ddof1 = stats.per_game(published, se="ddof1")
    np.testing.assert_allclose(ddof1["se"], table["se"] * np.sqrt(5 / 4))
    assert "ddof=1" in tables.per_game_caption(ddof1, published, False, "ddof1")
    assert "ddof=0" in tables.per_game_caption(table, published, False, "ddof0")

    with pytest.warns(results.DataWarning) as caught:  # at the last evaluation some agents tie
        last = stats.per_game(published, use_last=True).set_index(["game", "agent"])
    ties = sorted(str(w.message).split(":")[0] for w in caught)
    assert ties == ["Pitfall", "PrivateEye"]
    assert last.loc["PrivateEye", "winner"].sum() > 1
    pong = raw["PongNoFrameskip-v4"]["CWCA"]
    np.testing.assert_allclose(last.loc[("Pong", "CWCA"), "mean"], pong["last_evals"].mean())
    np.testing.assert_allclose(last.loc[("Pong", "CWCA"), "se"], pong["std_error_last_eval"])
    with pytest.raises(DimattnError, match="ddof0, ddof1"):
        stats.per_game(published, se="ddof2")


def test_human_normalised_score_uses_the_reference_scores(published):
    hns = stats.human_normalized(stats.seed_scores(published))
    random_, human = reference_scores()["Pong"]
    pong = hns[hns["game"] == "Pong"]
    np.testing.assert_allclose(pong["hns"], (pong["score"] - random_) / (human - random_))
    assert random_ < 0 < human  # Pong's random score is negative: the formula is not a plain ratio


def test_a_game_without_reference_score_is_left_out_with_a_note_and_alone_is_an_error(tmp_path):
    df = results.load_results(write_study(tmp_path / "s", games=("Pong", "Pooyan"), seeds=(0,)))
    with pytest.warns(results.DataWarning, match="no reference score for Pooyan"):
        hns = stats.human_normalized(df)
    assert set(hns["game"]) == {"Pong"}
    with pytest.raises(DimattnError, match="no reference"):
        stats.human_normalized(df[df["game"] == "Pooyan"])


def test_aggregates_are_rliable_point_estimates_with_seeded_intervals(matrices):
    agg = stats.aggregate_metrics(matrices, reps=40, seed=7).set_index(["agent", "metric"])
    for agent, m in matrices.items():
        assert m.shape == (5, 56)
        expected = {"Median": metrics.aggregate_median(m), "IQM": metrics.aggregate_iqm(m),
                    "Mean": metrics.aggregate_mean(m), "Optimality Gap": metrics.aggregate_optimality_gap(m)}
        for metric, value in expected.items():
            row = agg.loc[(agent, metric)]
            assert row["estimate"] == pytest.approx(value)
            assert row["low"] <= row["estimate"] <= row["high"] and row["low"] < row["high"]
    again = stats.aggregate_metrics(matrices, reps=40, seed=7)
    other = stats.aggregate_metrics(matrices, reps=40, seed=8)
    assert again.equals(agg.reset_index()[again.columns])
    assert not other.equals(again)


def test_probability_of_improvement_is_rliables_definition(matrices):
    for agent in AGENTS:
        assert stats.improvement_probability(matrices[agent], matrices["NA"]) == pytest.approx(
            metrics.probability_of_improvement(matrices[agent], matrices["NA"]))
    ties = np.array([[1.0, 2.0], [1.0, 3.0], [2.0, 2.0]])  # (3 runs, 2 games) with ties
    assert stats.improvement_probability(ties, ties[:2] + np.array([0.0, -1.0])) == pytest.approx(
        metrics.probability_of_improvement(ties, ties[:2] + np.array([0.0, -1.0])))
    poi = stats.probability_of_improvement(matrices, reps=30, seed=0)
    assert list(poi["agent"]) == list(AGENTS[1:]) and (poi["baseline"] == "NA").all()
    assert ((poi["low"] <= poi["estimate"]) & (poi["estimate"] <= poi["high"])).all()


def test_performance_profile_is_the_fraction_of_runs_above_tau(matrices):
    taus = stats.profile_taus(matrices)
    profiles, cis = stats.performance_profiles({"NA": matrices["NA"]}, taus, reps=20, seed=0)
    expected = [(matrices["NA"] > t).mean() for t in taus]
    np.testing.assert_allclose(profiles["NA"], expected)
    assert cis["NA"].shape == (2, len(taus))
    assert taus[0] == 0 and taus[-1] >= 1


def test_sample_efficiency_is_the_iqm_at_every_step(published):
    curves, games, steps = stats.run_curves(stats.human_normalized(published))
    assert curves["NA"].shape == (5, 56, 50) and len(games) == 56 and steps[-1] == 10_000_000
    eff = stats.sample_efficiency({"CWCA": curves["CWCA"]}, steps, reps=10, seed=0)
    for t in (0, 24, 49):
        assert eff["iqm"].iloc[t] == pytest.approx(metrics.aggregate_iqm(curves["CWCA"][:, :, t]))


def test_missing_agents_and_seeds_are_named_and_the_rest_is_analysed(tmp_path):
    df = results.load_results(write_study(tmp_path / "s", games=("Pong", "Breakout", "Boxing"), seeds=(0, 1, 2)))
    df = df[~((df["game"] == "Boxing") & (df["agent"] == "CWRCA"))]                # one agent missing
    df = df[~((df["game"] == "Pong") & (df["agent"] == "SWA") & (df["seed"] == 2))]  # one seed missing
    notes = results.coverage_notes(df)
    assert "Boxing: no runs of CWRCA" in notes and "Pong/SWA: 2 seed(s) where others have 3" in notes

    table = stats.per_game(df)
    assert not table.loc[table["game"] == "Boxing", "winner"].any()       # no winner without every agent
    assert table.loc[table["game"] != "Boxing"].groupby("game")["winner"].sum().eq(1).all()
    assert stats.win_counts(table).sum() == 2

    with pytest.warns(results.DataWarning) as caught:
        mats, games = stats.score_matrices(stats.human_normalized(stats.seed_scores(df)))
    said = " ".join(str(w.message) for w in caught)
    assert "Boxing" in said and "SWA" in said
    assert games == ["Breakout", "Pong"]
    assert mats["SWA"].shape == (2, 2) and mats["NA"].shape == (3, 2)


def test_alignment_counts_ties_for_each_winner_and_lists_wins():
    won = {"Pong": ("CWCA",), "Boxing": ("CWCA", "NA"), "Breakout": ("SWA",), "Pooyan": ("NA",)}
    align = stats.alignment(won).set_index(["group", "agent"])
    assert align.loc[("horizontal", "CWCA"), "wins"] == 2 and align.loc[("horizontal", "NA"), "wins"] == 1
    assert align.loc[("vertical", "SWA"), "share"] == 1.0
    assert align.loc[(stats.UNCLASSIFIED, "NA"), "n_games"] == 1
    assert stats.win_lists(won)["CWCA"] == ["Boxing", "Pong"]
