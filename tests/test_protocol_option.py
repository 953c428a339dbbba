"""The protocol as an option (dimattn.envs.protocol): ``--protocol machado`` (sticky actions 0.25, full action
set, no loss-of-life signal, 108,000-frame cap) and ``env_kwargs`` build those envs on both engines (ALE through
Gymnasium + SB3's wrappers, and EnvPool), are recorded in config.yml, and `dimattn compare`'s protocol check names
them; a v5 id without --protocol keeps the study's settings and says so once.
"""

from __future__ import annotations

import pytest
import yaml
from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv

from dimattn.agents.checkpoints import read_checkpoint
from dimattn.cli import main
from dimattn.envs.ale import make_env
from dimattn.envs.pool import make_pool
from dimattn.envs.protocol import environment, using
from dimattn.errors import DimattnError


def wrappers(env) -> list:
    out, e = [], env
    while hasattr(e, "env"):
        out.append(type(e))
        e = e.env
    return out


def test_each_protocol_builds_its_envs_on_both_paths():
    for protocol, (n_actions, sticky, life) in {"study": (4, 0.0, True), "machado": (18, 0.25, False)}.items():
        with using(environment(protocol)):
            venv = make_env("Breakout", 1, seed=0, training=True)
            pool = make_pool("Breakout", 1, 0, training=True)
        try:
            ale = venv.unwrapped.envs[0].unwrapped.ale
            assert venv.action_space.n == n_actions and pool.action_space.n == n_actions
            assert ale.getFloat("repeat_action_probability") == pytest.approx(sticky)
            assert ale.getInt("max_num_frames_per_episode") == 108_000
            assert (EpisodicLifeEnv in wrappers(venv.unwrapped.envs[0])) is life
            assert pool.config["repeat_action_probability"] == pytest.approx(sticky)
            assert pool.config["episodic_life"] is life and pool.config["max_episode_steps"] == 27_000
        finally:
            venv.close()
            pool.close()
    with using(environment("study", {"repeat_action_probability": 0.1})):
        pool = make_pool("Breakout", 1, 0)
        assert pool.config["repeat_action_probability"] == pytest.approx(0.1) and pool.action_space.n == 4
        pool.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"sticky": 1}, "unknown sticky"),
    ({"repeat_action_probability": 2}, "from 0 to 1"),
    ({"full_action_space": "yes"}, "true or false"),
    ({"max_num_frames_per_episode": 0}, "from 4"),
])
def test_bad_env_kwargs_are_one_line(kwargs, message):
    with pytest.raises(DimattnError, match=message):
        environment("study", kwargs)


@pytest.mark.parametrize("engine", ["fast", "sb3"])
def test_machado_trains_on_both_engines_is_recorded_and_compare_names_it(tmp_path, engine, capsys):
    from dimattn.analysis.protocol import check_folder

    hp = ["n_envs:4", "n_steps:32", "batch_size:64"] if engine == "fast" else ["n_envs:2", "n_steps:64",
                                                                                "batch_size:64", "n_epochs:1"]
    assert main(["train", "--env", "ALE/Breakout-v5", "--protocol", "machado", "--engine", engine, "-n", "128",
                 "--eval-freq", "128", "--eval-episodes", "1", "--save-freq", "0", "--device", "cpu",
                 "-f", str(tmp_path), "--hyperparams", *hp, "env_kwargs:dict(max_num_frames_per_episode=20000)"]) == 0
    assert "note:" not in capsys.readouterr().out  # --protocol given: nothing to say about the v5 id
    run = tmp_path / "ppo" / "BreakoutNoFrameskip-v4_1"
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["protocol"] == "machado" and config["engine"] == engine
    assert config["environment"] == {"repeat_action_probability": 0.25, "full_action_space": True,
                                     "terminal_on_life_loss": False, "max_num_frames_per_episode": 20_000}
    assert read_checkpoint(run / "BreakoutNoFrameskip-v4.zip")[1]["n_actions"] == 18  # the full action set
    lines = "\n".join(check_folder(tmp_path))
    for expected in ("protocol machado (1 of 1 runs); published: study", "repeat_action_probability 0.25",
                     "full_action_space True", "terminal_on_life_loss False", "max_num_frames_per_episode 20,000"):
        assert expected in lines, lines


def test_a_v5_id_keeps_the_study_protocol_says_so_once_and_a_study_records_its_protocol(tmp_path, capsys):
    from dimattn.study.spec import Study

    assert main(["study", "init", str(tmp_path / "a"), "--games", "ALE/Breakout-v5,ALE/Pong-v5", "--agents", "NA",
                 "--seeds", "0", "-n", "1000"]) == 0
    out = capsys.readouterr().out
    assert out.count("note: ALE/Breakout-v5 is trained with the study's protocol") == 1 and "Pong-v5" not in out
    assert Study.load(tmp_path / "a").config(Study.load(tmp_path / "a").runs[0]).protocol == "study"
    assert main(["study", "init", str(tmp_path / "b"), "--games", "Breakout", "--agents", "NA", "--seeds", "0",
                 "-n", "1000", "--protocol", "machado"]) == 0
    study = Study.load(tmp_path / "b")
    assert study.spec.protocol == "machado" and study.config(study.runs[0]).environment["full_action_space"]
