"""The newcomer's small ones (issue 31, item 7): an unknown option is reported by the (sub)command it was
given to, pointing to that command's own ``--help``, with the flag dimattn uses for RL Zoo's, SB3's or
CleanRL's name of the same thing, or the option it is a typo of."""

import pytest

from cli_helpers import assert_one_line, run


@pytest.mark.parametrize("argv,message", [
    (["train", "--env", "Pong", "--total-timesteps", "5"],
     "dimattn train: error: unrecognized arguments: --total-timesteps 5; for --total-timesteps dimattn uses "
     "-n/--n-timesteps (see dimattn train --help)"),
    (["train", "--env", "Pong", "--tb", "tb"], "for --tb dimattn uses -tb/--tensorboard-log"),
    (["train", "--env", "Pong", "--log-dir=logs"], "for --log-dir dimattn uses -f/--log-folder"),
    (["study", "init", "s", "--games", "Pong", "--n-eval-episodes", "3"],
     "dimattn study init: error: unrecognized arguments: --n-eval-episodes 3; for --n-eval-episodes dimattn uses "
     "--eval-episodes (see dimattn study init --help)"),
    (["study", "run", "s", "--chian", "3"], "--chian 3; did you mean --chain? (see dimattn study run --help)"),
    (["report", "published", "--quite"], "did you mean --quiet? (see dimattn report --help)"),
    (["compare", "runs", "--output", "o"], "for --output dimattn uses --out (see dimattn compare --help)"),
    (["agents", "extra"], "dimattn agents: error: unrecognized arguments: extra (see dimattn agents --help)"),
])
def test_an_unknown_option_points_to_its_command_and_the_flag_dimattn_uses(argv, message, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(argv, capsys)
    assert_one_line(rc, err, message)
    assert out == "" and list(tmp_path.iterdir()) == []


def test_a_flag_dimattn_has_no_counterpart_for_gets_no_hint(capsys):
    rc, _, err = run(["train", "--env", "Pong", "--zzzz"], capsys)
    assert_one_line(rc, err, "unrecognized arguments: --zzzz (see dimattn train --help)")


@pytest.mark.parametrize("argv,message", [
    (["--n-trials", "3"], "--n-trials sets a hyperparameter search, which train runs only with -optimize"),
    (["-optimize", "--eval-freq", "1000"], "-optimize searches with runs of its own, which --eval-freq would not"),
    (["-optimize", "--speed", "bf16=true"], "which --speed would not reach"),
])
def test_train_refuses_options_its_mode_would_ignore(argv, message, tmp_path, capsys):
    """A search's options without -optimize, and a run's options that -optimize's trials would not see."""
    rc, _, err = run(["train", "--env", "Pong", "-f", str(tmp_path / "logs"), *argv], capsys)
    assert_one_line(rc, err, message)
    assert not (tmp_path / "logs").exists()
