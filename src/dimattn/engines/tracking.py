"""Experiment tracking: a run sent to Weights & Biases (``--track``, RL Zoo's flags) and/or MLflow (``--mlflow``).

TensorBoard stays the source: both engines write their scalars there, and the trackers get the same names.
W&B syncs TensorBoard live (``wandb.init(sync_tensorboard=True)``, as RL Zoo does); MLflow is given the
scalars written since its last sync when a training ends (finished, stopped or failed). Both get the
resolved ``config.yml``, every evaluation (``eval/mean_reward``, and ``evaluations.npz``) and the final
model as an artifact. What a run is tracked by lives in its folder, so a resume continues the same
tracked run::

    <run_dir>/tracking.yml   tensorboard_log (the root both engines log under; <run_dir>/tb by default)
                             wandb: {id, project, entity, tags, group}
                             mlflow: {uri, experiment, run_id, synced: wall time of the last scalar sent}
    <run_dir>/wandb/         W&B's own files (offline runs: wandb/offline-run-*)

The trackers are optional extras (``pip install dimattn[track]``), imported only when a run uses them.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dimattn.engines.defaults import DEFAULT_PROJECT
from dimattn.engines.rundir import CONFIG, EVALUATIONS, TRACKING, final_model_path
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text, check_writable_dir
from dimattn.yamlfile import load_yaml

if TYPE_CHECKING:  # the type only: the CLI builds its parser from this module without torch
    from dimattn.engines.config import RunConfig

MLFLOW_DB = "mlflow.db"
_PROJECT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://|^[a-z]+:")


@dataclass
class Settings:
    """What to track a run with (``None``: not with that tracker)."""

    wandb: dict[str, Any] | None = None  # project, entity, tags
    mlflow: str | None = None             # tracking URI
    group: dict[str, str] = field(default_factory=dict)  # a study's run: study, game, agent

    @property
    def any(self) -> bool:
        return self.wandb is not None or self.mlflow is not None


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DimattnError(f"tracking with {module} needs the track extra: pip install 'dimattn[track]' "
                           f"(or pip install {module})") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The tracking options checked (before a run folder exists): trackers installed, names and URI sane."""
    given_wandb = (args.wandb_entity is not None or args.wandb_tags
                   or args.wandb_project_name != DEFAULT_PROJECT)
    if given_wandb and not args.track:
        raise DimattnError("--wandb-project-name, --wandb-entity and --wandb-tags need --track")
    settings = Settings()
    if args.track:
        for name, value in (("--wandb-project-name", args.wandb_project_name), ("--wandb-entity", args.wandb_entity),
                            *(("--wandb-tags", t) for t in args.wandb_tags)):
            if value is not None and not _PROJECT.match(value):
                raise DimattnError(f"{name} {value!r}: use 1 to 128 letters, digits, '_', '-' or '.'")
        _need("wandb")
        settings.wandb = {"project": args.wandb_project_name, "entity": args.wandb_entity,
                          "tags": list(args.wandb_tags)}
    if args.mlflow is not None:
        settings.mlflow = check_mlflow_uri(args.mlflow)
    return settings


def check_mlflow_uri(uri: str) -> str:
    """An MLflow tracking URI: one with a scheme as given; a folder (probed) as the SQLite store
    ``<folder>/mlflow.db`` with artifacts in ``<folder>/artifacts`` (MLflow 3 keeps its file store in
    maintenance mode and refuses it by default: a database is what it asks for)."""
    _need("mlflow")
    uri = str(uri).strip()
    if not uri:
        raise DimattnError("--mlflow: give a tracking URI (http://host:5000, sqlite:///mlflow.db) or a folder")
    if _SCHEME.match(uri) and not uri.startswith("file:"):
        return uri
    folder = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().resolve()
    check_writable_dir(folder, "MLflow folder", "--mlflow")
    return f"sqlite:///{folder / MLFLOW_DB}"


def mlflow_store(folder: str | Path) -> str:
    """The tracking URI ``--mlflow FOLDER`` writes to (read it back with ``MlflowClient(tracking_uri=...)``)."""
    return f"sqlite:///{Path(folder).expanduser().resolve() / MLFLOW_DB}"


# --------------------------------------------------------------------------- the run folder's record
def read_record(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / TRACKING
    if not path.is_file():
        return {}
    try:
        record = load_yaml(path, "tracking.yml")
    except DimattnError as exc:
        raise DimattnError(f"{exc}; delete {path} to stop tracking this run") from None
    return record if isinstance(record, dict) else {}


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / TRACKING, yaml.safe_dump(record, sort_keys=False))


def start(run_dir: Path, config: RunConfig, settings: Settings, tensorboard_log: str | None) -> str | None:
    """Record in ``run_dir`` what the run is tracked by (kept from an earlier start: a resume continues the
    same tracked runs); returns the TensorBoard root to train with (``<run_dir>/tb`` when tracking and
    none was given)."""
    record = read_record(run_dir)
    tb = tensorboard_log or record.get("tensorboard_log")
    if tb is None and (settings.any or "wandb" in record or "mlflow" in record):
        tb = str(Path(run_dir) / "tb")
    if tb is not None:
        tb = record["tensorboard_log"] = str(Path(tb).absolute())  # a resume may start in another folder
    if settings.wandb is not None and "wandb" not in record:
        record["wandb"] = {**settings.wandb, "id": uuid.uuid4().hex[:12], "group": _group(settings, config)}
    if settings.mlflow is not None and "mlflow" not in record:
        record["mlflow"] = {"uri": settings.mlflow, "experiment": settings.group.get("study", DEFAULT_PROJECT),
                            "run_id": None, "synced": 0.0}
    if record:
        _write_record(run_dir, record)
    return tb


