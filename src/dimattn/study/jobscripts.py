"""PBS Pro and Slurm job-array scripts for a study: one array index per pack (:mod:`dimattn.study.packs`;
with ``--pack 1``, the default, a pack is one run).

Each array task runs ``dimattn study run-one <study> --index <offset + array index>`` (with ``--pack K``
when K > 1), which trains or resumes that pack under its members' locks (:func:`dimattn.study.execute.run_one`),
so resubmitting the same script after a failure redoes only what is unfinished. Large studies are split into
several arrays of at most ``array_size`` tasks each (Slurm's default ``MaxArraySize`` is 1001; some PBS
sites allow far fewer).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.study.packs import form_packs
from dimattn.study.spec import Study

JOBS = "jobs"
LOGS = "logs"
SCHEDULERS = ("pbs", "slurm")
#: How each scheduler names the task's array index, submits a script, and caps an array by default.
INDEX_VAR = {"pbs": "PBS_ARRAY_INDEX", "slurm": "SLURM_ARRAY_TASK_ID"}
SUBMIT = {"pbs": ["qsub"], "slurm": ["sbatch", "--parsable"]}
ARRAY_SIZE = {"pbs": 10_000, "slurm": 1_000}
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt])i?b?$", re.IGNORECASE)
_WORD = re.compile(r"^[A-Za-z0-9_.@+-]+$")


@dataclass
class JobResources:
    """What each array task asks the scheduler for. ``walltime`` is ``H:MM:SS`` or ``D-HH:MM:SS``;
    ``mem`` like ``8gb``, ``8G`` or ``8000mb``; ``setup`` holds shell lines run before training
    (``module load ...``, ``source venv/bin/activate``); ``python`` is the interpreter the task runs."""

    ncpus: int = 2
    mem: str = "8gb"
    walltime: str = "24:00:00"
    ngpus: int = 0
    queue: str | None = None
    account: str | None = None
    max_parallel: int | None = None
    array_size: int | None = None
    setup: list[str] = field(default_factory=list)
    python: str = sys.executable

    def checked(self) -> JobResources:
        walltime_seconds(self.walltime)
        mem_megabytes(self.mem)
        for name in ("ncpus", "ngpus", "max_parallel", "array_size"):
            value = getattr(self, name)
            low = 0 if name == "ngpus" else 1
            if value is not None and (not isinstance(value, int) or value < low):
                raise DimattnError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        for name in ("queue", "account"):
            value = getattr(self, name)
            if value is not None and not _WORD.match(value):
                raise DimattnError(f"--{name} {value!r} is not a valid {name} name (letters, digits, _.@+-)")
        if any("\n" in line for line in self.setup):
            raise DimattnError("--setup takes one shell line per use; repeat --setup for several lines")
        return self


def walltime_seconds(text: str) -> int:
    m = _WALLTIME.match(text.strip())
    if not m:
        raise DimattnError(
            f"cannot parse walltime {text!r}; write H:MM:SS (e.g. 24:00:00) or D-HH:MM:SS (e.g. 2-00:00:00)"
        )
    days, h, mi, s = (int(x or 0) for x in m.groups())
    total = ((days * 24 + h) * 60 + mi) * 60 + s
    if total <= 0:
        raise DimattnError(f"walltime {text!r} must be positive")
    return total


def mem_megabytes(text: str) -> int:
    m = _MEM.match(text.strip())
    if not m:
        raise DimattnError(f"cannot parse memory {text!r}; write e.g. 8gb, 8G or 8000mb")
    value = float(m.group(1)) * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[m.group(2).lower()]
    if value < 1:
        raise DimattnError(f"memory {text!r} is less than a megabyte")
    return int(value)


def _hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _slurm_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days}-{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}" if days else _hms(seconds)


def _job_name(name: str, limit: int) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return (clean if clean[:1].isalpha() else f"d{clean}")[:limit]


def _directives(scheduler: str, study: Study, res: JobResources, count: int, logs: Path) -> list[str]:
    mem, wall = mem_megabytes(res.mem), walltime_seconds(res.walltime)
    throttle = f"%{res.max_parallel}" if res.max_parallel else ""
    if scheduler == "pbs":
        select = f"select=1:ncpus={res.ncpus}:mem={mem}mb" + (f":ngpus={res.ngpus}" if res.ngpus else "")
        lines = [f"#PBS -N {_job_name(study.spec.name, 15)}"]
        lines += [f"#PBS -J 0-{count - 1}{throttle}"] if count > 1 else []  # a PBS array needs 2+ subjobs
        lines += [f"#PBS -l {select}", f"#PBS -l walltime={_hms(wall)}", "#PBS -j oe"]
        lines += [f"#PBS -q {res.queue}"] if res.queue else []
        lines += [f"#PBS -A {res.account}"] if res.account else []
        return lines
    lines = [f"#SBATCH --job-name={_job_name(study.spec.name, 64)}", f"#SBATCH --array=0-{count - 1}{throttle}",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={res.ncpus}", f"#SBATCH --mem={mem}M",
             f"#SBATCH --time={_slurm_time(wall)}", f"#SBATCH --output={logs}/slurm-%A_%a.out"]
    lines += [f"#SBATCH --partition={res.queue}"] if res.queue else []
    lines += [f"#SBATCH --account={res.account}"] if res.account else []
    lines += [f"#SBATCH --gres=gpu:{res.ngpus}"] if res.ngpus else []
    return lines


def render(scheduler: str, study: Study, res: JobResources, offset: int, count: int, retries: int, path: Path,
           pack: int = 1) -> str:
    """The text of the script running runs (with ``pack`` > 1: packs) ``offset .. offset+count-1``."""
    logs = study.root / LOGS
    var = INDEX_VAR[scheduler]
    index = (
        f"${{{var}:?not set: submit this script with {SUBMIT[scheduler][0]}}}"
        if count > 1 or scheduler == "slurm"
        else "0"
    )
    submit = (f"cd {shlex.quote(str(logs))} && qsub {shlex.quote(str(path))}" if scheduler == "pbs"
              else f"sbatch {shlex.quote(str(path))}")
    command = [res.python, "-m", "dimattn", "study", "run-one", str(study.root)]
    units = f"runs {offset}-{offset + count - 1} of {len(study.runs)}"
    if pack > 1:
        units = (f"packs {offset}-{offset + count - 1} of {_unit_count(study, pack)} (--pack {pack}: up to {pack} "
                 "seeds of one game and agent, trained together)")
    return "\n".join([
        "#!/bin/bash",
        f"# dimattn study {study.spec.name!r}: {units}, one "
        f"{'PBS Pro subjob' if scheduler == 'pbs' else 'Slurm array task'} each.",
        f"# Written by `dimattn study run --backend {scheduler}`. Submit: {submit}",
        "# Resubmitting after a failure is safe: finished runs are skipped, unfinished ones resume.",
        *_directives(scheduler, study, res, count, logs),
        "",
        "set -eo pipefail",
        *res.setup,  # before `set -u`: some environments' activate scripts read unset variables
        "set -u",
        f"export OMP_NUM_THREADS={res.ncpus}",
        f"INDEX=$(( {offset} + {index} ))",
        f'exec {shlex.join(command)} --index "$INDEX" --threads {res.ncpus} --retries {retries}'
        + (f" --pack {pack}" if pack > 1 else ""),
        "",
    ])


def _unit_count(study: Study, pack: int) -> int:
    """Array tasks the study needs: one per pack of ``pack`` runs (one per run with ``pack`` 1)."""
    return len(form_packs(study, pack))


def write_scripts(study: Study, scheduler: str, res: JobResources, retries: int = 1, pack: int = 1) -> list[Path]:
    """Write ``<study>/jobs/<scheduler>.sh`` (or ``<scheduler>-<k>.sh`` when split); returns their paths.
    One array task per pack of ``pack`` runs (:mod:`dimattn.study.packs`; the default 1: one per run)."""
    if scheduler not in SCHEDULERS:
        raise DimattnError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    res.checked()
    size = res.array_size or ARRAY_SIZE[scheduler]
    total = _unit_count(study, pack)
    chunks = [(lo, min(size, total - lo)) for lo in range(0, total, size)]
    (study.root / LOGS).mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (offset, count) in enumerate(chunks):
        path = study.root / JOBS / (f"{scheduler}.sh" if len(chunks) == 1 else f"{scheduler}-{k}.sh")
        atomic_write_text(path, render(scheduler, study, res, offset, count, retries, path, pack=pack))
        path.chmod(0o755)
        paths.append(path)
    return paths


def submit(scheduler: str, paths: list[Path], logs: Path) -> list[str]:
    """Submit each script with ``qsub`` / ``sbatch`` (from ``logs``, where PBS puts the jobs' output);
    returns the job ids. Raises DimattnError when the command is missing or refuses a script."""
    tool = shutil.which(SUBMIT[scheduler][0])
    if tool is None:
        raise DimattnError(f"{SUBMIT[scheduler][0]} is not on PATH, so nothing was submitted; on the cluster's login "
                           f"node run: {'; '.join(f'cd {logs} && {SUBMIT[scheduler][0]} {p}' for p in paths)}")
    ids = []
    for path in paths:
        done = subprocess.run([tool, *SUBMIT[scheduler][1:], str(path)], cwd=logs, capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[0]
            raise DimattnError(f"{SUBMIT[scheduler][0]} refused {path}: {why}")
        ids.append(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?")
    return ids
