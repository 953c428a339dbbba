"""``dimattn explain``: measures and panels (SPEC §6) for observation files or observations met in play.

Writes, per observation, ``state_<name>.png`` (:mod:`dimattn.interpret.panels`), and for the whole set
``explain.npz`` (raw arrays), ``measures.csv``, ``orientation.md`` and ``orientation.png``. What is
computed lives in :mod:`dimattn.interpret.measures`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dimattn.agents.networks import OBS_SHAPE, ActorCritic
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_savez, atomic_write_text
from dimattn.interpret.measures import Explanation, explain, side
from dimattn.interpret.panels import orientation_figure, state_representation_figure

#: An orientation above +SIDE_MARGIN is called horizontal, below -SIDE_MARGIN vertical.
SIDE_MARGIN = 0.1
_NPY_MAGIC = b"\x93NUMPY"


def natural_key(text: str) -> list[object]:
    """Sort key that orders numbers by value: pong_2 before pong_10 (a shell's glob sorts them as text)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


# --------------------------------------------------------------------------- observations
#: The ten Pong observations of the published interpretability study, shipped with dimattn (made by
#: ``scripts/pong_observations.py``): ``obs`` (10, 4, 84, 84) uint8 and ``names`` pong_1 ... pong_10.
PONG_OBSERVATIONS = "data/pong_observations.npz"
#: The word that names them wherever observation files are expected (``--obs pong``; ``./pong`` is a file).
PONG = "pong"


def pong_observations() -> tuple[np.ndarray, list[str]]:
    """The shipped Pong observations: (10, 4, 84, 84) uint8 and their names."""
    from importlib import resources

    with resources.files("dimattn").joinpath(PONG_OBSERVATIONS).open("rb") as f, \
            np.load(f, allow_pickle=False) as data:
        return data["obs"], [str(n) for n in data["names"]]


def load_observations(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[str]]:
    """Read stacked observations from ``.npy`` files, or ``pong``: the ten shipped Pong observations.

    Each file holds uint8 of shape (4, 84, 84) or (n, 4, 84, 84). Returns (N, 4, 84, 84) uint8 and
    one name per observation (the file stem, with ``_<i>`` appended for files holding several).
    Files are taken in natural order of their paths (pong_1, pong_2, pong_10).
    """
    if [str(p) for p in paths] == [PONG]:
        return pong_observations()
    arrays, names = [], []
    for p in sorted(map(Path, paths), key=lambda q: natural_key(str(q))):
        if not p.is_file():
            raise DimattnError(f"observation file {p} does not exist; give .npy files of stacked frames")
        with open(p, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
        if head != _NPY_MAGIC:  # e.g. a Markdown file: say so, rather than pass on NumPy's pickle error
            what = " (it is a zip archive, e.g. .npz)" if head.startswith(b"PK") else ""
            raise DimattnError(f"observation file {p} is not a NumPy .npy file{what}; "
                               "give uint8 .npy files of stacked frames")
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as exc:  # not a .npy, truncated, or an object array (needs pickle)
            raise DimattnError(f"cannot read observation file {p}: {type(exc).__name__}: {exc}".splitlines()[0]) \
                from None
        if not isinstance(a, np.ndarray):
            a.close()
            raise DimattnError(f"{p} holds several arrays (.npz); give one .npy array per file")
        if a.dtype != np.uint8:
            raise DimattnError(f"{p} holds {a.dtype} observations; expected uint8 stacked frames in 0..255")
        if a.shape == OBS_SHAPE:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != OBS_SHAPE or a.shape[0] == 0:
            raise DimattnError(f"{p} has shape {a.shape}; expected (4, 84, 84) or (n, 4, 84, 84) stacked frames")
        arrays.append(a)
        names += [p.stem] if len(a) == 1 else [f"{p.stem}_{i}" for i in range(len(a))]
    if not arrays:
        raise DimattnError("no observation files given")
    return np.concatenate(arrays), names

# --------------------------------------------------------------------------- outputs
def save_arrays(path: str | Path, obs: np.ndarray, names: Sequence[str], explanations: Sequence[Explanation]) -> None:
    """One ``.npz``: ``obs`` (N,4,84,84), ``names`` (N,), ``labels`` (A,), and per agent label L:
    ``L/h1``, ``L/attention``, ``L/block``, ``L/logits``, ``L/action``, ``L/gradcam``,
    ``L/orientation``, ``L/complementarity`` with the shapes of :class:`Explanation`, and ``L/maps/<key>``
    for each attention map the agent's block provides."""
    arrays: dict[str, np.ndarray] = {"obs": obs, "names": np.array(names),
                                     "labels": np.array([e.label for e in explanations])}
    for e in explanations:
        for key in ("h1", "attention", "block", "logits", "action", "gradcam", "orientation", "complementarity"):
            arrays[f"{e.label}/{key}"] = getattr(e, key)
        for key, value in e.attention_maps.items():  # the block's own attention maps (registry maps function)
            arrays[f"{e.label}/maps/{key}"] = value
    atomic_savez(path, **arrays)


def measures_rows(names: Sequence[str], explanations: Sequence[Explanation]) -> list[dict[str, object]]:
    """One row per (observation, agent): observation, agent, action, orientation, side, complementarity."""
    return [
        {"observation": n, "agent": e.label, "action": e.action_name(i),
         "orientation": float(e.orientation[i]), "side": side(float(e.orientation[i])),
         "complementarity": float(e.complementarity[i])}
        for e in explanations for i, n in enumerate(names)
    ]


def write_measures_csv(path: str | Path, names: Sequence[str], explanations: Sequence[Explanation]) -> None:
    rows = measures_rows(names, explanations)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:+.3f}".replace("-0.000", "+0.000")  # no signed zeros in tables


def summary(e: Explanation) -> dict[str, object]:
    """Mean / min / max orientation, its side, and mean complementarity of one agent over the observations."""
    o, c = e.orientation, e.complementarity
    finite = np.isfinite(o)
    mean = float(o[finite].mean()) if finite.any() else float("nan")
    return {"agent": e.label, "orientation": mean,
            "min": float(o[finite].min()) if finite.any() else float("nan"),
            "max": float(o[finite].max()) if finite.any() else float("nan"),
            "side": side(mean),
            "complementarity": float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")}


def markdown_table(names: Sequence[str], explanations: Sequence[Explanation]) -> str:
    """The orientation table (agents × observations, then mean and side) and the complementarity table."""
    head = "| agent | " + " | ".join(names) + " | mean | side |"
    rule = "|---" * (len(names) + 3) + "|"
    lines = ["Attention orientation O (+1 horizontal, -1 vertical, 0 as H1):", "", head, rule]
    for e in explanations:
        s = summary(e)
        lines.append(f"| {e.label} | " + " | ".join(_fmt(v) for v in e.orientation)
                     + f" | {_fmt(s['orientation'])} | {s['side']} |")
    lines += ["", "Complementarity r(H1, attention) (negative: cold H1 regions are hot in the attention map):", "",
              "| agent | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for e in explanations:
        lines.append(f"| {e.label} | " + " | ".join(_fmt(v) for v in e.complementarity)
                     + f" | {_fmt(summary(e)['complementarity'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the `dimattn explain` command
def check_same_game(checkpoints: Sequence[str | Path], models: Sequence[ActorCritic]) -> None:
    """Refuse to compare agents trained on different games: their maps of one observation do not compare
    (each sees a game it never learned). Checkpoints that do not record their game are let through."""
    from dimattn.games import canonical_game

    games = {}
    for c, m in zip(checkpoints, models):
        game = m.meta.get("game")
        if game:
            try:
                games.setdefault(canonical_game(str(game)), Path(c).name)
            except DimattnError:
                games.setdefault(str(game), Path(c).name)
    if len(games) > 1:
        listed = ", ".join(f"{name} ({game})" for game, name in games.items())
        raise DimattnError(f"--compare takes agents of one game, but these were trained on different games: "
                           f"{listed}; compare the agents of one game at a time")


def _unique(labels: Sequence[str]) -> list[str]:
    """Make labels unique by numbering repeats: [CWCA, CWCA, NA] -> [CWCA-1, CWCA-2, NA]."""
    out = []
    for i, lab in enumerate(labels):
        n = labels.count(lab)
        out.append(f"{lab}-{labels[:i + 1].count(lab)}" if n > 1 else lab)
    return out


def _game_action_meanings(model: ActorCritic, game: str | None) -> list[str]:
    """The game's action names if ``game`` (or the checkpoint's recorded game) fits the model, else []."""
    from dimattn.envs.ale import action_meanings
    from dimattn.games import canonical_game

    game = game or model.meta.get("game")
    if not game:
        return []
    try:
        names = action_meanings(canonical_game(str(game)))
    except DimattnError:  # a recorded game name ale-py does not know: show action numbers
        return []
    return names if len(names) == model.config["n_actions"] else []


def explain_command(checkpoints: Sequence[str | Path], out: str | Path, agent: str | None = None,
                    obs_files: Sequence[str | Path] | None = None, game: str | None = None, n_obs: int = 4,
                    every: int = 25, seed: int = 0, console=None) -> list[Explanation]:
    """``dimattn explain``: load the agents, get observations, write figures, arrays and tables to ``out``."""
    from rich.console import Console
    from rich.table import Table

    from dimattn.agents.checkpoints import load_agent
    from dimattn.console import progress
    from dimattn.games import canonical_game
    from dimattn.interpret.play import check_game_fits, collect_observations

    console = console or Console(stderr=False)
    if agent is not None and len(checkpoints) > 1:
        raise DimattnError("--agent applies to a single --checkpoint; --compare reads each agent from its file")
    models = [load_agent(c, agent) for c in checkpoints]
    check_same_game(checkpoints, models)
    if game is not None:
        game = canonical_game(game)
        for c, m in zip(checkpoints, models):
            check_game_fits(m, game, what=f"checkpoint {c}")
        obs, names = collect_observations(models[0], game, n_obs, seed=seed, every=every)
    elif obs_files:
        obs, names = load_observations(obs_files)
    else:
        raise DimattnError("give observations: --obs FILE.npy ... or --env GAME")
    names = _unique(names)
    labels = _unique([m.agent for m in models])
    explanations = [explain(m, obs, lab, _game_action_meanings(m, game)) for m, lab in zip(models, labels)]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(progress(names, desc="figures", unit="obs", disable=len(names) < 3)):
        state_representation_figure(obs, name, explanations, i, out / f"state_{name}.png")
    save_arrays(out / "explain.npz", obs, names, explanations)
    write_measures_csv(out / "measures.csv", names, explanations)
    atomic_write_text(out / "orientation.md", markdown_table(names, explanations))
    written = ["explain.npz", "measures.csv", "orientation.md"]
    if any(e.agent != "NA" for e in explanations):
        orientation_figure(names, explanations, out / "orientation.png")
        written.append("orientation.png")

    table = Table(title=f"Attention orientation and complementarity on {len(names)} observation(s)")
    for col in ("agent", "O mean", "O min", "O max", "side", "r mean"):
        table.add_column(col, justify="left" if col in ("agent", "side") else "right")
    for e in explanations:
        s = summary(e)
        table.add_row(e.label, _fmt(s["orientation"]), _fmt(s["min"]), _fmt(s["max"]), str(s["side"]),
                      _fmt(s["complementarity"]))
    console.print(table)
    console.print("O: +1 horizontal, -1 vertical, 0 as H1; r < 0: cold H1 regions are hot in the attention map.")
    console.print(f"wrote {len(names)} figure(s), {', '.join(written)} to {out}")
    for e in explanations:
        if e.attention_maps:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in e.attention_maps.items())
            console.print(f"{e.label}: its block's attention maps are in explain.npz ({e.label}/maps/...): {shapes}")
    if "orientation.png" not in written:
        console.print("no orientation.png: NA has no attention block, so it has no orientation to plot; "
                      "compare it with an attention agent (--compare NA.zip CWCA.zip)")
    return explanations
