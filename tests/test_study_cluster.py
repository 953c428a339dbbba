"""Studies on real clusters: a one-node Slurm started by the tests (tests/slurm_cluster.py) running the job
arrays `study run --backend slurm --submit` writes; walltimes, chains, cancels and resubmissions; stopping
cleanly on SIGTERM / SIGUSR1; PBS's scripts and chains as text (no PBS here).

Every training is real and tiny (ALE Breakout/Pong, NA, fast engine, 2 envs × 32 steps per rollout,
one-game evaluations, 256 steps per run). Without root or Debian's slurm-wlm and munge, the Slurm tests
skip saying why; under CI they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from dimattn.cli import main
from dimattn.engines.rundir import EvalHistory, checkpoints
from dimattn.study.locks import LOCK
from dimattn.study.spec import ERROR_LOG, TRAIN_LOG, Study
from slurm_cluster import Slurm, slurm  # noqa: F401 - slurm: the session's cluster (a fixture)

TINY = ["--engine", "fast", "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1",
        "--eval-episodes", "1"]
STEPS, EVERY = 256, 128
SLURM = ["--backend", "slurm", "--submit", "--threads", "1", "--mem", "1gb", "--walltime", "0:10:00"]


def init(root: Path, games: str = "Breakout", seeds: str = "0-1", steps: int = STEPS, save: int = EVERY) -> Study:
    assert main(["study", "init", str(root), "--games", games, "--agents", "NA", "--seeds", seeds, "-n", str(steps),
                 "--eval-freq", str(EVERY), "--save-freq", str(save), *TINY]) == 0
    return Study.load(root)


def attempts(run) -> list[str]:
    return [ln for ln in (run.dir / TRAIN_LOG).read_text().splitlines() if ln.startswith("=== ") and ", pid " in ln]


def assert_like_a_local_run(study: Study, runs=None) -> None:
    """What `study run` here leaves: evaluations every EVERY steps, none missing or repeated, checkpoints,
    a final model SB3's PPO.load reads, no error.log."""
    from stable_baselines3 import PPO

    for run in study.runs if runs is None else runs:
        assert EvalHistory.load(run.dir).timesteps == list(range(EVERY, study.spec.n_timesteps + 1, EVERY)), run.name
        final = run.dir / f"{run.game}NoFrameskip-v4.zip"
        assert PPO.load(final, device="cpu").num_timesteps == study.spec.n_timesteps, run.name
        assert (run.dir / "best_model.zip").is_file() and not (run.dir / ERROR_LOG).exists(), run.name


def submitted(out: str) -> dict[str, list[str]]:
    """{script name: its job ids} from what `study run --submit` printed."""
    jobs = {}
    for m in re.finditer(r"submitted (\S+): job (\d+)(?:, then ([\d, ]+), each after)?", out):
        jobs[m.group(1)] = [m.group(2), *(m.group(3).split(", ") if m.group(3) else [])]
    return jobs


def task_times(cluster: Slurm, job: str) -> list[tuple[datetime, datetime]]:
    """(start, end) of each task of array ``job``, as Slurm recorded them."""
    times = []
    for line in cluster.run("scontrol", "-o", "show", "job", job).splitlines():
        words = dict(w.split("=", 1) for w in line.split() if "=" in w)
        times.append((datetime.fromisoformat(words["StartTime"]), datetime.fromisoformat(words["EndTime"])))
    return times


