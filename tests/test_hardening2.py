"""Issue 24, the second hardening pass: diverged runs, hand-edited studies, bounds, leftovers, the newcomer's
second day.

As in ``tests/test_hardening.py``, bad inputs are tables (input -> exit 2, one line on stderr, no traceback,
nothing written), run in-process through ``dimattn.cli.main``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis_fixtures import write_run, write_study
from dimattn import cli
from dimattn.engines.rundir import discard_unstarted
from test_hardening import ENV, TINY, assert_one_line, fake_checkpoint, run

STEPS = [25_000, 50_000, 75_000]


# ----------------------------------------------------------------------------- 1: non-finite scores
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


# ----------------------------------------------------------------------------- 4: bounds, integers as integers
BAD_COUNTS = [
    (["axes", "Pong", "--steps", "99999999999999999999"], "--steps: must be at least 1 and at most 1,000,000, got "
                                                          "99999999999999999999"),
    (["axes", "Pong", "--steps", "0"], "--steps: must be at least 1"),
    (["axes", "Pong", "--steps", "٣"], "'٣' is not an integer"),           # Arabic-Indic three: int() takes it
    (["axes", "Pong", "--steps", "1_000"], "'1_000' is not an integer"),
    (["axes", "Pong", "--steps", "1e999999999"], "has more than 100 digits"),  # refused, never expanded
    (["axes", "Pong", "--seed", "-1"], "--seed: must be at least 0 and at most"),
    (["recommend", "Pong", "--steps", "10000000"], "--steps: must be at least 1 and at most 1,000,000"),
    (["recommend", "Pong", "--seed", "1e10"], "--seed: must be at least 0 and at most"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--n-obs", "0"],
     "--n-obs: must be at least 1 and at most 1,000, got 0"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--n-obs", "1e6"], "--n-obs: must be"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--every", "2.5"], "'2.5' is not an"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--episodes", "1000000"],
     "--episodes: must be at least 1 and at most 100"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--fps", "0"], "--fps: must be at least 1 and at "
                                                                                  "most 240"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--max-steps", "-5"], "--max-steps: must be"),
    (["report", "x", "--out", "{out}", "--reps", "1e9"], "--reps: must be at least 1 and at most 100,000, got 1e9"),
    (["report", "x", "--out", "{out}", "--reps", "0"], "--reps: must be at least 1"),
    (["study", "run", "{out}", "--threads", "100000"], "--threads: must be at least 1 and at most 1,024"),
    (["study", "run", "{out}", "--workers", "0"], "--workers: must be at least 1"),
    (["study", "run", "{out}", "--retries", "1e6"], "--retries: must be at least 0 and at most 100"),
    (["study", "run", "{out}", "--pack", "99999"], "--pack: must be at least 1 and at most 1,000"),
    (["study", "run", "{out}", "--backend", "pbs", "--ngpus", "1000"], "--ngpus: must be at least 0 and at most 64"),
    (["study", "run-one", "{out}", "--threads", "0"], "--threads: must be at least 1"),
    (["train", "--env", "Pong", "-f", "{out}", "--eval-freq", "٢٠٠"], "is not an integer"),
    (["train", "--env", "Pong", "-f", "{out}", "--verbose", "7"], "--verbose: must be at least 0 and at most 2"),
    (["train", "--env", "Pong", "-f", "{out}", "-n", "99999999999999999999"], "above the limit of 1e+12"),
]


@pytest.mark.parametrize("argv,message", BAD_COUNTS, ids=[" ".join(a)[:60] for a, _ in BAD_COUNTS])
def test_counts_are_bounded_and_parsed_as_integers(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run([a.format(out=out) for a in argv], capsys)
    assert_one_line(rc, err, message)
    assert not out.exists()


# ----------------------------------------------------------------------------- 3: --speed FIELD=VALUE
SPEED = ["train", "--env", "Pong", "-f", "{out}", "--engine", "fast", "--device", "cpu", "--speed"]
BAD_SPEEDS = [
    (["env_threads=٣"], "--speed env_threads takes a whole number >= 0 in digits 0-9, got '٣'"),
    (["torch_threads=1_000"], "--speed torch_threads takes a whole number >= 0 in digits 0-9"),
    (["groups=99999999999999999999"], "--speed groups must be at least 1 and at most 64"),
    (["env_threads=100000"], "--speed env_threads must be at least 0 and at most 1,024, got 100000"),
    (["collect_threads=4096"], "--speed collect_threads must be at least 0 and at most 1,024"),
    (["bf16=true", "bf16=false"], "--speed bf16 is given twice; give each field once"),
    (["env_threads=1", "env-threads=2"], "--speed env_threads is given twice"),
    (["cuda_graph=true"], "--speed cuda_graph=true needs a CUDA device, but this run is on the CPU"),
]


@pytest.mark.parametrize("items,message", BAD_SPEEDS, ids=[" ".join(i)[:40] for i, _ in BAD_SPEEDS])
def test_speed_is_parsed_strictly_before_the_run_folder_exists(items, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run([a.format(out=out) for a in SPEED] + items, capsys)
    assert_one_line(rc, err, message)
    assert not out.exists()


@pytest.mark.parametrize("text,value", [("5", 5), ("2e5", 200_000), ("2.5e6", 2_500_000), ("+7", 7),
                                        ("99999999999999999999", 99999999999999999999), ("1E3", 1000)])
def test_integers_are_exact(text, value):
    assert cli.integer(text) == value and type(cli.integer(text)) is int


def test_every_option_with_a_default_shows_it_in_help():
    missing = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            elif (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                  and "default" not in parser._get_formatter()._get_help_string(action)):
                missing.append(f"{name} {action.option_strings[-1]}")

    parser = cli.build_parser()
    walk(parser, "dimattn")
    assert not missing, missing
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    text = " ".join(train.format_help().split())
    assert "(default: 200,000)" in text and "(default: 5)" in text  # --eval-freq, --eval-episodes

# ----------------------------------------------------------------------------- 6: axes --games A,B
def test_axes_games_takes_a_comma_separated_list(capsys):
    rc, out, err = run(["axes", "--games", "Pong,Breakout", "--steps", "20"], capsys)
    assert rc == 0, err
    assert [line.split()[0] for line in out.splitlines()[:2]] == ["Pong", "Breakout"]
    assert out.splitlines()[0].endswith("[published: horizontal]")  # the published study's label, not "seed"


# ----------------------------------------------------------------------------- 8: interrupted, nothing left
def _interrupt(cmd: list[str], ready, cwd: Path) -> subprocess.CompletedProcess:
    """Start ``dimattn cmd`` in ``cwd``, wait until ``ready()``, then Ctrl-C it (SIGINT)."""
    proc = subprocess.Popen([sys.executable, "-m", "dimattn", *cmd], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not ready():
        assert proc.poll() is None, f"ended before it was interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_train_interrupted_before_it_wrote_anything_leaves_no_run_folder(tmp_path):
    # No evaluation or checkpoint before the end: whenever Ctrl-C lands, the folder holds config.yml at most.
    done = _interrupt(["train", "--env", "Pong", "-f", "logs", "-n", "1000000", "--eval-freq", "0", "--save-freq",
                       "0", *TINY], (tmp_path / "logs/ppo/PongNoFrameskip-v4_1/config.yml").is_file, tmp_path)
    assert done.returncode == 130 and done.stderr.strip().endswith("dimattn train: interrupted"), done.stderr
    assert list((tmp_path / "logs" / "ppo").iterdir()) == []


@pytest.mark.parametrize("names,removed", [
    ((), True), (("config.yml",), True), (("config.yml", ".evaluations.npz.x1.tmp"), True),
    (("config.yml", "evaluations.npz"), False), (("config.yml", "rl_model_2048_steps.zip"), False),
    (("config.yml", "notes.txt"), False),
])
def test_discard_unstarted_removes_only_a_folder_with_nothing_of_a_run(names, removed, tmp_path):
    run_dir = tmp_path / "PongNoFrameskip-v4_1"
    run_dir.mkdir()
    for name in names:
        (run_dir / name).write_text("x")
    assert discard_unstarted(run_dir) is removed
    assert run_dir.exists() is not removed
    if not removed:
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(names)


def test_record_interrupted_leaves_no_temp_file(tmp_path):
    checkpoint = fake_checkpoint(tmp_path / "breakout.zip", "NA", "Breakout", 4)
    out = tmp_path / "video"
    # An MP4 streams its frames to a temporary file: interrupted once that file exists.
    done = _interrupt(["record", "--checkpoint", str(checkpoint), "--out", str(out / "v.mp4"), "--episodes", "5",
                       "--max-steps", "100000"], lambda: any(out.glob(".v.mp4.*.mp4")), tmp_path)
    assert done.returncode == 130 and "dimattn record: interrupted\n" in done.stderr, done.stderr
    assert list(out.iterdir()) == []  # neither the video nor a temporary file


# ----------------------------------------------------------------------------- 9: the demo, twice
def test_make_demo_runs_again_over_the_last_demo(tmp_path):
    """The Makefile's own demo target, with tiny runs, over what a first demo left (its two runs, same seed);
    .venv is taken as installed (-o: never remade here)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parents[1]
    venv = Path(sys.executable).parent.parent
    logs = tmp_path / "demo-logs"
    for n, agent in ((1, "NA"), (2, "CWCA")):  # the first demo's runs
        write_run(logs / "ppo" / f"BreakoutNoFrameskip-v4_{n}", "Breakout", agent, 0, [10_000], [[1.0, 2.0]])
    tiny = f"--env Breakout -n 256 --eval-freq 128 --eval-episodes 1 --save-freq 0 {' '.join(TINY)}"
    done = subprocess.run(["make", "-s", "-C", str(repo), "-o", f"{venv}/.installed", "demo", f"VENV={venv}",
                           f"DEMO_LOGS={logs}", f"DEMO_RUN={tiny}"], capture_output=True, text=True, timeout=600,
                          env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.name for p in (logs / "ppo").iterdir())
    assert runs == ["BreakoutNoFrameskip-v4_1", "BreakoutNoFrameskip-v4_2"], runs  # NA and CWCA, nothing else
    for run_dir in (logs / "ppo").iterdir():
        assert list(np.load(run_dir / "evaluations.npz")["timesteps"]) == [128, 256]  # this demo's, not the last
    assert (logs / "report" / "index.html").is_file()


