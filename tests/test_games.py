"""Game names, ids, the study's game sets and reference scores (one source of truth: dimattn.games)."""

import pytest

from dimattn.errors import DimattnError
from dimattn.games import (
    AXIS_GROUPS,
    AXIS_OF_GAME,
    SEED56,
    atari57,
    canonical_game,
    reference_scores,
    resolve_games,
    rom_id,
    v4_id,
)


def test_seed56_and_groups():
    assert len(SEED56) == 56 and len(set(SEED56)) == 56
    assert [len(g) for g in AXIS_GROUPS.values()] == [12, 18, 5, 5, 16]
    assert AXIS_OF_GAME["Pong"] == "horizontal" and AXIS_OF_GAME["Breakout"] == "vertical"
    assert AXIS_OF_GAME["Alien"] == "other"
    assert set(atari57()) - set(SEED56) == {"Surround"}


def test_reference_scores():
    scores = reference_scores()
    assert len(scores) == 57
    assert scores["Alien"] == (227.8, 7127.7)


@pytest.mark.parametrize("name", ["Pong", "pong", "PongNoFrameskip-v4", "ALE/Pong-v5", "Pong-v5"])
def test_ids(name):
    assert canonical_game(name) == "Pong" and v4_id(name) == "PongNoFrameskip-v4"


def test_rom_ids_and_sets():
    assert rom_id("MontezumaRevenge") == "montezuma_revenge"
    assert resolve_games("seed56") == SEED56
    assert resolve_games("Pong, breakout") == ("Pong", "Breakout")
    assert resolve_games(["atari57"]) == atari57()


def test_unknown_game():
    with pytest.raises(DimattnError, match="did you mean Pong"):
        canonical_game("Pongg")
