"""Stopping cleanly on SIGTERM / SIGUSR1 (dimattn.engines.stopping): both engines finish the step in
progress, write a checkpoint exactly like a periodic one, and stop; a resume from it is a resume like any
other (the same weights, optimiser and RNG states, the same final model); a pack checkpoints every member;
a study marks the runs stopped, resumable; dimattn says one line.

The signals are real (sent to this process, or to a dimattn process); the moment is made exact by sending
it from inside the run (at its second rollout, or at an evaluation). Training is real and tiny (Breakout,
NA, 512 steps at most).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dimattn.agents.checkpoints import load_tensors
from dimattn.cli import main
from dimattn.engines import stopping
from dimattn.engines.config import build_config
from dimattn.engines.rundir import EvalHistory, checkpoints
from dimattn.engines.train import train
from dimattn.study.spec import Study

STEPS = 256


def config(engine: str, save_freq: int, n_timesteps: int = STEPS):
    hp = {"n_envs": 4, "n_steps": 32, "batch_size": 64} if engine == "fast" else {"n_envs": 2, "n_steps": 64,
                                                                                    "batch_size": 64, "n_epochs": 1}
    return build_config("Breakout", agent="NA", seed=5, n_timesteps=n_timesteps, engine=engine, eval_freq=128,
                        eval_episodes=1, save_freq=save_freq, hyperparams=hp)


def training_state(path: Path) -> dict:
    """Every tensor file in a checkpoint zip (policy, optimiser, RNG states, step counts), loaded."""
    with zipfile.ZipFile(path) as zf:
        return {n: load_tensors(zf.read(n), n) for n in zf.namelist() if n.endswith((".pth", ".pt"))}


def signal_at(monkeypatch, module, name: str, when, sig: int = signal.SIGUSR1) -> None:
    """Send ``sig`` to this process from inside ``module.name`` (wrapped) on the call where ``when(args)``."""
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        if when(args):
            os.kill(os.getpid(), sig)
        return out

    monkeypatch.setattr(module, name, wrapped)


# --------------------------------------------------------------------------- the mechanism
def test_listening_turns_sigterm_and_sigusr1_into_a_request_and_gives_the_handlers_back():
    before = signal.getsignal(signal.SIGTERM)
    with stopping.listening():
        assert stopping.requested() is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.requested() == "SIGUSR1"  # the first one names the stop
    assert signal.getsignal(signal.SIGTERM) is before
    handler = stopping.terminate_on_sigterm()
    try:
        with pytest.raises(stopping.Terminated, match="terminated by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at once; this is never reached in full
    finally:
        stopping.restore(handler)
    with stopping.listening():
        assert stopping.requested() is None  # each training starts with no request


# --------------------------------------------------------------------------- both engines
@pytest.mark.parametrize("engine", ["fast", "sb3"])
def test_a_stop_checkpoint_resumes_exactly_as_a_periodic_one(tmp_path, monkeypatch, engine):
    """Run P saves every 128 steps and is cut back to its checkpoint at 128, as if killed there; run S saves
    never (save_freq beyond the run) and gets SIGUSR1 during the step that reaches 128. S stops with a
    checkpoint at 128 holding what P's holds (weights, optimiser, RNG states, step counts), and both resume
    to the same final model and evaluations."""
    from dimattn.engines import ppo, sb3

    periodic, stopped = tmp_path / "periodic", tmp_path / "stopped"
    train(config(engine, 128), periodic)
    for path in (periodic / "rl_model_256_steps.zip", periodic / "BreakoutNoFrameskip-v4.zip"):
        path.unlink()
    if engine == "fast":  # during the first rollout (0 -> 128 steps)
        signal_at(monkeypatch, ppo, "collect", lambda a: True)
    else:  # at the evaluation of step 128 (SB3 looks at each env step)
        signal_at(monkeypatch, sb3, "record_evaluation", lambda a: a[2] == 128)
    with pytest.raises(stopping.Stopped) as info:
        train(config(engine, 10_000), stopped)
    monkeypatch.undo()
    assert (info.value.signal, info.value.steps) == ("SIGUSR1", 128)
    assert [s for s, _ in checkpoints(stopped)] == [128] and not (stopped / "BreakoutNoFrameskip-v4.zip").exists()
    torch.testing.assert_close(training_state(stopped / "rl_model_128_steps.zip"),
                               training_state(periodic / "rl_model_128_steps.zip"), rtol=0, atol=0)
    train(config(engine, 128), periodic)
    train(config(engine, 10_000), stopped)
    final = "BreakoutNoFrameskip-v4.zip"
    torch.testing.assert_close(training_state(stopped / final), training_state(periodic / final), rtol=0, atol=0)
    a, b = EvalHistory.load(stopped), EvalHistory.load(periodic)
    assert a.timesteps == b.timesteps == [128, 256]
    np.testing.assert_array_equal(np.array(a.results), np.array(b.results))


def test_every_member_of_a_pack_checkpoints_on_a_stop(tmp_path, monkeypatch):
    from dimattn.engines import ppo
    from dimattn.engines.train import train_pack

    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    configs = [build_config("Breakout", agent="NA", seed=s, n_timesteps=256, engine="fast", eval_freq=128,
                            eval_episodes=1, save_freq=10_000,
                            hyperparams={"n_envs": 2, "n_steps": 32, "batch_size": 64})
               for s in (0, 1)]
    calls = []
    signal_at(monkeypatch, ppo, "collect", lambda a: calls.append(1) or len(calls) == 3, signal.SIGTERM)
    with pytest.raises(stopping.Stopped, match=r"stopped by SIGTERM at 192 steps, after saving each run's "
                                               r"rl_model_192_steps.zip \(resumable\)"):
        train_pack(configs, dirs)
    monkeypatch.undo()
    assert all([s for s, _ in checkpoints(d)] == [192] for d in dirs)
    train_pack(configs, dirs)
    for d in dirs:
        assert EvalHistory.load(d).timesteps == [128, 256]
        assert [s for s, _ in checkpoints(d)] == [192] and (d / "BreakoutNoFrameskip-v4.zip").is_file()


# --------------------------------------------------------------------------- the command line
def dimattn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dimattn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def test_dimattn_train_on_sigterm_saves_and_says_so_in_one_line(tmp_path):
    proc = dimattn("train", "--env", "Breakout", "--agent", "NA", "-n", "100000", "--eval-freq", "128",
                   "--eval-episodes", "1", "--save-freq", "0", "--engine", "fast", "-f", str(tmp_path),
                   "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64")
    run_dir = tmp_path / "ppo" / "BreakoutNoFrameskip-v4_1"
    wait_for(run_dir / "evaluations.npz", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == stopping.EXIT_STOPPED, err
    (steps, path), = checkpoints(run_dir)  # save_freq 0: the stop's checkpoint is the only one
    assert steps >= 128 and err.strip().splitlines()[-1] == (
        f"dimattn train: stopped by SIGTERM at {steps:,} steps, after saving {path.name} (resumable); "
        f"resume it: dimattn train --resume {run_dir}")


def test_study_run_on_sigterm_stops_its_workers_cleanly_and_resumes(tmp_path, capsys):
    """SIGTERM to `study run` (a pack of two in one local worker): the runner says one line (exit 143); the
    worker stops after its step, both members checkpoint and show as stopped; running again resumes them
    from there and finishes with continuous evaluations."""
    root = tmp_path / "s"
    assert main(["study", "init", str(root), "--games", "Breakout", "--agents", "NA", "--seeds", "0-1", "-n", "1024",
                 "--eval-freq", "128", "--save-freq", "100000", "--engine", "fast", "--eval-episodes", "1",
                 "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1"]) == 0
    study = Study.load(root)
    proc = dimattn("study", "run", str(root), "--pack", "2", "--workers", "1", "--threads", "1")
    wait_for(study.runs[1].dir / "evaluations.npz", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == stopping.EXIT_TERMINATED and err.strip().splitlines()[-1] == (
        "dimattn study: terminated by SIGTERM"), err
    stops = [checkpoints(run.dir) for run in study.runs]
    assert len(stops[0]) == 1 and stops[0][0][0] == stops[1][0][0] >= 128  # both members, at the same step
    capsys.readouterr()
    assert main(["study", "status", str(root)]) == 1
    out = capsys.readouterr().out
    assert "2 stopped (resumable)" in out and f"stopped by SIGTERM at {stops[0][0][0]:,} steps" in out
    assert main(["study", "run", str(root), "--pack", "2", "--workers", "1", "--threads", "1"]) == 0
    for run in study.runs:
        assert EvalHistory.load(run.dir).timesteps == list(range(128, 1025, 128))
        assert f"resuming {run.dir} from {stops[0][0][1].name}" in (study.runs[0].dir / "train.log").read_text()
        assert not (run.dir / "stopped.log").exists()