def start_study(name: str, runs: list[tuple[Path, RunConfig]], settings: Settings, pack: int = 1) -> int:
    """Record tracking in each unfinished run folder of study ``name`` (``study run --track/--mlflow``), grouped
    by study, game and agent; the workers that train them (local, Ray, PBS, Slurm) read it there. Returns how
    many runs are tracked. Tracking follows runs trained alone (a pack trains several in one process)."""
    if not settings.any:
        return 0
    if pack > 1:
        raise DimattnError("--track and --mlflow follow runs trained alone, one per process; give --pack 1 "
                           "(the default)")
    settings = Settings(settings.wandb, settings.mlflow, {"study": name})
    for run_dir, config in runs:
        run_dir.mkdir(parents=True, exist_ok=True)
        start(run_dir, config, settings, str(run_dir / "tb"))
    return len(runs)


def _group(settings: Settings, config: RunConfig) -> str | None:
    g = settings.group
    return f"{g['study']}/{config.game}/{config.agent}" if g.get("study") else None


# --------------------------------------------------------------------------- while it trains
@contextmanager
def tracked(run_dir: Path, run_config: RunConfig) -> Iterator[None]:
    """Track the training of ``run_config`` inside the block with what ``run_dir``'s record names (nothing
    if none)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if "wandb" not in record and "mlflow" not in record:
        yield
        return
    config = run_config.to_dict()  # as config.yml holds it
    wandb_run = _start_wandb(run_dir, record["wandb"], config) if "wandb" in record else None
    try:
        yield
    finally:
        try:
            if "mlflow" in record:
                _sync_mlflow(run_dir, record, config)
        finally:
            if wandb_run is not None:
                _finish_wandb(run_dir, wandb_run, config)


def _start_wandb(run_dir: Path, w: dict[str, Any], config: dict[str, Any]) -> Any:
    wandb = _need("wandb")
    tags = [*w.get("tags", []), config["game"], config["agent"]]
    return wandb.init(project=w["project"], entity=w.get("entity"), id=w["id"], resume="allow",
                      name=run_dir.name, group=w.get("group"), tags=list(dict.fromkeys(tags)), config=config,
                      sync_tensorboard=True, dir=str(run_dir), reinit="finish_previous",
                      settings=wandb.Settings(silent=True, console="off"))


def _finish_wandb(run_dir: Path, run: Any, config: dict[str, Any]) -> None:
    wandb = _need("wandb")
    files = [p for p in (final_model_path(run_dir, config["env_id"]), run_dir / EVALUATIONS) if p.is_file()]
    if files:  # the final model (when the run finished) and every evaluation so far
        artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"game": config["game"],
                                                                              "agent": config["agent"]})
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
    run.finish()


def tensorboard_scalars(tb_root: str | Path, run_dir: Path, env_id: str,
                        after: float = 0.0) -> list[tuple[str, float, int, float]]:
    """(tag, value, step, wall time) of every scalar the run wrote to TensorBoard after wall time ``after``:
    both engines log under ``<root>/<EnvId>/<run folder>_<n>``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for folder in sorted(Path(tb_root, env_id).glob(f"{run_dir.name}_*")):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out += [(tag, float(e.value), int(e.step), float(e.wall_time)) for e in acc.Scalars(tag)
                    if e.wall_time > after]
    return sorted(out, key=lambda s: s[3])


def _sync_mlflow(run_dir: Path, record: dict[str, Any], config: dict[str, Any]) -> None:
    """Send MLflow what it has not had yet: the config once, the scalars written since the last sync, the
    evaluations and the final model; the run id and the sync time go back into the record."""
    _need("mlflow")
    import logging

    for name in ("mlflow", "alembic"):  # its store's set-up lines would fill the run's output
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    m = record["mlflow"]
    client = MlflowClient(tracking_uri=m["uri"])
    if m.get("run_id") is None:
        experiment = client.get_experiment_by_name(m["experiment"])
        local = m["uri"].startswith("sqlite:///")  # a folder's store: its artifacts beside the database
        where = (Path(m["uri"].removeprefix("sqlite:///")).parent / "artifacts").as_uri() if local else None
        exp_id = (experiment.experiment_id if experiment
                  else client.create_experiment(m["experiment"], artifact_location=where))
        tags = {"game": config["game"], "agent": config["agent"], "seed": str(config["seed"]),
                **({"study": m["experiment"]} if m["experiment"] != DEFAULT_PROJECT else {})}
        run = client.create_run(exp_id, run_name=run_dir.name, tags=tags)
        m["run_id"] = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in _flat(config).items()]
        client.log_batch(m["run_id"], params=params)
        client.log_text(m["run_id"], yaml.safe_dump(config, sort_keys=False), CONFIG)
        _write_record(run_dir, record)
    scalars = tensorboard_scalars(record["tensorboard_log"], run_dir, config["env_id"], m.get("synced", 0.0))
    metrics = [Metric(tag, value, int(wall * 1000), step) for tag, value, step, wall in scalars]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(m["run_id"], metrics=metrics[i:i + 1000])
    if scalars:
        m["synced"] = scalars[-1][3]
    if (run_dir / EVALUATIONS).is_file():
        client.log_artifact(m["run_id"], str(run_dir / EVALUATIONS))
    final = final_model_path(run_dir, config["env_id"])
    if final.is_file():
        client.log_artifact(m["run_id"], str(final), "model")
    _write_record(run_dir, record)
    client.set_terminated(m["run_id"], "FINISHED" if final.is_file() else "KILLED")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
