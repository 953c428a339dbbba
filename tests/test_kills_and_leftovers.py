"""Killed and interrupted commands: a killed ``study run`` takes its workers down and the run resumes,
leftovers of killed writes are cleaned at resume, ``study status`` shows what a resume keeps, and Ctrl-C
leaves no half-made run folder or temporary file. Subprocesses, as a kill is the point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import ENV, TINY, fake_checkpoint, run
from dimattn.engines.rundir import discard_unstarted


# ----------------------------------------------------------------------------- study run killed
def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (its parent, the fork server, may not have reaped it yet)
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_sigkill_of_study_run_takes_its_worker_down_and_the_run_resumes(tmp_path):
    from dimattn.engines.rundir import checkpoints
    from dimattn.study.locks import lock_holder

    root = tmp_path / "s"
    subprocess.run([sys.executable, "-m", "dimattn", "study", "init", str(root), "--games", "Pong", "--agents",
                    "NA", "--seeds", "0", "-n", "1024", "--eval-freq", "0", "--save-freq", "128", "--engine", "sb3",
                    *TINY], env=ENV, check=True, capture_output=True)
    run_dir = root / "runs" / "Pong" / "NA" / "seed0"
    runner = subprocess.Popen([sys.executable, "-m", "dimattn", "study", "run", str(root), "--workers", "1"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: run_dir.is_dir() and checkpoints(run_dir), 180, "the worker's first checkpoint")
        holder = lock_holder(run_dir)
        assert holder is not None
        worker = int(holder.split()[0])
        assert worker != runner.pid and _alive(worker)
        runner.send_signal(signal.SIGKILL)  # the runner alone: its worker must follow
        runner.wait(10)
        _wait(lambda: not _alive(worker), 10, f"worker {worker} to die with its runner")
    finally:
        if runner.poll() is None:
            runner.kill()
    _wait(lambda: lock_holder(run_dir) is None, 5, "the run's lock to be released")
    assert not (run_dir / "PongNoFrameskip-v4.zip").exists()
    kept = checkpoints(run_dir)[-1][0]
    # what a write killed half-way leaves: atomic_path's temporary file and save_sb3's temporary zip
    leftovers = [run_dir / f".rl_model_{kept + 128}_steps.zip.k1ll3d.tmp",
                 run_dir / f".rl_model_{kept + 128}_steps.zip.k1ll3d.zip"]
    for path in leftovers:
        path.write_bytes(b"PK\x03\x04 half a zip")
    done = subprocess.run([sys.executable, "-m", "dimattn", "study", "run", str(root), "--workers", "1"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (run_dir / "train.log").read_text()
    assert f"resuming {run_dir} from rl_model_{kept}_steps.zip" in log
    assert "removed 2 temporary file(s)" in log and "A.L.E" not in log
    assert not any(p.exists() for p in leftovers)
    assert (run_dir / "PongNoFrameskip-v4.zip").is_file()


def test_status_shows_the_steps_a_resume_keeps_and_the_later_evaluation_apart(tmp_path, capsys):
    from dimattn.fileio import atomic_savez
    from dimattn.study.spec import Study
    from dimattn.study.status import statuses

    root = tmp_path / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "4096",
                *TINY], capsys)[0] == 0
    run_dir = root / "runs" / "Pong" / "NA" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "rl_model_1024_steps.zip").write_bytes(b"")  # status reads names only
    atomic_savez(run_dir / "evaluations.npz", timesteps=np.array([512, 1536]), results=np.array([[1.0], [3.0]]),
                 ep_lengths=np.array([[100], [100]]))
    (row,) = statuses(Study.load(root, validate=False))
    assert (row.state, row.steps, row.eval_steps, row.last_score) == ("pending", 1024, 1536, 3.0)
    rc, out, _ = run(["study", "status", str(root)], capsys)
    assert rc == 1 and "1,024/4,096" in out and "1,536" in out and "steps kept" in out


# ----------------------------------------------------------------------------- interrupted, nothing left
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
