"""``dimattn tune`` / ``train -optimize`` on real tiny runs: a search with a pruned trial, a SIGKILLed search that
resumes, two worker processes on one journal file, a 2-game objective, the best conf file trained as is, and bad
input refused in one line before any trial."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra: pip install 'dimattn[tune]'")

import torch  # noqa: E402

from dimattn.agents import registry  # noqa: E402
from dimattn.cli import main  # noqa: E402
from dimattn.engines.config import build_config  # noqa: E402
from dimattn.engines.rundir import EvalHistory, read_config  # noqa: E402
from dimattn.errors import DimattnError  # noqa: E402
from dimattn.games import reference_scores  # noqa: E402
from dimattn.study.locks import lock_holder  # noqa: E402
from dimattn.study.spec import Study  # noqa: E402
from dimattn.tune.space import build_space, literal_text, to_hyperparams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Each run of a trial: 512 steps of 2 envs, evaluated (one game) and checkpointed at 256 and 512.
TINY = ["-n", "512", "--n-evaluations", "2", "--eval-episodes", "1", "--threads", "1", "--hyperparams", "n_envs:2"]
# PPO's shape fixed to what 2 envs can run quickly; learning_rate and ent_coef (and the block's options) searched.
SPACE = """n_steps: [64]
batch_size: [64]
n_epochs: [1]
clip_range: null
max_grad_norm: null
one_minus_gamma: null
one_minus_gae_lambda: null
"""


def space(tmp: Path, text: str = SPACE) -> Path:
    path = tmp / "space.yml"
    path.write_text(text)
    return path


def tune_args(tmp: Path, *extra: str, env: str = "Breakout", agent: str = "NA", space_text: str = SPACE) -> list[str]:
    games = ["--games", env] if "," in env else ["--env", env]
    return [*games, "--agent", agent, "-f", str(tmp / "logs"), "--space", str(space(tmp, space_text)), *TINY, *extra]


def load(root: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "journal.log")))
    return optuna.load_study(study_name=root.name, storage=storage)


def trial_study(root: Path, trial: optuna.trial.FrozenTrial) -> Study:
    return Study.load(root / trial.user_attrs["runs"], validate=False)


def last_scores(study: Study) -> dict[str, list[float]]:
    """Each game's seeds' last evaluation (mean over its games), read from the runs' files."""
    out: dict[str, list[float]] = {}
    for run in study.runs:
        out.setdefault(run.game, []).append(float(np.mean(EvalHistory.load(run.dir).results[-1])))
    return out


# Learning rates high enough that 4 updates change what the policy does: the trials' scores differ (Asterix
# scores in steps of 50), so the median pruner has something to compare.
DIVERSE = """n_steps: [64]
batch_size: [64]
n_epochs: [4]
learning_rate: {low: 0.001, high: 0.05, log: true}
clip_range: [0.1, 0.4]
ent_coef: null
max_grad_norm: null
one_minus_gamma: null
one_minus_gae_lambda: null
"""


class Gain(torch.nn.Module):
    """A plugin block for the space tests: scales the map (keeps its shape), built with a keyword argument."""

    def __init__(self, gain: float = 1.0, mode: str = "a") -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x):
        return x * self.gain


