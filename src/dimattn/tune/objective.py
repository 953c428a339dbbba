"""One trial: a point of the space trained as a small study, its evaluations reported to Optuna as they come.

A trial's runs (its games × seeds, all at once) form a study of their own in ``trials/<key>/``
(:mod:`dimattn.study`), trained by the study's local runner (:func:`dimattn.study.launch.run_local`): each run
in a process of its own, under its lock, resuming from its last checkpoint, stopping cleanly on SIGTERM or
SIGUSR1 (:mod:`dimattn.engines.stopping`). Every run saves a checkpoint at each evaluation, so a trial
retried after its worker was killed loses at most one evaluation period.

While they train, this process reads their ``evaluations.npz`` (written atomically) and reports the k-th
value once every run has its k-th evaluation: one game, the mean evaluation return over the seeds (RL Zoo's
objective); several games, the mean over games of the human-normalised score of that mean (SPEC §5). When the
pruner says so, the runs are sent SIGUSR1 (they write a checkpoint and stop) and the trial is pruned. The
trial's value is the last evaluation's, as in RL Zoo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dimattn.engines.rundir import EvalHistory
from dimattn.errors import DimattnError
from dimattn.tune import space as spaces
from dimattn.tune.spec import CONF, TRIALS, TuneSpec, point_key

POLL_SECONDS = 0.5  # how often the runs' evaluations are read: far below an evaluation period


class TrialFailed(Exception):
    """A run of the trial failed (its error.log says why); the trial is marked failed, the search goes on."""


@dataclass
class Context:
    """What every trial of one worker shares."""

    root: Path
    spec: TuneSpec
    dims: list[spaces.Dim]
    worker: str
    threads: int


def trial_hyperparams(spec: TuneSpec, hp: dict[str, Any]) -> dict[str, Any]:
    """The base ``--hyperparams`` with a point's values on top, as study.yml keeps them (``policy_kwargs`` as
    text, its ``features_extractor_kwargs`` merged)."""
    from dimattn.engines.literals import parse_value

    out = dict(spec.hyperparams)
    for key, value in hp.items():
        if key == "policy_kwargs":
            base = out.get("policy_kwargs")
            base = parse_value(base) if isinstance(base, str) else dict(base or {})
            fe = {**base.get("features_extractor_kwargs", {}), **value["features_extractor_kwargs"]}
            out[key] = spaces.literal_text({**base, "features_extractor_kwargs": fe})
        else:
            out[key] = value
    return out


def trial_study(ctx: Context, point: dict[str, Any]) -> Any:
    """The point's study in ``trials/<key>/`` (created, or found as a retried trial left it). Raises
    DimattnError when the point's configuration cannot run (checked before anything is written)."""
    from dimattn.study.spec import StudySpec, init_study

    s = ctx.spec
    agent, hp = spaces.to_hyperparams(point, s.agent)
    key = point_key(point)
    study_spec = StudySpec(
        name=f"{s.study_name}-{key}", games=list(s.games), agents=[agent], seeds=list(s.seeds),
        n_timesteps=s.n_timesteps, eval_freq=s.eval_freq, eval_episodes=s.eval_episodes,
        save_freq=s.eval_freq, engine=s.engine, hyperparams=trial_hyperparams(s, hp))
    conf = ctx.root / CONF if s.conf_file else None
    study, _ = init_study(ctx.root / TRIALS / key, study_spec, conf_file=conf)
    return study


def curves(study: Any) -> list[EvalHistory]:
    """Each run's evaluations so far (run order: games × seeds)."""
    return [EvalHistory.load(run.dir) for run in study.runs]


def combine(spec: TuneSpec, study: Any, histories: list[EvalHistory], k: int) -> float:
    """The k-th value (0-based) of the objective over the runs (every run has k+1 evaluations)."""
    per_game: dict[str, list[float]] = {}
    for run, history in zip(study.runs, histories):
        per_game.setdefault(run.game, []).append(float(np.mean(history.results[k])))
    means = {game: float(np.mean(scores)) for game, scores in per_game.items()}
    if len(means) == 1:
        return next(iter(means.values()))
    return float(np.mean(list(human_normalised(means).values())))


