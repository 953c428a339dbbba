"""A study: the grid games × agents × seeds, defined once in ``study.yml``, run anywhere, resumed after any fault.

    <study>/
      study.yml                             the spec (:class:`StudySpec`): the grid, the run options, the protocol,
                                            and ``plugins``: where each agent not of the study comes from, by name
      conf.yml                              a copy of ``--conf-file``, if one was given
      runs/<Game>/<Agent>/seed<k>/          one run directory each (layout of :mod:`dimattn.engines.rundir`), plus
        train.log                           the run's output, every attempt appended
        error.log                           the last failed attempt's error (removed once the run finishes)
        stopped.log                         what stopped the last attempt on a signal, after its checkpoint
        .lock                               held (``flock``) by the process training the run
      jobs/                                 PBS Pro / Slurm job-array scripts (:mod:`dimattn.study.jobscripts`)
      logs/                                 the schedulers' own output

Runs are numbered 0..N-1 in the order games × agents × seeds of the spec; array jobs and
``dimattn study run-one --index`` use these numbers. A run is *done* when its final model exists
(:func:`dimattn.engines.rundir.final_model_path`), *running* while a process holds its lock, *failed* when its
last attempt left an ``error.log``, *stopped* when its last attempt ended on SIGTERM/SIGUSR1 after writing
its checkpoint (``stopped.log``; a job's walltime does that: resumable), and *pending* otherwise. Every attempt
resumes from the run's last checkpoint (:func:`dimattn.engines.train.train` does that), so a run killed at any
moment loses at most the work since its last save. Runs are executed in packs (:mod:`dimattn.study.packs`; a
run alone is a pack of one): one attempt by :mod:`dimattn.study.execute`, all of them by
:mod:`dimattn.study.launch` (local pool, Ray) or :mod:`dimattn.study.jobscripts` (PBS Pro, Slurm).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimattn.agents.attention import AGENTS
from dimattn.agents.registry import block_record, check_agent, load_provider, provider, split_label
from dimattn.engines.config import (
    DEFAULT_ENGINE,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_EVAL_FREQ,
    DEFAULT_N_TIMESTEPS,
    DEFAULT_SAVE_FREQ,
    ENGINES,
    MAX_SEED,
    RunConfig,
    build_config,
)
from dimattn.engines.rlzoo import parse_hyperparams
from dimattn.engines.rundir import CONFIG, read_config
from dimattn.envs.protocol import DEFAULT_PROTOCOL, PROTOCOLS
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.games import GAME_SETS, resolve_games
from dimattn.yamlfile import dump_yaml, load_yaml

SPEC = "study.yml"
CONF = "conf.yml"  # the study's own copy of --conf-file: the only conf_file a study.yml may name
RUNS = "runs"
TRAIN_LOG = "train.log"
ERROR_LOG = "error.log"
STOP_LOG = "stopped.log"  # a run stopped on SIGTERM/SIGUSR1 after its checkpoint: resumable (engines.stopping)
ERROR_TAIL = 60  # lines of the failing attempt's output kept in error.log: a whole traceback through a pack
_SEEDS = re.compile(r"^\s*(\d{1,12})\s*(?:-\s*(\d{1,12})\s*)?$")
MAX_SEEDS = 1000  # seeds per study: more is a typo (a range of 10^8 seeds used to hang `study init`)


# --------------------------------------------------------------------------- the spec
@dataclass
class StudySpec:
    """What ``study.yml`` holds. ``games`` is a named set (``paper56``, ``atari57``) or a list of games;
    ``hyperparams`` maps keys to values as ``--hyperparams key:value`` would (parsed, never executed);
    ``conf_file`` is relative to the study directory."""

    name: str
    games: str | list[str]
    agents: list[str] = field(default_factory=lambda: list(AGENTS))
    seeds: list[int] = field(default_factory=lambda: list(range(5)))
    n_timesteps: int = DEFAULT_N_TIMESTEPS
    eval_freq: int = DEFAULT_EVAL_FREQ
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    save_freq: int = DEFAULT_SAVE_FREQ
    engine: str = DEFAULT_ENGINE
    hyperparams: dict[str, Any] = field(default_factory=dict)
    conf_file: str | None = None
    protocol: str = DEFAULT_PROTOCOL  # the envs' (dimattn.envs.protocol): study or machado
    #: where each agent not of the study comes from, by name (registry.provider): {ROWMIX: {module: my_blocks}}
    plugins: dict[str, Any] = field(default_factory=dict)

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
            raise DimattnError(f"seeds must be non-negative integers, got {str(text)[:60]}")
        _check_seeds(len(text), max(text, default=0), text)
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
        # checked before the range is expanded: "0-100000000" must not build a list of 10^8 seeds
        _check_seeds(len(seeds) + hi - lo + 1, hi, text)
        seeds.extend(range(lo, hi + 1))
    return list(dict.fromkeys(seeds))


def _check_seeds(count: int, highest: int, text: object) -> None:
    if count > MAX_SEEDS:
        raise DimattnError(f"seeds {str(text)[:60]!r} make {count:,} seeds; a study takes at most {MAX_SEEDS:,} "
                           "(the published one has 5)")
    if highest > MAX_SEED:
        raise DimattnError(f"seed {highest:,} is above the largest seed, {MAX_SEED:,}")


def _agents(value: str | list) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return list(dict.fromkeys(check_agent(a) for a in items if str(a).strip()))


def _names(value: Any, key: str, source: str, example: str) -> None:
    """``games`` / ``agents``: a string (a set or a comma-separated list) or a list of strings."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise DimattnError(f"{source}: {key} must be a string or a list of strings such as [{example}], "
                           f"got {type(value).__name__} {str(value)[:40]}")
    for item in value:
        if not isinstance(item, str):
            raise DimattnError(f"{source}: {key} must be a list of strings such as [{example}], but it holds "
                               f"{type(item).__name__} {str(item)[:40]}")


