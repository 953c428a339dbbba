"""Going on with a run from the command line (dimattn.engines.resume): ``-i/--trained-agent MODEL.zip`` continues
a dimattn checkpoint into a new run folder equal, bit for bit on the CPU, to the run that was never interrupted;
``--resume RUN_DIR`` picks a stopped run up in its own folder (the study's resume path); the "stopped
(resumable)" line names that command; bad input is one line before any run folder exists.

Training is real and tiny (Breakout, NA, 256 steps, both engines).
"""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dimattn.agents.checkpoints import load_tensors
from dimattn.cli import main
from dimattn.engines.rundir import EvalHistory, checkpoints

FINAL = "BreakoutNoFrameskip-v4.zip"


def hp(engine: str) -> list[str]:
    if engine == "fast":
        return ["n_envs:4", "n_steps:32", "batch_size:64"]
    return ["n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1"]


def cli_train(folder: Path, engine: str, *extra: str, save_freq: int = 128) -> int:
    return main(["train", "--env", "Breakout", "--agent", "NA", "--seed", "5", "-n", "256", "--eval-freq", "128",
                 "--eval-episodes", "1", "--save-freq", str(save_freq), "--engine", engine, "--device", "cpu",
                 "-f", str(folder), "--hyperparams", *hp(engine), *extra])


def state(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: load_tensors(zf.read(n), n) for n in zf.namelist() if n.endswith((".pth", ".pt"))}


@pytest.mark.parametrize("engine", ["fast", "sb3"])
def test_trained_agent_continues_as_the_run_resumed_from_that_checkpoint(tmp_path, engine, capsys):
    """Run W trains 256 steps with a checkpoint at 128. K is W as if killed after 128 (its later checkpoint and
    final model gone), picked up by `--resume K`; C is a new run made by `-i W/rl_model_128_steps.zip`. C ends
    where K ends, bit for bit: the same weights, optimizer, RNG states and evaluations. (Neither equals W
    itself: a checkpoint holds no emulator state, so every resume starts its envs afresh; docs/tracking.md.)"""
    import shutil

    assert cli_train(tmp_path / "w", engine) == 0
    whole = tmp_path / "w" / "ppo" / "BreakoutNoFrameskip-v4_1"
    killed = tmp_path / "killed"
    shutil.copytree(whole, killed)
    for name in ("rl_model_256_steps.zip", FINAL):
        (killed / name).unlink()
    assert main(["train", "--resume", str(killed), "--device", "cpu"]) == 0
    model = whole / "rl_model_128_steps.zip"
    assert cli_train(tmp_path / "c", engine, "-i", str(model)) == 0
    assert f"continuing from {model} at 128 steps" in capsys.readouterr().out
    cont = tmp_path / "c" / "ppo" / "BreakoutNoFrameskip-v4_1"
    torch.testing.assert_close(state(cont / FINAL), state(killed / FINAL), rtol=0, atol=0)
    a, b = EvalHistory.load(cont), EvalHistory.load(killed)
    assert a.timesteps == b.timesteps == [128, 256]
    np.testing.assert_array_equal(np.array(a.results), np.array(b.results))
    assert np.array_equal(a.results[0], EvalHistory.load(whole).results[0])  # the evaluation before the cut


def test_resume_picks_a_stopped_run_up_in_its_folder_and_the_stop_line_names_it(tmp_path, monkeypatch, capsys):
    """SIGUSR1 during the first rollout stops the run with a checkpoint at 128; the last line says
    `dimattn train --resume <run>`; that command finishes it in the same folder."""
    from dimattn.engines import ppo

    real = ppo.collect

    def collect(*args, **kwargs):
        out = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGUSR1)
        return out

    monkeypatch.setattr(ppo, "collect", collect)
    assert cli_train(tmp_path / "cut", "fast", save_freq=10_000) == 75
    monkeypatch.undo()
    run = tmp_path / "cut" / "ppo" / "BreakoutNoFrameskip-v4_1"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("dimattn train: stopped by SIGUSR1 at 128 steps, after saving rl_model_128_steps.zip "
                    f"(resumable); resume it: dimattn train --resume {run}")
    assert main(["train", "--resume", str(run), "--device", "cpu"]) == 0
    assert f"in {run} from rl_model_128_steps.zip" in capsys.readouterr().out
    assert [s for s, _ in checkpoints(run)] == [128] and (run / FINAL).is_file()
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # no second run folder
    assert EvalHistory.load(run).timesteps == [128, 256]
    # finished now: a second resume is refused in one line naming -i
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "the run is finished" in err and f"-i {run / FINAL}" in err


def test_an_sb3_zip_from_elsewhere_continues_from_its_weights_with_a_note(tmp_path, capsys):
    """A plain SB3 PPO zip with the study's network (no RNG states, no step count): its weights start a new run
    at step 0, on either engine."""
    from dimattn.agents.checkpoints import read_checkpoint
    from dimattn.engines.common import sb3_ppo
    from dimattn.engines.config import build_config

    sb3_ppo(build_config("Breakout", agent="NA").resolve(), n_actions=4).save(tmp_path / "sb3.zip")
    assert cli_train(tmp_path, "fast", "-i", str(tmp_path / "sb3.zip"), save_freq=0) == 0
    assert "note: sb3.zip is not a dimattn checkpoint: it lacks the RNG states and step count" in \
        capsys.readouterr().out
    run = tmp_path / "ppo" / "BreakoutNoFrameskip-v4_1"
    (start,) = (p for s, p in checkpoints(run) if s == 0)
    torch.testing.assert_close(state(start)["policy.pth"], state(tmp_path / "sb3.zip")["policy.pth"], rtol=0, atol=0)
    assert read_checkpoint(run / FINAL)[1]["num_timesteps"] == 256


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{tmp}/nowhere"], "no such run folder"),
    (["--resume", "{tmp}", "--env", "Pong"], "drop --env"),
    (["--env", "Breakout", "-i", "{tmp}/missing.zip"], "--trained-agent"),
    (["--env", "Breakout", "-i", "{fixture}"], "is a Pong model"),  # wrong game is checked before anything
    (["--env", "Pong", "--agent", "NA", "-i", "{fixture}"], "is a CWCA model"),
    (["--env", "Pong", "--agent", "CWCA", "--protocol", "machado", "-i", "{fixture}"], "does not fit"),
    (["--env", "Breakout", "--wandb-tags", "x"], "need --track"),
    (["--env", "Breakout", "--protocol", "atari"], "invalid choice"),
    (["--env", "Breakout", "--hyperparams", "env_kwargs:dict(sticky=1)"], "env_kwargs: unknown sticky"),
])
def test_bad_input_is_one_line_before_any_run_folder(tmp_path, argv, message, capsys):
    fixture = Path(__file__).parent / "fixtures" / "pong_cwca_v0.1.0.zip"
    argv = [a.format(tmp=tmp_path, fixture=fixture) for a in argv]
    assert main(["train", "-f", str(tmp_path / "logs"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "logs").exists()
