"""The newcomer's path: help texts, notes on options that do not apply, the closing lines of a run (and why
it has no evaluation), explanations that say what they leave out, ``--speed``'s levers, ``axes --games``,
and the Makefile's demo run twice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis_fixtures import write_run
from cli_helpers import ENV, TINY, run
from dimattn import cli


def test_vec_env_subproc_with_the_fast_engine_is_noted_and_config_records_envpool(capsys):
    pytest.importorskip("envpool")
    from dimattn.engines.config import build_config
    from dimattn.engines.train import prepare

    config = prepare([build_config("Pong", vec_env="subproc")]).configs[0]
    out = capsys.readouterr().out
    assert (config.engine, config.vec_env) == ("fast", "envpool")
    assert out.count("\n") == 1 and "--vec-env subproc applies to the SB3 engine" in out
    assert prepare([build_config("Pong", vec_env="subproc", engine="sb3")]).configs[0].vec_env == "subproc"


def test_help_texts(capsys):
    rc, out, _ = run(["train", "--help"], capsys)
    assert rc == 0 and "rl_model_26624_steps.zip" in " ".join(out.split())
    rc, out, _ = run(["study", "status", "--help"], capsys)
    assert rc == 0 and "the steps a resume would keep" in " ".join(out.split())
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"dimattn {__import__('dimattn').__version__}"


def test_observations_are_taken_in_natural_order(tmp_path):
    from dimattn.interpret.explain import load_observations

    for i in (10, 2, 1):
        np.save(tmp_path / f"pong_{i}.npy", np.full((4, 84, 84), i, np.uint8))
    obs, names = load_observations([tmp_path / f"pong_{i}.npy" for i in (10, 2, 1)])
    assert names == ["pong_1", "pong_2", "pong_10"] and list(obs[:, 0, 0, 0]) == [1, 2, 10]


def test_explaining_one_na_checkpoint_says_why_there_is_no_orientation_png(files, tmp_path, capsys):
    out = tmp_path / "explain"
    rc, stdout, _ = run(["explain", "--checkpoint", str(files["pong"]), "--obs", str(files["obs"]), "--out",
                         str(out)], capsys)
    assert rc == 0 and (out / "orientation.md").is_file() and not (out / "orientation.png").exists()
    assert "no orientation.png: NA has no attention block" in " ".join(stdout.split())


def test_the_closing_lines_name_what_the_run_wrote(tmp_path):
    final = tmp_path / "PongNoFrameskip-v4.zip"
    assert "evaluations:" not in cli.done_message(tmp_path, final)
    for name in ("evaluations.npz", "rl_model_2048_steps.zip", "best_model.zip"):
        (tmp_path / name).write_bytes(b"")
    text = cli.done_message(tmp_path, final)
    assert f"evaluations:  {tmp_path / 'evaluations.npz'}" in text and f"final model:  {final}" in text
    assert f"checkpoints:  {tmp_path}/rl_model_*_steps.zip, {tmp_path}/best_model.zip" in text


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


def test_speed_sets_the_fast_engines_levers_on_top_of_the_defaults(tmp_path, capsys):
    rc, out, _ = run(["train", "--env", "Breakout", "-f", str(tmp_path), "-n", "128", "--eval-freq", "0",
                      "--speed", "channels_last=false", "env_threads=2", "collect-threads=0", *TINY], capsys)
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("fast engine on"))
    assert "2 EnvPool thread(s) each" in line and "channels_last" not in line, line
    assert "while acting" not in line, line  # collect_threads=0: torch's threads throughout
    # The closing lines name only what was written: no evaluations, no checkpoints here.
    assert "final model:" in out and "evaluations:" not in out and "checkpoints:" not in out, out


def test_axes_games_takes_a_comma_separated_list(capsys):
    rc, out, err = run(["axes", "--games", "Pong,Breakout", "--steps", "20"], capsys)
    assert rc == 0, err
    assert [line.split()[0] for line in out.splitlines()[:2]] == ["Pong", "Breakout"]
    assert out.splitlines()[0].endswith("[published: horizontal]")  # the published study's label, not "seed"


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