def _check_hyperparams(value: Any, source: str) -> None:
    """``hyperparams``: a mapping of names to what ``--hyperparams key:value`` takes: a number, true/false,
    or the value's text (``lin_2.5e-4``, ``dict(...)``); never a nested YAML list or mapping."""
    if not isinstance(value, dict):
        raise DimattnError(f"{source}: hyperparams must be a mapping of key: value")
    for key, item in value.items():
        if not isinstance(key, str):
            raise DimattnError(f"{source}: hyperparams key {key!r} is not a name; write e.g. n_envs: 8")
        if item is not None and not isinstance(item, (str, int, float)):  # None: YAML null, e.g. target_kl
            raise DimattnError(f"{source}: hyperparams {key} must be a number, true/false or text as --hyperparams "
                               f"takes it (e.g. n_envs: 8), got {type(item).__name__} {str(item)[:40]}")


def _check_conf_file(value: Any, source: str) -> None:
    if value is not None and value != CONF:
        raise DimattnError(f"{source}: conf_file must be {CONF}, the study's own copy of --conf-file (study init "
                           f"writes it), or absent; got {str(value)[:60]!r}")


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
    load_plugins_of(spec, source)  # before the agents' names are looked up
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise DimattnError(f"{source}: name must be a non-empty string")
    if not isinstance(spec.games, (str, list)):
        raise DimattnError(f"{source}: games must be a named set ({', '.join(GAME_SETS)}) or a list of games")
    _names(spec.games, "games", source, "Pong, Breakout")
    _names(spec.agents, "agents", source, "NA, CWCA")
    if not isinstance(spec.seeds, (str, int, list)):
        raise DimattnError(f"{source}: seeds must be a list of integers or a range such as 0-4, got "
                           f"{type(spec.seeds).__name__} {str(spec.seeds)[:40]}")
    spec.agents = _agents(spec.agents)
    spec.seeds = parse_seeds(spec.seeds)
    for key in ("n_timesteps", "eval_episodes"):
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DimattnError(f"{source}: {key} must be a positive integer, got {value!r}")
    for key in ("eval_freq", "save_freq"):
        if not isinstance(getattr(spec, key), int) or isinstance(getattr(spec, key), bool):
            raise DimattnError(f"{source}: {key} must be an integer, got {getattr(spec, key)!r}")
    if not isinstance(spec.engine, str) or spec.engine not in ENGINES:
        raise DimattnError(f"{source}: unknown engine {str(spec.engine)[:40]!r}; choose one of {', '.join(ENGINES)}")
    if spec.hyperparams is None:
        spec.hyperparams = {}
    if spec.protocol not in PROTOCOLS:
        raise DimattnError(f"{source}: unknown protocol {str(spec.protocol)[:40]!r}; choose one of "
                           f"{', '.join(PROTOCOLS)}")
    _check_hyperparams(spec.hyperparams, source)
    _check_conf_file(spec.conf_file, source)
    games = spec.game_list  # raises on an unknown game
    if not games or not spec.agents or not spec.seeds:
        empty = "games" if not games else "agents" if not spec.agents else "seeds"
        raise DimattnError(f"{source}: the grid is empty (no {empty}); give at least one of each")
    return spec


