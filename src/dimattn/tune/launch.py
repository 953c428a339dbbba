"""Workers elsewhere: a Slurm / PBS Pro job array, or Ray tasks, each one worker of the same search.

Each array task runs the same ``dimattn tune`` command (the search's options, written out in full, the storage
named) with ``--n-jobs 1 --worker-rank <its index>``; each Ray task calls :func:`dimattn.tune.run.run_worker`
with its rank. They share the search through its storage only (a journal file or a database every node
reaches) and the tune folder (on a file system every node sees, with ``flock``), as a study's tasks share
its folder. Resubmitting the script is safe: the search goes on, and a trial a killed task left running is
retried (:mod:`dimattn.tune.workers`).

    <tune folder>/jobs/<scheduler>.sh   the array script
    <tune folder>/logs/                 the scheduler's output
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_text
from dimattn.study.jobscripts import JobResources, request
from dimattn.study.schedulers import backends, named
from dimattn.tune.run import WorkerOptions, run_worker
from dimattn.tune.space import Dim
from dimattn.tune.spec import JOBS, LOGS, TuneSpec

BACKENDS = backends()


def shares(n_trials: int, workers: int) -> list[int]:
    """``n_trials`` split among ``workers`` (the first ones take one more), none empty."""
    return [s for i in range(workers) if (s := n_trials // workers + (i < n_trials % workers)) > 0]


def worker_command(root: Path, spec: TuneSpec, opts: WorkerOptions, space_file: str | None,
                   conf_file: str | None, share: int) -> list[str]:
    """The ``dimattn tune`` options that make a worker of this search, written out in full (paths absolute)."""
    games = ["--env", spec.games[0]] if len(spec.games) == 1 else ["--games", ",".join(spec.games)]
    cmd = [*games, "--agent", spec.agent, "-f", str(root.parent.parent), "--study-name", spec.study_name,
           "--storage", spec.storage, "--seed", str(opts.seed), "-n", str(spec.n_timesteps),
           "--n-evaluations", str(spec.n_evaluations), "--eval-episodes", str(spec.eval_episodes),
           "--engine", spec.engine, "--n-seeds", str(len(spec.seeds)), "--sampler", opts.sampler,
           "--pruner", opts.pruner, "--n-startup-trials", str(opts.n_startup_trials), "--n-trials", str(share),
           "--threads", str(opts.threads)]
    if opts.max_total_trials is not None:
        cmd += ["--max-total-trials", str(opts.max_total_trials)]
    if space_file:
        cmd += ["--space", str(Path(space_file).absolute())]
    if conf_file:
        cmd += ["--conf-file", str(Path(conf_file).absolute())]
    if spec.hyperparams:
        from dimattn.tune.space import literal_text

        cmd += ["--hyperparams", *(f"{k}:{v if isinstance(v, str) else literal_text(v)}"
                                   for k, v in spec.hyperparams.items())]
    return cmd


def write_script(root: Path, spec: TuneSpec, scheduler: str, res: JobResources, workers: int,
                 command: list[str]) -> Path:
    """``<tune>/jobs/<scheduler>.sh``: an array of ``workers`` tasks, task k running ``command`` as worker k."""
    res.checked()
    logs = root / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    path = root / JOBS / f"{scheduler}.sh"
    sched = named(scheduler)
    req = request(sched, spec.study_name, res, workers, logs)
    index, submit = sched.task_index(req), sched.submit_line(path, logs)
    argv = [res.python, "-m", "dimattn", "tune", *command, "--n-jobs", "1"]
    text = "\n".join([
        "#!/bin/bash",
        f"# dimattn tune {spec.study_name!r}: {workers} worker(s) sharing {spec.storage}, one array task each.",
        f"# Written by `dimattn tune --backend {scheduler}`. Submit: {submit}",
        "# Resubmitting is safe: the search goes on; a trial a killed task left running is retried.",
        *(f"# {note}" for note in sched.notes),
        *sched.lines(req),
        "",
        "trap '' USR1  # until dimattn listens for it: a warning that comes early must not end the task",
        "set -eo pipefail",
        *res.setup,
        "set -u",
        f"export OMP_NUM_THREADS={res.ncpus}",
        f'exec {shlex.join(argv)} --worker-rank "$(( {index} ))"',
        "",
    ])
    atomic_write_text(path, text)
    path.chmod(0o755)
    return path


def _ray_worker(root: str, spec: TuneSpec, dims: list[Dim], opts: WorkerOptions, rank: int, share: int) -> None:
    from dimattn.agents.registry import load_plugins

    load_plugins()  # the driver's --plugin modules ($DIMATTN_PLUGINS reaches Ray's workers on this node)
    run_worker(Path(root), spec, dims, opts, rank, share)


def run_ray(root: Path, spec: TuneSpec, dims: list[Dim], opts: WorkerOptions, workers: int,
            address: str | None = None) -> None:
    """``workers`` Ray tasks, each a worker of the search (``opts.threads`` CPUs each), the trials split
    among them; joins the cluster at ``address`` or starts a local Ray."""
    from dimattn.study.launch import connect_ray, import_ray

    ray = import_ray()
    started = connect_ray(ray, address, workers * opts.threads if not address else None)
    remote = ray.remote(_ray_worker).options(num_cpus=opts.threads, max_retries=0)
    refs = [remote.remote(str(root), spec, dims, opts, rank, share)
            for rank, share in enumerate(shares(opts.n_trials, workers))]
    try:
        ray.get(refs)
    except Exception as exc:
        raise DimattnError(f"a Ray worker of the search failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}") from None
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def describe(backend: str, paths: list[Path]) -> Any:
    """What to tell the user after writing scripts."""
    path = paths[0]
    if backend == "pbs":
        return f"wrote {path}\nsubmit with: cd {shlex.quote(str(path.parent.parent / LOGS))} && qsub {path}"
    return f"wrote {path}\nsubmit with: sbatch {path}"
