"""A study: the grid games × agents × seeds, defined once in ``study.yml``, run anywhere, resumed after any fault.

    <study>/
      study.yml                             the spec (:class:`StudySpec`)
      conf.yml                              a copy of ``--conf-file``, if one was given
      runs/<Game>/<Agent>/seed<k>/          one run directory each (layout of :mod:`dimattn.rundir`), plus
        train.log                           the run's output, every attempt appended
        error.log                           the last failed attempt's error (removed once the run finishes)
        .lock                               held (``flock``) by the process training the run
      jobs/                                 PBS Pro / Slurm job-array scripts (:mod:`dimattn.jobscripts`)
      logs/                                 the schedulers' own output

Runs are numbered 0..N-1 in the order games × agents × seeds of the spec; array jobs and
``dimattn study run-one --index`` use these numbers. A run is *done* when its final model exists
(:func:`dimattn.rundir.final_model_path`), *running* while a process holds its lock, *failed* when its
last attempt left an ``error.log``, and *pending* otherwise. Every attempt resumes from the run's last
checkpoint (:func:`dimattn.train.train` does that), so a run killed at any moment loses at most the
work since its last save. How runs are executed lives in :mod:`dimattn.launch` (local pool, Ray) and
:mod:`dimattn.jobscripts` (PBS Pro, Slurm).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from dimattn.attention import AGENTS, check_agent
from dimattn.config import RunConfig, build_config
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.games import GAME_SETS, resolve_games, v4_id
from dimattn.rundir import CONFIG, EVALUATIONS, EvalHistory, checkpoints, final_model_path, read_config
from dimattn.train import DEFAULT_ENGINE, ENGINES, train

SPEC = "study.yml"
CONF = "conf.yml"
RUNS = "runs"
TRAIN_LOG = "train.log"
ERROR_LOG = "error.log"
LOCK = ".lock"
STATES = ("pending", "running", "done", "failed")
ERROR_TAIL = 20  # lines of the failing attempt's output kept in error.log
_SEEDS = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


# --------------------------------------------------------------------------- the spec
@dataclass
class StudySpec:
    """What ``study.yml`` holds. ``games`` is a named set (``seed56``, ``atari57``) or a list of games;
    ``hyperparams`` maps keys to values as ``--hyperparams key:value`` would (parsed, never executed);
    ``conf_file`` is relative to the study directory."""

    name: str
    games: str | list[str]
    agents: list[str] = field(default_factory=lambda: list(AGENTS))
    seeds: list[int] = field(default_factory=lambda: list(range(5)))
    n_timesteps: int = 10_000_000
    eval_freq: int = 200_000
    eval_episodes: int = 5
    save_freq: int = 500_000
    engine: str = DEFAULT_ENGINE
    hyperparams: dict[str, Any] = field(default_factory=dict)
    conf_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def game_list(self) -> tuple[str, ...]:
        return resolve_games(self.games)

    def hyperparam_items(self) -> list[str]:
        """``{"n_envs": 8}`` -> ``["n_envs:8"]``, the form :func:`build_config` parses."""
        return [f"{k}:{v}" for k, v in self.hyperparams.items()]


def parse_seeds(text: str | int | list) -> list[int]:
    """``"0-4"`` -> [0..4]; ``"0,3,7-9"`` -> [0, 3, 7, 8, 9]; a list of ints is checked and kept."""
    if isinstance(text, bool):
        raise DimattnError(f"seeds must be integers, got {text!r}")
    if isinstance(text, int):
        text = [text]
    if isinstance(text, list):
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in text):
            raise DimattnError(f"seeds must be non-negative integers, got {text!r}")
        return list(dict.fromkeys(text))
    seeds: list[int] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        m = _SEEDS.match(part)
        if not m:
            raise DimattnError(f"cannot parse seeds {text!r}; write e.g. 0-4 or 0,2,5 or 0-2,7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise DimattnError(f"seed range {part.strip()!r} runs backwards; write {hi}-{lo}")
        seeds.extend(range(lo, hi + 1))
    return list(dict.fromkeys(seeds))


def _agents(value: str | list) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return list(dict.fromkeys(check_agent(a) for a in items if str(a).strip()))


def spec_from_dict(d: Any, source: str) -> StudySpec:
    """Check a parsed ``study.yml`` and return the spec; raise DimattnError naming the first problem."""
    if not isinstance(d, dict):
        raise DimattnError(f"{source} must be a YAML mapping (name, games, agents, seeds, ...)")
    names = {f.name for f in dataclasses.fields(StudySpec)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise DimattnError(f"{source}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(names))}")
    for key in ("name", "games"):
        if key not in d:
            raise DimattnError(f"{source}: missing key {key!r}")
    spec = StudySpec(**d)
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise DimattnError(f"{source}: name must be a non-empty string")
    if not isinstance(spec.games, (str, list)):
        raise DimattnError(f"{source}: games must be a named set ({', '.join(GAME_SETS)}) or a list of games")
    spec.agents = _agents(spec.agents)
    spec.seeds = parse_seeds(spec.seeds)
    for key in ("n_timesteps", "eval_episodes"):
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DimattnError(f"{source}: {key} must be a positive integer, got {value!r}")
    for key in ("eval_freq", "save_freq"):
        if not isinstance(getattr(spec, key), int) or isinstance(getattr(spec, key), bool):
            raise DimattnError(f"{source}: {key} must be an integer, got {getattr(spec, key)!r}")
    if spec.engine not in ENGINES:
        raise DimattnError(f"{source}: unknown engine {spec.engine!r}; choose one of {', '.join(ENGINES)}")
    if spec.hyperparams is None:
        spec.hyperparams = {}
    if not isinstance(spec.hyperparams, dict):
        raise DimattnError(f"{source}: hyperparams must be a mapping of key: value")
    if spec.conf_file is not None and not isinstance(spec.conf_file, str):
        raise DimattnError(f"{source}: conf_file must be a file name")
    games = spec.game_list  # raises on an unknown game
    if not games or not spec.agents or not spec.seeds:
        empty = "games" if not games else "agents" if not spec.agents else "seeds"
        raise DimattnError(f"{source}: the grid is empty (no {empty}); give at least one of each")
    return spec


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One (game, agent, seed) of a study, with its stable directory."""

    index: int
    game: str
    agent: str
    seed: int
    dir: Path

    @property
    def name(self) -> str:
        return f"{self.game}/{self.agent}/seed{self.seed}"


