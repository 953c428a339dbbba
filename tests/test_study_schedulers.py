"""Schedulers as data (study/schedulers.py): the job scripts and submit lines each description gives, byte for
byte the ones written before the schedulers were descriptions (tests/fixtures/jobscripts/, made by the code
of commit df2175d), and a third scheduler added by one description, with no other file edited.

No training: studies are initialised (two tiny specs) and their scripts written and read as text.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from dimattn.cli import main
from dimattn.errors import DimattnError
from dimattn.study import schedulers
from dimattn.study.jobscripts import LOGS, JobResources, render, submit_commands, write_scripts
from dimattn.study.spec import Study

FIXTURES = Path(__file__).parent / "fixtures" / "jobscripts"
ROOT = "<ROOT>"  # the study folder, which differs from test to test, in the fixtures
PYTHON = "/opt/venv/bin/python"
TINY = ["--engine", "fast", "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1",
        "--eval-episodes", "1", "-n", "256", "--eval-freq", "128", "--save-freq", "128"]
#: Two studies: 2 games × 2 agents × 2 seeds (8 runs), and one run (a PBS script without an array).
STUDIES = {"big": ["--games", "Breakout,Pong", "--agents", "NA,CWCA", "--seeds", "0-1",
                   "--name", "2x2 study of attention, seeds 0-1"],
           "one": ["--games", "Pong", "--agents", "NA", "--seeds", "0"]}
#: name: (study, scheduler, JobResources' fields, retries, pack)
CASES = {
    "slurm_default": ("big", "slurm", {}, 1, 1),
    "pbs_default": ("big", "pbs", {}, 1, 1),
    "pbs_options": ("big", "pbs", {"ncpus": 1, "mem": "4gb", "walltime": "1:30:00", "queue": "workq",
                                   "account": "proj1", "max_parallel": 2, "ngpus": 1,
                                   "setup": ["module load python", "source venv/bin/activate"]}, 0, 1),
    "pbs_split": ("big", "pbs", {"array_size": 3, "walltime": "2-00:00:00", "mem": "0.5g"}, 1, 1),
    "slurm_split": ("big", "slurm", {"walltime": "2-00:00:00", "array_size": 3, "account": "rl", "ngpus": 1,
                                     "queue": "gpu", "max_parallel": 2, "mem": "8000mb", "ncpus": 4}, 2, 1),
    "slurm_short": ("big", "slurm", {"walltime": "0:02:00", "setup": ["echo 'a quoted $line'"]}, 1, 1),
    "pbs_one_run": ("one", "pbs", {}, 1, 1),
    "slurm_one_run": ("one", "slurm", {}, 1, 1),
    "slurm_pack": ("big", "slurm", {"array_size": 3}, 1, 2),
    "pbs_pack": ("big", "pbs", {"max_parallel": 1}, 3, 3),
}
#: (chain, serial) of each submit line kept with a case's scripts
SUBMITS = [(1, False), (3, False), (2, True)]


def make_study(tmp: Path, which: str) -> Study:
    root = tmp / which
    if not (root / "study.yml").is_file():
        assert main(["study", "init", str(root), *STUDIES[which], *TINY]) == 0
    return Study.load(root)


def written(tmp: Path, case: str) -> dict[str, str]:
    """{file name: text} of what the case writes: its scripts, and ``submit.txt`` (the submit lines),
    the study folder written as <ROOT>."""
    which, scheduler, fields, retries, pack = CASES[case]
    study = make_study(tmp, which)
    res = JobResources(python=PYTHON, **fields)
    paths = write_scripts(study, scheduler, res, retries=retries, pack=pack)
    files = {p.name: p.read_text() for p in paths}
    files["submit.txt"] = "".join(submit_commands(scheduler, paths, study.root / LOGS, c, s) + "\n" for c, s in SUBMITS)
    return {name: text.replace(str(study.root), ROOT) for name, text in files.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scripts_and_submit_lines_are_byte_identical_to_before(tmp_path, case):
    want = {p.name: p.read_text() for p in sorted((FIXTURES / case).iterdir())}
    assert want, f"no fixtures for {case}"
    assert written(tmp_path, case) == want


def test_registry_names_the_backends_the_cli_offers(tmp_path, capsys):
    assert set(schedulers.SCHEDULERS) == {"pbs", "slurm"}
    assert schedulers.backends() == ("local", "ray", *schedulers.SCHEDULERS)
    study = make_study(tmp_path, "one")
    assert main(["study", "run", str(study.root), "--backend", "lsf"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'lsf' (choose from 'local', 'ray', 'pbs', 'slurm')" in err


def test_executor_reads_the_index_and_job_variables_from_the_descriptions(tmp_path, monkeypatch):
    from dimattn.engines.stopping import Stopped
    from dimattn.study.execute import index_from_env, record_stop
    from dimattn.study.spec import STOP_LOG, Run

    for s in schedulers.SCHEDULERS.values():
        monkeypatch.delenv(s.index_var, raising=False)
        monkeypatch.delenv(s.job_id_var, raising=False)
    with pytest.raises(DimattnError, match=r"neither \$PBS_ARRAY_INDEX nor \$SLURM_ARRAY_TASK_ID is set"):
        index_from_env()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert index_from_env() == 7
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "x")
    with pytest.raises(DimattnError, match=r"\$SLURM_ARRAY_TASK_ID is 'x', not an integer"):
        index_from_env()
    run = Run(0, "Pong", "NA", 0, tmp_path / "run")
    run.dir.mkdir()
    record_stop(run, Stopped("SIGTERM", 128, []))
    assert ", job " not in (run.dir / STOP_LOG).read_text()
    monkeypatch.setenv("PBS_JOBID", "12[3].pbs")
    record_stop(run, Stopped("SIGTERM", 128, []))
    assert (run.dir / STOP_LOG).read_text().endswith(", job 12[3].pbs)\n")


# --------------------------------------------------------------------------- a third scheduler
def hours_minutes(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}"


#: An LSF-like scheduler, described in this test alone: its array indices count from 1, its walltime is
#: H:MM, and it has no warning ahead of the walltime.
LSF = schedulers.Scheduler(
    name="lsf", title="LSF job array task", prefix="#BSUB",
    directives=(
        schedulers.Directive("-J {name}[{first}-{last}]{throttle}"), schedulers.Directive("-n {ncpus}"),
        schedulers.Directive("-M {mem_mb}MB"), schedulers.Directive("-W {walltime}"),
        schedulers.Directive("-o {logs}/lsf-%J_%I.out"), schedulers.Directive("-q {queue}", "queue"),
        schedulers.Directive("-P {account}", "account"),
        schedulers.Directive('-R "rusage[ngpus_physical={ngpus}]"', "ngpus"),
    ),
    walltime=hours_minutes, job_name_limit=64, index_var="LSB_JOBINDEX", index_base=1, job_id_var="LSB_JOBID",
    submit=("bsub",), after=("-w", "ended({job})"), cancel=("bkill",), query=("bjobs",), array_size=1000,
)


def test_a_third_scheduler_is_one_description(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(schedulers.SCHEDULERS, "lsf", LSF)
    study = make_study(tmp_path, "big")
    # the CLI offers it and writes its scripts: 8 runs in arrays of at most 5
    assert main(["study", "run", str(study.root), "--backend", "lsf", "--walltime", "1-02:30:00", "--array-size",
                 "5", "--max-parallel", "2", "--queue", "short", "--retries", "0", "--python", PYTHON]) == 0
    out = capsys.readouterr().out
    paths = [study.root / "jobs" / f"lsf-{k}.sh" for k in (0, 1)]
    assert f"wrote {paths[1]}" in out
    assert f"j0=$(bsub {paths[0]}) && j1=$(bsub -w ended($j0) {paths[1]})" in out  # --max-parallel: one by one
    text = paths[1].read_text()
    for line in ("#BSUB -J d2x2_study_of_attention__seeds_0-1[1-3]%2", "#BSUB -W 26:30", "#BSUB -q short",
                 "#BSUB -M 8192MB", f"#BSUB -o {study.root / LOGS}/lsf-%J_%I.out", "one LSF job array task each",
                 "INDEX=$(( 5 + ${LSB_JOBINDEX:?not set: submit this script with bsub} - 1 ))", "--backend lsf",
                 "Submit: bsub ", "--retries 0"):
        assert line in text, line
    assert "#PBS" not in text and "#SBATCH" not in text and "rusage" not in text
    assert subprocess.run(["bash", "-n", str(paths[1])]).returncode == 0
    assert f"j2=$(bsub -w ended($j0) {paths[0]})" in submit_commands("lsf", paths, study.root / LOGS, chain=2)
    # bash works out the run of the second array's third task (LSF's index 3): run 5 + 2
    index = render("lsf", study, JobResources(python=PYTHON), 5, 3, 0, paths[1]).split("INDEX=")[1].split("\n")[0]
    done = subprocess.run(["bash", "-c", f"INDEX={index}; echo $INDEX"], capture_output=True, text=True,
                          env={**os.environ, "LSB_JOBINDEX": "3"})
    assert done.stdout.strip() == "7"
    # the executor reads its variables: run-one without --index, as an array task calls it
    from dimattn.study.execute import index_from_env

    for s in schedulers.SCHEDULERS.values():
        monkeypatch.delenv(s.index_var, raising=False)
    with pytest.raises(DimattnError, match=r"none of \$PBS_ARRAY_INDEX, \$SLURM_ARRAY_TASK_ID or \$LSB_JOBINDEX is"):
        index_from_env()
    monkeypatch.setenv("LSB_JOBINDEX", "3")
    assert index_from_env() == 2  # LSF's first task is 1; run-one's indices start at 0


def test_a_directive_naming_no_field_of_a_request_is_refused_when_described():
    with pytest.raises(ValueError, match=r"directives name \['cores'\], not fields of Request"):
        dataclasses.replace(LSF, directives=(schedulers.Directive("-n {cores}"),))
    with pytest.raises(ValueError, match=r"\['gpus'\]"):
        dataclasses.replace(LSF, directives=(schedulers.Directive("-gpu num=1", "not gpus"),))


def test_descriptions_are_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedulers.SCHEDULERS["slurm"].array_size = 5  # type: ignore[misc]
