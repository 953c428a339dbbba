"""Signals to ``study run``'s local runner (issue 31, item 9): SIGTERM, SIGINT (Ctrl-C, which a terminal
sends to the whole process group) and SIGUSR1 are passed on to its workers, so every running run saves its
checkpoint, a second SIGTERM in quick succession included; the runner ends with one line. Real signals to a
real runner training two runs in two worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import ENV
from dimattn.cli import main
from dimattn.engines import stopping
from dimattn.engines.rundir import checkpoints
from dimattn.study.spec import Study


@pytest.fixture
def study(tmp_path) -> Study:
    """Two runs long enough to be running when signalled; checkpoints only when stopped (save_freq 0)."""
    root = tmp_path / "s"
    assert main(["study", "init", str(root), "--games", "Breakout", "--agents", "NA", "--seeds", "0-1", "-n",
                 "100000", "--eval-freq", "128", "--save-freq", "0", "--engine", "fast", "--eval-episodes", "1",
                 "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1"]) == 0
    return Study.load(root)


def _runner(study: Study) -> subprocess.Popen:
    """``study run`` in its own session (so that a signal to its group reaches it and its workers only),
    returned once both runs have evaluated (each worker is training)."""
    proc = subprocess.Popen([sys.executable, "-m", "dimattn", "study", "run", str(study.root), "--workers", "2",
                             "--threads", "1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not all((run.dir / "evaluations.npz").exists() for run in study.runs):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the runs never started: {proc.communicate()}")
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signals,to_group,name", [
    ([signal.SIGUSR1], False, "SIGUSR1"),                 # Slurm's warning before the walltime
    ([signal.SIGTERM, signal.SIGTERM], False, "SIGTERM"),  # scancel twice, or a preemption after a walltime
    ([signal.SIGINT], True, "SIGINT"),                     # Ctrl-C: the terminal signals the whole group
], ids=["sigusr1", "double sigterm", "ctrl-c"])
def test_study_run_passes_a_stop_on_to_every_worker(signals, to_group, name, study):
    proc = _runner(study)
    try:
        for sig in signals:
            os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == stopping.EXIT_TERMINATED, err
    assert err.strip().splitlines()[-1] == f"dimattn study: terminated by {name}", err
    for run in study.runs:  # every running run saved where it stopped, and is resumable from there
        saved = checkpoints(run.dir)
        assert len(saved) == 1 and saved[0][0] >= 128, (run.dir, saved, err)
        assert "stopped by" in (run.dir / "stopped.log").read_text()


#: A block that is the identity, and that presses Ctrl-C (a real SIGINT to its own process) the first time it
#: sees a batch of 3 observations: the 3 games of an evaluation, never a training batch (2 envs, 64) nor the
#: network's shape probe (1).
CTRL_C_IN_EVALUATION = """
import os, signal
import torch.nn as nn
from dimattn.agents.registry import register


class CtrlCInEvaluation(nn.Module):
    pressed = False

    def forward(self, x):
        if x.shape[0] == 3 and not CtrlCInEvaluation.pressed:
            CtrlCInEvaluation.pressed = True
            os.kill(os.getpid(), signal.SIGINT)
        return x


register("CTRLC", lambda shape: CtrlCInEvaluation(), "the identity; Ctrl-C during an evaluation", "none")
"""


@pytest.mark.parametrize("engine", ["fast", "sb3"])
def test_ctrl_c_during_an_evaluation_stops_as_sigterm_does(engine, tmp_path):
    (tmp_path / "ctrlc.py").write_text(CTRL_C_IN_EVALUATION)
    done = subprocess.run([sys.executable, "-m", "dimattn", "train", "--env", "Breakout", "--plugin", "ctrlc",
                           "--agent", "CTRLC", "--engine", engine, "-n", "100000", "--eval-freq", "128",
                           "--eval-episodes", "3", "--save-freq", "0", "-f", "logs", "--hyperparams", "n_envs:2",
                           "n_steps:64", "batch_size:64", "n_epochs:1"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == stopping.EXIT_STOPPED, done.stderr
    run_dir = tmp_path / "logs" / "ppo" / "BreakoutNoFrameskip-v4_1"
    (steps, path), = checkpoints(run_dir)  # save_freq 0: the stop's checkpoint is the only one
    assert done.stderr.strip().splitlines()[-1] == (
        f"dimattn train: stopped by SIGINT at {steps:,} steps, after saving {path.name} (resumable); resume it: "
        f"dimattn train --resume {run_dir.relative_to(tmp_path)}")
    assert (run_dir / "evaluations.npz").is_file()  # the evaluation it interrupted was finished and kept


def test_sigterm_before_the_first_rollout_leaves_no_half_made_run_folder_and_says_which(tmp_path):
    """Whenever it lands before the first rollout ends: the folder is removed (nothing to resume) or, once
    training listens, kept with the first rollout's checkpoint (resumable); the last line says which."""
    proc = subprocess.Popen([sys.executable, "-m", "dimattn", "train", "--env", "Breakout", "--engine", "fast",
                             "-n", "100000", "--eval-freq", "0", "--save-freq", "0", "-f", "logs", "--hyperparams",
                             "n_envs:2", "n_steps:512", "batch_size:64", "n_epochs:1"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "logs" / "ppo" / "BreakoutNoFrameskip-v4_1"
    deadline = time.monotonic() + 300
    while not (run_dir / "config.yml").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    last = err.strip().splitlines()[-1]
    if proc.returncode == stopping.EXIT_TERMINATED:
        removed = run_dir.relative_to(tmp_path)
        assert last == (f"dimattn train: terminated by SIGTERM before its first rollout: removed {removed}, which "
                        "held nothing to resume"), err
        assert list((tmp_path / "logs" / "ppo").iterdir()) == []
    else:
        assert proc.returncode == stopping.EXIT_STOPPED, err
        (steps, path), = checkpoints(run_dir)
        assert steps == 1024 and f"at 1,024 steps, after saving {path.name} (resumable); resume it:" in last, err
