"""End to end on the SB3 engine: a tiny real training run on a real ALE game, and its files."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from dimattn import load_agent
from dimattn.cli import main
from dimattn.engines.config import build_config
from dimattn.engines.rundir import EvalHistory, checkpoints, read_config
from dimattn.engines.train import train

TINY = ["n_envs:2", "n_steps:128", "batch_size:64"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    code = main(
        [
            "train",
            "--engine",
            "sb3",
            "--algo",
            "ppo",
            "--env",
            "BreakoutNoFrameskip-v4",
            "--agent",
            "CWCA",
            "-n",
            "1024",
            "--eval-freq",
            "512",
            "--eval-episodes",
            "1",
            "--save-freq",
            "512",
            "--seed",
            "3",
            "--log-folder",
            str(root / "logs"),
            "--tensorboard-log",
            str(root / "tb"),
            "--uuid",
            "--hyperparams",
            *TINY,
        ]
    )
    assert code == 0
    (run_dir,) = (root / "logs" / "ppo").iterdir()
    return root, run_dir


def test_run_folder_layout(trained):
    root, run_dir = trained
    assert run_dir.name.startswith("BreakoutNoFrameskip-v4_1_")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yml", "evaluations.npz", "best_model.zip", "BreakoutNoFrameskip-v4.zip",
            "rl_model_512_steps.zip", "rl_model_1024_steps.zip"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert list((root / "tb" / "BreakoutNoFrameskip-v4").glob("*/events.out.tfevents.*"))
    config = read_config(run_dir)
    assert (config.game, config.agent, config.seed, config.n_timesteps) == ("Breakout", "CWCA", 3, 1024)


def test_evaluations_are_whole_games(trained):
    _, run_dir = trained
    with np.load(run_dir / "evaluations.npz") as f:
        assert list(f["timesteps"]) == [512, 1024]
        assert f["results"].shape == (2, 1) and f["ep_lengths"].shape == (2, 1)
        # a whole Breakout game (5 lives) with a near-random policy lasts well over 100 frames
        assert (f["ep_lengths"] > 100).all() and (f["results"] >= 0).all()


def test_checkpoints_reload(trained):
    _, run_dir = trained
    for steps, path in checkpoints(run_dir):
        agent = load_agent(path, agent="CWCA")
        assert agent.meta["num_timesteps"] == steps and agent.meta["game"] == "Breakout"
    final = load_agent(run_dir / "BreakoutNoFrameskip-v4.zip")
    early = load_agent(run_dir / "rl_model_512_steps.zip")
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert final(obs)[0].shape == (2, 4)
    assert not torch.equal(final(obs)[0], early(obs)[0])  # it learned something between the two
    # and SB3 itself reads our zips
    from stable_baselines3 import PPO

    sb3 = PPO.load(run_dir / "BreakoutNoFrameskip-v4.zip", device="cpu")
    torch.testing.assert_close(sb3.policy.get_distribution(obs.float()).distribution.logits,
                               final(obs)[0].log_softmax(-1))


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    config = build_config("Breakout", agent="NA", hyperparams=TINY, n_timesteps=256, eval_freq=256,
                          eval_episodes=1, save_freq=256, seed=1, engine="sb3")
    run_dir = tmp_path / "run"
    train(config, run_dir)
    first = load_agent(run_dir / "rl_model_256_steps.zip")
    # pretend the run had gone on: an evaluation written after the checkpoint is lost on resume
    history = EvalHistory.load(run_dir)
    history.append(384, np.array([1.0]), np.array([10]))
    history.save(run_dir)
    config.n_timesteps = 512
    train(config, run_dir)
    with np.load(run_dir / "evaluations.npz") as f:
        assert list(f["timesteps"]) == [256, 512]
    with zipfile.ZipFile(run_dir / "BreakoutNoFrameskip-v4.zip") as zf:
        assert "dimattn_rng.pt" in zf.namelist()
    final = load_agent(run_dir / "BreakoutNoFrameskip-v4.zip")
    assert final.meta["num_timesteps"] == 512 and first.meta["num_timesteps"] == 256
    assert [steps for steps, _ in checkpoints(run_dir)] == [256, 512]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dimattn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--env", "Pongg"], "unknown Atari game 'Pongg'"),
    (["--env", "Pong", "--agent", "XA"], "unknown agent 'XA'"),
    (["--env", "Pong", "--hyperparams", "policy_kwargs:dict(x=__import__('os'))"], "cannot parse"),
    (["--env", "Pong", "--hyperparams", "n_envs"], "malformed --hyperparams"),
    (["--env", "Pong", "-n", "0"], "must be positive"),
    (["--env", "Pong", "-n", "-5"], "must be positive"),
    (["--env", "Pong", "--algo", "dqn"], "not supported"),
    (["--env", "Pong", "--device", "tpu9"], "unknown device 'tpu9'"),
    *([(["--env", "Pong", "--device", "cuda"], "torch sees no CUDA GPU")] if not torch.cuda.is_available() else []),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    result = _cli("train", "--log-folder", str(tmp_path / "logs"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()


def test_unwritable_log_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    result = _cli("train", "--env", "Pong", "--log-folder", str(blocker / "logs"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot write to log folder" in result.stderr
    assert blocker.read_text() == "I am a file"


def test_help_says_frequencies_count_total_steps():
    result = _cli("train", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "total environment steps" in text and "counted across all envs" in text


def test_module_entry_point():
    assert "train" in _cli("--help").stdout


def test_an_empty_evaluation_history_is_written_and_read(tmp_path):
    """A run resumed from a checkpoint taken before its first evaluation writes an empty history."""
    EvalHistory().save(tmp_path)
    history = EvalHistory.load(tmp_path)
    assert history.timesteps == [] and history.best == -np.inf
