"""A search's results, written beside its trials: the best point as a conf file, every trial as CSV, a page.

    best.yml     RL Zoo's format: the base hyperparameters with the best trial's values on top, for
                 ``dimattn train --conf-file best.yml`` and ``dimattn study init --conf-file best.yml`` as is
    trials.csv   one row per trial: number, state, value, each parameter, duration, its runs' folder, error
    tune.html    Optuna's optimisation history, parallel coordinates and parameter importances (Plotly),
                 with the best trial and the settings; stands alone (Plotly's script is embedded)

Each is written atomically, after every trial (``best.yml``, ``trials.csv``) and when a worker ends (all).
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any

import yaml

from dimattn.engines.config import build_config
from dimattn.engines.rlzoo import PPO_KEYS
from dimattn.fileio import atomic_write_text
from dimattn.tune import space as spaces
from dimattn.tune.objective import trial_hyperparams
from dimattn.tune.spec import BEST, CONF, CSV, PAGE, TuneSpec

_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def best_trial(study: Any) -> Any | None:
    """The completed trial of highest value, or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number), default=None)


def best_conf(spec: TuneSpec, root: Path, trial: Any) -> str:
    """``best.yml``'s text: an ``atari:`` entry holding the whole resolved configuration of the best trial's
    point (the base and --conf-file under it), so the file alone gives the same runs."""
    agent, hp = spaces.to_hyperparams(_point(spec, trial), spec.agent)
    items = trial_hyperparams(spec, hp)
    config = build_config(spec.games[0], agent=agent, hyperparams=[f"{k}:{v}" for k, v in items.items()],
                          conf_file=root / CONF if spec.conf_file else None)
    # n_timesteps is left out: a trial's budget is the search's, not the run's (give -n, or the study's 1e7)
    entry = {k: v for k, v in config.hyperparams.items() if k in PPO_KEYS and k != "policy_kwargs"}
    entry["policy_kwargs"] = spaces.literal_text(config.hyperparams["policy_kwargs"])
    head = (f"# The best point of the search {spec.study_name!r}: trial {trial.number}, {spec.metric} "
            f"{trial.value:.6g} ({', '.join(spec.games)}, {spec.n_timesteps:,} steps per run).\n"
            f"# Use it as it is: dimattn train --env {spec.games[0]} --conf-file best.yml  (agent {agent} is named\n"
            f"# in policy_kwargs), or dimattn study init DIR --agents {agent} --conf-file best.yml ...\n")
    return head + yaml.safe_dump({"atari": entry}, sort_keys=False)


def _point(spec: TuneSpec, trial: Any) -> dict[str, Any]:
    """The trial's point: its parameters and the space's fixed values."""
    fixed = {name: value for name, value in spec.space.items() if not isinstance(value, (list, dict))}
    return {**fixed, **trial.params}


def trials_table(study: Any) -> Any:
    """Every trial: number, state, value, params_*, duration (seconds), runs, error (a DataFrame)."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{f"params_{k}": v for k, v in t.params.items()}, "duration_s": duration,
                     "evaluations": len(t.intermediate_values), "retry_of": t.system_attrs.get("failed_trial"),
                     "runs": t.user_attrs.get("runs"), "error": t.user_attrs.get("error")})
    df = pd.DataFrame(rows)
    if len(df):
        df["retry_of"] = df["retry_of"].astype("Int64")  # a trial number, blank when none (never 0.0)
    return df


def write_tables(study: Any, root: Path, spec: TuneSpec) -> None:
    """``trials.csv`` and, once a trial is complete, ``best.yml``."""
    atomic_write_text(root / CSV, trials_table(study).to_csv(index=False, lineterminator="\n"))
    best = best_trial(study)
    if best is not None:
        atomic_write_text(root / BEST, best_conf(spec, root, best))


def write_outputs(study: Any, root: Path, spec: TuneSpec) -> None:
    """``trials.csv``, ``best.yml`` and ``tune.html``."""
    write_tables(study, root, spec)
    atomic_write_text(root / PAGE, page(study, spec))


def _figures(study: Any) -> list[tuple[str, Any]]:
    """Optuna's Plotly figures that the trials so far allow (importances need two complete trials and a
    parameter that varied among them)."""
    from optuna import visualization as vis
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures = [("Optimisation history", vis.plot_optimization_history)]
    if complete:
        figures.append(("Parallel coordinates", vis.plot_parallel_coordinate))
        figures.append(("Intermediate values (what the pruner saw)", vis.plot_intermediate_values))
    varied = {k for t in complete for k in t.params if len({str(u.params.get(k)) for u in complete}) > 1}
    if len(complete) >= 2 and varied:
        figures.append(("Parameter importances (fANOVA)", vis.plot_param_importances))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings
        for title, plot in figures:
            try:
                out.append((title, plot(study)))
            except (ValueError, RuntimeError) as exc:  # too few trials for this figure: say so on the page
                out.append((title, f"not drawn: {exc}"))
    return out


def page(study: Any, spec: TuneSpec) -> str:
    """``tune.html``: the settings, the best trial and Optuna's figures, Plotly's script embedded once."""
    e = html.escape
    best = best_trial(study)
    counts = {s: sum(t.state.name == s for t in study.get_trials(deepcopy=False)) for s in _STATES}
    settings = {"study": spec.study_name, "storage": spec.storage, "agent": spec.agent, "games": ", ".join(spec.games),
                "objective": f"{spec.metric} at the last evaluation (maximised)", "seeds per game": len(spec.seeds),
                "steps per run": f"{spec.n_timesteps:,}", "evaluations per run": spec.n_evaluations,
                "trials": ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)}
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>dimattn tune {e(spec.study_name)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto} dl{display:grid;"
             "grid-template-columns:max-content auto;gap:.1em 1em} dt{font-weight:600}</style></head><body>",
             f"<h1>Hyperparameter search {e(spec.study_name)}</h1>",
             "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items()) + "</dl>"]
    if best is not None:
        params = "".join(f"<li><code>{e(k)}</code> = {e(repr(v))}</li>" for k, v in best.params.items())
        parts.append(f"<h2>Best: trial {best.number}, {best.value:.6g}</h2><ul>{params}</ul>"
                     f"<p>As a conf file: <a href=\"{BEST}\">{BEST}</a>; every trial: <a href=\"{CSV}\">{CSV}</a>.</p>")
    script = True
    for title, fig in _figures(study):
        parts.append(f"<h2>{e(title)}</h2>")
        if isinstance(fig, str):
            parts.append(f"<p>{e(fig)}</p>")
            continue
        parts.append(fig.to_html(full_html=False, include_plotlyjs=script))
        script = False
    parts.append("<footer><p>Made by <code>dimattn tune</code> (docs/tune.md).</p></footer></body></html>")
    return "\n".join(parts) + "\n"
