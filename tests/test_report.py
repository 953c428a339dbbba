"""``dimattn report``: the whole report from a folder of runs and from the published pickle,
one-line errors for bad input, and the HTML page opened in headless Chromium."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis_fixtures import PUBLISHED, write_study
from dimattn import cli
from dimattn.analysis import results

FIGURES = ("aggregates", "performance_profiles", "probability_of_improvement", "sample_efficiency", "alignment",
           "learning_curves")
CHROMIUM = os.environ.get("DIMATTN_CHROMIUM", "/usr/bin/chromium")  # Debian's chromium by default
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def dimattn():
    """``dimattn`` as the console script runs it: argv -> exit code."""

    def run(argv: list[str]) -> int:
        try:
            return cli.main(argv)
        except SystemExit as exc:  # usage errors exit from argparse, as in the console script
            return int(exc.code)

    return run


@pytest.fixture(scope="module")
def published_report(tmp_path_factory):
    """The full report of the published 56-game data (few bootstrap replicates, to stay fast)."""
    import matplotlib

    matplotlib.use("Agg")
    from dimattn.analysis.report import build_report

    out = tmp_path_factory.mktemp("report")
    build_report(PUBLISHED, out, reps=20, seed=0, progress=False)
    return out


def test_report_from_a_study_directory(tmp_path, dimattn, capsys):
    study = write_study(tmp_path / "study")
    out = tmp_path / "report"
    assert dimattn(["report", str(study), "--out", str(out), "--reps", "20", "--quiet"]) == 0
    assert "index.html" in capsys.readouterr().out
    for name in FIGURES:
        for fmt in ("png", "svg"):
            assert (out / "figures" / f"{name}.{fmt}").stat().st_size > 1000, (name, fmt)
    for name in ("per_game", "aggregates", "probability_of_improvement", "alignment"):
        for fmt in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{fmt}").is_file(), (name, fmt)
    page = (out / "index.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(FIGURES)
    assert "Breakout" in page and "Pong" in page and "Wins" in page
    # The exported pickle holds the runs' numbers in the published structure.
    exported = results.restricted_load(out / "data" / "post_processed_results.pkl")
    with np.load(study / "runs" / "Pong" / "CWCA" / "seed1" / "evaluations.npz") as z:
        np.testing.assert_allclose(exported["PongNoFrameskip-v4"]["CWCA"]["mean_per_eval"][:, 1],
                                   z["results"].mean(axis=1))
    assert (out / "notes.txt").read_text() == "no caveats\n"


def test_report_says_what_was_missing_and_carries_on(tmp_path, dimattn, capsys):
    study = write_study(tmp_path / "study", games=("Pong", "Breakout", "Boxing"), seeds=(0, 1))
    shutil.rmtree(study / "runs" / "Boxing" / "SWA")
    shutil.rmtree(study / "runs" / "Pong" / "CWRA" / "seed1")
    assert dimattn(["report", str(study), "--out", str(tmp_path / "r"), "--reps", "10", "--quiet",
                    "--use-last", "--se", "ddof1"]) == 0
    err = capsys.readouterr().err
    assert "Boxing: no runs of SWA" in err and "Pong/CWRA: 1 seed(s)" in err
    notes = (tmp_path / "r" / "notes.txt").read_text()
    assert "Boxing: no runs of SWA" in notes
    assert "Caveats about the input" in (tmp_path / "r" / "index.html").read_text()
    per_game = (tmp_path / "r" / "tables" / "per_game.md").read_text()
    assert "last evaluation" in per_game and "ddof=1" in per_game
    assert re.search(r"\| Boxing \| [^|]+ \| — \|", per_game)


def _hostile(tmp_path: Path) -> Path:
    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps({"PongNoFrameskip-v4": Shell()}))
    return path


@pytest.mark.parametrize("make_args, message", [
    (lambda p: [str(p / "missing")], "does not exist"),
    (lambda p: [str(_hostile(p))], "refusing to load global"),
    (lambda p: [str(p)], "no runs with evaluations"),
    (lambda p: [str(write_study(p / "s", games=("Pooyan",), seeds=(0,)))], "no reference"),
    (lambda p: [str(PUBLISHED), "--reps", "0"], "--reps"),
    (lambda p: [str(PUBLISHED), "--se", "ddof3"], "--se"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, dimattn, capsys, make_args, message):
    code = dimattn(["report", *make_args(tmp_path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_published_report_tables(published_report):
    per_game = (published_report / "tables" / "per_game.md").read_text()
    alien = "| Alien | 713.25 ± 23.93 | 783.05 ± 33.57 | **820.38 ± 55.90** | 796.17 ± 25.60 | 761.62 ± 27.09 |"
    assert alien in per_game
    assert per_game.count("\n| ") == 56 + 2  # header, 56 games, wins
    latex = (published_report / "tables" / "per_game.tex").read_text()
    assert r"\textbf{12.64 $\pm$ 0.43}" in latex and r"\caption{" in latex


def chromium() -> str:
    """The Chromium binary for the browser tests. Without one they skip, saying why, so the README's
    `make test` passes on a fresh machine; under CI (``CI`` set, as .ci/run does) they fail instead,
    because CI installs Chromium and must run them."""
    if os.environ.get("DIMATTN_SKIP_BROWSER") == "1":
        pytest.skip("DIMATTN_SKIP_BROWSER=1")
    if Path(CHROMIUM).exists():
        return CHROMIUM
    why = (f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium) or point "
           "DIMATTN_CHROMIUM at a Chromium binary")
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{why}; CI must run the browser test")
    pytest.skip(f"{why}; the browser test is skipped outside CI (CI unset)")


def open_in_chromium(index: Path, screenshot: Path) -> dict:
    """Open a report in headless Chromium: its images, table rows, title and requests; a full-page screenshot."""
    binary = chromium()  # skips (or fails under CI) before anything is started
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Record every request: a self-contained page needs nothing but itself.
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(index.as_uri(), wait_until="load")
            seen = {
                "images": page.evaluate(
                    "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"),
                # how wide each table's caption is drawn: it must not be squeezed beside a narrow table
                "captions": page.evaluate(
                    "Array.from(document.querySelectorAll('.caption')).map(c => c.getBoundingClientRect().width)"),
                "rows": page.locator("table tbody tr").count(),
                "title": page.title(),
                "text": page.inner_text("body"),
                "requests": requests,
            }
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def test_published_report_opens_in_headless_chromium(published_report):
    seen = open_in_chromium(published_report / "index.html", published_report / "screenshot.png")
    assert seen["title"] == "dimattn report"
    assert len(seen["images"]) == len(FIGURES)
    for alt, complete, width, height in seen["images"]:
        assert complete and width > 100 and height > 100, alt
    assert seen["rows"] >= 56
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    assert (published_report / "screenshot.png").stat().st_size > 10_000


def test_a_one_game_one_seed_report_reads_well_in_headless_chromium(tmp_path, dimattn):
    """The smallest input (1 game, 1 seed, NA and CWCA): singular words, the one-seed caveat, captions
    as wide as the text rather than their narrow tables; the figures that would only repeat a table of single
    runs (aggregates, profiles, probability of improvement) left out, each saying why; the others drawn."""
    write_study(tmp_path / "study", games=("Breakout",), agents=("NA", "CWCA"), seeds=(0,), n_evals=2, episodes=2)
    out = tmp_path / "report"
    assert dimattn(["report", str(tmp_path / "study"), "--out", str(out), "--reps", "20", "--quiet"]) == 0
    page = (out / "index.html").read_text()
    assert "over 1 game " in page and "1 games" not in page and "single seed" in page
    seen = open_in_chromium(out / "index.html", out / "screenshot.png")
    assert len(seen["images"]) == 3 and page.count("No figure:") == 3
    assert all(complete and width > 100 for _, complete, width, _ in seen["images"])
    assert min(seen["captions"]) > 400, seen["captions"]  # px; a <caption> was ~150 px beside a 2-column table
    assert "single seed" in seen["text"]


def test_a_report_without_na_says_why_there_is_no_probability_of_improvement(tmp_path, dimattn):
    write_study(tmp_path / "study", games=("Pong",), agents=("CWCA",), seeds=(0,), n_evals=1, episodes=1)
    out = tmp_path / "report"
    assert dimattn(["report", str(tmp_path / "study"), "--out", str(out), "--reps", "10", "--quiet"]) == 0
    assert "Not computed here: it needs runs of NA" in (out / "index.html").read_text()
    assert not (out / "tables" / "probability_of_improvement.md").exists()


def test_report_builds_from_tiny_real_runs(tmp_path, dimattn):
    logs = tmp_path / "logs"
    for agent in ("NA", "CWCA"):
        assert dimattn(["train", "--env", "Breakout", "--agent", agent, "-n", "256", "--eval-freq", "128",
                        "--eval-episodes", "1", "--save-freq", "0", "--seed", "0", "--log-folder", str(logs),
                        "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64"]) == 0
    out = tmp_path / "report"
    assert dimattn(["report", str(logs), "--out", str(out), "--reps", "10", "--quiet"]) == 0
    assert "| Breakout |" in (out / "tables" / "per_game.md").read_text()
    page = (out / "index.html").read_text()  # 1 game, 1 seed: 3 figures drawn, 3 left out saying why
    assert page.count('<img src="data:image/png;base64,') == 3 and page.count("No figure:") == 3
