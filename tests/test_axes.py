"""dimattn axes / recommend: the measure on synthetic frames, one real game end to end, the recommendation
from the published results, and one-line errors for bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dimattn import cli
from dimattn.analysis import stats
from dimattn.axes.control import FIRE, MOVE, action_pairs, control_of, probe
from dimattn.axes.decide import cascade
from dimattn.axes.measure import LABELS, label_of, measure
from dimattn.axes.play import play
from dimattn.axes.recommend import published_wins_csv, shipped_wins
from dimattn.envs.ale import make_game
from dimattn.games import AXIS_OF_GAME, SEED56, measured_axes
from shared_data import SHARED

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = SHARED / "data" / "seed-results" / "post_processed_results_56.pkl"


def bounce(t: np.ndarray, lo: int, hi: int, speed: int) -> np.ndarray:
    """Positions (T,) of a point moving at ``speed`` px/frame back and forth between lo and hi."""
    span = hi - lo
    p = (t * speed) % (2 * span)
    return lo + np.where(p < span, p, 2 * span - p)


def frames_with(objects, n: int = 600, flicker: bool = False) -> np.ndarray:
    """Frames (n, 210, 160) on a grey field with 4×4 objects; ``objects`` are functions t -> (x, y)."""
    frames = np.full((n, 210, 160), 7, np.uint8)
    frames[:, 180:, :] = 3  # a static band: not foreground
    t = np.arange(n)
    for k, path in enumerate(objects):
        x, y = path(t)
        for i in range(n):
            if flicker and (i + k) % 2:  # drawn on alternate frames, as many Atari games do
                continue
            frames[i, y[i]:y[i] + 4, x[i]:x[i] + 4] = 40 + k
    return frames


def test_an_object_moving_horizontally_is_horizontal():
    m = measure(frames_with([lambda t: (bounce(t, 10, 140, 2), np.full_like(t, 80))]))
    assert m.label == "horizontal" and m.h_share > 0.95 and m.confidence == 1.0 and m.n_tracks >= 1


def test_an_object_moving_vertically_is_vertical_even_when_it_flickers():
    m = measure(frames_with([lambda t: (np.full_like(t, 70), bounce(t, 20, 170, 2))], flicker=True))
    assert m.label == "vertical" and m.h_share < 0.05


def test_objects_moving_along_both_axes_are_other():
    m = measure(frames_with([lambda t: (bounce(t, 10, 140, 2), np.full_like(t, 40)),
                             lambda t: (np.full_like(t, 100), bounce(t, 60, 170, 2))]))
    assert m.label == "other" and 0.35 < m.h_share < 0.65


def test_jitter_counts_less_than_persistent_motion():
    # A randomly steered object (random walk of ±3 px) beside a ball crossing the screen horizontally.
    rng = np.random.default_rng(0)
    walk = np.clip(100 + np.cumsum(rng.choice([-3, 3], 600)), 30, 170)
    m = measure(frames_with([lambda t: (bounce(t, 10, 140, 1), np.full_like(t, 20)),
                             lambda t: (np.full_like(t, 120), walk[t])]))
    assert m.label == "horizontal"


def test_label_rule():
    assert [label_of(h) for h in (0.9, 0.67, 0.5, 0.34, 0.1)] == \
        ["horizontal", "horizontal", "other", "other", "vertical"]


def test_action_pairs_compare_each_action_with_the_same_action_without_it():
    move, fire = action_pairs(["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"])
    assert move == [(2, 0), (3, 0)] and fire == [(1, 0), (4, 2), (5, 3)]
    assert action_pairs(["NOOP", "FIRE", "RIGHTFIRE", "LEFTFIRE"]) == ([], [(1, 0)])  # Atlantis: no RIGHT alone


@pytest.mark.parametrize(("game", "moves_along_x"), [("Breakout", True), ("Pong", False)])
def test_the_probes_find_the_player_and_how_it_moves(game, moves_along_x):
    # Breakout's paddle moves left-right, Pong's up-down (its actions are called RIGHT and LEFT all the same).
    control = play(game, 150, probes=4).control
    ex, ey = control.energy(MOVE)
    assert control.n_probes == 4 and ex + ey > 0
    assert (ex / (ex + ey) > 0.95) if moves_along_x else (ey / (ex + ey) > 0.95)


def test_the_probes_see_the_shots_go_up_in_space_invaders():
    control = play("SpaceInvaders", 150, probes=4).control
    votes_h, votes_v = control.votes(FIRE)
    assert votes_v >= 2 and votes_h == 0


def test_a_trained_agents_fire_weighs_as_much_as_it_presses_fire():
    env = make_game("SpaceInvadersNoFrameskip-v4", repeat_action_probability=0.0, full_action_space=False)
    env.reset(seed=0)
    ale, actions, meanings = env.unwrapped.ale, env.unwrapped._action_set, env.unwrapped.get_action_meanings()
    for _ in range(200):
        ale.act(actions[0])
    seen = []

    def presses(name):
        def policy(stack):
            seen.append((stack.shape, stack.dtype))
            return np.eye(len(meanings))[meanings.index(name)]  # all its probability on one action
        return policy

    state = ale.cloneState()
    runs = {}
    for name, policy in (("random", None), ("FIRE", presses("FIRE")), ("NOOP", presses("NOOP"))):
        ale.restoreState(state)
        runs[name] = control_of(probe(ale, actions, meanings, 0, policy), 1)
    env.close()
    assert seen == [((4, 84, 84), np.uint8)] * 2  # the agent saw the study's observation after the pause
    for name in ("FIRE", "NOOP"):  # which way the player can move is the game's: moves always weigh 1
        assert np.array_equal(runs[name].energy(MOVE), runs["random"].energy(MOVE))
    fire_all, fire_only = runs["random"].energy(FIRE).sum(), runs["FIRE"].energy(FIRE).sum()
    assert 0 < fire_only < fire_all  # only FIRE-vs-NOOP counts, not RIGHTFIRE-vs-RIGHT or LEFTFIRE-vs-LEFT
    assert runs["NOOP"].energy(FIRE).sum() == 0 and tuple(runs["NOOP"].votes(FIRE)) == (0, 0)  # it never fires


def test_the_rule_asks_shots_then_the_player_then_motion():
    assert cascade(0.9, 0.5, 0.1) == ("horizontal", "shots")
    assert cascade(0.5, 0.99, 0.9) == ("vertical", "player")      # shots undecided; a paddle confined to x
    assert cascade(None, 0.02, 0.1) == ("horizontal", "player")   # confined to y: plays along x
    assert cascade(None, 0.9, 0.1) == ("vertical", "motion")      # not confined enough: the motion decides
    assert cascade(None, None, 0.5) == ("other", "motion")


def test_one_real_game_end_to_end(tmp_path):
    out = tmp_path / "axes"
    proc = subprocess.run([sys.executable, "-m", "dimattn", "axes", "Breakout", "--steps", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Breakout" in proc.stdout and "confidence" in proc.stdout and " by " in proc.stdout
    rows = list(csv.DictReader((out / "axes.csv").open()))
    assert [r["game"] for r in rows] == ["Breakout"] and rows[0]["label"] in LABELS
    assert rows[0]["published_label"] == "vertical" and 0.0 <= float(rows[0]["motion_h"]) <= 1.0
    assert rows[0]["source"] in ("shots", "player", "motion") and int(rows[0]["probes"]) == 20
    png = (out / "Breakout.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_shipped_measured_labels_cover_the_56_games():
    labels = measured_axes()
    assert sorted(labels) == sorted(SEED56) and set(labels.values()) <= set(LABELS)
    align = stats.alignment({"Pong": ("CWCA",), "Breakout": ("NA",)}, ("NA", "CWCA"), groups=labels)
    assert set(align["group"]) == {labels["Pong"], labels["Breakout"]}


def test_alignment_takes_another_grouping():
    won = {"Pong": ("CWCA",), "Breakout": ("NA", "CWCA"), "Pooyan": ("NA",)}
    align = stats.alignment(won, ("NA", "CWCA"), groups={"Pong": "x", "Breakout": "x"}).set_index(["group", "agent"])
    assert align.loc[("x", "CWCA"), "wins"] == 2 and align.loc[("x", "NA"), "n_games"] == 2
    assert align.loc[(stats.UNCLASSIFIED, "NA"), "wins"] == 1


@pytest.mark.skipif(not PUBLISHED.exists(), reason="the published results are not in this workplace")
def test_shipped_wins_are_regenerated_from_the_published_results():
    shipped = (ROOT / "src" / "dimattn" / "data" / "published_wins.csv").read_text()
    assert published_wins_csv(PUBLISHED) == shipped


def test_recommend_a_seed_game(capsys):
    assert cli.main(["recommend", "Pong"]) == 0
    out = capsys.readouterr().out
    # Count the horizontal games' winners straight from the shipped summary, without the analysis code.
    counts = Counter(a for g, w in shipped_wins().items() if AXIS_OF_GAME[g] == "horizontal" for a in w)
    best, n = counts.most_common(1)[0]
    assert "axis horizontal (the published study's label" in out
    assert f"recommended agent: {best} — horizontal: {best} won {n} of the 12 horizontal games" in out
    assert "runner-up:" in out and "published_wins.csv" in out


@pytest.mark.skipif(not PUBLISHED.exists(), reason="the published results are not in this workplace")
def test_recommend_a_game_outside_the_56_measures_it(capsys):
    assert cli.main(["recommend", "Pooyan", "--steps", "200", "--results", str(PUBLISHED)]) == 0
    out = capsys.readouterr().out
    assert "measured: Pooyan is not among the study's 56 games; 200 random steps" in out
    assert f"computed from {PUBLISHED}" in out and "recommended agent:" in out


@pytest.fixture(scope="module")
def breakout_checkpoint(tmp_path_factory) -> Path:
    """An SB3 checkpoint of our network (at initialisation) that records it was made for Breakout."""
    from stable_baselines3 import PPO

    from dimattn.agents.checkpoints import save_sb3
    from dimattn.agents.networks import SelfAttnCNN
    from dimattn.envs.ale import make_env

    env = make_env("Breakout", 1, seed=0, training=False)
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=SelfAttnCNN,
                                   features_extractor_kwargs=dict(self_attn="CWCA"), net_arch=[]))
    path = save_sb3(model, tmp_path_factory.mktemp("ckpt") / "breakout.zip",
                    meta={"agent": "CWCA", "game": "Breakout", "ada_attn": None, "norm_softmax": True})
    env.close()
    return path


def test_a_trained_agent_plays(breakout_checkpoint, capsys):
    assert cli.main(["axes", "Breakout", "--checkpoint", str(breakout_checkpoint), "--steps", "150"]) == 0
    assert "Breakout" in capsys.readouterr().out


def test_checkpoints_name_their_games(breakout_checkpoint, tmp_path, capsys):
    # No game named: each checkpoint plays the game it records (a study's final models, say).
    out = tmp_path / "out"
    assert cli.main(["axes", "--checkpoint", str(breakout_checkpoint), "--steps", "150", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("Breakout ")
    rows = list(csv.DictReader((out / "axes.csv").open()))
    assert [(r["game"], r["policy"]) for r in rows] == [("Breakout", "CWCA")]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(breakout_checkpoint, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    out = str(tmp_path / "out")
    cases = [
        (["axes", "Pongg", "--out", out], "unknown Atari game"),
        (["axes", "Pong", "--checkpoint", str(breakout_checkpoint), "--out", out], "trained on Breakout, not Pong"),
        (["axes", "Pong", "--steps", "0", "--out", out], "--steps: must be at least 1"),
        (["axes", "Pong", "--steps", "10", "--out", str(a_file / "sub")], "is not a directory"),
        (["axes", "--out", out], "no game given"),
        (["axes", "Breakout", "Pong", "--checkpoint", str(breakout_checkpoint), "--out", out],
         "no checkpoint plays Pong"),
        (["axes", "--checkpoint", str(breakout_checkpoint), str(breakout_checkpoint), "--out", out],
         "two checkpoints play Breakout"),
        (["axes", "--checkpoint", str(a_file), "--out", out], str(a_file)),
        (["recommend", "Pongg"], "unknown Atari game"),
        (["recommend", "Pooyan", "--steps", "0"], "--steps: must be at least 1"),
        (["recommend", "Pong", "--results", str(a_file)], "neither a folder of runs nor a results pickle"),
    ]
    for args, message in cases:
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not Path(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_report_has_the_alignment_with_measured_axes_beside_the_seeds(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from analysis_fixtures import write_study
    from dimattn.analysis.report import build_report

    study = write_study(tmp_path / "study", games=("Pong", "Breakout", "Boxing"), seeds=(0, 1))
    out = tmp_path / "report"
    build_report(study, out, reps=5, seed=0, progress=False)
    seeds = list(csv.DictReader((out / "tables" / "alignment.csv").open()))
    measured = list(csv.DictReader((out / "tables" / "alignment_measured.csv").open()))
    labels = measured_axes()
    assert {r["group"] for r in measured} == {labels[g] for g in ("Pong", "Breakout", "Boxing")}
    for rows in (seeds, measured):  # every game counted once per table
        assert sum(int(n) for n in {r["group"]: r["n_games"] for r in rows}.values()) == 3
    assert "axes measured by dimattn axes" in (out / "index.html").read_text()
