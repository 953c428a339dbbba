"""Studies: spec, expansion, local pool and Ray backends, resume after SIGKILL, retries, locks, job arrays.

Every training here is real (ALE Breakout/Pong, SB3 engine) and tiny: 2 envs × 64 steps per rollout,
one epoch per rollout, one-game evaluations, a few thousand steps per run.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dimattn.cli import main
from dimattn.engines.rundir import read_config
from dimattn.study.launch import run_local, run_ray
from dimattn.study.locks import LOCK
from dimattn.study.spec import ERROR_LOG, TRAIN_LOG, Study, expand, parse_seeds, spec_from_dict

REPO = Path(__file__).resolve().parents[1]
TINY = ["--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1", "--eval-episodes", "1"]


def init(root: Path, games: str = "Breakout,Pong", agents: str = "NA,CWCA", steps: int = 2048,
         eval_freq: int = 1024, save_freq: int = 1024) -> Study:
    assert main(["study", "init", str(root), "--games", games, "--agents", agents, "--seeds", "0",
                 "-n", str(steps), "--eval-freq", str(eval_freq), "--save-freq", str(save_freq), *TINY]) == 0
    return Study.load(root)


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """``python -m dimattn ...`` in a fresh process that imports this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "dimattn", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def evaluations(run_dir: Path) -> np.ndarray:
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as f:
        assert f["results"].shape == f["ep_lengths"].shape == (len(f["timesteps"]), 1)
        return f["timesteps"]


def assert_finished(study: Study) -> None:
    """Every run has its final model and one evaluation every eval_freq steps, none missing or repeated."""
    s = study.spec
    for run in study.runs:
        assert (run.dir / f"{run.game}NoFrameskip-v4.zip").is_file(), run.name
        np.testing.assert_array_equal(evaluations(run.dir), np.arange(s.eval_freq, s.n_timesteps + 1, s.eval_freq))
        assert not (run.dir / ERROR_LOG).exists()


def attempts(run_dir: Path) -> list[str]:
    return [ln for ln in (run_dir / TRAIN_LOG).read_text().splitlines() if ln.startswith("=== ") and ", pid " in ln]


# --------------------------------------------------------------------------- spec (no training)
def test_spec_expands_in_stable_order_with_stable_dirs(tmp_path):
    study = init(tmp_path / "s", games="Pong,Breakout", agents="CWCA,NA", steps=512)
    assert [(r.index, r.name) for r in study.runs] == [
        (0, "Pong/CWCA/seed0"), (1, "Pong/NA/seed0"), (2, "Breakout/CWCA/seed0"), (3, "Breakout/NA/seed0")]
    assert study.runs[2].dir == (tmp_path / "s" / "runs" / "Breakout" / "CWCA" / "seed0").absolute()
    config = study.config(study.runs[0])
    assert (config.agent, config.n_timesteps, config.hyperparams["n_envs"], config.eval_episodes) == ("CWCA", 512, 2, 1)
    # the same spec again is a no-op
    assert main(["study", "init", str(tmp_path / "s"), "--games", "Pong,Breakout", "--agents", "CWCA,NA",
                 "--seeds", "0", "-n", "512", "--eval-freq", "1024", "--save-freq", "1024", *TINY]) == 0


def test_published_spec_is_1400_runs():
    spec = spec_from_dict({"name": "seed56", "games": "seed56", "seeds": "0-4"}, "test")
    runs = expand(Path("/s"), spec)
    assert len(runs) == 56 * 5 * 5 and spec.n_timesteps == 10_000_000
    assert runs[-1].name == "Zaxxon/CWRCA/seed4" and len({r.dir for r in runs}) == 1400


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7-9") == [0, 3, 7, 8, 9]
    assert parse_seeds([2, 1]) == [2, 1]


