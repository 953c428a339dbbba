"""dimattn record: whole games as GIF/MP4 with the score in the corner and an optional saliency overlay."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from dimattn import cli
from dimattn.interpret.record import captioned, saliency_overlay


def make_checkpoint(path: Path, game: str, agent: str, record_game: bool = True) -> Path:
    """An SB3 PPO checkpoint of our network (at initialisation) built on a real ALE env."""
    from stable_baselines3 import PPO

    from dimattn.agents.checkpoints import save_sb3
    from dimattn.agents.networks import SelfAttnCNN
    from dimattn.envs.ale import make_env

    env = make_env(game, 1, seed=0, training=False)
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=SelfAttnCNN,
                                   features_extractor_kwargs=dict(self_attn=agent), net_arch=[]))
    save_sb3(model, path, meta={"agent": agent, "game": game if record_game else None, "ada_attn": None,
                                "norm_softmax": True})
    env.close()
    return path


@pytest.fixture(scope="module")
def breakout(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "breakout_swa.zip", "Breakout", "SWA")


@pytest.fixture(scope="module")
def pong(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "pong_cwca.zip", "Pong", "CWCA", record_game=False)


def test_a_whole_game_is_written_as_a_readable_gif(breakout, tmp_path, capsys):
    out = tmp_path / "game.gif"
    assert cli.main(["record", "--checkpoint", str(breakout), "--episodes", "1", "--scale", "1",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SWA on Breakout, scores" in printed
    frames = iio.imread(out)  # (T, 224, 160, 3): the 210x160 screen plus a 14-pixel caption band
    assert frames.ndim == 4 and frames.shape[1:] == (224, 160, 3) and frames.dtype == np.uint8
    # A random Breakout agent loses its five lives within a few hundred steps: the game really ended.
    assert 50 < len(frames) < 3000
    assert frames[:, :210].std(axis=0).max() > 0  # the screen changes
    assert frames[:, 210:].max() > 200  # white caption text
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_saliency_mp4_with_a_step_limit(pong, tmp_path, capsys):
    out = tmp_path / "pong.mp4"
    rc = cli.main(["record", "--checkpoint", str(pong), "--env", "Pong", "--saliency", "--max-steps", "20",
                   "--out", str(out)])
    assert rc == 0
    frames = np.stack(list(iio.imiter(out, plugin="FFMPEG")))
    # 20 steps plus one second (15 frames) holding the final score; scale 2: (2*224, 2*160).
    assert frames.shape == (35, 448, 320, 3)


def test_recording_is_reproducible_for_a_seed(pong, tmp_path):
    paths = [tmp_path / "a.gif", tmp_path / "b.gif", tmp_path / "c.gif"]
    for p, seed in zip(paths, (3, 3, 4)):
        assert cli.main(["record", "--checkpoint", str(pong), "--env", "Pong", "--max-steps", "30", "--seed",
                         str(seed), "--scale", "1", "--out", str(p)]) == 0
    a, b, c = (iio.imread(p) for p in paths)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_saliency_overlay_and_caption():
    rng = np.random.default_rng(0)
    screen = rng.integers(0, 255, (210, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(saliency_overlay(screen, np.zeros((84, 84))), screen)  # nothing salient
    hot = np.zeros((84, 84))
    hot[:, 42:] = 1.0  # the right half is salient
    blended = saliency_overlay(screen, hot)
    assert np.array_equal(blended[:, :70], screen[:, :70]) and not np.array_equal(blended[:, 90:], screen[:, 90:])
    frame = captioned(screen, "episode 1/1  score 3", "CWCA", scale=2)
    assert frame.shape == (448, 320, 3)
    np.testing.assert_array_equal(frame[:420:2, ::2], screen)  # nearest upscaling keeps the screen intact
    assert frame[420:].max() == 255  # caption text


def test_record_bad_input_is_one_line_and_exit_2(pong, breakout, tmp_path, capsys):
    text = tmp_path / "model.zip"
    text.write_text("not a model")
    cases = [
        (["--checkpoint", str(pong), "--env", "Pong", "--out", str(tmp_path / "x.avi")], ".gif or .mp4"),
        (["--checkpoint", str(pong), "--out", str(tmp_path / "x.gif")], "pass --env"),
        (["--checkpoint", str(pong), "--env", "Breakout", "--out", str(tmp_path / "x.gif")], "4 actions"),
        (["--checkpoint", str(breakout), "--episodes", "0", "--out", str(tmp_path / "x.gif")], "at least 1"),
        (["--checkpoint", str(text), "--env", "Pong", "--out", str(tmp_path / "x.gif")], "not a checkpoint"),
    ]
    for args, message in cases:
        assert cli.main(["record", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not list(tmp_path.glob("x.*"))
