"""Runs whose scores are not finite numbers (a diverged run): left out of reports with a note naming the
run and the steps, from a folder of runs or a pickle; a study with nothing else left is one line.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from analysis_fixtures import write_run, write_study
from cli_helpers import run

STEPS = [25_000, 50_000, 75_000]
DIVERGED = [
    # (episode returns of NA seed 1 at STEPS, the steps the note names, steps every Pong run keeps)
    ([[1, np.nan], [2, 3], [np.inf, 4]], "2 of 3 evaluation(s)", "25,000, 75,000", [50_000]),
    ([[1, 2], [2, 3], [-np.inf, 4]], "1 of 3 evaluation(s)", "75,000", [25_000, 50_000]),
    ([[np.nan, np.nan]] * 3, "3 of 3 evaluation(s)", "25,000, 50,000, 75,000", STEPS),  # the run is left out
]


@pytest.mark.parametrize("returns,count,steps,kept", DIVERGED, ids=["nan+inf", "-inf", "all-nan"])
def test_non_finite_scores_are_left_out_with_a_note_naming_the_run(returns, count, steps, kept, tmp_path, capsys):
    root = write_study(tmp_path / "s", games=("Pong",), agents=("NA", "CWCA"), seeds=(0, 1), n_evals=3, episodes=2)
    diverged = write_run(root / "runs/Pong/NA/seed1", "Pong", "NA", 1, STEPS, returns)
    rc, out, err = run(["report", str(root), "--out", str(tmp_path / "r"), "--reps", "10", "--quiet"], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert f"note: {diverged}: left out {count} whose score is not a finite number" in err, err
    assert f"at step(s) {steps}" in err
    scores = np.genfromtxt(tmp_path / "r/data/scores.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert np.isfinite(scores["score"]).all() and sorted(set(scores["timestep"])) == kept
    # recommend --results counts wins from the same data: the same note, one line each, never a traceback
    rc, _, err = run(["recommend", "Pong", "--results", str(root)], capsys)
    assert "Traceback" not in err and f"dimattn recommend: note: {diverged}: left out" in err, err
    assert all(line.startswith("dimattn recommend: ") for line in err.splitlines()), err


def test_a_pickle_with_non_finite_scores_is_analysed_without_them(tmp_path, capsys):
    per_eval = np.array([[1.0, 2.0], [np.nan, 3.0], [4.0, np.inf]])  # (T=3, S=2)
    data = {f"{g}NoFrameskip-v4": {a: {"timesteps": np.array(STEPS), "mean_per_eval": per_eval + i}
                                   for i, a in enumerate(("NA", "CWCA"))} for g in ("Pong", "Breakout")}
    path = tmp_path / "diverged.pkl"
    path.write_bytes(pickle.dumps(data))
    rc, _, err = run(["report", str(path), "--out", str(tmp_path / "r"), "--reps", "10", "--quiet"], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert f"{path}: PongNoFrameskip-v4/NA seed 0: left out 1 of 3" in err and "at step(s) 50,000" in err, err
    assert f"{path}: BreakoutNoFrameskip-v4/CWCA seed 1: left out 1 of 3" in err and "at step(s) 75,000" in err


def test_a_study_whose_every_run_diverged_is_one_line(tmp_path, capsys):
    root = tmp_path / "s"
    write_run(root / "runs/Pong/NA/seed0", "Pong", "NA", 0, STEPS, [[np.nan]] * 3)
    rc, _, err = run(["report", str(root), "--out", str(tmp_path / "r"), "--quiet"], capsys)
    assert rc == 2 and "no runs with evaluations" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "r").exists()
