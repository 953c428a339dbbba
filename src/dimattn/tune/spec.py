"""A tune's folder and what defines its search (``tune.yml``), checked once, the same for every worker.

    <log-folder>/tune/<study-name>/
      tune.yml        the search: agent, games, seeds, steps per run, evaluations, base hyperparameters, space
      conf.yml        a copy of --conf-file, the base every trial starts from (if one was given)
      journal.log     Optuna's JournalStorage, when --storage names no other
      trials/<key>/   one small study per point of the space tried (dimattn.study's layout: study.yml,
                      runs/<Game>/<Agent>/seed<k>/): a retried trial finds its runs there and resumes them
      workers/<id>/   each live worker holds its lock (flock) there (dimattn.tune.workers)
      best.yml  trials.csv  tune.html    the results (dimattn.tune.output)
      jobs/  logs/    Slurm / PBS array scripts of workers, and the schedulers' output

A second ``dimattn tune`` on the same folder (another worker, a resume) must define the same search: a
``tune.yml`` that differs is refused in one line, before any trial starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dimattn.analysis.results import TUNE_FILE, TUNE_PAGE
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.yamlfile import load_yaml

SPEC = TUNE_FILE
PAGE = TUNE_PAGE
CONF = "conf.yml"
JOURNAL = "journal.log"
TRIALS = "trials"
BEST = "best.yml"
CSV = "trials.csv"
JOBS = "jobs"
LOGS = "logs"
#: What the objective measures: one game, RL Zoo's; several games, the mean human-normalised score.
RETURN = "mean evaluation return"
HNS = "mean human-normalised score"


@dataclass
class TuneSpec:
    """What ``tune.yml`` holds: everything every trial of the search shares."""

    study_name: str
    storage: str
    agent: str
    games: list[str]
    seeds: list[int]
    n_timesteps: int
    n_evaluations: int
    eval_episodes: int
    engine: str
    hyperparams: dict[str, Any]   # --hyperparams, kept as study.yml keeps them
    conf_file: str | None         # CONF when --conf-file was given
    space: dict[str, Any]         # the dimensions, as a space file writes them

    @property
    def metric(self) -> str:
        return RETURN if len(self.games) == 1 else HNS

    @property
    def eval_freq(self) -> int:
        return max(1, self.n_timesteps // self.n_evaluations)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tune_dir(log_folder: str | Path, study_name: str) -> Path:
    return (Path(log_folder) / "tune" / study_name).absolute()


def point_key(point: dict[str, Any]) -> str:
    """The folder name of a point of the space: the same point (a retried trial) finds the same runs."""
    text = json.dumps(point, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_tune(root: Path) -> TuneSpec | None:
    """The folder's ``tune.yml``, or None when it has none."""
    path = root / SPEC
    if not path.is_file():
        return None
    try:
        return TuneSpec(**load_yaml(path, "tune.yml"))
    except (DimattnError, TypeError) as exc:
        raise DimattnError(f"{path} is not a tune.yml dimattn wrote ({type(exc).__name__}); move the folder away "
                           "or choose another --study-name") from None


def _conf_text(conf_file: str | Path | None) -> str | None:
    return Path(conf_file).read_text() if conf_file is not None else None


def check_same(root: Path, spec: TuneSpec, conf_file: str | Path | None) -> bool:
    """True when ``root`` holds this search already; one line naming the first difference when it holds
    another. Writes nothing."""
    old = read_tune(root)
    if old is None:
        return False
    old_conf = (root / CONF).read_text() if (root / CONF).is_file() else None
    if old.to_dict() != spec.to_dict() or old_conf != _conf_text(conf_file):
        changed = next((k for k, v in spec.to_dict().items() if old.to_dict().get(k) != v), "conf_file")
        raise DimattnError(f"{root} holds another search (its {changed} differs: {old.to_dict().get(changed)!r}); "
                           "give the same options to go on with it, or another --study-name for a new one")
    return True


def write_spec(root: Path, spec: TuneSpec, conf_file: str | Path | None) -> None:
    """Write ``tune.yml`` (and ``conf.yml``), unless the folder holds this search already."""
    if check_same(root, spec, conf_file):
        return
    root.mkdir(parents=True, exist_ok=True)
    conf_text = _conf_text(conf_file)
    if conf_text is not None:
        atomic_write_text(root / CONF, conf_text)
    header = ("# dimattn tune: a hyperparameter search on Optuna. Go on with it (or add workers) by running the same\n"
              "# `dimattn tune` command again; its trials' runs are in trials/, the results in best.yml, trials.csv,\n"
              "# tune.html.\n")
    atomic_write_text(root / SPEC, header + yaml.safe_dump(spec.to_dict(), sort_keys=False))