@pytest.fixture
def cluster(slurm, monkeypatch) -> Slurm:  # noqa: F811 - the fixture of the same name
    """The session's Slurm, found by this test's sbatch, squeue and scontrol through $SLURM_CONF."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    for var in ("SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX"):
        monkeypatch.delenv(var, raising=False)
    return slurm


# --------------------------------------------------------------------------- PBS and Slurm as text
def test_scripts_ask_for_a_warning_and_say_their_exit_statuses(tmp_path):
    study = init(tmp_path / "s")
    assert main(["study", "run", str(study.root), "--backend", "slurm", "--walltime", "4:00:00"]) == 0
    text = (study.root / "jobs" / "slurm.sh").read_text()
    assert "#SBATCH --signal=B:USR1@120" in text and "75 stopped by SIGTERM/SIGUSR1" in text
    assert text.index("trap '' USR1") < text.index("exec ")  # a warning before dimattn listens is ignored
    assert main(["study", "run", str(study.root), "--backend", "slurm", "--walltime", "0:02:00"]) == 0
    assert "#SBATCH --signal=B:USR1@30" in (study.root / "jobs" / "slurm.sh").read_text()  # a quarter of it
    assert main(["study", "run", str(study.root), "--backend", "pbs"]) == 0
    text = (study.root / "jobs" / "pbs.sh").read_text()
    assert "sends SIGTERM, then SIGKILL after the queue's kill_delay" in text and "--signal" not in text
    for name in ("slurm.sh", "pbs.sh"):
        assert subprocess.run(["bash", "-n", str(study.root / "jobs" / name)]).returncode == 0


def test_pbs_chain_is_qsub_with_depend_afterany(tmp_path, capsys, monkeypatch):
    """--chain 3 submits each script 3 times, each waiting for the one before (a stand-in qsub records how)."""
    study = init(tmp_path / "s", seeds="0-2")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qsub = bin_dir / "qsub"  # prints job ids 100[].pbs, 101[].pbs, ... as PBS Pro does for arrays
    qsub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/qsub.calls\n'
                    f'n=$(wc -l < {tmp_path}/qsub.calls)\necho "$((99 + n))[].pbs"\n')
    qsub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--chain", "3", "--array-size", "2"]) == 0
    hint = capsys.readouterr().out  # without --submit: the commands to run
    assert "j1=$(qsub -W depend=afterany:$j0 " not in hint  # two scripts: each its own chain
    assert "j2=$(qsub -W depend=afterany:$j0 " in hint and "j3=$(qsub -W depend=afterany:$j1 " in hint
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--chain", "3", "--array-size", "2",
                 "--submit"]) == 0
    calls = (tmp_path / "qsub.calls").read_text().splitlines()
    jobs = study.root / "jobs"
    assert calls == [f"{jobs}/pbs-0.sh", f"{jobs}/pbs-1.sh",
                     f"-W depend=afterany:100[].pbs {jobs}/pbs-0.sh", f"-W depend=afterany:101[].pbs {jobs}/pbs-1.sh",
                     f"-W depend=afterany:102[].pbs {jobs}/pbs-0.sh", f"-W depend=afterany:103[].pbs {jobs}/pbs-1.sh"]
    assert "submitted pbs-0.sh: job 100[].pbs, then 102[].pbs, 104[].pbs" in capsys.readouterr().out
    record = json.loads((jobs / "submitted.json").read_text())
    assert record["scripts"][1] == {"script": "pbs-1.sh", "jobs": ["101[].pbs", "103[].pbs", "105[].pbs"]}
    assert main(["study", "status", str(study.root)]) == 1
    assert "pbs chain of 3 jobs of jobs/pbs-1.sh: 101[].pbs, 103[].pbs, 105[].pbs" in capsys.readouterr().out
    # --max-parallel holds within one array: split arrays then run one after another, however many links
    (tmp_path / "qsub.calls").unlink()
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--array-size", "2", "--max-parallel", "1",
                 "--submit"]) == 0
    assert (tmp_path / "qsub.calls").read_text().splitlines() == [
        f"{jobs}/pbs-0.sh", f"-W depend=afterany:100[].pbs {jobs}/pbs-1.sh"]


# --------------------------------------------------------------------------- a real Slurm
def test_slurm_runs_a_2x2_study_split_at_max_array_size_as_a_local_run_would(cluster, tmp_path, capsys):
    """4 runs on a cluster whose MaxArraySize is 3: --submit splits them into arrays of 3 and 1 by itself."""
    study = init(tmp_path / "s", games="Breakout,Pong")
    assert main(["study", "run", str(study.root), *SLURM]) == 0
    jobs = submitted(capsys.readouterr().out)
    assert sorted(jobs) == ["slurm-0.sh", "slurm-1.sh"]
    assert "#SBATCH --array=0-2" in (study.root / "jobs" / "slurm-0.sh").read_text()
    assert main(["study", "status", str(study.root)]) == 1  # queued or running
    assert f"slurm job of jobs/slurm-1.sh: {jobs['slurm-1.sh'][0]} 1 " in capsys.readouterr().out
    cluster.wait_idle()
    assert_like_a_local_run(study)
    assert all(len(attempts(run)) == 1 for run in study.runs)
    assert all(cluster.state(f"{j[0]}_0") == "COMPLETED" for j in jobs.values())
    assert main(["study", "status", str(study.root)]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 4 done" in out and f"slurm job of jobs/slurm-0.sh: {jobs['slurm-0.sh'][0]} ended" in out
    task = (study.root / "logs" / f"slurm-{jobs['slurm-1.sh'][0]}_0.out").read_text()
    assert "run 3 Pong/NA/seed1: done: trained in" in task


def test_slurm_runs_packs(cluster, tmp_path, capsys):
    study = init(tmp_path / "s", games="Breakout,Pong")
    assert main(["study", "run", str(study.root), *SLURM, "--pack", "2"]) == 0
    jobs = submitted(capsys.readouterr().out)
    assert list(jobs) == ["slurm.sh"] and "#SBATCH --array=0-1" in (study.root / "jobs" / "slurm.sh").read_text()
    cluster.wait_idle()
    assert_like_a_local_run(study)
    for first, second in (study.runs[:2], study.runs[2:]):
        assert "a pack of 2" in attempts(first)[0] and f"its output is in {first.dir}" in attempts(second)[0]


def test_slurm_max_parallel_holds_across_arrays_and_a_failing_run_fails_alone(cluster, tmp_path, capsys):
    """3 runs in arrays of 2 and 1 with --max-parallel 1: no two tasks overlap in time, even across arrays;
    seed 1's checkpoint is corrupt: it fails with its error.log, the others finish."""
    study = init(tmp_path / "s", seeds="0-2")
    broken = study.runs[1]
    broken.dir.mkdir(parents=True)
    (broken.dir / "rl_model_128_steps.zip").write_bytes(b"not a zip file")
    assert main(["study", "run", str(study.root), *SLURM, "--array-size", "2", "--max-parallel", "1",
                 "--retries", "0"]) == 0
    jobs = submitted(capsys.readouterr().out)
    assert "#SBATCH --array=0-1%1" in (study.root / "jobs" / "slurm-0.sh").read_text()
    cluster.wait_idle()
    assert_like_a_local_run(study, [study.runs[0], study.runs[2]])
    error = (broken.dir / ERROR_LOG).read_text()
    assert error.startswith("attempt 1/1 failed: DimattnError") and "not a checkpoint" in error
    assert cluster.state(f"{jobs['slurm-0.sh'][0]}_1") == "FAILED"
    spans = sorted(t for job in (jobs["slurm-0.sh"][0], jobs["slurm-1.sh"][0]) for t in task_times(cluster, job))
    assert len(spans) == 3 and all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    assert main(["study", "status", str(study.root)]) == 1
    assert "3 runs: 2 done, 0 running, 1 failed" in capsys.readouterr().out


