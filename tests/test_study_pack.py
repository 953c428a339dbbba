"""Packed studies (``dimattn study run --pack K``): the seeds of one game and agent trained together in one
process by each local worker, Ray task or array task; corrupt members fail alone; job arrays per pack.

Every training here is real (ALE Breakout, NA, fast engine) and tiny: 2 envs × 32 steps per rollout, one
epoch, one-game evaluations, 256 steps per run.
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

from dimattn.cli import main
from dimattn.engines.rundir import EvalHistory, checkpoints, read_config
from dimattn.study.packs import form_packs
from dimattn.study.spec import ERROR_LOG, TRAIN_LOG, Study

TINY = ["--engine", "fast", "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1",
        "--eval-episodes", "1"]
STEPS, EVERY = 256, 128


def init(root: Path, seeds: str = "0-2", agents: str = "NA", steps: int = STEPS, extra: list[str] = TINY) -> Study:
    assert main(["study", "init", str(root), "--games", "Breakout", "--agents", agents, "--seeds", seeds,
                 "-n", str(steps), "--eval-freq", str(EVERY), "--save-freq", str(EVERY), *extra]) == 0
    return Study.load(root)


def assert_trained(study: Study, runs=None, steps: int = STEPS) -> None:
    """Each run has its own folder as if trained alone: config, evaluations, checkpoints, final model, TensorBoard."""
    for run in study.runs if runs is None else runs:
        assert read_config(run.dir).seed == run.seed and read_config(run.dir).engine == "fast", run.name
        assert EvalHistory.load(run.dir).timesteps == list(range(EVERY, steps + 1, EVERY)), run.name
        assert [s for s, _ in checkpoints(run.dir)] == list(range(EVERY, steps + 1, EVERY)), run.name
        assert (run.dir / "BreakoutNoFrameskip-v4.zip").is_file() and (run.dir / "best_model.zip").is_file()
        assert any((run.dir / "tb" / "BreakoutNoFrameskip-v4" / f"seed{run.seed}_1").iterdir()), run.name
        assert not (run.dir / ERROR_LOG).exists(), run.name


def headers(run) -> list[str]:
    return [ln for ln in (run.dir / TRAIN_LOG).read_text().splitlines() if ln.startswith("=== ") and ", pid " in ln]


# --------------------------------------------------------------------------- no training
def test_packs_are_seeds_of_one_game_and_agent_in_chunks(tmp_path):
    study = init(tmp_path / "s", seeds="0-4", agents="NA,CWCA")
    packs = form_packs(study, 2)
    assert [(p.index, [r.index for r in p.runs]) for p in packs] == [
        (0, [0, 1]), (1, [2, 3]), (2, [4]), (3, [5, 6]), (4, [7, 8]), (5, [9])]
    assert packs[5].name == "Breakout/CWCA/seed4" and packs[3].name == "Breakout/CWCA/seed0,1"
    assert [len(p.runs) for p in form_packs(study, 1)] == [1] * 10
    assert [len(p.runs) for p in form_packs(study, 9)] == [5, 5]


@pytest.mark.parametrize("argv, message", [
    (["run", "{s}", "--pack", "0"], "argument --pack: must be at least 1 and at most 1,000, got 0"),
    (["run", "{s}", "--pack", "-2"], "argument --pack: must be at least 1 and at most 1,000, got -2"),
    (["run-one", "{s}", "--pack", "0", "--index", "0"], "argument --pack: must be at least 1 and at most 1,000, got 0"),
    (["run", "{s}", "--gpus", "-1", "--backend", "ray"], "argument --gpus: must be a number >= 0"),
    (["run", "{s}", "--pack", "2", "--gpus", "1"], "--gpus is for the ray, pbs and slurm backends"),
    (["run", "{s}", "--pack", "2", "--gpus", "0.5", "--backend", "pbs"], "pbs gives whole GPUs to a task"),
    (["run-one", "{s}", "--pack", "2", "--index", "2"], "pack index 2 is out of range: study s with --pack 2 has "
                                                        "packs 0-1"),
    (["run", "{sb3}", "--pack", "2"], "packed runs need the fast engine, and this study's engine is sb3"),
    (["run", "{sb3}", "--pack", "2", "--backend", "slurm"], "packed runs need the fast engine"),
])
def test_bad_pack_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    init(tmp_path / "s")
    init(tmp_path / "sb3", extra=[*TINY[2:], "--engine", "sb3"])
    argv = [a.format(s=tmp_path / "s", sb3=tmp_path / "sb3") for a in argv]
    try:
        code = main(["study", *argv])
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    for study in ("s", "sb3"):
        assert not (tmp_path / study / "runs").exists() and not (tmp_path / study / "jobs").exists()


def test_job_arrays_have_one_task_per_pack(tmp_path, capsys):
    study = init(tmp_path / "s", seeds="0-2", agents="NA,CWCA")  # 2 × (2 + 1) = 4 packs
    assert main(["study", "run", str(study.root), "--backend", "pbs", "--pack", "2", "--threads", "4",
                 "--ngpus", "1", "--retries", "0"]) == 0
    text = (study.root / "jobs" / "pbs.sh").read_text()
    for line in ("#PBS -J 0-3", "ncpus=4", ":ngpus=1", "packs 0-3 of 4 (--pack 2",
                 '--index "$INDEX" --threads 4 --retries 0 --pack 2'):
        assert line in text, line
    assert main(["study", "run", str(study.root), "--backend", "slurm", "--pack", "2", "--gpus", "1",
                 "--array-size", "3"]) == 0
    parts = [(study.root / "jobs" / f"slurm-{k}.sh").read_text() for k in (0, 1)]
    assert "#SBATCH --array=0-2" in parts[0] and "#SBATCH --array=0-0" in parts[1]
    assert "INDEX=$(( 3 + ${SLURM_ARRAY_TASK_ID" in parts[1]
    for text in parts:
        assert "#SBATCH --gres=gpu:1" in text and text.rstrip().endswith("--pack 2")
    assert subprocess.run(["bash", "-n", str(study.root / "jobs" / "slurm-0.sh")]).returncode == 0
    # without --pack: one task per run, as before
    assert main(["study", "run", str(study.root), "--backend", "pbs"]) == 0
    text = (study.root / "jobs" / "pbs.sh").read_text()
    assert "#PBS -J 0-5" in text and "--pack" not in text
    capsys.readouterr()


def test_a_pack_skips_busy_members_and_a_failed_pack_fails_every_member(tmp_path, monkeypatch):
    """train_pack stubbed: it records what it was asked to train, then fails."""
    import fcntl

    import dimattn.engines.train
    from dimattn.study.execute import execute
    from dimattn.study.locks import LOCK

    calls = []

    def failing(configs, run_dirs, tensorboard_log=None, **kwargs):
        calls.append(([c.seed for c in configs], [Path(d).name for d in run_dirs], tensorboard_log))
        raise RuntimeError("boom")

    monkeypatch.setattr(dimattn.engines.train, "train_pack", failing)
    study = init(tmp_path / "s")
    first, busy, _ = study.runs
    busy.dir.mkdir(parents=True)
    with open(busy.dir / LOCK, "w") as held:  # another process trains seed1
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242 otherhost 2024-01-01\n")
        held.flush()
        outcomes = execute(study, [0, 1], attempt="1/2")
    assert [(o.index, o.state) for o in outcomes] == [(0, "failed"), (1, "busy")]
    assert "being trained by 4242 otherhost" in outcomes[1].message
    assert calls == [([0], ["seed0"], [str(first.dir / "tb")])]
    assert (first.dir / ERROR_LOG).read_text().startswith("attempt 1/2 failed: RuntimeError: boom")
    assert not (busy.dir / TRAIN_LOG).exists() and not (busy.dir / ERROR_LOG).exists()
    # both members train, the pack fails: both get error.log, the second pointing at the first's output
    outcomes = execute(study, [0, 1], attempt="2/2")
    assert [o.state for o in outcomes] == ["failed", "failed"] and calls[-1][0] == [0, 1]
    error = (busy.dir / ERROR_LOG).read_text()
    assert error.startswith("attempt 2/2 failed: RuntimeError: boom") and str(first.dir / TRAIN_LOG) in error
    assert f"its output is in {first.dir / TRAIN_LOG}" in headers(busy)[0]


# --------------------------------------------------------------------------- real training
def test_local_packs_train_every_run_into_its_own_folder(tmp_path, capsys):
    """1 game × 1 agent × 3 seeds with --pack 2: packs [seed0, seed1] and [seed2], each in one process."""
    study = init(tmp_path / "s")
    assert main(["study", "run", str(study.root), "--pack", "2", "--workers", "2", "--threads", "1",
                 "--retries", "0"]) == 0
    assert "3/3 runs done (3 now, 0 before), 0 failed" in capsys.readouterr().out
    assert_trained(study)
    first, second, alone = study.runs
    # one process trained seed0 and seed1: its output is in seed0's train.log, seed1's says so
    assert len(headers(first)) == len(headers(second)) == len(headers(alone)) == 1
    assert "a pack of 2: Breakout/NA/seed0, Breakout/NA/seed1" in headers(first)[0]
    assert f"its output is in {first.dir / TRAIN_LOG}" in headers(second)[0]
    assert "fast engine on cpu: 2 run(s)" in (first.dir / TRAIN_LOG).read_text()
    assert "fast engine on cpu: 1 run(s)" in (alone.dir / TRAIN_LOG).read_text()
    weights = [np.load(r.dir / "evaluations.npz")["results"] for r in study.runs]
    assert all(w.shape == (2, 1) for w in weights)
    assert main(["study", "status", str(study.root)]) == 0
    assert "3 runs: 3 done" in capsys.readouterr().out
    assert main(["study", "run", str(study.root), "--pack", "2"]) == 0  # nothing left to do
    assert "3/3 runs done (0 now, 3 before)" in capsys.readouterr().out
    assert all(len(headers(r)) == 1 for r in study.runs)


def test_corrupt_members_fail_alone_and_run_one_trains_a_pack(tmp_path, capsys):
    """seed1's newest checkpoint is garbage: pack 0 trains seed0 and reports seed1 failed with its reason.
    seed2's config.yml is garbage: pack 1 fails without training; once the folder is removed, run-one trains it."""
    study = init(tmp_path / "s")
    first, broken, last = study.runs
    broken.dir.mkdir(parents=True)
    (broken.dir / "rl_model_128_steps.zip").write_bytes(b"not a zip file")
    last.dir.mkdir(parents=True)
    (last.dir / "config.yml").write_text("{{{ not yaml")
    assert main(["study", "run-one", str(study.root), "--pack", "2", "--index", "0", "--threads", "1",
                 "--retries", "1"]) == 1
    out = capsys.readouterr().out
    assert "run 0 Breakout/NA/seed0: done" in out and "run 1 Breakout/NA/seed1: failed" in out
    assert out.count("run 0 ") == 1 and out.count("run 1 ") == 2  # the failed member was retried alone
    assert_trained(study, [first])
    error = (broken.dir / ERROR_LOG).read_text()
    assert error.startswith("attempt 2/2 failed: DimattnError:") and "not a checkpoint" in error
    # study run checks the spec against the runs' config.yml up front, but leaves a corrupt one to fail alone
    assert main(["study", "run", str(study.root), "--pack", "2", "--retries", "0"]) == 1
    out = capsys.readouterr().out
    assert "1/3 runs done (0 now, 1 before), 2 failed" in out and "FAILED 2 Breakout/NA/seed2" in out
    assert "config.yml is not valid YAML" in (last.dir / ERROR_LOG).read_text()
    assert main(["study", "status", str(study.root)]) == 1
    out = capsys.readouterr().out
    assert "3 runs: 1 done, 0 running, 2 failed" in out and "DimattnError" in out
    (last.dir / "config.yml").unlink()
    assert main(["study", "run-one", str(study.root), "--pack", "2", "--index", "1", "--retries", "0"]) == 0
    assert "run 2 Breakout/NA/seed2: done" in capsys.readouterr().out
    assert_trained(study, [first, last])