def load_plugins_of(spec: StudySpec, source: str) -> None:
    """Register the blocks of the study's agents from the providers ``plugins`` records (names: a module
    beside the study folder or on the path, an installed package): no --plugin needed after init."""
    if spec.plugins is None:
        spec.plugins = {}
    if not isinstance(spec.plugins, dict) or not all(isinstance(v, dict) for v in spec.plugins.values()):
        raise DimattnError(f"{source}: plugins must map agent names to {{module: NAME}} or {{package: NAME}}")
    folder = Path(source).absolute().parent
    for name, record in spec.plugins.items():
        load_provider(str(name), record, near=[folder, folder.parent])


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
    def load(cls, root: str | Path, validate: bool = True) -> Study:
        """Read ``<root>/study.yml``. With ``validate``, every run's configuration is resolved first,
        so bad hyperparameters fail here, before anything starts."""
        root = Path(root).absolute()
        path = root / SPEC
        if not path.is_file():
            raise DimattnError(
                f"{root} is not a study directory (no {SPEC}); create one with `dimattn study init {root}`"
            )
        study = cls(root, spec_from_dict(load_yaml(path, SPEC), str(path)), [])
        study.runs = expand(study.root, study.spec)
        if validate:
            study.base_configs()
        else:  # the types inside hyperparams, and the steps' bounds, as a run would check them: one configuration
            study.config_for(study.spec.game_list[0], study.spec.agents[0])
        return study

    @property
    def conf_path(self) -> Path | None:
        return None if self.spec.conf_file is None else self.root / self.spec.conf_file

    def base_configs(self) -> dict[tuple[str, str], RunConfig]:
        """The resolved configuration of every (game, agent), seed 0; raises on the first bad one."""
        return {(g, a): self.config_for(g, a) for g in self.spec.game_list for a in self.spec.agents}

    def _check_conf_path(self) -> None:
        """The study's conf.yml exists and is the study's own (not a link out of the study folder)."""
        if self.conf_path is None:
            return
        if not self.conf_path.is_file():
            raise DimattnError(f"{self.root / SPEC} names conf_file {self.spec.conf_file}, which is missing")
        # init_study checks the user's --conf-file where it is (an absolute path) before copying it in
        if self.spec.conf_file == CONF and not self.conf_path.resolve().is_relative_to(self.root.resolve()):
            raise DimattnError(f"{self.conf_path} leads out of the study folder (to {self.conf_path.resolve()}); "
                               f"the study's {CONF} must be its own copy: replace the link with the file")

    def config_for(self, game: str, agent: str, seed: int = 0) -> RunConfig:
        """The configuration the spec gives ``game`` and ``agent`` with ``seed``; raises if it is bad."""
        self._check_conf_path()
        s = self.spec
        return build_config(game, agent=agent, hyperparams=s.hyperparam_items(), conf_file=self.conf_path,
                            seed=seed, n_timesteps=s.n_timesteps, eval_freq=s.eval_freq,
                            eval_episodes=s.eval_episodes, save_freq=s.save_freq, engine=s.engine,
                            protocol=s.protocol)

    def config(self, run: Run) -> RunConfig:
        return self.config_for(run.game, run.agent, run.seed)

    def run(self, index: int) -> Run:
        if not 0 <= index < len(self.runs):
            raise DimattnError(
                f"run index {index} is out of range: study {self.spec.name} has runs 0-{len(self.runs) - 1}"
            )
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
                bases[key] = self.config_for(run.game, run.agent)
            expected = dataclasses.replace(bases[key], seed=run.seed).to_dict()
            found = read_config(run.dir).to_dict()
            if expected["engine"] == "auto":  # each run records the engine auto chose for it
                expected["engine"] = found.get("engine")
            if found.get("engine") == "fast":  # and the fast engine records its EnvPool (older runs: dummy)
                expected["vec_env"] = found.get("vec_env")
            diff = sorted(k for k in expected if expected[k] != found.get(k))
            if diff:
                raise DimattnError(
                    f"run {run.name} was started with another {diff[0]} ({found.get(diff[0])!r}, the spec now gives "
                    f"{expected[diff[0]]!r}); {SPEC} changed after runs started: restore it or use a new study folder"
                )


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
    header = (
        f"# dimattn study: {len(study.runs)} runs = games × agents × seeds, each in runs/<Game>/<Agent>/seed<k>/.\n"
        "# Run it with `dimattn study run DIR`; watch it with `dimattn study status DIR`.\n"
    )
    header += _blocks_comment(spec.agents)
    atomic_write_text(root / SPEC, header + dump_yaml(spec.to_dict()))
    return study, True


