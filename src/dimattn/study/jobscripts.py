"""Job-array scripts for a study, for each scheduler :mod:`dimattn.study.schedulers` describes (PBS Pro,
Slurm): one array index per pack (:mod:`dimattn.study.packs`; with ``--pack 1``, the default, a pack is one run).

Each array task runs ``dimattn study run-one <study> --index <offset + array index>`` (with ``--pack K``
when K > 1), which trains or resumes that pack under its members' locks (:func:`dimattn.study.execute.run_one`),
so resubmitting the same script after a failure redoes only what is unfinished. Large studies are split into
several arrays of at most ``array_size`` tasks each (Slurm's default ``MaxArraySize`` is 1001; some PBS
sites allow far fewer; ``--submit`` reads the cluster's own where the scheduler says it, as Slurm does).

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
from dimattn.study.schedulers import SCHEDULERS, Request, Scheduler, named
from dimattn.study.spec import Study

JOBS = "jobs"
LOGS = "logs"
SUBMITTED = "submitted.json"  # in jobs/: the job ids of the last --submit, by script and link
WARN_SECONDS = 120  # a warning (Slurm's SIGUSR1) comes this long before the walltime (a quarter of a shorter one)
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


def _job_name(name: str, limit: int) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return (clean if clean[:1].isalpha() else f"d{clean}")[:limit]


def request(sched: Scheduler, name: str, res: JobResources, count: int, logs: Path) -> Request:
    """What one array script of ``count`` tasks named ``name`` (a study's, a search's) asks ``sched`` for, in
    its directives' words."""
    wall = walltime_seconds(res.walltime)
    return Request(
        name=_job_name(name, sched.job_name_limit), count=count, array=count > 1 or sched.array_of_one,
        first=sched.index_base, last=sched.index_base + count - 1,
        throttle=f"%{res.max_parallel}" if res.max_parallel else "", ncpus=res.ncpus, ngpus=res.ngpus,
        mem_mb=mem_megabytes(res.mem), walltime=sched.walltime(wall), warn=min(WARN_SECONDS, wall // 4), logs=logs,
        queue=res.queue, account=res.account, max_parallel=res.max_parallel)


def render(scheduler: str, study: Study, res: JobResources, offset: int, count: int, retries: int, path: Path,
           pack: int = 1) -> str:
    """The text of the script running runs (with ``pack`` > 1: packs) ``offset .. offset+count-1``."""
    sched, logs = named(scheduler), study.root / LOGS
    req = request(sched, study.spec.name, res, count, logs)
    index, submit = sched.task_index(req), sched.submit_line(path, logs)
    command = [res.python, "-m", "dimattn", "study", "run-one", str(study.root)]
    units = f"runs {offset}-{offset + count - 1} of {len(study.runs)}"
    if pack > 1:
        units = (f"packs {offset}-{offset + count - 1} of {_unit_count(study, pack)} (--pack {pack}: up to {pack} "
                 "seeds of one game and agent, trained together)")
    return "\n".join([
        "#!/bin/bash",
        f"# dimattn study {study.spec.name!r}: {units}, one {sched.title} each.",
        f"# Written by `dimattn study run --backend {scheduler}`. Submit: {submit}",
        "# Resubmitting after a failure is safe: finished runs are skipped, unfinished ones resume.",
        f"# Exit status: 0 done, 1 a run failed (its error.log), {EXIT_STOPPED} stopped by SIGTERM/SIGUSR1 after "
        "writing a checkpoint (resumable).",
        *(f"# {note}" for note in sched.notes),
        *sched.lines(req),
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


def _unit_count(study: Study, pack: int) -> int:
    """Array tasks the study needs: one per pack of ``pack`` runs (one per run with ``pack`` 1)."""
    return len(form_packs(study, pack))


def write_scripts(study: Study, scheduler: str, res: JobResources, retries: int = 1, pack: int = 1) -> list[Path]:
    """Write ``<study>/jobs/<scheduler>.sh`` (or ``<scheduler>-<k>.sh`` when split); returns their paths.
    One array task per pack of ``pack`` runs (:mod:`dimattn.study.packs`; the default 1: one per run)."""
    sched = named(scheduler)
    res.checked()
    size = res.array_size or sched.array_size
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
    sched, plan = named(scheduler), _plan(len(paths), chain, serial)
    if all(after is None for _, after in plan):
        return f"cd {shlex.quote(str(logs))} && " + " && ".join(
            f"{sched.submit[0]} {shlex.quote(str(paths[k]))}" for k, _ in plan)
    parts = []
    for i, (k, after) in enumerate(plan):
        wait = [] if after is None else [a.format(job=f"$j{after}") for a in sched.after]
        parts.append(f"j{i}=$({' '.join([*sched.submit, *wait])} {shlex.quote(str(paths[k]))})")
    return f"cd {shlex.quote(str(logs))} && " + " && ".join(parts)


def submit(scheduler: str, paths: list[Path], logs: Path, chain: int = 1, serial: bool = False) -> list[list[str]]:
    """Submit each script with the scheduler's command (``qsub``, ``sbatch``; from ``logs``, where PBS puts the
    jobs' output),
    ``chain`` times, each link waiting for the one before to end (``afterany``: however it ended); with
    ``serial``, each array waits for the one before (see :func:`_plan`). Returns each script's job ids, link
    by link, and keeps them in ``jobs/submitted.json``. Raises DimattnError when the command is missing or
    refuses a script."""
    sched = named(scheduler)
    tool = shutil.which(sched.submit[0])
    if tool is None:
        raise DimattnError(f"{sched.submit[0]} is not on PATH, so nothing was submitted; on the cluster's login "
                           f"node run: {submit_commands(scheduler, paths, logs, chain, serial)}")
    jobs: list[str] = []
    ids: list[list[str]] = [[] for _ in paths]
    for k, after in _plan(len(paths), chain, serial):
        wait = [] if after is None else [a.format(job=jobs[after]) for a in sched.after]
        jobs.append(_submit_one(tool, [*sched.submit[1:], *wait], paths[k], logs))
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
    """The most tasks an array may have on this cluster, where the scheduler says it (Slurm's ``MaxArraySize``:
    indices 0..N-1, read with ``scontrol show config``); None where it cannot be read (the defaults apply)."""
    sched = named(scheduler)
    tool = shutil.which(sched.max_array[0]) if sched.max_array else None
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, *sched.max_array[1:]], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(sched.max_array_pattern, out, re.MULTILINE)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def chain_lines(study: Study) -> list[str]:
    """What ``study status`` says of the last ``--submit``: each script's jobs, link by link, with the states
    the scheduler still reports where it can be asked (``squeue``; a job it no longer lists has ended)."""
    path = study.root / JOBS / SUBMITTED
    try:
        record = json.loads(path.read_text())
        scheduler, scripts = record["scheduler"], record["scripts"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    sched = SCHEDULERS.get(scheduler)
    states = _queued_states(sched, [j for s in scripts for j in s["jobs"]]) if sched and sched.states else None
    lines = []
    for s in scripts:
        jobs = s["jobs"]
        head = f"{scheduler} {'chain of ' + str(len(jobs)) + ' jobs' if len(jobs) > 1 else 'job'} of jobs/{s['script']}"
        if states is None:
            hint = f" ({' '.join(sched.query)} shows their state)" if sched and not sched.states else ""
            lines.append(f"{head}: {', '.join(jobs)}{hint}")
        else:
            lines.append(f"{head}: " + " → ".join(f"{j} {states.get(j, 'ended')}" for j in jobs))
    return lines


def _queued_states(sched: Scheduler, jobs: list[str]) -> dict[str, str] | None:
    """Each job's tasks still queued, by state ("2 running, 1 pending"), as the scheduler's ``states``
    command (squeue) reports them; None if it cannot be asked."""
    tool = shutil.which(sched.states[0])
    if tool is None or not jobs:
        return None
    try:
        done = subprocess.run([tool, *sched.states[1:], ",".join(jobs)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    all_ended = bool(sched.states_all_ended) and sched.states_all_ended in done.stderr  # squeue: exit 1
    if done.returncode != 0 and not all_ended:
        return None
    counts: dict[str, dict[str, int]] = {}
    for line in done.stdout.split("\n"):
        if len(words := line.split()) == 2:
            tally = counts.setdefault(words[0], {})
            tally[words[1].lower()] = tally.get(words[1].lower(), 0) + 1
    return {job: ", ".join(f"{n} {state}" for state, n in tally.items()) for job, tally in counts.items()}