def human_normalised(means: dict[str, float]) -> dict[str, float]:
    """{game: score} -> {game: human-normalised score}, by the report's own formula (SPEC §5)."""
    import pandas as pd

    from dimattn.analysis.stats import human_normalized

    df = human_normalized(pd.DataFrame({"game": list(means), "score": list(means.values())}))
    return dict(zip(df["game"], df["hns"]))


def check_references(games: list[str]) -> None:
    """Several games are combined by human-normalised scores: each needs a random and a human score."""
    from dimattn.games import reference_scores

    missing = [g for g in games if g not in reference_scores()]
    if len(games) > 1 and missing:
        raise DimattnError(f"--games {','.join(games)}: no human and random reference score for "
                           f"{', '.join(missing)}, so the games' scores cannot be averaged; tune those games alone")


def signal_runs(study: Any, signum: int) -> None:
    """Send ``signum`` to the processes training the study's runs on this host (their locks name them)."""
    from dimattn.study.locks import lock_holder

    for run in study.runs:
        holder = (lock_holder(run.dir) or "").split()
        if len(holder) >= 2 and holder[0].isdigit() and holder[1] == socket.gethostname():
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(int(holder[0]), signum)


def objective(trial: Any, ctx: Context) -> float:
    """Train the trial's point and return its value; raise TrialPruned (pruned, or a point that cannot
    run, as RL Zoo does) or TrialFailed."""
    import optuna

    trial.set_user_attr("worker", ctx.worker)
    point = spaces.sample(trial, ctx.dims)
    try:
        study = trial_study(ctx, point)
    except DimattnError as exc:  # e.g. a batch_size that does not divide this n_steps' rollout
        trial.set_user_attr("error", str(exc))
        raise optuna.TrialPruned(f"this point cannot run: {exc}") from None
    trial.set_user_attr("runs", str(study.root.relative_to(ctx.root)))
    return train_trial(trial, ctx, study)


def train_trial(trial: Any, ctx: Context, study: Any) -> float:
    """Train the runs in a thread, report each evaluation from here, prune by stopping them."""
    from rich.console import Console

    from dimattn.study.launch import run_local

    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(run_local(
        study, workers=len(study.runs), threads=ctx.threads, retries=0, console=Console(quiet=True))),
        name="dimattn-trial", daemon=True)
    values: list[float] = []
    pruned = False
    worker.start()
    try:
        while True:
            alive = worker.is_alive()  # read before the files: a last look once the runs have ended
            pruned = _report(trial, ctx, study, values) or pruned
            if not alive:
                break
            worker.join(POLL_SECONDS)
    except BaseException:  # SIGTERM, Ctrl-C: the runs checkpoint and stop; the trial is retried later
        signal_runs(study, signal.SIGTERM)
        worker.join()
        raise
    return _outcome(trial, study, result[0] if result else None, values, pruned)


def _report(trial: Any, ctx: Context, study: Any, values: list[float]) -> bool:
    """Report the evaluations every run has and ``values`` lacks; True when the pruner stopped the runs."""
    histories = curves(study)
    while len(values) < min(len(h.timesteps) for h in histories):
        values.append(combine(ctx.spec, study, histories, len(values)))
        trial.report(values[-1], len(values))
        print(f"trial {trial.number}: evaluation {len(values)}/{ctx.spec.n_evaluations} at "
              f"{histories[0].timesteps[len(values) - 1]:,} steps: {values[-1]:.4g}", flush=True)
        if len(values) < ctx.spec.n_evaluations and trial.should_prune():
            signal_runs(study, signal.SIGUSR1)  # each run writes a checkpoint, then stops
            return True
    return False


def _outcome(trial: Any, study: Any, summary: Any, values: list[float], pruned: bool) -> float:
    import optuna

    if pruned:
        raise optuna.TrialPruned(f"pruned at evaluation {len(values)}")
    if summary is None:
        raise TrialFailed("the study's runner ended without a summary (see the runs' train.log)")
    if summary.failed:
        index, message = next(iter(summary.failed.items()))
        trial.set_user_attr("error", message)
        raise TrialFailed(f"run {study.runs[index].name} failed: {message} (see {study.runs[index].dir}/error.log)")
    if not values or len(summary.done) + summary.already_done < len(study.runs):
        raise TrialFailed("the runs stopped before their last evaluation (stopped from outside, or busy in "
                          "another worker)")
    return values[-1]
