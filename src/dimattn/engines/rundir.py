"""The run directory: what a training run leaves on disk, in RL Baselines3 Zoo's layout.

    <run_dir>/
      config.yml                    the resolved RunConfig (game, env_id, agent, seed, hyperparams, ...), block
      evaluations.npz               timesteps (E,), results (E, episodes), ep_lengths (E, episodes)
      rl_model_<steps>_steps.zip    checkpoints every --save-freq steps (SB3 zips, + dimattn.json)
      best_model.zip                the checkpoint with the best mean evaluation score
      <EnvId>.zip                   the final model; its presence means the run is finished
      tracking.yml                  with --track / --mlflow: the tracked runs it continues (engines/tracking.py)

Every file is written atomically, so a run killed at any moment leaves readable files behind.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dimattn.agents.registry import block_record
from dimattn.engines.config import RunConfig
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_savez, atomic_write_text, check_writable_dir, writing
from dimattn.yamlfile import dump_yaml, load_yaml

CONFIG = "config.yml"
EVALUATIONS = "evaluations.npz"
TRACKING = "tracking.yml"  # what the run is tracked by (engines/tracking.py)
BEST_MODEL = "best_model.zip"
_CHECKPOINT = re.compile(r"^rl_model_(\d+)_steps\.zip$")


def new_run_dir(log_folder: str | Path, env_id: str, algo: str = "ppo", uuid: bool = False) -> Path:
    """``<log_folder>/<algo>/<env_id>_<n>[_<uuid>]`` with n one more than the highest present; created."""
    root = Path(log_folder) / algo
    with writing(log_folder, "log folder", "--log-folder"):
        check_writable_dir(log_folder, "log folder", "--log-folder")  # refused here, before a run folder exists
        root.mkdir(exist_ok=True)
        pattern = re.compile(rf"^{re.escape(env_id)}_(\d+)(?:_[0-9a-f-]+)?$")
        taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
        name = f"{env_id}_{max(taken, default=0) + 1}" + (f"_{uuidlib.uuid4()}" if uuid else "")
        run_dir = root / name
        run_dir.mkdir()
    return run_dir


def discard_unstarted(run_dir: Path) -> bool:
    """Remove ``run_dir`` if it holds nothing a run is made of: only ``config.yml`` and temporary files (a
    ``train`` interrupted or failed before its first evaluation, checkpoint or final model). Such a folder
    would look like a run yet hold nothing to report or resume. Returns whether it was removed."""
    run_dir = Path(run_dir)
    try:
        files = list(run_dir.iterdir())
    except OSError:
        return False
    if not all(p.is_file() and (p.name in (CONFIG, TRACKING) or p.name.endswith(".tmp")) for p in files):
        return False
    for p in files:
        p.unlink(missing_ok=True)
    run_dir.rmdir()
    return True


def write_config(run_dir: Path, config: RunConfig) -> None:
    """``config.yml``: the RunConfig, and ``block``: the agent's block as plain data (name, position, keyword
    arguments, bias, the package and version that provided it), read by people, never by loading code."""
    kw = config.hyperparams["policy_kwargs"]["features_extractor_kwargs"]
    d = {**config.to_dict(), "block": block_record(config.agent, kw.get("block_kwargs"))}
    atomic_write_text(Path(run_dir) / CONFIG, dump_yaml(d))


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DimattnError(f"{run_dir} is not a run directory (no {CONFIG})")
    d = load_yaml(path, CONFIG)  # bounded as study.yml is: no aliases, a few KB, shallow
    if not isinstance(d, dict):
        raise DimattnError(f"{path} is corrupt (not a mapping)")
    return RunConfig.from_dict(d)


def checkpoint_path(run_dir: Path, steps: int) -> Path:
    return Path(run_dir) / f"rl_model_{steps}_steps.zip"


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(steps, path) of every checkpoint in ``run_dir``, oldest first."""
    found = [
        (int(m.group(1)), p) for p in Path(run_dir).glob("rl_model_*_steps.zip") if (m := _CHECKPOINT.match(p.name))
    ]
    return sorted(found)


def final_model_path(run_dir: Path, env_id: str) -> Path:
    return Path(run_dir) / f"{env_id}.zip"


@dataclass
class EvalHistory:
    """Evaluation results so far; ``save`` writes RL Zoo's ``evaluations.npz`` atomically."""

    timesteps: list[int] = field(default_factory=list)
    results: list[np.ndarray] = field(default_factory=list)  # each (episodes,) raw game scores
    ep_lengths: list[np.ndarray] = field(default_factory=list)  # each (episodes,) frames

    def append(self, step: int, scores: np.ndarray, lengths: np.ndarray) -> None:
        self.timesteps.append(int(step))
        self.results.append(np.asarray(scores, dtype=np.float64))
        self.ep_lengths.append(np.asarray(lengths, dtype=np.int64))

    def save(self, run_dir: Path) -> None:
        n, episodes = len(self.timesteps), len(self.results[0]) if self.results else 0
        atomic_savez(
            Path(run_dir) / EVALUATIONS,
            timesteps=np.asarray(self.timesteps, dtype=np.int64),
            results=np.asarray(self.results, dtype=np.float64).reshape(n, episodes),
            ep_lengths=np.asarray(self.ep_lengths, dtype=np.int64).reshape(n, episodes),
        )

    @classmethod
    def load(cls, run_dir: Path, up_to: int | None = None) -> EvalHistory:
        """The history on disk (empty if none), keeping only evaluations at steps <= ``up_to``."""
        path = Path(run_dir) / EVALUATIONS
        history = cls()
        if not path.is_file():
            return history
        try:
            with np.load(path, allow_pickle=False) as f:
                rows = zip(f["timesteps"], f["results"], f["ep_lengths"])
                for step, scores, lengths in rows:
                    if up_to is None or step <= up_to:
                        history.append(int(step), scores, lengths)
        except Exception as exc:
            raise DimattnError(
                f"{path} is corrupt ({type(exc).__name__}); delete it to start the history anew"
            ) from None
        return history

    @property
    def best(self) -> float:
        return max((float(np.mean(r)) for r in self.results), default=-np.inf)
