"""``dimattn compare``: the shipped published scores equal the pickle; real runs compared; a planted
difference found; the verdict's false-alarm rate on the published data split against itself; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis_fixtures import PUBLISHED, write_run
from dimattn import cli
from dimattn.analysis import compare as cmp
from dimattn.analysis import results

STEPS_1M = np.arange(1, 6) * 200_000


@pytest.fixture(scope="module")
def shipped():
    return results.load_results("published")


def _cell(df, game: str, agent: str) -> tuple[np.ndarray, np.ndarray]:
    """Published (game, agent) -> steps (T,), scores (S, T)."""
    g = df[(df["game"] == game) & (df["agent"] == agent)]
    wide = g.pivot(index="seed", columns="timestep", values="score")
    return wide.columns.to_numpy(), wide.to_numpy()


def _write_seeds(root: Path, game: str, agent: str, steps, scores, seeds=None, episodes: int = 5) -> Path:
    """Run folders whose every evaluation scores ``scores`` (S, T) (all ``episodes`` the same)."""
    for i, row in enumerate(scores):
        seed = i if seeds is None else seeds[i]
        write_run(root / game / agent / f"seed{seed}", game, agent, seed, steps, np.repeat(row[:, None], episodes, 1))
    return root


def _protocol_lines(stdout: str) -> list[str]:
    """The lines at the top of the output, before the summary: every one a protocol difference."""
    lines = stdout.splitlines()
    top = lines[:next(i for i, line in enumerate(lines) if not line.startswith("protocol difference: "))]
    assert top, stdout
    return top


# --------------------------------------------------------------------------- the shipped table
def test_the_shipped_published_scores_equal_the_pickle(shipped):
    from_pickle = results.load_published(PUBLISHED)
    assert len(shipped) == 56 * 5 * 5 * 50
    assert shipped.equals(from_pickle)  # every score bit for bit
    # and the script that made it makes it again, byte for byte
    shipped_bytes = (Path(results.__file__).parent.parent / results.PUBLISHED_TABLE).read_bytes()
    assert results.published_table_bytes(from_pickle) == shipped_bytes
    # the pickle's derived fields follow from the shipped table
    raw = results.restricted_load(PUBLISHED)  # the pickle's own fields, untouched by from_published
    rebuilt = results.to_published(shipped)
    for env_id, agents in raw.items():
        for agent, fields in agents.items():
            mine = rebuilt[env_id][agent]
            assert np.array_equal(mine["timesteps"], fields["timesteps"])
            for key in ("mean_per_eval", "mean", "std_error", "last_evals", "std_error_last_eval"):
                np.testing.assert_allclose(mine[key], fields[key], rtol=1e-12, atol=1e-12, err_msg=f"{env_id} {key}")


def test_published_names_the_shipped_scores_wherever_the_command_runs(tmp_path, monkeypatch, shipped):
    monkeypatch.chdir(tmp_path)  # no shared/ here, and no folder called published
    monkeypatch.setenv("DIMATTN_SHARED", str(tmp_path / "nowhere"))
    df = results.load_results("published")
    assert df.equals(shipped)
    assert list(dict.fromkeys(df["agent"])) == ["NA", "SWA", "CWRA", "CWCA", "CWRCA"]  # NA not read as missing


# --------------------------------------------------------------------------- the statistic
def test_a_planted_difference_is_found_and_no_difference_is_consistent(shipped):
    """Every published (game, agent) with a spread: its 5 seeds shifted by d published SEs (std ddof=0/√5),
    against themselves. Welch at 95% flags shifts beyond 3.65 SE; at 90% beyond 2.94 SE (3 SE is found)."""
    cube, _ = cmp._cube(shipped)
    s = cube.mean(axis=2)  # (280, 5)
    se = s.std(axis=1) / np.sqrt(5)
    s, se = s[se > 0], se[se > 0]

    def verdicts(shift: float, level: float = cmp.LEVEL) -> set[str]:
        _, low, high, test = cmp.interval(s + shift * se[:, None], s, level)
        assert test == "welch"
        return set(cmp.verdict(low, high))

    assert verdicts(0) == {"consistent"}
    assert verdicts(3.8) == {"above"} and verdicts(-3.8) == {"below"}
    assert verdicts(3.5) == {"consistent"}  # below the 95% threshold
    assert cmp.copy_threshold() == pytest.approx(3.646, abs=1e-3)
    assert verdicts(3, level=0.90) == {"above"}  # the issue's +3 SE, at a 90% interval (5% per side)
    assert cmp.copy_threshold(level=0.90) == pytest.approx(2.940, abs=1e-3)


def test_one_seed_is_judged_against_the_published_spread():
    theirs = np.array([10.0, 12.0, 11.0, 9.0, 13.0])  # mean 11, sample std 1.58
    half = 2.776445 * 1.5811388 * np.sqrt(1 + 1 / 5)  # t(4) * s * sqrt(1 + 1/m)
    diff, low, high, test = cmp.interval(np.array([11.0]), theirs)
    assert test == "prediction" and diff == 0 and high == pytest.approx(half, rel=1e-5)
    _, low, high, _ = cmp.interval(np.array([11.0 + half + 0.01]), theirs)
    assert cmp.verdict(low, high) == "above"
    _, low, high, test = cmp.interval(np.array([1.0, 2.0]), np.array([5.0]))
    assert test == "too few seeds" and cmp.verdict(low, high) == "too few seeds"


def test_the_self_comparison_stays_within_its_false_alarm_bound(shipped):
    """The published seeds split into "mine" and "published" (every split) on 14 of the 56 games: the verdict
    flags at most 10% (nominal 5%); the whole study's figures are in docs/report.md."""
    subset = shipped[shipped["game"].isin(sorted(shipped["game"].unique())[:14])]
    cal = cmp.calibrate(subset, budgets=(10_000_000, 1_000_000))
    judged = cal[cal["m"] >= 2]
    assert len(judged) == 2 * 2 * 3 and (judged["too_few"] == 0).all() and (judged["comparisons"] >= 70).all()
    assert judged["false_alarm"].max() <= 0.10, judged
    assert (cal.loc[cal["m"] == 1, "too_few"] == cal.loc[cal["m"] == 1, "comparisons"]).all()
    power = cmp.planted_power(subset, shifts=(3.0, 4.0)).set_index(["design", "shift"])["above"]
    assert power[("copy", 3.0)] == 0 and power[("copy", 4.0)] == 1


