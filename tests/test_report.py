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


def test_published_report_opens_in_headless_chromium(published_report):
    if os.environ.get("DIMATTN_SKIP_BROWSER") == "1":
        pytest.skip("DIMATTN_SKIP_BROWSER=1")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium), "
                    "point DIMATTN_CHROMIUM at another Chromium binary, "
                    "or set DIMATTN_SKIP_BROWSER=1 to skip the browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Record every request: a self-contained page needs nothing but itself.
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto((published_report / "index.html").as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
            rows = page.locator("table tbody tr").count()
            title = page.title()
            page.screenshot(path=str(published_report / "screenshot.png"), full_page=True)
        finally:
            browser.close()
    assert title == "dimattn report"
    assert len(images) == len(FIGURES)
    for alt, complete, width, height in images:
        assert complete and width > 100 and height > 100, alt
    assert rows >= 56
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert (published_report / "screenshot.png").stat().st_size > 10_000


def test_report_builds_from_tiny_real_runs(tmp_path, dimattn):
    logs = tmp_path / "logs"
    for agent in ("NA", "CWCA"):
        assert dimattn(["train", "--env", "Breakout", "--agent", agent, "-n", "256", "--eval-freq", "128",
                        "--eval-episodes", "1", "--save-freq", "0", "--seed", "0", "--log-folder", str(logs),
                        "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64"]) == 0
    out = tmp_path / "report"
    assert dimattn(["report", str(logs), "--out", str(out), "--reps", "10", "--quiet"]) == 0
    assert "| Breakout |" in (out / "tables" / "per_game.md").read_text()
    assert (out / "index.html").read_text().count('<img src="data:image/png;base64,') == 6