@pytest.mark.parametrize("argv, message", [
    (["--games", "Pong,Nosuchgame"], "unknown Atari game 'Nosuchgame'"),
    (["--games", "Pong", "--agents", "NA,XYZ"], "unknown agent 'XYZ'"),
    (["--games", "Pong", "--agents", ","], "grid is empty (no agents)"),
    (["--games", ""], "grid is empty (no games)"),
    (["--games", "Pong", "--seeds", "0-x"], "cannot parse seeds '0-x'"),
    (["--games", "Pong", "--seeds", "4-1"], "runs backwards"),
    (["--games", "Pong", "--hyperparams", "n_envs:__import__('os')"], "cannot parse hyperparameter value"),
    (["--games", "Pong", "--hyperparams", "batch_size:100"], "batch_size 100 must divide"),
])
def test_bad_init_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    assert main(["study", "init", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_bad_study_directories(tmp_path, capsys):
    init(tmp_path / "s", games="Pong", agents="NA", steps=512)
    cases = [
        (["init", str(tmp_path / "s"), "--games", "Pong", "--agents", "SWA"], "already holds a different study"),
        (["run", str(tmp_path / "nothing")], "is not a study directory"),
        (["run-one", str(tmp_path / "s"), "--index", "1"], "run index 1 is out of range"),
        (["run-one", str(tmp_path / "s")], "no --index given"),
        (["status", str(tmp_path / "s"), "--only", "finished"], "--only takes states"),
        (["run", str(tmp_path / "s"), "--backend", "pbs", "--walltime", "10 hours"], "cannot parse walltime"),
        (["run", str(tmp_path / "s"), "--backend", "slurm", "--mem", "lots"], "cannot parse memory"),
    ]
    for argv, message in cases:
        os.environ.pop("PBS_ARRAY_INDEX", None), os.environ.pop("SLURM_ARRAY_TASK_ID", None)
        assert main(["study", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    spec = tmp_path / "s" / "study.yml"
    spec.write_text(spec.read_text().replace("- NA", "- NOPE"))
    assert main(["study", "run", str(tmp_path / "s")]) == 2
    assert "unknown agent 'NOPE'" in capsys.readouterr().err
    spec.write_text("name: [unclosed")
    assert main(["study", "status", str(tmp_path / "s")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "s" / "runs").exists()  # nothing ever started


def test_lock_holder_is_running_and_never_trained_twice(tmp_path, capsys):
    study = init(tmp_path / "s", games="Pong", agents="NA", steps=512)
    run = study.runs[0]
    run.dir.mkdir(parents=True)
    with open(run.dir / LOCK, "w") as held:  # another process's lock, held the way a trainer holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()} otherhost 2024-01-01\n")
        held.flush()
        assert main(["study", "status", str(tmp_path / "s")]) == 1
        assert "running" in capsys.readouterr().out
        assert main(["study", "run-one", str(tmp_path / "s"), "--index", "0"]) == 0
        assert "being trained by" in capsys.readouterr().out
    assert not (run.dir / TRAIN_LOG).exists()
    assert main(["study", "status", str(tmp_path / "s")]) == 1
    assert "1 pending" in capsys.readouterr().out


# --------------------------------------------------------------------------- backends (real training)
def test_local_backend_two_concurrent_study_runs_share_the_work(tmp_path, capsys):
    """2 games × 2 agents; two `study run` processes at once: every run is trained once, by one of them."""
    study = init(tmp_path / "s")
    other = cli("study", "run", str(study.root), "--workers", "2", "--threads", "1")
    report = run_local(study, workers=2, threads=1, retries=0)
    out, _ = other.communicate(timeout=600)
    assert other.returncode == 0, out
    assert not report.failed
    for run in study.runs:
        assert len(attempts(run.dir)) == 1, (run.name, attempts(run.dir))
    assert_finished(study)
    capsys.readouterr()
    assert main(["study", "status", str(study.root)]) == 0
    assert "4 runs: 4 done" in capsys.readouterr().out
    assert main(["study", "run", str(study.root)]) == 0  # nothing left to do
    assert "4/4 runs done (0 now, 4 before)" in capsys.readouterr().out


def test_ray_backend_local_cluster(tmp_path):
    import ray  # a test dependency (pyproject [test]): missing Ray is a failure, not a skip
    study = init(tmp_path / "s")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run_ray(study, threads=1, retries=0)
    finally:
        ray.shutdown()
    assert sorted(report.done) == [0, 1, 2, 3] and not report.failed
    assert_finished(study)


def test_sigkill_mid_run_resumes_with_continuous_evaluations(tmp_path):
    """The worker training a run is SIGKILLed after an evaluation that follows its last checkpoint; the
    retry resumes from that checkpoint, evaluates again from there, and the history ends up whole: one
    row every eval_freq steps, none missing, none repeated."""
    study = init(tmp_path / "s", games="Breakout", agents="CWCA", steps=3072, eval_freq=512, save_freq=1024)
    run = study.runs[0]
    driver = cli("study", "run", str(study.root), "--workers", "1", "--threads", "1", "--retries", "1")
    deadline, pid = time.monotonic() + 300, None
    while pid is None and time.monotonic() < deadline and driver.poll() is None:
        if (run.dir / "evaluations.npz").is_file() and evaluations(run.dir)[-1] == 1536:
            pid = int((run.dir / LOCK).read_text().split()[0])  # the trainer: the lock's holder
        time.sleep(0.02)
    assert pid is not None, "never caught the run between its evaluation at 1536 and its checkpoint at 2048"
    os.kill(pid, signal.SIGKILL)
    # read at once: the retry (started as soon as the driver sees the death) cuts the history back
    saved = max(int(p.name.split("_")[2]) for p in run.dir.glob("rl_model_*_steps.zip"))
    seen = evaluations(run.dir)  # readable right after the kill
    assert saved == 1024 and list(seen) == [512, 1024, 1536]
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    log = (run.dir / TRAIN_LOG).read_text()
    assert "attempt 1/2 failed: killed by signal SIGKILL" in log
    assert f"from rl_model_{saved}_steps.zip" in log  # lost only the work since the last save
    assert [a.split("attempt ")[1][:3] for a in attempts(run.dir)] == ["1/2", "2/2"]
    assert_finished(study)


def test_failed_runs_are_retried_then_reported_with_their_error(tmp_path, capsys):
    study = init(tmp_path / "s", games="Pong", agents="NA", steps=1024)
    run = study.runs[0]
    run.dir.mkdir(parents=True)
    (run.dir / "rl_model_512_steps.zip").write_bytes(b"not a zip file")  # a checkpoint ruined on disk
    report = run_local(study, workers=1, threads=1, retries=1)
    assert list(report.failed) == [0] and "attempt 2/2 failed" in report.failed[0]
    assert len(attempts(run.dir)) == 2
    error = (run.dir / ERROR_LOG).read_text()
    # the fast engine names the bad file; the SB3 engine (auto's choice where EnvPool is missing) raises zipfile's error
    fast = read_config(run.dir).engine == "fast"
    reason = ("DimattnError", "not a checkpoint") if fast else ("BadZipFile", "BadZipFile")
    assert error.startswith(f"attempt 2/2 failed: {reason[0]}") and reason[1] in error and "Traceback" in error
    capsys.readouterr()
    assert main(["study", "status", str(study.root), "--only", "failed"]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and reason[0] in out and "1 failed" in out
    # a spec edited after runs started no longer matches what they were trained with: refused
    spec = study.root / "study.yml"
    spec.write_text(spec.read_text().replace("n_timesteps: 1024", "n_timesteps: 2048"))
    assert main(["study", "run", str(study.root)]) == 2
    err = capsys.readouterr().err
    assert "started with another n_timesteps (1024" in err and err.count("\n") == 1


def test_pbs_and_slurm_array_scripts_run_through_run_one(tmp_path, capsys, monkeypatch):
    study = init(tmp_path / "s", games="Breakout", agents="NA,CWCA", steps=1024, eval_freq=512, save_freq=512)
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--threads", "1", "--mem", "4gb",
                 "--walltime", "1:30:00", "--queue", "workq", "--max-parallel", "2", "--retries", "0",
                 "--setup", "echo setting up"]) == 0
    pbs = study.root / "jobs" / "pbs.sh"
    text = pbs.read_text()
    for line in ("#PBS -J 0-1%2", "#PBS -l select=1:ncpus=1:mem=4096mb", "#PBS -l walltime=1:30:00",
                 "#PBS -q workq", "PBS_ARRAY_INDEX", "echo setting up", "study run-one"):
        assert line in text, line
    assert main(["study", "run", str(study.root), "--backend", "slurm", "--walltime", "2-00:00:00",
                 "--array-size", "1", "--account", "rl", "--ngpus", "1"]) == 0
    parts = [study.root / "jobs" / f"slurm-{k}.sh" for k in (0, 1)]
    for k, part in enumerate(parts):
        text = part.read_text()
        for line in ("#SBATCH --array=0-0", "#SBATCH --time=2-00:00:00", "#SBATCH --account=rl",
                     "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=2", f"INDEX=$(( {k} + ${{SLURM_ARRAY_TASK_ID"):
            assert line in text, (part, line)
        assert subprocess.run(["bash", "-n", str(part)]).returncode == 0

    # PBS Pro runs the script with $PBS_ARRAY_INDEX set: subjob 1 trains run 1 only
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PBS_ARRAY_INDEX": "1"}
    done = subprocess.run(["bash", str(pbs)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "setting up" in done.stdout and "run 1 Breakout/CWCA/seed0: done" in done.stdout
    assert not study.runs[0].dir.exists()
    # Slurm's array task calls run-one without --index: it reads $SLURM_ARRAY_TASK_ID
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    assert main(["study", "run-one", str(study.root), "--threads", "1"]) == 0
    capsys.readouterr()
    assert_finished(study)
    assert main(["study", "status", str(study.root)]) == 0


def test_submit_calls_the_scheduler_or_says_it_is_missing(tmp_path, capsys, monkeypatch):
    study = init(tmp_path / "s", games="Pong", agents="NA,SWA", steps=512)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--submit"]) == 2
    err = capsys.readouterr().err
    assert "qsub is not on PATH" in err and err.count("\n") == 1
    qsub = bin_dir / "qsub"  # a stand-in for the cluster's qsub: records how it was called
    qsub.write_text(f"#!/bin/sh\necho \"$PWD $@\" > {tmp_path}/qsub.args\necho 4242.pbs\n")
    qsub.chmod(0o755)
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--submit"]) == 0
    assert "job 4242.pbs" in capsys.readouterr().out
    cwd, script = (tmp_path / "qsub.args").read_text().split()
    assert Path(cwd) == study.root / "logs" and Path(script) == study.root / "jobs" / "pbs.sh"


def test_a_crashed_attempt_and_a_failed_one_are_summed_up_in_the_same_line(tmp_path):
    from dimattn.study.execute import failure_line
    from dimattn.study.launch import record_crash

    study = init(tmp_path / "s", games="Pong", agents="NA")
    exc = ValueError("the reason\nand more lines")
    summary = record_crash(str(study.root), [0], "1/2", exc)
    assert summary == failure_line("1/2", exc) == "attempt 1/2 failed: ValueError: the reason"
    assert (study.runs[0].dir / ERROR_LOG).read_text().startswith(summary + " (")
