"""What commands print while they work: progress that never passes its total, whole lines into a file
or a pipe, no emulator banner, a quiet end when the reader goes away; caveats collected as notes.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest

from analysis_fixtures import write_study
from cli_helpers import ENV, TINY


# ----------------------------------------------------------------------------- progress and banners
def test_the_progress_bar_never_passes_its_total_and_shows_the_score(capsys):
    from dimattn.engines.progress import ProgressBar

    bar = ProgressBar(total=50_000, initial=2_048)
    for steps in range(4_096, 53_248, 2_048):  # the fast engine's rollouts overshoot 50,000 by 1,248
        bar.update_to(steps, [3.0, 5.0])
    assert bar.bar.n == 50_000
    bar.close()
    text = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert "50.0k/50.0k" in text and "100%" in text and "game score 4.0" in text and "step/s" in text


def test_ale_prints_no_banner():
    code = ("from dimattn.envs.ale import make_env, action_meanings\n"
            "env = make_env('Pong', 1, seed=0); env.reset(); env.close(); action_meanings('Breakout')\n")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "A.L.E" not in done.stdout + done.stderr and "Stella" not in done.stdout + done.stderr


def test_a_reader_that_goes_away_stops_the_command_quietly():
    # `dimattn axes Pong Breakout | head -1`: the second line meets a closed pipe.
    cmd = [sys.executable, "-m", "dimattn", "axes", "Pong", "Breakout", "--steps", "30"]
    env = {**ENV, "PYTHONUNBUFFERED": "1"}  # each line leaves at once, as on a terminal: the close lands mid-run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert first.startswith("Pong ") and "Traceback" not in err and "Error" not in err, err
    assert "A.L.E" not in first + err  # and ale-py's banner is not printed by the axes' play either


# ----------------------------------------------------------------------------- output to a file or a pipe
def test_train_progress_into_a_pipe_is_whole_lines(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dimattn", "train", "--env", "Pong", "-f", str(tmp_path), "-n", "512",
                           "--eval-freq", "256", "--eval-episodes", "1", "-P", *TINY], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    assert "\r" not in done.stdout  # no bar redrawn in place
    lines = done.stdout.splitlines()
    assert sum(line.startswith("eval @ ") for line in lines) == 2, lines  # each evaluation on its own line
    assert any(line.startswith("training: 512/512 (100%)") and "step/s" in line for line in lines), lines


def test_report_progress_into_a_pipe_is_whole_lines(tmp_path):
    root = write_study(tmp_path / "s", games=("Pong",), agents=("NA", "CWCA"), seeds=(0, 1), n_evals=2, episodes=1)
    done = subprocess.run([sys.executable, "-m", "dimattn", "report", str(root), "--out", str(tmp_path / "r"),
                           "--reps", "20"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout
    assert "\r" not in done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("bootstrap: ") and "(100%)" in line for line in lines), lines
    assert any(line.startswith("figures: ") and "(100%)" in line for line in lines), lines


def test_plain_progress_lines_come_every_so_often_and_at_the_end():

    from dimattn.console import Lines, progress

    out = io.StringIO()
    bar = progress(total=50_000, initial=2_000, desc="training", unit="step", unit_scale=True, every=0, file=out)
    assert isinstance(bar, Lines)  # a StringIO is not a terminal
    for _ in range(3):
        bar.update(16_000)
    bar.set_postfix_str("game score 4.0")
    bar.close()
    bar.close()  # once
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["training: 18.0k/50.0k (36%)", "training: 34.0k/50.0k (68%)",
                                                      "training: 50.0k/50.0k (100%)", "training: 50.0k/50.0k (100%)"]
    assert lines[-1].endswith("game score 4.0")
    same = io.StringIO()  # a periodic line that already said the last count and postfix is not repeated
    bar = progress(total=3, every=0, file=same)
    bar.update(3)
    bar.close()
    assert [line.split(",")[0] for line in same.getvalue().splitlines()] == ["3/3 (100%)"]
    quiet = io.StringIO()
    bar = progress(total=3, every=3600, file=quiet)
    bar.update(3)
    assert quiet.getvalue() == ""  # nothing between the periods ...
    bar.close()
    assert quiet.getvalue().startswith("3/3 (100%)")  # ... and the last line at the end


# ----------------------------------------------------------------------------- caveats as notes
def test_notes_of_collects_one_category_once_each_and_lets_other_warnings_through():
    import warnings

    from dimattn.analysis.results import DataWarning, note
    from dimattn.console import notes_of

    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with notes_of(DataWarning) as notes:
            note("seed 3 missing")
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
            with notes_of(DataWarning) as inner:  # a command inside another (report runs compare)
                note("inner caveat")
            note("seed 3 missing")
            note("a second caveat")
            assert notes == []  # filled as the block ends
    assert notes == ["seed 3 missing", "a second caveat"] and inner == ["inner caveat"]
    assert [(w.category, str(w.message)) for w in outside] == [(RuntimeWarning, "something else")]
    with pytest.raises(ValueError), notes_of(DataWarning) as notes:
        note("said before the error")
        raise ValueError("the error")
    assert notes == ["said before the error"]  # a caveat may be the error's cause: it is kept
