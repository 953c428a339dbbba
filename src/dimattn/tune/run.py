"""``dimattn tune``: an Optuna study over the space, run by one or more workers against one storage.

:func:`prepare` checks everything (games, agent, base configuration, space, sampler, pruner, storage, the
folder's ``tune.yml``, the stored study's direction) before any trial starts; :func:`run_worker` is one worker:
it asks the storage for trials until its share of ``--n-trials`` is done (or the study has
``--max-total-trials``), each trained by :func:`dimattn.tune.objective.objective`. ``--n-jobs N`` runs N such
workers as processes of this machine (Optuna's threads would share one interpreter and one signal handler);
array tasks and Ray tasks run the same :func:`run_worker` (:mod:`dimattn.tune.launch`).

RL Zoo's choices: TPE (multivariate, ``--n-startup-trials`` random ones first), random, or CMA-ES samplers;
the median pruner (``--n-startup-trials`` trials first, no pruning in the first third of the evaluations),
successive halving (min resource 1, reduction factor 4) or none; the objective is maximised.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from dimattn.engines import stopping
from dimattn.errors import DimattnError
from dimattn.fileio import check_writable_dir, writing
from dimattn.tune import workers
from dimattn.tune.objective import Context, TrialFailed, objective
from dimattn.tune.space import Dim, build_space, load_space_file
from dimattn.tune.spec import JOURNAL, TuneSpec, check_same, tune_dir, write_spec

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "halving", "none")
_RDB = ("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+")


@dataclass
class WorkerOptions:
    """How a worker searches (each worker's own: not part of ``tune.yml``)."""

    n_trials: int = 500
    n_jobs: int = 1
    sampler: str = "tpe"
    pruner: str = "median"
    n_startup_trials: int = 10
    max_total_trials: int | None = None
    seed: int = 0
    threads: int = 1
    rank: int = 0  # this command's first worker's rank: worker k samples with seed + k

    def checked(self) -> WorkerOptions:
        if self.sampler not in SAMPLERS:
            raise DimattnError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise DimattnError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        if self.sampler == "cmaes":
            try:
                import cmaes  # noqa: F401 - Optuna's CMA-ES sampler needs it
            except ImportError:
                raise DimattnError("--sampler cmaes needs the cmaes package: pip install 'dimattn[tune]'") from None
        return self


def import_optuna() -> Any:
    """Optuna, or one line naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise DimattnError("dimattn tune needs Optuna and Plotly: pip install 'dimattn[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(opts: WorkerOptions, rank: int = 0, done: int = 0) -> Any:
    """RL Zoo's samplers; worker k's seed is ``seed + k``, so workers sharing a study draw apart, moved on by
    the ``done`` trials the study already holds, so a search that goes on does not draw its first points again."""
    optuna = import_optuna()
    seed = (opts.seed + opts.rank + rank + 1_000_003 * done) % 2**32
    if opts.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if opts.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=opts.n_startup_trials)
    return optuna.samplers.TPESampler(n_startup_trials=opts.n_startup_trials, seed=seed, multivariate=True)


def make_pruner(opts: WorkerOptions, n_evaluations: int) -> Any:
    optuna = import_optuna()
    if opts.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4, min_early_stopping_rate=0)
    if opts.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=opts.n_startup_trials, n_warmup_steps=n_evaluations // 3)


def storage_url(storage: str | None, root: Path) -> str:
    """The storage a search uses: ``--storage`` (a journal file path, or a database URL such as
    ``sqlite:///tune.db``), by default ``<tune folder>/journal.log``."""
    if storage is None:
        return str(root / JOURNAL)
    return storage if storage.startswith(_RDB) else str(Path(storage).absolute())


def open_storage(url: str) -> Any:
    """Optuna's storage at ``url``: a journal file (its own lock, for workers on any file system that
    supports it) or a database. One line when it cannot be opened or written."""
    optuna = import_optuna()
    if url.startswith(_RDB):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # sqlalchemy's errors: a bad URL, a missing driver, a read-only file
            why = str(exc).splitlines()[0][:200]
            raise DimattnError(f"cannot open storage {url}: {type(exc).__name__}: {why}; give a writable "
                               "sqlite:///FILE.db, a database URL, or a journal file path") from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(url)
    if path.is_dir():
        raise DimattnError(f"--storage {path} is a folder; give a journal file path (e.g. {path / JOURNAL})")
    check_writable_dir(path.parent, "storage folder", "--storage")
    with writing(path, "storage", "--storage"):
        with open(path, "ab"):  # a journal that exists but cannot be appended to is refused here
            pass
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(spec: TuneSpec, storage: Any, sampler: Any = None, pruner: Any = None) -> Any:
    """The Optuna study (created, or loaded as it is); one line when it exists with another direction."""
    optuna = import_optuna()
    try:
        study = optuna.create_study(storage=storage, study_name=spec.study_name, direction="maximize",
                                    load_if_exists=True, sampler=sampler, pruner=pruner)
    except Exception as exc:
        raise DimattnError(f"cannot open study {spec.study_name!r} in {spec.storage}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    directions = [d.name.lower() for d in study.directions]
    if directions != ["maximize"]:
        raise DimattnError(f"study {spec.study_name!r} in {spec.storage} exists and {'/'.join(directions)}s; "
                           "dimattn tune maximises the score: give another --study-name")
    return study


def prepare(games: str, agent: str | None, log_folder: str | Path, *, study_name: str | None = None,
            storage: str | None = None, n_timesteps: int | None = None, n_evaluations: int | None = None,
            eval_episodes: int = 5, engine: str = "auto", hyperparams: list[str] | None = None,
            conf_file: str | Path | None = None, space_file: str | Path | None = None, n_seeds: int = 1,
            seed: int = 0) -> tuple[Path, TuneSpec, list[Dim]]:
    """Check every input of a search (nothing is written): returns its folder, ``tune.yml`` and dimensions."""
    from dimattn.agents.registry import check_agent
    from dimattn.engines.config import build_config
    from dimattn.games import resolve_games
    from dimattn.study.spec import spec_from_options
    from dimattn.tune.objective import check_references

    game_list = list(resolve_games(games))
    if not game_list:
        raise DimattnError("no game to tune on; give --env GAME or --games A,B")
    agent = check_agent(agent or "NA")
    check_references(game_list)
    base = build_config(game_list[0], agent=agent, hyperparams=hyperparams, conf_file=conf_file, engine=engine,
                        seed=seed, **({"n_timesteps": n_timesteps} if n_timesteps else {}))
    n_evaluations = n_evaluations or max(1, base.n_timesteps // 100_000)  # RL Zoo's default: one per 100k steps
    if n_evaluations > base.n_timesteps:
        raise DimattnError(f"--n-evaluations {n_evaluations} is more than the {base.n_timesteps:,} steps of a run")
    overrides = load_space_file(space_file) if space_file is not None else None
    dims = build_space(agent, overrides, source=f"space file {space_file}" if space_file else "the default space")
    if all(d.is_fixed for d in dims):
        raise DimattnError("the space fixes every value: nothing to search; give at least one range or list")
    seeds = list(range(seed, seed + n_seeds))
    kept = spec_from_options(".", games=",".join(game_list), agents=agent, seeds=",".join(map(str, seeds)),
                             n_timesteps=base.n_timesteps, hyperparams=hyperparams, conf_file=conf_file).hyperparams
    name = study_name or (f"{agent.replace('@', '-')}_" + ("-".join(game_list) if len(game_list) <= 3
                                                            else f"{len(game_list)}games"))
    root = tune_dir(log_folder, name)
    spec = TuneSpec(study_name=name, storage=storage_url(storage, root), agent=agent, games=game_list, seeds=seeds,
                    n_timesteps=base.n_timesteps, n_evaluations=n_evaluations, eval_episodes=eval_episodes,
                    engine=engine, hyperparams=kept, conf_file="conf.yml" if conf_file else None,
                    space={d.name: d.to_data() for d in dims})
    check_same(root, spec, conf_file)
    return root, spec, dims


def start(root: Path, spec: TuneSpec, conf_file: str | Path | None) -> None:
    """Open the storage and the study (refusing one that minimises), then write the folder's ``tune.yml``."""
    open_study(spec, open_storage(spec.storage))
    with writing(root, "tune folder", "--log-folder"):
        write_spec(root, spec, conf_file)


class _Halt(BaseException):
    """A worker stopped by a signal or Ctrl-C mid-trial (its trial is failed and enqueued again): Optuna
    lets it through without touching the trial; :func:`run_worker` raises the original."""


def _retry(study: Any, number: int) -> None:
    """Fail trial ``number`` (this worker's, interrupted) and enqueue its parameters again."""
    import warnings

    optuna = import_optuna()
    study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)


def _stop_on_usr1(signum: int, frame: FrameType | None) -> None:
    raise stopping.Terminated(f"terminated by {signal.Signals(signum).name}")


def run_worker(root: Path, spec: TuneSpec, dims: list[Dim], opts: WorkerOptions, rank: int = 0,
               share: int | None = None) -> None:
    """One worker: trials until ``share`` (default ``opts.n_trials``) are done, or the study holds
    ``opts.max_total_trials`` counted trials. SIGUSR1 (a walltime warning) stops it as SIGTERM does: the
    trial's runs checkpoint, the trial is retried later."""
    optuna = import_optuna()
    from dimattn.tune.output import write_outputs, write_tables

    storage = open_storage(spec.storage)
    done = len(open_study(spec, storage).get_trials(deepcopy=False))
    study = open_study(spec, storage, make_sampler(opts, rank, done), make_pruner(opts, spec.n_evaluations))
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGUSR1, _stop_on_usr1) if main_thread else None
    try:
        with workers.alive(root) as worker:
            ctx = Context(root, spec, dims, worker, opts.threads)
            lost = workers.recover(study, root)
            if lost:
                print(f"retrying trial(s) {', '.join(map(str, lost))}, left running by a worker that died", flush=True)

            def run(trial: Any) -> float:
                try:
                    return objective(trial, ctx)
                except (KeyboardInterrupt, stopping.Terminated) as exc:
                    _retry(study, trial.number)
                    raise _Halt() from exc

            def after(study: Any, trial: Any) -> None:
                write_tables(study, root, spec)
                workers.recover(study, root)

            callbacks = [after]
            if opts.max_total_trials is not None:
                if len(study.get_trials(deepcopy=False, states=counted)) >= opts.max_total_trials:
                    print(f"the study has {opts.max_total_trials} trials (--max-total-trials): none to run", flush=True)
                    return
                callbacks.append(optuna.study.MaxTrialsCallback(opts.max_total_trials, states=counted))
            try:
                study.optimize(run, n_trials=opts.n_trials if share is None else share, callbacks=callbacks,
                               catch=(TrialFailed,), gc_after_trial=True)
            except _Halt as halt:
                raise halt.__cause__ from None
            write_outputs(study, root, spec)
    finally:
        if previous is not None:
            signal.signal(signal.SIGUSR1, previous)


def _worker_process(root: str, spec: TuneSpec, dims: list[Dim], opts: WorkerOptions, rank: int, share: int) -> None:
    from dimattn.agents.registry import load_plugins

    load_plugins()  # the parent's --plugin modules ($DIMATTN_PLUGINS)
    handler = stopping.terminate_on_sigterm()
    try:
        run_worker(Path(root), spec, dims, opts, rank, share)
    except DimattnError as exc:
        print(f"dimattn tune (worker {rank}): error: {exc}", flush=True)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, stopping.Terminated):
        raise SystemExit(stopping.EXIT_TERMINATED) from None
    finally:
        stopping.restore(handler)


def run_local(root: Path, spec: TuneSpec, dims: list[Dim], opts: WorkerOptions) -> int:
    """``--n-jobs`` workers: this process alone for 1, else N processes sharing the storage, the trials
    split among them. Returns the exit status (0, or the first worker's that failed)."""
    if opts.n_jobs == 1:
        run_worker(root, spec, dims, opts)
        return 0
    shares = [opts.n_trials // opts.n_jobs + (i < opts.n_trials % opts.n_jobs) for i in range(opts.n_jobs)]
    ctx = mp.get_context("spawn")  # a clean interpreter each: no threads or locks inherited
    procs = [ctx.Process(target=_worker_process, args=(str(root), spec, dims, opts, rank, share),
                         name=f"dimattn-tune-{rank}") for rank, share in enumerate(shares) if share > 0]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except BaseException:  # Ctrl-C / SIGTERM: each worker's trial checkpoints and is retried later
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        raise
    from dimattn.tune.output import write_outputs

    write_outputs(open_study(spec, open_storage(spec.storage)), root, spec)
    return next((p.exitcode for p in procs if p.exitcode), 0)
