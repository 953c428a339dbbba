"""PBS Pro and Slurm job-array scripts for a study: one array index per pack (:mod:`dimattn.study.packs`;
with ``--pack 1``, the default, a pack is one run).

Each array task runs ``dimattn study run-one <study> --index <offset + array index>`` (with ``--pack K``
when K > 1), which trains or resumes that pack under its members' locks (:func:`dimattn.study.execute.run_one`),
so resubmitting the same script after a failure redoes only what is unfinished. Large studies are split into
several arrays of at most ``array_size`` tasks each (Slurm's default ``MaxArraySize`` is 1001; some PBS
sites allow far fewer; ``--submit`` to Slurm reads the cluster's own).

Walltimes: a task ends with SIGTERM at its walltime (Slurm also sends SIGUSR1 a little before, as the script
asks with ``--signal``); the run then writes a checkpoint and stops, resumable (:mod:`dimattn.engines.stopping`,
exit status 75). ``submit(..., chain=N)`` submits each script N times, each link starting when the one before
has ended (``afterany``), so stopped runs go on by themselves; what was submitted is kept in
``jobs/submitted.json`` for ``study status`` (:func:`chain_lines`).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dimattn.engines.stopping import EXIT_STOPPED
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
#: How each scheduler makes a job wait for another's end, whatever its exit status (a link of a chain).
AFTER = {"pbs": ["-W", "depend=afterany:{job}"], "slurm": ["--dependency=afterany:{job}"]}
SUBMITTED = "submitted.json"  # in jobs/: the job ids of the last --submit, by script and link
WARN_SECONDS = 120  # Slurm's SIGUSR1 comes this long before the walltime (a quarter of a shorter one)
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


def directives(scheduler: str, name: str, res: JobResources, count: int, logs: Path) -> list[str]:
    """The scheduler's header lines for an array of ``count`` tasks named ``name`` (a study's, a tune's)."""
    mem, wall = mem_megabytes(res.mem), walltime_seconds(res.walltime)
    throttle = f"%{res.max_parallel}" if res.max_parallel else ""
    if scheduler == "pbs":
        select = f"select=1:ncpus={res.ncpus}:mem={mem}mb" + (f":ngpus={res.ngpus}" if res.ngpus else "")
        lines = [f"#PBS -N {_job_name(name, 15)}"]
        lines += [f"#PBS -J 0-{count - 1}{throttle}"] if count > 1 else []  # a PBS array needs 2+ subjobs
        lines += [f"#PBS -l {select}", f"#PBS -l walltime={_hms(wall)}", "#PBS -j oe"]
        lines += [f"#PBS -q {res.queue}"] if res.queue else []
        lines += [f"#PBS -A {res.account}"] if res.account else []
        return lines
    lines = [f"#SBATCH --job-name={_job_name(name, 64)}", f"#SBATCH --array=0-{count - 1}{throttle}",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={res.ncpus}", f"#SBATCH --mem={mem}M",
             f"#SBATCH --time={_slurm_time(wall)}", f"#SBATCH --output={logs}/slurm-%A_%a.out",
             # SIGUSR1 to the task (B: the batch shell, which execs dimattn) ahead of the walltime: stop and save
             f"#SBATCH --signal=B:USR1@{min(WARN_SECONDS, wall // 4)}"]
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
        f"# Exit status: 0 done, 1 a run failed (its error.log), {EXIT_STOPPED} stopped by SIGTERM/SIGUSR1 after "
        "writing a checkpoint (resumable).",
        *_stop_note(scheduler),
        *directives(scheduler, study.spec.name, res, count, logs),
        "",
        "trap '' USR1  # until dimattn listens for it: a warning that comes early must not end the task",
        "set -eo pipefail",
        *res.setup,  # before `set -u`: some environments' activate scripts read unset variables
        "set -u",
        f"export OMP_NUM_THREADS={res.ncpus}",
        f"INDEX=$(( {offset} + {index} ))",
        f'exec {shlex.join(command)} --index "$INDEX" --threads {res.ncpus} --retries {retries}'
        + (f" --pack {pack}" if pack > 1 else ""),
        "",
    ])


def _stop_note(scheduler: str) -> list[str]:
    if scheduler == "slurm":
        return []
    return ["# At the walltime PBS Pro sends SIGTERM, then SIGKILL after the queue's kill_delay (10 s by default):",
            "# dimattn checkpoints on SIGTERM after the rollout in progress (PBS Pro sends no warning ahead of it)."]


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


def _plan(n_scripts: int, chain: int, serial: bool) -> list[tuple[int, int | None]]:
    """The order of submission: (script, the earlier submission it waits for, or None), link by link. Each
    script's link waits for its link before; ``serial`` (a cap on tasks at once, ``%N``, which holds within
    one array) makes every array wait for the one submitted before it, so the cap holds across arrays."""
    plan: list[tuple[int, int | None]] = []
    for link in range(chain):
        for k in range(n_scripts):
            after = len(plan) - 1 if serial else (len(plan) - n_scripts if link else None)
            plan.append((k, after if after is not None and after >= 0 else None))
    return plan


