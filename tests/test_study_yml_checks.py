"""A ``study.yml`` edited by hand is checked when the study loads: each bad value is one line and exit 2
with nothing written, promptly (an alias bomb is refused before it expands); a ``conf.yml`` that links out
of the study is refused; one written before "seed56" became "paper56" (the published study's games) loads.

As everywhere bad input is tested, in-process through ``dimattn.cli.main``.
"""

from __future__ import annotations

import argparse
import time

import pytest

from cli_helpers import assert_one_line, run
from dimattn import cli

SPEC = ("name: s\ngames: [Pong]\nagents: [NA]\nseeds: [0]\nn_timesteps: 256\neval_freq: 0\neval_episodes: 1\n"
        "save_freq: 0\nengine: auto\nhyperparams: {}\n")
BOMB = "".join(f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
HAND_EDITED = [
    # (what replaces a line of SPEC, or is appended; what the one line says)
    (("games: [Pong]", "games: 5"), "games must be a named set"),
    (("games: [Pong]", "games: [[Pong]]"), "games must be a list of strings such as [Pong, Breakout], but it holds"),
    (("games: [Pong]", "games: [1]"), "games must be a list of strings such as [Pong, Breakout], but it holds int 1"),
    (("agents: [NA]", "agents: 5"), "agents must be a string or a list of strings such as [NA, CWCA], got int 5"),
    (("agents: [NA]", "agents: [[NA]]"), "agents must be a list of strings such as [NA, CWCA], but it holds list"),
    (("seeds: [0]", "seeds: {a: 1}"), "seeds must be a list of integers or a range such as 0-4, got dict"),
    (("seeds: [0]", "seeds: 1.5"), "seeds must be a list of integers or a range such as 0-4, got float"),
    (("seeds: [0]", "seeds: [[0]]"), "seeds must be non-negative integers"),
    (("n_timesteps: 256", "n_timesteps: 100000000000000000000"), "above the limit of 1e+12"),
    (("eval_freq: 0", "eval_freq: [1]"), "eval_freq must be an integer"),
    (("engine: auto", "engine: [fast]"), "unknown engine"),
    (("hyperparams: {}", "hyperparams: [1, 2]"), "hyperparams must be a mapping of key: value"),
    (("hyperparams: {}", "hyperparams: {n_envs: [1, 2]}"), "hyperparams n_envs must be a number, true/false or text"),
    (("hyperparams: {}", "hyperparams: {1: 2}"), "hyperparams key 1 is not a name"),
    (("hyperparams: {}", "hyperparams: {policy_kwargs: {a: b}}"), "hyperparams policy_kwargs must be a number"),
    (("hyperparams: {}", "hyperparams: {n_envs: eight}"), "'eight'"),
    (("hyperparams: {}", "hyperparams: {n_envs: 2.5}"), "n-envs must be a positive integer, got 2.5"),
    (("hyperparams: {}", "hyperparams: {n_envs: true}"), "n-envs must be a positive integer, got True"),
    (("hyperparams: {}", "hyperparams: {learning_rate: -1}"), "learning_rate must be above 0"),
    (("", "conf_file: /etc/hostname\n"), "conf_file must be conf.yml, the study's own copy"),
    (("", "conf_file: ../../conf.yml\n"), "conf_file must be conf.yml"),
    (("", "conf_file: 5\n"), "conf_file must be conf.yml"),
    (("hyperparams: {}\n", f"hyperparams:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n{BOMB}"),
     "holds an alias (*name), which a study.yml may not use; write the value out (line 12"),
    (("games: [Pong]", "games: " + "[" * 50_000 + "]" * 50_000), "nested too deeply"),
    (("", "# " + "x" * 1_000_000 + "\n"), "more than a study.yml can be"),
    (("games: [Pong]", "games: [Pong"), "is not valid YAML for a study: expected ',' or ']'"),
]


@pytest.mark.parametrize("action", ["status", "run"])
@pytest.mark.parametrize("edit,message", HAND_EDITED, ids=[e[1][:40] for e, _ in HAND_EDITED])
def test_a_hand_edited_study_yml_is_checked_when_the_study_loads(edit, message, action, tmp_path, capsys):
    root = tmp_path / "s"
    root.mkdir()
    old, new = edit
    (root / "study.yml").write_text(SPEC.replace(old, new) if old else SPEC + new)
    start = time.monotonic()
    rc, _, err = run(["study", action, str(root)], capsys)
    assert_one_line(rc, err, message)
    assert time.monotonic() - start < 30  # promptly: an alias bomb is refused before it expands
    assert sorted(p.name for p in root.iterdir()) == ["study.yml"]  # nothing written


def test_a_conf_yml_that_links_out_of_the_study_is_refused(tmp_path, capsys):
    root = tmp_path / "s"
    root.mkdir()
    (tmp_path / "elsewhere.yml").write_text("atari:\n  n_envs: 2\n")
    (root / "conf.yml").symlink_to(tmp_path / "elsewhere.yml")
    (root / "study.yml").write_text(SPEC + "conf_file: conf.yml\n")
    for action in ("status", "run"):
        rc, _, err = run(["study", action, str(root)], capsys)
        assert_one_line(rc, err, f"{root / 'conf.yml'} leads out of the study folder")


def test_the_published_study_is_called_so_and_seed56_still_loads(tmp_path, capsys):
    from dimattn.games import PAPER56, resolve_games
    from dimattn.study.spec import Study

    assert resolve_games("paper56") == resolve_games("seed56") == PAPER56 and len(PAPER56) == 56
    root = tmp_path / "old"
    root.mkdir()
    (root / "study.yml").write_text(SPEC.replace("games: [Pong]", "games: seed56"))  # written before the rename
    assert len(Study.load(root, validate=False).spec.game_list) == 56
    helps = []

    def walk(parser: argparse.ArgumentParser) -> None:
        helps.append(" ".join(parser.format_help().split()))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
    walk(cli.build_parser())
    assert not [h[:60] for h in helps if "seed56" in h or "seed's" in h or "the seed " in h]
    assert any("paper56 (the published study's 56 games)" in h for h in helps)