def test_space_default_plugin_and_file(tmp_path):
    """RL Zoo's PPO space for NA; the study blocks' options and place for CWCA; a plugin block's declared ranges;
    a file narrowing, fixing and dropping names; a point as the hyperparameters a run takes."""
    na = {d.name for d in build_space("NA")}
    assert na == {"batch_size", "n_steps", "one_minus_gamma", "one_minus_gae_lambda", "learning_rate", "ent_coef",
                  "clip_range", "n_epochs", "max_grad_norm"}
    assert {d.name for d in build_space("CWCA")} == na | {"norm_softmax", "ada_attn", "attention_after"}
    registry.register("GAINTEST", lambda shape, gain=1.0, mode="a": Gain(gain, mode), "a gain", "none",
                      space={"gain": {"low": 0.5, "high": 2.0}, "mode": ["a", "b"]})
    try:
        dims = {d.name: d for d in build_space("GAINTEST", {"learning_rate": [3e-4], "n_envs": 2, "ent_coef": None,
                                                            "block_kwargs": {"mode": "b"}})}
        assert {"block_kwargs.gain", "block_kwargs.mode", "attention_after"} <= set(dims)
        assert "ent_coef" not in dims and "norm_softmax" not in dims
        assert dims["n_envs"].is_fixed and dims["block_kwargs.mode"].is_fixed and dims["learning_rate"].choices
        point = {"learning_rate": 3e-4, "n_envs": 2, "one_minus_gamma": 0.01, "attention_after": "conv2",
                 "block_kwargs.gain": 1.5, "block_kwargs.mode": "b"}
        agent, hp = to_hyperparams(point, "GAINTEST")
        assert agent == "GAINTEST@conv2" and hp["gamma"] == pytest.approx(0.99) and hp["n_envs"] == 2
        config = build_config("Breakout", agent=agent, hyperparams=[f"{k}:{literal_text(v)}" for k, v in hp.items()])
        assert config.hyperparams["policy_kwargs"]["features_extractor_kwargs"]["block_kwargs"] == {"gain": 1.5,
                                                                                                   "mode": "b"}
        with pytest.raises(DimattnError, match="block_kwargs.gain is an empty range"):
            build_space("GAINTEST", {"block_kwargs": {"gain": {"low": 3, "high": 1}}})
    finally:
        registry.unregister("GAINTEST")
    with pytest.raises(DimattnError, match="unknown name 'block_kwargs' for agent CWCA"):
        build_space("CWCA", {"block_kwargs": {"x": [1]}})
    with pytest.raises(DimattnError, match="one_minus_gamma -0.5 gives gamma 1.5, outside gamma's range"):
        build_space("NA", {"one_minus_gamma": [-0.5]})


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """4 trials of CWCA on Asterix, random sampler (seed 3), median pruner after 2 complete trials: trial 3's
    first evaluation (100) is below the median of the three before it (350), so it is pruned."""
    tmp = tmp_path_factory.mktemp("tune")
    code = main(["tune", *tune_args(tmp, "--n-trials", "4", "--sampler", "random", "--pruner", "median",
                                    "--n-startup-trials", "2", "--seed", "3", env="Asterix", agent="CWCA",
                                    space_text=DIVERSE)])
    assert code == 0
    return tmp / "logs" / "tune" / "CWCA_Asterix"


def test_four_trials_one_pruned_by_the_median_of_the_others(searched):
    study = load(searched)
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and states.count("PRUNED") == 1 and states.count("COMPLETE") == 3, states
    for t in study.trials:
        runs = trial_study(searched, t)
        run = runs.runs[0]
        if t.state.name == "COMPLETE":  # RL Zoo's value: the last evaluation's mean return, as the files hold it
            assert t.value == pytest.approx(last_scores(runs)["Asterix"][0])
            assert list(EvalHistory.load(run.dir).timesteps) == [256, 512]
            assert (run.dir / "AsterixNoFrameskip-v4.zip").is_file()
            continue
        # pruned at its first evaluation, below the median of the trials complete before it; its run stopped
        # there with a checkpoint (SIGUSR1), never trained to the end
        earlier = [u.intermediate_values[1] for u in study.trials[:t.number] if u.state.name == "COMPLETE"]
        assert list(t.intermediate_values) == [1] and t.intermediate_values[1] < np.median(earlier)
        assert not (run.dir / "AsterixNoFrameskip-v4.zip").exists()
        assert (run.dir / "rl_model_256_steps.zip").is_file() or (run.dir / "rl_model_384_steps.zip").is_file()
    # each trial its own point of the space, the block's options among them
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4
    assert {"learning_rate", "clip_range", "norm_softmax", "ada_attn", "attention_after"} <= set(study.trials[0].params)