# --------------------------------------------------------------------------- a multi-node Ray
def _parents(pid: int) -> list[int]:
    """The process's ancestors' pids, nearest first (from /proc)."""
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
        chain.append(pid)
    return chain


def test_ray_cluster_loses_a_worker_node_mid_run(tmp_path):
    """A head (no CPUs) and two worker nodes of one CPU each, on this machine. Once a run has checkpointed at
    128 steps, its node is lost: the raylet removed, then its trainer killed (it was frozen so that the loss
    comes mid-run). The run is retried on the other node and resumes from its checkpoint; the other run is
    trained once; neither loses an evaluation or repeats one."""
    from ray.cluster_utils import Cluster

    study = init(tmp_path / "s")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        driver = subprocess.Popen(
            [sys.executable, "-m", "dimattn", "study", "run", str(study.root), "--backend", "ray", "--ray-address",
             cluster.address, "--threads", "1", "--retries", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        victim, pid, deadline = None, None, time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            for run in study.runs:
                if (run.dir / "rl_model_128_steps.zip").is_file() and (run.dir / LOCK).is_file():
                    pid = int((run.dir / LOCK).read_text().split()[0])
                    os.kill(pid, signal.SIGSTOP)
                    if not (run.dir / "BreakoutNoFrameskip-v4.zip").exists():
                        victim = run
                        break
                    os.kill(pid, signal.SIGCONT)  # finished meanwhile: not mid-run
            time.sleep(0.02)
        assert victim is not None, "no run was caught between its checkpoint at 128 steps and its end"
        node = next(n for n in nodes if n.all_processes["raylet"][0].process.pid in _parents(pid))
        cluster.remove_node(node, allow_graceful=False)
        os.kill(pid, signal.SIGKILL)  # the node's processes die with it
        out, _ = driver.communicate(timeout=600)
    finally:
        cluster.shutdown()
    assert driver.returncode == 0, out
    assert_like_a_local_run(study)
    log = (victim.dir / TRAIN_LOG).read_text()
    assert [a.split("attempt ")[1][:3] for a in attempts(victim)] == ["1/2", "2/2"], log
    assert "attempt 1/2 failed: Ray:" in log and f"resuming {victim.dir} from rl_model_128_steps.zip" in log
    other = next(r for r in study.runs if r != victim)
    assert len(attempts(other)) == 1


def freeze_mid_run(run, after: Path, timeout: float = 300) -> int:
    """Wait until ``run`` has written ``after`` and is still training; freeze its trainer (SIGSTOP: it
    makes no progress, so whatever comes next comes mid-run) and return its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if after.is_file() and (run.dir / LOCK).is_file():
            pid = int((run.dir / LOCK).read_text().split()[0])
            os.kill(pid, signal.SIGSTOP)
            if not (run.dir / f"{run.game}NoFrameskip-v4.zip").exists():
                return pid
            os.kill(pid, signal.SIGCONT)
            raise AssertionError(f"{run.name} finished before it could be caught mid-run")
        time.sleep(0.02)
    raise AssertionError(f"{run.name} did not write {after.name} in {timeout:.0f} s")


def stop_of(run) -> tuple[str, int]:
    """(signal, steps) of the stop the run's train.log reports."""
    m = re.search(r"stopped by (SIG\w+) at ([\d,]+) steps, after saving", (run.dir / TRAIN_LOG).read_text())
    assert m, (run.dir / TRAIN_LOG).read_text()
    return m.group(1), int(m.group(2).replace(",", ""))


def test_slurm_walltime_stops_a_run_with_a_checkpoint_and_the_chain_finishes_it(cluster, tmp_path, capsys):
    """Two runs that never checkpoint on their own (save_freq beyond their steps), submitted as a chain of two
    arrays. Run 0's task reaches its walltime mid-run (its trainer frozen after its first evaluation, its time
    limit then cut to a minute with scontrol): Slurm's SIGUSR1 ahead of the walltime (or SIGTERM at it) makes
    it save a checkpoint and stop. The chain's second array resumes it from that checkpoint and finds run 1
    finished (it exits at once): nothing is lost, nothing trained twice."""
    study = init(tmp_path / "s", steps=512, save=100_000)
    victim, other = study.runs
    assert main(["study", "run", str(study.root), *SLURM, "--chain", "2"]) == 0
    first, second = submitted(capsys.readouterr().out)["slurm.sh"]
    freeze_mid_run(victim, victim.dir / "evaluations.npz")
    cluster.run("scontrol", "update", f"JobId={first}_0", "TimeLimit=1")
    cluster.wait_idle()
    assert_like_a_local_run(study)
    name, steps = stop_of(victim)
    assert name in ("SIGUSR1", "SIGTERM") and 128 <= steps < 512
    assert [s for s, _ in checkpoints(victim.dir)] == [steps]  # the stop's checkpoint, resumed from
    log = (victim.dir / TRAIN_LOG).read_text()
    assert len(attempts(victim)) == 2 and f"resuming {victim.dir} from rl_model_{steps}_steps.zip" in log
    assert len(attempts(other)) == 1 and not checkpoints(other.dir)
    logs = study.root / "logs"
    assert f"run 0 Breakout/NA/seed0: stopped: stopped by {name}" in (logs / f"slurm-{first}_0.out").read_text()
    assert "run 1 Breakout/NA/seed1: done: already finished" in (logs / f"slurm-{second}_1.out").read_text()
    assert main(["study", "status", str(study.root)]) == 0
    assert f"slurm chain of 2 jobs of jobs/slurm.sh: {first} ended → {second} ended" in capsys.readouterr().out


def test_slurm_scancel_of_one_task_then_resubmit_resumes_only_that_run(cluster, tmp_path, capsys):
    """scancel sends SIGTERM: the cancelled run saves and stops, shown as stopped; submitting again trains
    nothing but that run, from the checkpoint the cancel left."""
    study = init(tmp_path / "s", steps=512, save=100_000)
    kept, cancelled = study.runs
    assert main(["study", "run", str(study.root), *SLURM]) == 0
    (job,) = submitted(capsys.readouterr().out)["slurm.sh"]
    freeze_mid_run(cancelled, cancelled.dir / "evaluations.npz")
    cluster.run("scancel", f"{job}_1")
    cluster.wait_idle()
    assert cluster.state(f"{job}_1") == "CANCELLED"
    assert stop_of(cancelled)[0] == "SIGTERM"
    steps = stop_of(cancelled)[1]
    assert main(["study", "status", str(study.root)]) == 1
    out = capsys.readouterr().out
    assert "1 stopped (resumable)" in out and f"stopped by SIGTERM at {steps:,} steps" in out
    assert main(["study", "run", str(study.root), *SLURM]) == 0
    (again,) = submitted(capsys.readouterr().out)["slurm.sh"]
    cluster.wait_idle()
    assert_like_a_local_run(study)
    assert len(attempts(kept)) == 1 and len(attempts(cancelled)) == 2
    assert f"from rl_model_{steps}_steps.zip" in (cancelled.dir / TRAIN_LOG).read_text()
    assert "done: already finished" in (study.root / "logs" / f"slurm-{again}_0.out").read_text()