@dataclass
class Study:
    """A study directory and its spec, expanded into runs."""

    root: Path
    spec: StudySpec
    runs: list[Run]

    @classmethod
    def load(cls, root: str | Path, validate: bool = True) -> "Study":
        """Read ``<root>/study.yml``. With ``validate``, every run's configuration is resolved first,
        so bad hyperparameters fail here, before anything starts."""
        root = Path(root).absolute()
        path = root / SPEC
        if not path.is_file():
            raise DimattnError(f"{root} is not a study directory (no {SPEC}); create one with `dimattn study init {root}`")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DimattnError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        study = cls(root, spec_from_dict(raw, str(path)), [])
        study.runs = expand(study.root, study.spec)
        if validate:
            study.base_configs()
        return study

    @property
    def conf_path(self) -> Path | None:
        return None if self.spec.conf_file is None else self.root / self.spec.conf_file

    def base_configs(self) -> dict[tuple[str, str], RunConfig]:
        """The resolved configuration of every (game, agent), seed 0; raises on the first bad one."""
        if self.conf_path is not None and not self.conf_path.is_file():
            raise DimattnError(f"{self.root / SPEC} names conf_file {self.spec.conf_file}, which is missing")
        return {(g, a): self._build(g, a) for g in self.spec.game_list for a in self.spec.agents}

    def _build(self, game: str, agent: str, seed: int = 0) -> RunConfig:
        s = self.spec
        return build_config(game, agent=agent, hyperparams=s.hyperparam_items(), conf_file=self.conf_path,
                            seed=seed, n_timesteps=s.n_timesteps, eval_freq=s.eval_freq,
                            eval_episodes=s.eval_episodes, save_freq=s.save_freq, engine=s.engine)

    def config(self, run: Run) -> RunConfig:
        return self._build(run.game, run.agent, run.seed)

    def run(self, index: int) -> Run:
        if not 0 <= index < len(self.runs):
            raise DimattnError(f"run index {index} is out of range: study {self.spec.name} has runs 0-{len(self.runs) - 1}")
        return self.runs[index]

    def check_unchanged(self, runs: list[Run] | None = None) -> None:
        """Refuse to go on when a run directory was trained with another configuration than the spec
        gives now (someone edited ``study.yml`` after runs started)."""
        bases = {}
        for run in self.runs if runs is None else runs:
            if not (run.dir / CONFIG).is_file():
                continue
            key = (run.game, run.agent)
            if key not in bases:
                bases[key] = self._build(run.game, run.agent)
            expected = dataclasses.replace(bases[key], seed=run.seed).to_dict()
            found = read_config(run.dir).to_dict()
            if expected["engine"] == "auto":  # each run records the engine auto chose for it
                expected["engine"] = found.get("engine")
            diff = sorted(k for k in expected if expected[k] != found.get(k))
            if diff:
                raise DimattnError(
                    f"run {run.name} was started with another {diff[0]} ({found.get(diff[0])!r}, the spec now gives "
                    f"{expected[diff[0]]!r}); {SPEC} changed after runs started: restore it or use a new study directory")