def test_ray_tasks_train_packs(tmp_path):
    import ray

    from dimattn.study.launch import run_ray

    study = init(tmp_path / "s", seeds="0-1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run_ray(study, pack=2, threads=1, gpus=0, retries=0)
    finally:
        ray.shutdown()
    assert sorted(report.done) == [0, 1] and not report.failed
    assert_trained(study)


def test_a_killed_pack_resumes_from_its_members_checkpoints(tmp_path):
    """The worker training a pack is SIGKILLed after its first checkpoint; the retry resumes every member
    from its own newest checkpoint, and each member's evaluation history ends up whole."""
    from dimattn.study.locks import LOCK

    study = init(tmp_path / "s", seeds="0-1", steps=4 * EVERY)
    first, second = study.runs
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    driver = subprocess.Popen([sys.executable, "-m", "dimattn", "study", "run", str(study.root), "--pack", "2",
                               "--workers", "1", "--threads", "1", "--retries", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, pid = time.monotonic() + 300, None
    while pid is None and time.monotonic() < deadline and driver.poll() is None:
        if checkpoints(second.dir) and not (first.dir / "BreakoutNoFrameskip-v4.zip").exists():
            pid = int((first.dir / LOCK).read_text().split()[0])  # the pack's worker holds every member's lock
        time.sleep(0.02)
    assert pid is not None, "the pack finished before it could be killed"
    os.kill(pid, signal.SIGKILL)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    for run in study.runs:
        log = (run.dir / TRAIN_LOG).read_text()
        assert "attempt 1/2 failed: killed by signal SIGKILL" in log and len(headers(run)) == 2, log
    assert "from rl_model_" in (first.dir / TRAIN_LOG).read_text()  # resumed, not restarted
    assert_trained(study, steps=4 * EVERY)