def submit_commands(scheduler: str, paths: list[Path], logs: Path, chain: int = 1, serial: bool = False) -> str:
    """The shell line that submits ``paths`` as :func:`submit` does, for a person on a login node."""
    plan = _plan(len(paths), chain, serial)
    if all(after is None for _, after in plan):
        return f"cd {shlex.quote(str(logs))} && " + " && ".join(
            f"{SUBMIT[scheduler][0]} {shlex.quote(str(paths[k]))}" for k, _ in plan)
    parts = []
    for i, (k, after) in enumerate(plan):
        wait = [] if after is None else [a.format(job=f"$j{after}") for a in AFTER[scheduler]]
        parts.append(f"j{i}=$({' '.join([*SUBMIT[scheduler], *wait])} {shlex.quote(str(paths[k]))})")
    return f"cd {shlex.quote(str(logs))} && " + " && ".join(parts)


def submit(scheduler: str, paths: list[Path], logs: Path, chain: int = 1, serial: bool = False) -> list[list[str]]:
    """Submit each script with ``qsub`` / ``sbatch`` (from ``logs``, where PBS puts the jobs' output),
    ``chain`` times, each link waiting for the one before to end (``afterany``: however it ended); with
    ``serial``, each array waits for the one before (see :func:`_plan`). Returns each script's job ids, link
    by link, and keeps them in ``jobs/submitted.json``. Raises DimattnError when the command is missing or
    refuses a script."""
    tool = shutil.which(SUBMIT[scheduler][0])
    if tool is None:
        raise DimattnError(f"{SUBMIT[scheduler][0]} is not on PATH, so nothing was submitted; on the cluster's login "
                           f"node run: {submit_commands(scheduler, paths, logs, chain, serial)}")
    jobs: list[str] = []
    ids: list[list[str]] = [[] for _ in paths]
    for k, after in _plan(len(paths), chain, serial):
        wait = [] if after is None else [a.format(job=jobs[after]) for a in AFTER[scheduler]]
        jobs.append(_submit_one(tool, [*SUBMIT[scheduler][1:], *wait], paths[k], logs))
        ids[k].append(jobs[-1])
    record = {"scheduler": scheduler, "chain": chain, "serial": serial,
              "scripts": [{"script": p.name, "jobs": j} for p, j in zip(paths, ids)]}
    atomic_write_text(paths[0].parent / SUBMITTED, json.dumps(record, indent=1) + "\n")
    return ids


def _submit_one(tool: str, options: list[str], path: Path, logs: Path) -> str:
    done = subprocess.run([tool, *options, str(path)], cwd=logs, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[0]
        raise DimattnError(f"{Path(tool).name} refused {path}: {why}")
    # sbatch --parsable prints "id" or "id;cluster"; qsub prints "id.server" (an array: "id[].server")
    return done.stdout.strip().splitlines()[-1].split(";")[0] if done.stdout.strip() else "?"


def site_array_size(scheduler: str) -> int | None:
    """The most tasks an array may have on this Slurm cluster (its ``MaxArraySize``: indices 0..N-1), read
    with ``scontrol show config``; None where that cannot be read (then the defaults apply)."""
    tool = shutil.which("scontrol") if scheduler == "slurm" else None
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def chain_lines(study: Study) -> list[str]:
    """What ``study status`` says of the last ``--submit``: each script's jobs, link by link, with the states
    the scheduler still reports (``squeue``; a job it no longer lists has ended)."""
    path = study.root / JOBS / SUBMITTED
    try:
        record = json.loads(path.read_text())
        scheduler, scripts = record["scheduler"], record["scripts"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    states = _queued_states([j for s in scripts for j in s["jobs"]]) if scheduler == "slurm" else None
    lines = []
    for s in scripts:
        jobs = s["jobs"]
        head = f"{scheduler} {'chain of ' + str(len(jobs)) + ' jobs' if len(jobs) > 1 else 'job'} of jobs/{s['script']}"
        if states is None:
            lines.append(f"{head}: {', '.join(jobs)}" + (" (qstat -t shows their state)" if scheduler == "pbs" else ""))
        else:
            lines.append(f"{head}: " + " → ".join(f"{j} {states.get(j, 'ended')}" for j in jobs))
    return lines


def _queued_states(jobs: list[str]) -> dict[str, str] | None:
    """Each job's tasks still queued, by state ("2 running, 1 pending"), as squeue reports them; None if
    squeue cannot be asked."""
    tool = shutil.which("squeue")
    if tool is None or not jobs:
        return None
    try:
        done = subprocess.run([tool, "-h", "-r", "-o", "%F %T", "-j", ",".join(jobs)], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 and "Invalid job id" not in done.stderr:  # all ended: squeue says so, exit 1
        return None
    counts: dict[str, dict[str, int]] = {}
    for line in done.stdout.split("\n"):
        if len(words := line.split()) == 2:
            tally = counts.setdefault(words[0], {})
            tally[words[1].lower()] = tally.get(words[1].lower(), 0) + 1
    return {job: ", ".join(f"{n} {state}" for state, n in tally.items()) for job, tally in counts.items()}