def expand(root: Path, spec: StudySpec) -> list[Run]:
    """The runs of ``spec`` in the stable order games × agents × seeds."""
    combos = [(g, a, s) for g in spec.game_list for a in spec.agents for s in spec.seeds]
    return [Run(i, g, a, s, root / RUNS / g / a / f"seed{s}") for i, (g, a, s) in enumerate(combos)]


def init_study(root: str | Path, spec: StudySpec, conf_file: str | Path | None = None) -> tuple[Study, bool]:
    """Write ``<root>/study.yml`` (and a copy of ``conf_file``). Returns (study, created).

    Re-initialising with the same spec is a no-op; a directory holding a different spec is refused.
    Everything is checked before anything is written.
    """
    root = Path(root).absolute()
    conf_text = None
    if conf_file is not None:
        if not Path(conf_file).is_file():
            raise DimattnError(f"--conf-file {conf_file} does not exist")
        conf_text = Path(conf_file).read_text()
        spec = dataclasses.replace(spec, conf_file=CONF)
    spec = spec_from_dict(spec.to_dict(), "the study spec")
    if root.exists() and not root.is_dir():
        raise DimattnError(f"{root} exists and is not a directory")
    existing = root / SPEC
    if existing.is_file():
        old = Study.load(root, validate=False)
        old_conf = old.conf_path.read_text() if old.conf_path and old.conf_path.is_file() else None
        if old.spec.to_dict() != spec.to_dict() or old_conf != conf_text:
            changed = next((k for k, v in spec.to_dict().items() if old.spec.to_dict()[k] != v), "conf_file")
            raise DimattnError(f"{root} already holds a different study (its {changed} differs); "
                               "choose a new directory, or delete the old one to start over")
        return old, False
    if root.exists() and any(root.iterdir()):
        raise DimattnError(f"{root} is not empty and holds no {SPEC}; choose an empty or new directory")
    # Resolve every configuration before writing anything (the conf file from where the user has it).
    check = dataclasses.replace(spec, conf_file=None if conf_file is None else str(Path(conf_file).absolute()))
    study = Study(root, check, expand(root, check))
    study.base_configs()
    study.spec = spec
    root.mkdir(parents=True, exist_ok=True)
    if conf_text is not None:
        atomic_write_text(root / CONF, conf_text)
    header = (f"# dimattn study: {len(study.runs)} runs = games × agents × seeds, each in runs/<Game>/<Agent>/seed<k>/.\n"
              "# Run it with `dimattn study run DIR`; watch it with `dimattn study status DIR`.\n")
    atomic_write_text(root / SPEC, header + yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return study, True


# --------------------------------------------------------------------------- locks
@contextmanager
def run_lock(run_dir: Path, wait: float = 2.0) -> Iterator[bool]:
    """Hold the run's lock (``flock`` on ``<run>/.lock``) for the ``with`` body; yields False if another
    process holds it after ``wait`` seconds. The kernel releases the lock when its holder dies, so a
    killed run never leaves a stale lock. (On a cluster, the study directory must be on a file system
    whose ``flock`` is seen by every node: NFSv4, Lustre with ``-o flock``, GPFS, BeeGFS.)"""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # `study status` probes locks for an instant; only a lock held past `wait` is a real holder.
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(run_dir: Path) -> str | None:
    """``"<pid> <host> <since>"`` of the process holding the run's lock (``"another process"`` if it
    wrote nothing), or None if nobody holds it."""
    path = run_dir / LOCK
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- state of a run
@dataclass
class RunStatus:
    run: Run
    state: str  # one of STATES
    steps: int  # environment steps reached on disk (last checkpoint or evaluation)
    last_score: float | None  # mean score of the last evaluation
    note: str = ""  # who holds the lock, or the error's summary


def is_done(run: Run) -> bool:
    return final_model_path(run.dir, v4_id(run.game)).is_file()


def progress_on_disk(run: Run) -> tuple[int, float | None, str]:
    """(steps, last evaluation's mean score, problem) from the run's checkpoints and ``evaluations.npz``."""
    steps = max((s for s, _ in checkpoints(run.dir)), default=0) if run.dir.is_dir() else 0
    try:
        history = EvalHistory.load(run.dir)  # empty if the run has not evaluated yet
    except DimattnError:  # a torn file cannot happen (atomic writes); a foreign one can
        return steps, None, f"{EVALUATIONS} unreadable"
    if not history.timesteps:
        return steps, None, ""
    return max(steps, history.timesteps[-1]), float(np.mean(history.results[-1])), ""


def run_status(study: Study, run: Run) -> RunStatus:
    steps, score, problem = progress_on_disk(run)
    if is_done(run):
        return RunStatus(run, "done", max(steps, study.spec.n_timesteps), score, problem)
    holder = lock_holder(run.dir) if run.dir.is_dir() else None
    if holder is not None:
        words = holder.split()
        note = f"pid {words[0]} on {words[1]} since {' '.join(words[2:])}" if len(words) >= 3 else holder
        return RunStatus(run, "running", steps, score, note)
    error = run.dir / ERROR_LOG
    if error.is_file():
        return RunStatus(run, "failed", steps, score, error.read_text(errors="replace").splitlines()[0][:160])
    return RunStatus(run, "pending", steps, score, problem)


def statuses(study: Study) -> list[RunStatus]:
    return [run_status(study, r) for r in study.runs]


# --------------------------------------------------------------------------- executing one run
@dataclass
class Outcome:
    """What one attempt at a run came to: ``done``, ``busy`` (another process holds it) or ``failed``."""

    index: int
    state: str
    message: str = ""


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C code's output too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def log_tail(run: Run, n: int = ERROR_TAIL) -> list[str]:
    path = run.dir / TRAIN_LOG
    return path.read_text(errors="replace").splitlines()[-n:] if path.is_file() else []


def record_failure(run: Run, summary: str) -> None:
    """Write ``error.log``: a one-line summary, then the last lines of the run's output."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    text = f"{summary} ({stamp}, {socket.gethostname()})\n--- last lines of {TRAIN_LOG} ---\n" + "\n".join(log_tail(run)) + "\n"
    atomic_write_text(run.dir / ERROR_LOG, text)


def execute_run(study: Study, index: int, threads: int = 1, attempt: str = "1/1") -> Outcome:
    """Train (or resume) run ``index`` in this process under its lock, output appended to ``train.log``.

    Exceptions do not escape: a failure is recorded in ``error.log`` and returned as an Outcome.
    ``threads`` caps torch's intra-op threads for this run.
    """
    run = study.run(index)
    if is_done(run):
        return Outcome(index, "done", "already finished")
    with run_lock(run.dir) as mine:
        if not mine:
            return Outcome(index, "busy", f"being trained by {lock_holder(run.dir) or 'another process'} (its lock is held)")
        if is_done(run):  # finished by another process while we waited for the lock
            return Outcome(index, "done", "already finished")
        import torch

        torch.set_num_threads(max(1, threads))
        start = time.monotonic()
        failure = None
        with _output_to(run.dir / TRAIN_LOG):
            print(f"=== {run.name}: attempt {attempt}, pid {os.getpid()} on {socket.gethostname()}, "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {threads} torch thread(s) ===", flush=True)
            try:
                train(study.config(run), run.dir, tensorboard_log=str(run.dir / "tb"))
            except BaseException as exc:  # noqa: BLE001 - a run's failure must not take the study down
                traceback.print_exc()
                failure = f"attempt {attempt} failed: {type(exc).__name__}: {exc}".splitlines()[0]
                if isinstance(exc, KeyboardInterrupt):
                    raise
        if failure is not None:
            record_failure(run, failure)
            outcome = Outcome(index, "failed", failure)
        else:
            (run.dir / ERROR_LOG).unlink(missing_ok=True)
            outcome = Outcome(index, "done", f"trained in {_duration(time.monotonic() - start)}")
    return outcome


def _duration(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def index_from_env() -> int:
    """The array index the scheduler gave this job: ``$PBS_ARRAY_INDEX`` (PBS Pro) or ``$SLURM_ARRAY_TASK_ID``."""
    for var in ("PBS_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"):
        value = os.environ.get(var)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise DimattnError(f"${var} is {value!r}, not an integer") from None
    raise DimattnError("no --index given and neither $PBS_ARRAY_INDEX nor $SLURM_ARRAY_TASK_ID is set; "
                       "give --index N (0-based run number)")


def run_one(root: str | Path, index: int | None = None, threads: int = 1, retries: int = 0) -> Outcome:
    """What an array job runs: run ``index`` (default: the scheduler's index), retried up to ``retries`` times."""
    study = Study.load(root, validate=False)
    index = index_from_env() if index is None else index
    run = study.run(index)
    study.check_unchanged([run])
    outcome = Outcome(index, "failed")
    for attempt in range(1, retries + 2):
        outcome = execute_run(study, index, threads, attempt=f"{attempt}/{retries + 1}")
        # one line per attempt in the scheduler's log; the run's own output is in its train.log
        print(f"run {index} {run.name}: {outcome.state}: {outcome.message}", flush=True)
        if outcome.state != "failed":
            break
    return outcome


def default_threads() -> int:
    """Torch threads per run: 1 on small machines, 2 where cores are plenty (the PPO update uses them;
    stepping the Atari envs does not)."""
    return 1 if usable_cores() < 8 else 2


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours cgroups / taskset on clusters
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
