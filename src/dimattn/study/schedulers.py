"""What dimattn knows of each batch scheduler, as data: one frozen :class:`Scheduler` per scheduler in
:data:`SCHEDULERS`, read by the job-script writer (:mod:`dimattn.study.jobscripts`), the executor (the array
index and job id a task reads, :mod:`dimattn.study.execute`) and the CLI (``study run --backend``'s choices).

A description holds its job scripts' directives as templates (:class:`Directive`) filled from one array
script's :class:`Request`, its walltime format, the variables its tasks find their array index and job id
in, how it submits a script, chains one job after another (``afterany``: however the one before ended),
cancels and lists jobs, and how large an array may be. Adding a scheduler is one description here (or
registered in :data:`SCHEDULERS` by a plugin) and its tests.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

from dimattn.errors import DimattnError


@dataclass(frozen=True)
class Request:
    """One array script's request, in the words the directives' templates use (``{ncpus}``, ...)."""

    name: str  # the study's name, as the scheduler's job names allow (job_name)
    count: int  # tasks in this array
    array: bool  # whether the script is an array (not: one PBS job, which an array of one cannot be)
    first: int  # the array's first and last index (the scheduler's index_base, counted from there)
    last: int
    throttle: str  # "%N" with --max-parallel N (Slurm's and PBS's syntax for tasks at once), else ""
    ncpus: int
    ngpus: int
    mem_mb: int
    walltime: str  # in the scheduler's format
    warn: int  # seconds before the walltime at which a scheduler that can warns the task
    logs: Path  # the study's logs/ folder
    queue: str | None
    account: str | None
    max_parallel: int | None


REQUEST_FIELDS = frozenset(f.name for f in fields(Request))


class Directive(NamedTuple):
    """One directive line (after the scheduler's prefix): a template of :class:`Request`'s fields, written
    when ``when`` (a field; ``"not FIELD"`` negated) holds, or always where ``when`` is None."""

    template: str
    when: str | None = None

    def line(self, prefix: str, request: Request) -> str | None:
        if self.when is not None:
            negate, name = self.when.startswith("not "), self.when.removeprefix("not ")
            if bool(getattr(request, name)) == negate:
                return None
        return f"{prefix} {self.template.format(**vars(request))}"

    def names(self) -> set[str]:
        used = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
        return used | ({self.when.removeprefix("not ")} if self.when else set())


def hms(seconds: int) -> str:
    """``H:MM:SS``, hours beyond 24 as they are (PBS's walltime)."""
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def days_hms(seconds: int) -> str:
    """``D-HH:MM:SS`` from a day on, else ``H:MM:SS`` (Slurm's ``--time``)."""
    days, rest = divmod(seconds, 86400)
    return f"{days}-{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}" if days else hms(seconds)


@dataclass(frozen=True)
class Scheduler:
    """One batch scheduler. Commands are argument lists; ``{job}`` in ``after`` is the job waited for."""

    name: str  # as --backend names it
    title: str  # what one array task is called: "Slurm array task"
    prefix: str  # of each directive line: "#SBATCH"
    directives: tuple[Directive, ...]
    walltime: Callable[[int], str]  # seconds as the walltime directive writes them
    job_name_limit: int  # characters of a job name
    index_var: str  # the array task's index
    job_id_var: str  # the job's id, in a running task
    submit: tuple[str, ...]  # submits a script and prints its job id
    after: tuple[str, ...]  # the options of ``submit`` that make a job wait for another's end
    cancel: tuple[str, ...]  # cancels a job
    query: tuple[str, ...]  # shows jobs' states, for a person
    array_size: int  # tasks per array unless told (the scheduler's default cap)
    index_base: int = 0  # the first array index
    array_of_one: bool = True  # whether an array may have one task (PBS Pro's needs two)
    submit_from_logs: bool = False  # whether jobs write their output where they were submitted (PBS: logs/)
    notes: tuple[str, ...] = ()  # comment lines for the script's head: how a walltime ends a task
    states: tuple[str, ...] = ()  # lists "<job id> <state>" per task of the jobs (comma-joined ids after it)
    states_all_ended: str = ""  # what ``states`` says on stderr, exiting 1, when every job named has ended
    max_array: tuple[str, ...] = ()  # prints the site's configuration, with its largest array
    max_array_pattern: str = ""  # the regex finding it there (group 1)

    def __post_init__(self) -> None:
        unknown = {n for d in self.directives for n in d.names()} - REQUEST_FIELDS
        if unknown:  # a description's mistake shows when it is made, not in the first script it writes
            raise ValueError(f"scheduler {self.name}: directives name {sorted(unknown)}, not fields of Request")

    def lines(self, request: Request) -> list[str]:
        """The script's directives for ``request``."""
        return [line for d in self.directives if (line := d.line(self.prefix, request)) is not None]

    def task_index(self, request: Request) -> str:
        """The shell expression of a task's 0-based index in ``request``'s script (``0``: one task, no array)."""
        if not request.array:
            return "0"
        return f"${{{self.index_var}:?not set: submit this script with {self.submit[0]}}}" + (
            f" - {self.index_base}" if self.index_base else "")

    def submit_line(self, path: Path, logs: Path) -> str:
        """How a person submits the script at ``path`` (where its jobs write their output, if it matters)."""
        line = f"{self.submit[0]} {shlex.quote(str(path))}"
        return f"cd {shlex.quote(str(logs))} && {line}" if self.submit_from_logs else line


SLURM = Scheduler(
    name="slurm", title="Slurm array task", prefix="#SBATCH",
    directives=(
        Directive("--job-name={name}"), Directive("--array={first}-{last}{throttle}", "array"),
        Directive("--ntasks=1"), Directive("--cpus-per-task={ncpus}"), Directive("--mem={mem_mb}M"),
        Directive("--time={walltime}"), Directive("--output={logs}/slurm-%A_%a.out"),
        # SIGUSR1 to the task (B: the batch shell, which execs dimattn) ahead of the walltime: stop and save
        Directive("--signal=B:USR1@{warn}"),
        Directive("--partition={queue}", "queue"), Directive("--account={account}", "account"),
        Directive("--gres=gpu:{ngpus}", "ngpus"),
    ),
    walltime=days_hms, job_name_limit=64, index_var="SLURM_ARRAY_TASK_ID", job_id_var="SLURM_JOB_ID",
    submit=("sbatch", "--parsable"), after=("--dependency=afterany:{job}",), cancel=("scancel",),
    query=("squeue", "-j"), array_size=1_000,  # Slurm's default MaxArraySize is 1001
    states=("squeue", "-h", "-r", "-o", "%F %T", "-j"), states_all_ended="Invalid job id",
    max_array=("scontrol", "show", "config"), max_array_pattern=r"^MaxArraySize\s*=\s*(\d+)",
)

PBS = Scheduler(
    name="pbs", title="PBS Pro subjob", prefix="#PBS",
    directives=(
        Directive("-N {name}"), Directive("-J {first}-{last}{throttle}", "array"),
        Directive("-l select=1:ncpus={ncpus}:mem={mem_mb}mb", "not ngpus"),
        Directive("-l select=1:ncpus={ncpus}:mem={mem_mb}mb:ngpus={ngpus}", "ngpus"),
        Directive("-l walltime={walltime}"), Directive("-j oe"),
        Directive("-q {queue}", "queue"), Directive("-A {account}", "account"),
    ),
    walltime=hms, job_name_limit=15, index_var="PBS_ARRAY_INDEX", job_id_var="PBS_JOBID",
    submit=("qsub",), after=("-W", "depend=afterany:{job}"), cancel=("qdel",), query=("qstat", "-t"),
    array_size=10_000, array_of_one=False, submit_from_logs=True,
    notes=("At the walltime PBS Pro sends SIGTERM, then SIGKILL after the queue's kill_delay (10 s by default):",
           "dimattn checkpoints on SIGTERM after the rollout in progress (PBS Pro sends no warning ahead of it)."),
)

#: The schedulers by --backend name. The executor asks for the array index in this order.
SCHEDULERS: dict[str, Scheduler] = {s.name: s for s in (PBS, SLURM)}
#: The backends that run in this process's reach rather than through a scheduler.
IN_PROCESS = ("local", "ray")


def named(name: str) -> Scheduler:
    """The description of scheduler ``name``; a DimattnError naming the known ones where there is none."""
    if name not in SCHEDULERS:
        raise DimattnError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name]


def backends() -> tuple[str, ...]:
    """``study run --backend``'s choices: local workers, Ray, then each scheduler."""
    return (*IN_PROCESS, *SCHEDULERS)


def words(names: list[str], conjunction: str = "and") -> str:
    """``a, b and c``: names in a sentence."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