def _blocks_comment(agents: list[str]) -> str:
    """A comment naming the package (and version) behind each agent not of dimattn, for the people who read
    study.yml; each run's config.yml records its block in full. Nothing reads it back."""
    records = [block_record(a) for a in agents]
    others = [f"{r['name']} ({r['package']} {r['version']})" if r["package"] else f"{r['name']} (a --plugin module)"
              for r in records if r["package"] != "dimattn"]
    return f"# blocks from plugins: {', '.join(dict.fromkeys(others))}\n" if others else ""


def spec_from_options(root: str | Path, games: str, agents: str, seeds: str, name: str | None = None,
                      n_timesteps: int | None = None, eval_freq: int = DEFAULT_EVAL_FREQ,
                      eval_episodes: int = DEFAULT_EVAL_EPISODES, save_freq: int = DEFAULT_SAVE_FREQ,
                      engine: str = DEFAULT_ENGINE, hyperparams: list[str] | None = None,
                      conf_file: str | Path | None = None, protocol: str = DEFAULT_PROTOCOL) -> StudySpec:
    """The spec ``dimattn study init`` writes, from its options (``--hyperparams`` items as typed).

    ``study.yml`` keeps numbers as numbers and every other value as the user wrote it (parsed here
    first, so a bad item fails before anything is written). Without ``n_timesteps``, the
    hyperparameters' own (10M unless ``conf_file``/``hyperparams`` say otherwise).
    """
    parsed = parse_hyperparams(hyperparams)
    raw = {k.strip(): v for k, v in (item.split(":", 1) for item in hyperparams or [])}
    kept = {key: value if isinstance(value, (int, float)) else raw[key].strip() for key, value in parsed.items()}
    game_list = resolve_games(games)
    if n_timesteps is None:
        n_timesteps = build_config(game_list[0] if game_list else "Pong", hyperparams=hyperparams,
                                   conf_file=conf_file).n_timesteps
    agent_list = [a for a in agents.split(",") if a.strip()]
    plugins = {n: r for n in dict.fromkeys(split_label(check_agent(a))[0] for a in agent_list) if (r := provider(n))}
    return StudySpec(
        name=name or Path(root).absolute().name, games=games if games.strip() in GAME_SETS else list(game_list),
        agents=agent_list, seeds=parse_seeds(seeds), n_timesteps=n_timesteps,
        eval_freq=eval_freq, eval_episodes=eval_episodes, save_freq=save_freq, engine=engine, hyperparams=kept,
        protocol=protocol, plugins=plugins)