# ----------------------------------------------------------------------------- 10: a short run says why
@pytest.mark.parametrize("eval_freq,said", [(200_000, "evaluations:  none: the run's 20,000 steps ended before the "
                                                      "first evaluation (--eval-freq 200,000)"), (0, None)])
def test_a_run_with_no_evaluation_says_why_at_the_end(eval_freq, said, tmp_path):
    from dimattn.engines.config import build_config

    config = build_config("Pong", n_timesteps=20_000, eval_freq=eval_freq)
    text = cli.done_message(tmp_path, tmp_path / "PongNoFrameskip-v4.zip", config)
    if said is None:  # --eval-freq 0 asked for no evaluation: nothing to explain
        assert "evaluations" not in text
    else:
        assert said in text and "give a smaller --eval-freq, e.g. 5,000" in text


# ----------------------------------------------------------------------------- 11: output to a file or a pipe
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
    import io

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


# ----------------------------------------------------------------------------- 2: study.yml edited by hand
SPEC = ("name: s\ngames: [Pong]\nagents: [NA]\nseeds: [0]\nn_timesteps: 256\neval_freq: 0\neval_episodes: 1\n"
        "save_freq: 0\nengine: auto\nhyperparams: {}\n")
BOMB = "".join(f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
HAND_EDITED = [
    # (what replaces a line of SPEC, or is appended; what the one line says)
    (("games: [Pong]", "games: 5"), "games must be a named set"),
    (("games: [Pong]", "games: [[Pong]]"), "games must be a list of strings such as [Pong, Breakout], but it holds"),
    (("games: [Pong]", "games: [1]"), "games must be a list of strings such as [Pong, Breakout], but it holds int 1"),
    (("agents: [NA]", "agents: 5"), "agents must be a string or a list of strings such as [NA, CWCA], got int 5"),
    (("agents: [NA]", "agents: [[NA]]"), "agents must be a list of strings such as [NA, CWCA], but it holds list"),
    (("seeds: [0]", "seeds: {a: 1}"), "seeds must be a list of integers or a range such as 0-4, got dict"),
    (("seeds: [0]", "seeds: 1.5"), "seeds must be a list of integers or a range such as 0-4, got float"),
    (("seeds: [0]", "seeds: [[0]]"), "seeds must be non-negative integers"),
    (("n_timesteps: 256", "n_timesteps: 100000000000000000000"), "above the limit of 1e+12"),
    (("eval_freq: 0", "eval_freq: [1]"), "eval_freq must be an integer"),
    (("engine: auto", "engine: [fast]"), "unknown engine"),
    (("hyperparams: {}", "hyperparams: [1, 2]"), "hyperparams must be a mapping of key: value"),
    (("hyperparams: {}", "hyperparams: {n_envs: [1, 2]}"), "hyperparams n_envs must be a number, true/false or text"),
    (("hyperparams: {}", "hyperparams: {1: 2}"), "hyperparams key 1 is not a name"),
    (("hyperparams: {}", "hyperparams: {policy_kwargs: {a: b}}"), "hyperparams policy_kwargs must be a number"),
    (("hyperparams: {}", "hyperparams: {n_envs: eight}"), "'eight'"),
    (("hyperparams: {}", "hyperparams: {n_envs: 2.5}"), "n-envs must be a positive integer, got 2.5"),
    (("hyperparams: {}", "hyperparams: {n_envs: true}"), "n-envs must be a positive integer, got True"),
    (("hyperparams: {}", "hyperparams: {learning_rate: -1}"), "learning_rate must be above 0"),
    (("", "conf_file: /etc/hostname\n"), "conf_file must be conf.yml, the study's own copy"),
    (("", "conf_file: ../../conf.yml\n"), "conf_file must be conf.yml"),
    (("", "conf_file: 5\n"), "conf_file must be conf.yml"),
    (("hyperparams: {}\n", f"hyperparams:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n{BOMB}"),
     "holds an alias (*name), which a study.yml may not use; write the value out (line 12"),
    (("games: [Pong]", "games: " + "[" * 50_000 + "]" * 50_000), "nested too deeply"),
    (("", "# " + "x" * 1_000_000 + "\n"), "a study.yml is a few KB"),
    (("games: [Pong]", "games: [Pong"), "is not valid YAML for a study: expected ',' or ']'"),
]


@pytest.mark.parametrize("action", ["status", "run"])
@pytest.mark.parametrize("edit,message", HAND_EDITED, ids=[e[1][:40] for e, _ in HAND_EDITED])
def test_a_hand_edited_study_yml_is_checked_when_the_study_loads(edit, message, action, tmp_path, capsys):
    root = tmp_path / "s"
    root.mkdir()
    old, new = edit
    (root / "study.yml").write_text(SPEC.replace(old, new) if old else SPEC + new)
    start = time.monotonic()
    rc, _, err = run(["study", action, str(root)], capsys)
    assert_one_line(rc, err, message)
    assert time.monotonic() - start < 30  # promptly: an alias bomb is refused before it expands
    assert sorted(p.name for p in root.iterdir()) == ["study.yml"]  # nothing written


def test_a_conf_yml_that_links_out_of_the_study_is_refused(tmp_path, capsys):
    root = tmp_path / "s"
    root.mkdir()
    (tmp_path / "elsewhere.yml").write_text("atari:\n  n_envs: 2\n")
    (root / "conf.yml").symlink_to(tmp_path / "elsewhere.yml")
    (root / "study.yml").write_text(SPEC + "conf_file: conf.yml\n")
    for action in ("status", "run"):
        rc, _, err = run(["study", action, str(root)], capsys)
        assert_one_line(rc, err, f"{root / 'conf.yml'} leads out of the study folder")


# ----------------------------------------------------------------------------- 5: storage behind a link
@pytest.mark.skipif(not os.access("/sys/kernel", os.F_OK), reason="needs /sys/kernel (a folder no one may write)")
def test_runs_behind_a_link_to_storage_that_cannot_be_written_is_one_line(tmp_path, capsys):
    root = tmp_path / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "256",
                *TINY], capsys)[0] == 0
    (root / "runs").symlink_to("/sys/kernel")  # sysfs: even root gets "permission denied" writing there
    for argv in (["study", "run", str(root)], ["study", "run-one", str(root), "--index", "0"]):
        rc, _, err = run(argv, capsys)
        assert_one_line(rc, err, f"cannot write study's runs folder {root / 'runs'}: permission denied")
    (root / "runs").unlink()
    (root / "runs").symlink_to(tmp_path / "unmounted")
    rc, _, err = run(["study", "run", str(root)], capsys)
    assert_one_line(rc, err, f"cannot write study's runs folder {root / 'runs'}: it links to {tmp_path / 'unmounted'}"
                             ", which does not exist")


# ----------------------------------------------------------------------------- 12: "the seed" is the published study
def test_the_published_study_is_called_so_and_seed56_still_loads(tmp_path, capsys):
    from dimattn.games import PAPER56, resolve_games
    from dimattn.study.spec import Study

    assert resolve_games("paper56") == resolve_games("seed56") == PAPER56 and len(PAPER56) == 56
    root = tmp_path / "old"
    root.mkdir()
    (root / "study.yml").write_text(SPEC.replace("games: [Pong]", "games: seed56"))  # written before the rename
    assert len(Study.load(root, validate=False).spec.game_list) == 56
    helps = []

    def walk(parser: argparse.ArgumentParser) -> None:
        helps.append(" ".join(parser.format_help().split()))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
    walk(cli.build_parser())
    assert not [h[:60] for h in helps if "seed56" in h or "seed's" in h or "the seed " in h]
    assert any("paper56 (the published study's 56 games)" in h for h in helps)