def test_outputs_csv_page_and_best_conf(searched):
    study = load(searched)
    with open(searched / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == [t.state.name for t in study.trials]
    assert {"number", "value", "params_learning_rate", "params_ada_attn", "duration_s", "runs"} <= set(rows[0])
    page = (searched / "tune.html").read_text()
    for title in ("Optimisation history", "Parallel coordinates", "Parameter importances"):
        assert title in page
    assert page.count("<script") >= 3 and "plotly" in page.lower()
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    assert f"trial {best.number}," in (searched / "best.yml").read_text()


def test_best_conf_file_trains_and_inits_a_study_as_is(searched, tmp_path):
    study = load(searched)
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    conf = str(searched / "best.yml")
    logs = searched.parent.parent  # the run goes beside the search: logs/ppo/... and logs/tune/...
    assert main(["train", "--env", "Asterix", "--conf-file", conf, "-n", "128", "--eval-freq", "128",
                 "--eval-episodes", "1", "--save-freq", "0", "-f", str(logs)]) == 0
    (run,) = (logs / "ppo").iterdir()
    config = read_config(run)
    position = best.params["attention_after"]
    assert config.agent == ("CWCA" if position == "conv1" else "CWCA@conv2")
    hp = config.hyperparams
    assert (hp["learning_rate"], hp["clip_range"], hp["n_steps"], hp["n_epochs"], hp["n_envs"]) == (
        best.params["learning_rate"], best.params["clip_range"], 64, 4, 2)
    kw = hp["policy_kwargs"]["features_extractor_kwargs"]
    assert (kw.get("ada_attn"), kw.get("norm_softmax", True)) == (best.params["ada_attn"], best.params["norm_softmax"])
    assert main(["study", "init", str(tmp_path / "s"), "--games", "Asterix", "--agents", "CWCA", "--seeds", "0",
                 "--conf-file", conf, "-n", "128"]) == 0
    assert Study.load(tmp_path / "s").config(Study.load(tmp_path / "s").runs[0]).hyperparams == hp
    # dimattn report on the folder: the one run, not the trials' runs; a link to the search's page
    assert main(["report", str(logs), "--out", str(tmp_path / "report"), "--reps", "10", "--quiet"]) == 0
    index = (tmp_path / "report" / "index.html").read_text()
    assert '<a href="../' in index and "tune/CWCA_Asterix/tune.html" in index
    assert "<dt>runs</dt><dd>1</dd>" in index


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "dimattn", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_killed_mid_trial_resumes_with_nothing_lost(tmp_path):
    """SIGKILL the tune process after its trial's first evaluation and checkpoint; run the same search again
    (as RL Zoo's `train -optimize`, two worker processes): the trial left running is failed, its point retried,
    and its run resumes from the checkpoint, its history whole; the other worker runs a new trial."""
    args = tune_args(tmp_path, "--n-trials", "2", "--pruner", "none", "--sampler", "random")
    args[args.index("512")] = "768"  # 3 evaluations: one before the kill, two after
    args[args.index("--n-evaluations") + 1] = "3"
    root = tmp_path / "logs" / "tune" / "NA_Breakout"
    proc = cli("tune", *args)
    deadline, run_dir = time.monotonic() + 300, None
    while run_dir is None and time.monotonic() < deadline and proc.poll() is None:
        for ckpt in root.glob("trials/*/runs/Breakout/NA/seed0/rl_model_256_steps.zip"):
            run_dir = ckpt.parent
        time.sleep(0.05)
    assert run_dir is not None, proc.communicate()[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    while lock_holder(run_dir) is not None and time.monotonic() < deadline:  # its trainer dies with it
        time.sleep(0.1)
    saved = max(int(p.name.split("_")[2]) for p in run_dir.glob("rl_model_*_steps.zip"))
    assert saved < 768 and not (run_dir / "BreakoutNoFrameskip-v4.zip").exists()
    assert load(root).trials[0].state.name == "RUNNING"
    assert main(["train", "--env", "Breakout", "-optimize", *args[2:], "--n-jobs", "2"]) == 0
    trials = load(root).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert len({t.user_attrs["worker"] for t in trials}) == 3  # the killed one, then two processes
    retry = trials[1]  # enqueued by the first worker to look, before either asked for a trial
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == trials[0].params
    assert retry.user_attrs["runs"] == trials[0].user_attrs["runs"]
    assert f"from rl_model_{saved}_steps.zip" in (run_dir / "train.log").read_text()
    assert list(EvalHistory.load(run_dir).timesteps) == [256, 512, 768]
    assert list(retry.intermediate_values) == [1, 2, 3]
    with open(root / "trials.csv") as f:
        assert [r["retry_of"] for r in csv.DictReader(f)] == ["", "0", ""]


def test_array_script_tasks_share_one_journal(tmp_path, capsys):
    """--backend slurm writes an array script; two of its tasks, started at once as Slurm would, are two workers
    of the one search: each runs its own trial against the one journal file."""
    assert main(["tune", *tune_args(tmp_path, "--n-trials", "2", "--pruner", "none", "--sampler", "random",
                                    "--backend", "slurm", "--workers", "2")]) == 0
    root = tmp_path / "logs" / "tune" / "NA_Breakout"
    script = root / "jobs" / "slurm.sh"
    assert f"wrote {script}" in capsys.readouterr().out
    text = script.read_text()
    assert "#SBATCH --array=0-1" in text and "--worker-rank" in text and "--n-trials 1 " in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    tasks = [subprocess.Popen(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    for task in tasks:
        out, _ = task.communicate(timeout=900)
        assert task.returncode == 0, out
    trials = load(root).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    workers = {t.user_attrs["worker"] for t in trials}  # host-pid-tail: two processes
    assert len(workers) == 2 and trials[0].params != trials[1].params
    assert len({t.user_attrs["runs"] for t in trials}) == 2
    assert [p.name for p in root.iterdir() if p.name.endswith(".log")] == ["journal.log"]


def test_two_games_mean_human_normalised_score(tmp_path):
    assert main(["tune", *tune_args(tmp_path, "--n-trials", "1", "--pruner", "none", env="Breakout,Pong")]) == 0
    root = tmp_path / "logs" / "tune" / "NA_Breakout-Pong"
    (trial,) = load(root).trials
    ref = reference_scores()
    scores = last_scores(trial_study(root, trial))
    assert set(scores) == {"Breakout", "Pong"}
    hns = [(np.mean(s) - ref[g][0]) / (ref[g][1] - ref[g][0]) for g, s in scores.items()]
    assert trial.value == pytest.approx(np.mean(hns))
    assert "mean human-normalised score" in (root / "tune.html").read_text()


@pytest.mark.parametrize("extra, space_text, message", [
    (["--sampler", "grid"], SPACE, "unknown sampler 'grid'; choose one of tpe, random, cmaes"),
    (["--pruner", "hyperband"], SPACE, "unknown pruner 'hyperband'; choose one of median, halving, none"),
    ([], "learning_rat: [0.1]", "unknown name 'learning_rat' for agent NA"),
    ([], "learning_rate: {low: 0.01, high: 0.001}", "is an empty range: low 0.01 is above high 0.001"),
    ([], "n_epochs: []", "n_epochs is an empty list"),
    ([], "learning_rate: [0.1, 2.0]", "learning_rate 2.0 is outside learning_rate's range"),
    ([], "[n_steps, 64]", "must be a YAML mapping of names to ranges"),
    (["--storage", "FILE/journal.log"], SPACE, "cannot write storage folder"),
    (["--storage", "sqlite:////nonexistent-dir/x/t.db"], SPACE, "cannot open storage sqlite:////nonexistent-dir"),
    (["MINIMISE"], SPACE, "exists and minimizes; dimattn tune maximises the score: give another --study-name"),
])
def test_bad_input_is_one_line_before_any_trial(tmp_path, capsys, extra, space_text, message):
    if extra == ["MINIMISE"]:
        storage = tmp_path / "other.log"
        optuna.create_study(storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(storage))), study_name="NA_Breakout", direction="minimize")
        extra = ["--storage", str(storage)]
    if extra[-1:] == ["FILE/journal.log"]:
        (tmp_path / "FILE").write_text("a file, not a folder")
        extra = ["--storage", str(tmp_path / "FILE" / "journal.log")]
    assert main(["tune", *tune_args(tmp_path, "--n-trials", "1", *extra, space_text=space_text)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "logs" / "tune" / "NA_Breakout" / "trials").exists()


def test_missing_optuna_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['optuna'] = None\nfrom dimattn.cli import main\n"
            f"sys.exit(main(['tune', '--env', 'Breakout', '-f', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == ("dimattn tune: error: dimattn tune needs Optuna and Plotly: "
                                   "pip install 'dimattn[tune]'")
