"""Atari games: names, environment ids, the study's game sets, axis groups (the published study's and the
measured) and reference scores.

This module is the one source of truth for every fact about games (SPEC §3, §5).
A game is named by its ALE CamelCase name (``Pong``); users may also give the v4 id
(``PongNoFrameskip-v4``) or the v5 id (``ALE/Pong-v5``).
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources

from dimattn.errors import DimattnError

# SPEC §5: the published study's manual classification of its 56 games by main axis of dynamics.
AXIS_GROUPS: dict[str, tuple[str, ...]] = {
    "horizontal": (
        "Bowling", "Boxing", "ChopperCommand", "Defender", "FishingDerby", "Frostbite",
        "KungFuMaster", "Pong", "RoadRunner", "Seaquest", "StarGunner", "YarsRevenge",
    ),
    "vertical": (
        "Assault", "Atlantis", "Breakout", "Centipede", "CrazyClimber", "DemonAttack",
        "DoubleDunk", "Gopher", "IceHockey", "Jamesbond", "Kangaroo", "NameThisGame",
        "Phoenix", "Riverraid", "Skiing", "SpaceInvaders", "Tennis", "Zaxxon",
    ),
    "other: no main axis": ("Hero", "Krull", "MontezumaRevenge", "Pitfall", "PrivateEye"),
    "other: first-person / 3D": ("BattleZone", "BeamRider", "Enduro", "Robotank", "Solaris"),
    "other: several axes": (
        "Alien", "Amidar", "Asterix", "Asteroids", "BankHeist", "Berzerk", "Freeway",
        "Gravitar", "MsPacman", "Qbert", "TimePilot", "Tutankham", "UpNDown", "Venture",
        "VideoPinball", "WizardOfWor",
    ),
}

#: The 56 games of the published study (the paper), alphabetical.
PAPER56: tuple[str, ...] = tuple(sorted(g for group in AXIS_GROUPS.values() for g in group))
SEED56 = PAPER56  # the name before the published study was called so in the product

#: The axis ("horizontal", "vertical" or "other") of each of the 56 games.
AXIS_OF_GAME: dict[str, str] = {
    g: ("other" if group.startswith("other") else group)
    for group, games in AXIS_GROUPS.items()
    for g in games
}


@lru_cache(maxsize=1)
def reference_scores() -> dict[str, tuple[float, float]]:
    """Random and human scores per game: ``{game: (random, human)}`` (Mnih 2015; Badia 2020)."""
    text = resources.files("dimattn").joinpath("data/atari_reference_scores.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in rows}


@lru_cache(maxsize=1)
def measured_axes() -> dict[str, str]:
    """{game: "horizontal" | "vertical" | "other"} of the 56 games as measured by ``dimattn axes`` (random policy).

    ``data/measured_axes.csv`` is the ``axes.csv`` of ``dimattn axes --games paper56 --out DIR`` (default
    steps and seed), copied; docs/axes.md gives the command and how far it agrees with the published labels.
    """
    text = resources.files("dimattn").joinpath("data/measured_axes.csv").read_text()
    return {r["game"]: r["label"] for r in csv.DictReader(text.splitlines())}


def atari57() -> tuple[str, ...]:
    """The 57 games of the Atari-57 benchmark (those with reference scores), alphabetical."""
    return tuple(sorted(reference_scores()))


#: Named game sets accepted wherever a list of games is: ``paper56`` is the published study's 56 games
#: (``seed56``, its earlier name, still accepted: study.yml files written with it load).
GAME_SETS = {"paper56": lambda: PAPER56, "atari57": atari57, "seed56": lambda: PAPER56}

_V4 = re.compile(r"^(?P<game>[A-Za-z0-9]+)NoFrameskip-v4$")
_V5 = re.compile(r"^(?:ALE/)?(?P<game>[A-Za-z0-9]+)-v5$")


def _known_games() -> dict[str, str]:
    """Lower-case name -> canonical name, for every game ale-py ships a ROM for."""
    names = set(atari57())
    try:  # ale-py knows more games than Atari-57 (e.g. Pooyan); accept any it has a ROM for.
        import ale_py.roms

        for rom in ale_py.roms.get_all_rom_ids():
            names.add("".join(part.capitalize() for part in rom.split("_")))
    except Exception:  # pragma: no cover - ale-py missing or changed its ROM API
        pass
    return {n.lower(): n for n in names}


def canonical_game(name: str) -> str:
    """``Pong`` / ``pong`` / ``PongNoFrameskip-v4`` / ``ALE/Pong-v5`` -> ``Pong``.

    Raises :class:`DimattnError` for a game ale-py does not know.
    """
    raw = name.strip()
    for pattern in (_V4, _V5):
        m = pattern.match(raw)
        if m:
            raw = m.group("game")
            break
    known = _known_games()
    game = known.get(raw.lower())
    if game is None:
        close = sorted(g for k, g in known.items() if k.startswith(raw.lower()[:3]))[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DimattnError(
            f"unknown Atari game {name!r}{hint}; give a game name such as Pong, "
            "a v4 id such as PongNoFrameskip-v4 or a v5 id such as ALE/Pong-v5"
        )
    return game


def v4_id(game: str) -> str:
    """``Pong`` -> ``PongNoFrameskip-v4`` (the env id the study's runs are named by)."""
    return f"{canonical_game(game)}NoFrameskip-v4"


def rom_id(game: str) -> str:
    """``MontezumaRevenge`` -> ``montezuma_revenge`` (ale-py's ROM name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", canonical_game(game)).lower()


def resolve_games(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A named set (``paper56``, ``atari57``), a comma-separated string or a list -> game names."""
    if isinstance(spec, str):
        if spec in GAME_SETS:
            return tuple(GAME_SETS[spec]())
        spec = [s for s in spec.split(",") if s.strip()]
    games: list[str] = []
    for item in spec:
        if item in GAME_SETS:
            games.extend(GAME_SETS[item]())
        else:
            games.append(canonical_game(item))
    return tuple(dict.fromkeys(games))