# --------------------------------------------------------------------------- whole comparisons
def test_published_seeds_as_runs_are_consistent_and_shifted_ones_above(tmp_path, shipped, dimattn, capsys):
    steps, scores = _cell(shipped, "Breakout", "NA")
    keep = steps <= 1_000_000
    se = scores[:, keep].mean(axis=1).std() / np.sqrt(5)
    _write_seeds(tmp_path / "same", "Breakout", "NA", steps[keep] + 704, scores[:, keep])  # fast-engine steps
    _write_seeds(tmp_path / "up", "Breakout", "NA", steps[keep], scores[:, keep] + 4 * se)
    out = tmp_path / "out"
    assert dimattn(["compare", str(tmp_path / "same"), "--out", str(out), "--reps", "20"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "1 (game, agent) compared with the published runs: 1 consistent" in stdout
    assert "matched to the nearest published ones (at most 704 steps apart)" in stderr
    row = results.pd.read_csv(out / "compare.csv", keep_default_na=False).iloc[0]
    assert (row["budget"], row["evals"], row["verdict"], row["diff"]) == (1_000_704, 5, "consistent", 0)
    assert dimattn(["compare", str(tmp_path / "up"), "--out", str(out), "--reps", "20"]) == 0
    assert "1 above" in capsys.readouterr().out
    assert "| Breakout | NA | 1,000,000 | 5 / 5 |" in (out / "compare.md").read_text()


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two real 256-step Breakout NA runs (seeds 0 and 1), evaluated at 128 and 256 steps."""
    logs = tmp_path_factory.mktemp("tiny") / "logs"
    for seed in (0, 1):
        assert cli.main(["train", "--env", "Breakout", "--agent", "NA", "-n", "256", "--eval-freq", "128",
                         "--eval-episodes", "1", "--save-freq", "0", "--seed", str(seed), "--log-folder", str(logs),
                         "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64"]) == 0
    return logs


def test_real_runs_against_the_shipped_data_are_refused_in_one_line(tiny_runs, tmp_path, dimattn, capsys):
    out = tmp_path / "out"
    assert dimattn(["compare", str(tiny_runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dimattn compare: error: nothing to compare: no evaluation step of yours pairs with a "
                          "published one (the published runs evaluate at 200,000–10,000,000)")
    # where the runs stopped, and the exact command that reaches the first published evaluation
    assert ("your runs reached 256 steps, before the published runs' first evaluation at 200,000: train to it, "
            "e.g. `dimattn train --env Breakout --agent NA -n 200000 --eval-freq 200000`") in err
    assert not out.exists()


def test_real_runs_against_a_study_write_every_output(tiny_runs, tmp_path, dimattn, capsys):
    """One study against another is the same question; here the tiny runs against themselves."""
    out = tmp_path / "out"
    assert dimattn(["compare", str(tiny_runs), "--against", str(tiny_runs), "--out", str(out), "--reps", "20"]) == 0
    first = _protocol_lines(capsys.readouterr().out)
    for difference in ("n_timesteps 256 (2 of 2 runs); published: 10,000,000", "n_envs 2 (2 of 2 runs); published: 16",
                       "engine fast (2 of 2 runs); published: sb3", "eval_episodes 1 (2 of 2 runs); published: 5"):
        assert any(difference in line for line in first), (difference, first)
    for name in ("compare.csv", "compare.md", "aggregates.csv", "figures/curves.png", "figures/curves.svg",
                 "figures/aggregates.png"):
        assert (out / name).stat().st_size > 200, name
    row = results.pd.read_csv(out / "compare.csv", keep_default_na=False).iloc[0]
    assert (row["game"], row["agent"], row["budget"], row["seeds"], row["verdict"]) == ("Breakout", "NA", 256, 2,
                                                                                        "consistent")
    assert "n_envs 2" in row["protocol"] and "engine fast" in row["protocol"]
    assert "## Protocol differences" in (out / "compare.md").read_text()
    # labels name the other side ("logs"): "published" only where the published protocol is meant
    md = (out / "compare.md").read_text()
    assert "compared with the logs runs" in md and "| Logs ± SE |" in md
    agg = results.pd.read_csv(out / "aggregates.csv", keep_default_na=False)
    assert set(agg["entry"]) == {"NA (yours)", "NA (logs)"}
    assert all("published" not in line or "protocol" in line or "published:" in line for line in md.splitlines())


def test_a_one_seed_verdict_says_what_it_could_detect(tmp_path, shipped, dimattn, capsys):
    steps, scores = _cell(shipped, "Breakout", "NA")
    _write_seeds(tmp_path / "one", "Breakout", "NA", steps[:5], scores[:1, :5])
    out = tmp_path / "out"
    assert dimattn(["compare", str(tmp_path / "one"), "--out", str(out), "--reps", "20"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]  # the verdict is the last line
    row = results.pd.read_csv(out / "compare.csv", keep_default_na=False).iloc[0]
    theirs = scores[:, :5].mean(axis=1)
    assert row["detectable"] == pytest.approx(cmp.detectable(1, 5) * theirs.std(ddof=1))
    assert last.startswith("1 (game, agent) compared with the published runs: 1 consistent")
    assert (f"from one seed, the smallest difference this verdict detects (80% of the time) is "
            f"{row['detectable']:,.2f} points ({cmp.detectable(1, 5) * 5 / 2:.1f} published SEs)") in last


def test_an_agent_the_other_side_lacks_is_compared_with_each_of_its_agents(tmp_path, shipped, dimattn, capsys):
    against = tmp_path / "na_swa.pkl"
    results.save_published(shipped[shipped["agent"].isin(["NA", "SWA"]) & shipped["game"].isin(["Breakout", "Pong"])],
                           against)
    for game in ("Breakout", "Pong"):
        steps, scores = _cell(shipped, game, "CWCA")
        _write_seeds(tmp_path / "mine", game, "CWCA", steps[:5], scores[:3, :5] + (1000 if game == "Pong" else 0))
    out = tmp_path / "out"
    assert dimattn(["compare", str(tmp_path / "mine"), "--against", str(against), "--out", str(out),
                    "--reps", "20"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "CWCA against NA: " in stdout and "not among the other side's agents" in stderr
    versus = results.pd.read_csv(out / "versus.csv", keep_default_na=False).set_index("versus")
    assert list(versus.index) == ["NA", "SWA"] and (versus["games"] == 2).all()
    assert (versus["wins"] >= 1).all()  # Pong, 1000 points above any published agent
    assert (versus["wins"] + versus["ties"] + versus["losses"] == 2).all()
    agg = results.pd.read_csv(out / "aggregates.csv", keep_default_na=False)
    poi = agg[agg["metric"] == "P(yours > it)"]
    assert set(poi["entry"]) == {"NA (na_swa.pkl)", "SWA (na_swa.pkl)"} and (poi["estimate"] >= 0.5).all()
    assert {"CWCA (yours)", "NA (na_swa.pkl)", "SWA (na_swa.pkl)"} <= set(agg["entry"])
    assert "Wins / ties / losses" in (out / "compare.md").read_text()


@pytest.fixture(scope="module")
def report_against(tmp_path_factory, shipped):
    """``dimattn report MINE --against published`` on two seeds of Pong CWCA made of published scores."""
    root = tmp_path_factory.mktemp("report_against")
    steps, scores = _cell(shipped, "Pong", "CWCA")
    _write_seeds(root / "mine", "Pong", "CWCA", steps[:5], scores[:2, :5])
    out = root / "report"
    assert cli.main(["report", str(root / "mine"), "--against", "published", "--out", str(out), "--reps", "10",
                     "--quiet"]) == 0
    return out


def test_report_against_published_has_the_comparison_section(report_against):
    page = (report_against / "index.html").read_text()
    assert "<h2>Compared with the published study</h2>" in page
    assert page.count('<img src="data:image/png;base64,') == 5 + 2  # no NA: no probability of improvement
    assert "1 (game, agent) compared with the published runs: 1 consistent" in page
    assert (report_against / "compare" / "compare.md").exists()


def test_the_comparison_section_reads_well_in_headless_chromium(report_against, tmp_path):
    from test_report import open_in_chromium

    seen = open_in_chromium(report_against / "index.html", tmp_path / "page.png")  # skips without Chromium
    assert all(ok and w > 0 for _, ok, w, _ in seen["images"]) and "Compared with the published study" in seen["text"]
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    assert min(seen["captions"]) > 400  # no caption squeezed beside a narrow table


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, message", [
    (lambda d, s: write_run(d / "r", "Breakout", "NA", 0, np.zeros(0, dtype=np.int64), np.zeros((0, 5))),
     "no runs with evaluations under"),
    (lambda d, s: _write_seeds(d, "Surround", "NA", STEPS_1M, np.ones((2, 5))),
     "nothing to compare: none of your games (Surround) is in the published runs"),
    (lambda d, s: _write_seeds(d, "Breakout", "NA", STEPS_1M + 20_000_000, np.ones((2, 5))),
     "nothing to compare: no evaluation step of yours pairs with a published one"),
])
def test_nothing_comparable_is_one_line_exit_2_and_writes_nothing(tmp_path, shipped, dimattn, capsys, make, message):
    make(tmp_path / "mine", shipped)
    out = tmp_path / "out"
    assert dimattn(["compare", str(tmp_path / "mine"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("dimattn compare: error:")
    assert not out.exists()


def test_what_cannot_be_compared_is_listed_and_the_rest_compared(tmp_path, shipped, dimattn, capsys):
    steps, scores = _cell(shipped, "Pong", "NA")
    _write_seeds(tmp_path / "mine", "Pong", "NA", np.append(steps[:5], 10_400_000), np.c_[scores[:2, :5], [1, 2]],
                 episodes=3)
    _write_seeds(tmp_path / "mine", "Surround", "NA", STEPS_1M, np.ones((2, 5)), seeds=[0, 1], episodes=3)
    assert dimattn(["compare", str(tmp_path / "mine"), "--out", str(tmp_path / "out"), "--reps", "10"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "your runs: eval_episodes 3 (4 of 4 runs); published: 5" in " ".join(_protocol_lines(stdout))
    assert "not in the published runs, so not compared: Surround" in stderr
    assert "Pong: 1 of your evaluations lie beyond the published runs' last (10,000,000 steps)" in stderr
    assert "1 (game, agent) compared" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--against", "/no/such/thing"], "does not exist"),
    (["--level", "1.5"], "--level must be in [0.5, 1)"),
])
def test_bad_options_are_one_line(tmp_path, shipped, dimattn, capsys, argv, message):
    steps, scores = _cell(shipped, "Pong", "NA")
    _write_seeds(tmp_path / "mine", "Pong", "NA", steps[:5], scores[:2, :5])
    assert dimattn(["compare", str(tmp_path / "mine"), "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, shipped, dimattn, capsys):
    steps, scores = _cell(shipped, "Pong", "NA")
    _write_seeds(tmp_path / "mine", "Pong", "NA", steps[:5], scores[:2, :5])
    (tmp_path / "file").write_text("a file where a folder is expected")
    assert dimattn(["compare", str(tmp_path / "mine"), "--out", str(tmp_path / "file" / "out"), "--reps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"dimattn compare: error: cannot write output folder {tmp_path / 'file' / 'out'}")
