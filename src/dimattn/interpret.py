"""Looking inside a trained agent (SPEC §6): feature maps, attention maps, Grad-CAM, and two measures.

For a batch of N stacked observations (N, 4, 84, 84) uint8 this module gives

* ``h1``        (N, 16, 20, 20)  the rectified first-conv maps H1,
* ``attention`` (N, 16, 20, 20)  the attention block's output *before* the residual (zeros for NA),
* ``gradcam``   (N, 84, 84)      Grad-CAM of the chosen action's logit on the first conv, in [0, 1],
* ``orientation`` (N,)           whether the block's output is more horizontal or vertical than H1,
* ``complementarity`` (N,)       the spatial correlation of H1 activity and attention activity,

and draws them as the published "state representation" panel. The two measures are defined in
:func:`orientation` and :func:`complementarity` and documented in ``docs/interpret.md``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from dimattn.errors import DimattnError
from dimattn.fileio import atomic_path, atomic_savez, atomic_write_text
from dimattn.networks import OBS_SHAPE, ActorCritic

#: An orientation above +SIDE_MARGIN is called horizontal, below -SIDE_MARGIN vertical.
SIDE_MARGIN = 0.1


# --------------------------------------------------------------------------- observations
def load_observations(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[str]]:
    """Read stacked observations from ``.npy`` files.

    Each file holds uint8 of shape (4, 84, 84) or (n, 4, 84, 84). Returns (N, 4, 84, 84) uint8 and
    one name per observation (the file stem, with ``_<i>`` appended for files holding several).
    """
    arrays, names = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise DimattnError(f"observation file {p} does not exist; give .npy files of stacked frames")
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


def _as_input(obs: np.ndarray | torch.Tensor, model: ActorCritic) -> torch.Tensor:
    """(N, 4, 84, 84) uint8 -> float tensor in [0, 255] on the model's device (the model divides by 255)."""
    device = next(model.parameters()).device
    return torch.as_tensor(np.asarray(obs), device=device).float()


# --------------------------------------------------------------------------- maps and Grad-CAM
@torch.no_grad()
def feature_maps(model: ActorCritic, obs: np.ndarray) -> dict[str, torch.Tensor]:
    """``h1``, ``attention``, ``block`` (each (N, 16, 20, 20)) and ``logits`` (N, n_actions)."""
    x = _as_input(obs, model)
    maps = model.features_extractor.maps(x / 255.0)
    logits = model.action_net(maps["features"])
    return {"h1": maps["h1"], "attention": maps["attention"], "block": maps["block"], "logits": logits}


def grad_cam(model: ActorCritic, obs: np.ndarray, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Grad-CAM (SPEC §6) of each observation's action logit on the first convolution.

    Captum's ``LayerGradCam`` on ``conv1`` (output (N, 16, 20, 20)): channel weights are the spatial
    means of d logit[action] / d conv1, the map is ReLU(Σ_c weight_c · conv1_c); then bilinear
    upsampling to 84×84 and division by each map's maximum. Returns (N, 84, 84) in [0, 1]
    (all zeros where no position has a positive contribution).
    """
    x = _as_input(obs, model)
    target = torch.as_tensor(np.asarray(actions), device=x.device).long()
    cam = LayerGradCam(lambda inp: model(inp)[0], model.features_extractor.conv1)
    with torch.enable_grad():
        attr = cam.attribute(x, target=target, relu_attributions=True)  # (N, 1, 20, 20)
    up = LayerAttribution.interpolate(attr.detach(), (x.shape[-2], x.shape[-1]), "bilinear")  # (N,1,84,84)
    up = up[:, 0].clamp_min(0)  # bilinear of non-negative values is non-negative; clamp float dust
    peak = up.flatten(1).amax(1).clamp_min(torch.finfo(up.dtype).tiny)  # (N,)
    return up / peak[:, None, None]


# --------------------------------------------------------------------------- measures
def row_column_variation(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variation across rows and across columns of (N, C, H, W) maps, each (N,) float64.

    rows = Σ_c Var_y( mean_x M[c, y, x] )   (spread of the row averages: high for horizontal stripes)
    cols = Σ_c Var_x( mean_y M[c, y, x] )   (spread of the column averages: high for vertical stripes)
    """
    m = maps.double()
    rows = m.mean(3).var(2, unbiased=False).sum(1)  # (N, C, H) -> (N, C) -> (N,)
    cols = m.mean(2).var(2, unbiased=False).sum(1)  # (N, C, W) -> (N, C) -> (N,)
    return rows, cols


def orientation(h1: torch.Tensor, attention: torch.Tensor) -> np.ndarray:
    """Attention orientation O per observation: (N, C, H, W) x2 -> (N,) in [-1, 1], NaN if undefined.

    With ρ(M) = rows(M) / cols(M) (see :func:`row_column_variation`) and R = ρ(attention) / ρ(H1),

        O = (R - 1) / (R + 1) = tanh(ln(R) / 2)

    O > 0: the block's output varies more across rows, relative to across columns, than its input does:
    its structure runs along rows (horizontal). O < 0: along columns (vertical). O = 0: the block
    keeps H1's balance. O is NaN where a map has no variation at all (NA's attention is all zeros).
    """
    ra, ca = row_column_variation(attention)
    rh, ch = row_column_variation(h1)
    num, den = ra * ch - ca * rh, ra * ch + ca * rh  # R = (ra·ch)/(ca·rh), written without division
    out = torch.full_like(num, float("nan"))
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out.cpu().numpy()


def complementarity(h1: torch.Tensor, attention: torch.Tensor) -> np.ndarray:
    """Spatial Pearson correlation of H1 activity and attention activity: (N, C, H, W) x2 -> (N,).

    Activity is the channel mean at each of the H·W positions. r < 0: complementary (cold H1
    regions are hot in the attention map, the published claim); r > 0: the attention repeats H1.
    NaN where either activity map is constant (NA's attention is all zeros).
    """
    a = h1.double().mean(1).flatten(1)  # (N, C, H, W) -> (N, H*W)
    b = attention.double().mean(1).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    out = torch.full_like(den, float("nan"))
    ok = den > 0
    out[ok] = (a * b).sum(1)[ok] / den[ok]
    return out.cpu().numpy()


def side(value: float) -> str:
    """``horizontal`` / ``vertical`` / ``neutral`` / ``n/a`` for an orientation value."""
    if not math.isfinite(value):
        return "n/a"
    return "horizontal" if value > SIDE_MARGIN else "vertical" if value < -SIDE_MARGIN else "neutral"


# --------------------------------------------------------------------------- one agent
@dataclass
class Explanation:
    """Everything :func:`explain` computes for one agent on N observations (arrays are NumPy)."""

    label: str                 # what figures and tables call this agent (e.g. "CWCA")
    agent: str                 # NA, SWA, CWRA, CWCA or CWRCA
    h1: np.ndarray             # (N, 16, 20, 20) float32
    attention: np.ndarray      # (N, 16, 20, 20) float32, before the residual; zeros for NA
    block: np.ndarray          # (N, 16, 20, 20) float32, the block's output (attention + H1)
    logits: np.ndarray         # (N, n_actions) float32
    action: np.ndarray         # (N,) int64, the greedy action (argmax of the logits)
    gradcam: np.ndarray        # (N, 84, 84) float32 in [0, 1]
    orientation: np.ndarray    # (N,) float64 in [-1, 1]; NaN for NA
    complementarity: np.ndarray  # (N,) float64 in [-1, 1]; NaN for NA
    action_names: list[str] = field(default_factory=list)

    def action_name(self, i: int) -> str:
        a = int(self.action[i])
        return self.action_names[a] if a < len(self.action_names) else str(a)


def explain(model: ActorCritic, obs: np.ndarray, label: str | None = None,
            action_names: Sequence[str] = ()) -> Explanation:
    """Maps, Grad-CAM of the greedy action, orientation and complementarity for (N, 4, 84, 84) uint8."""
    maps = feature_maps(model, obs)
    action = maps["logits"].argmax(1)
    h1, att = maps["h1"], maps["attention"]
    has_block = model.agent != "NA"
    nan = np.full(len(obs), np.nan)
    return Explanation(
        label=label or model.agent, agent=model.agent,
        h1=h1.cpu().numpy(), attention=att.cpu().numpy(), block=maps["block"].cpu().numpy(),
        logits=maps["logits"].cpu().numpy(), action=action.cpu().numpy(),
        gradcam=grad_cam(model, obs, action).cpu().numpy(),
        orientation=orientation(h1, att) if has_block else nan,
        complementarity=complementarity(h1, att) if has_block else nan,
        action_names=list(action_names),
    )


# --------------------------------------------------------------------------- outputs
def save_arrays(path: str | Path, obs: np.ndarray, names: Sequence[str], explanations: Sequence[Explanation]) -> None:
    """One ``.npz``: ``obs`` (N,4,84,84), ``names`` (N,), ``labels`` (A,), and per agent label L:
    ``L/h1``, ``L/attention``, ``L/block``, ``L/logits``, ``L/action``, ``L/gradcam``,
    ``L/orientation``, ``L/complementarity`` with the shapes of :class:`Explanation`."""
    arrays: dict[str, np.ndarray] = {"obs": obs, "names": np.array(names),
                                     "labels": np.array([e.label for e in explanations])}
    for e in explanations:
        for key in ("h1", "attention", "block", "logits", "action", "gradcam", "orientation", "complementarity"):
            arrays[f"{e.label}/{key}"] = getattr(e, key)
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


# --------------------------------------------------------------------------- figures
def _save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")


def mosaic(maps: np.ndarray, cols: int = 4) -> np.ndarray:
    """Tile maps (C, h, w) into one image (rows·(h+1)-1, cols·(w+1)-1), each map min-max scaled to
    [0, 1] on its own (a constant map is 0), with NaN separators one pixel wide."""
    c, h, w = maps.shape
    rows = -(-c // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k, m in enumerate(maps.astype(np.float64)):
        span = m.max() - m.min()
        r, q = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = (m - m.min()) / span if span > 0 else 0.0
    return out


def _map_grid(fig, spec, maps: np.ndarray, title: str) -> None:
    """Draw 16 maps (16, h, w) as a 4×4 mosaic in one gridspec cell, each map on its own colour scale."""
    import matplotlib as mpl

    cmap = mpl.colormaps["inferno"].with_extremes(bad="white")
    ax = fig.add_subplot(spec)
    ax.imshow(mosaic(maps), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9, loc="left")
    ax.axis("off")


def _frame_panel(fig, spec, frame: np.ndarray, title: str, cam: np.ndarray | None = None) -> None:
    """The 84×84 frame in grey, with the Grad-CAM map (84, 84) in [0, 1] blended where it is high."""
    ax = fig.add_subplot(spec)
    ax.imshow(frame, cmap="gray", vmin=0, vmax=255)
    if cam is not None:  # per-pixel alpha: unsalient regions keep the plain frame
        ax.imshow(cam, cmap="jet", vmin=0, vmax=1, alpha=0.75 * np.clip(cam, 0, 1))
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xticks([])
    ax.set_yticks([])


def state_representation_figure(obs: np.ndarray, name: str, explanations: Sequence[Explanation], i: int,
                                path: str | Path) -> None:
    """One figure for observation ``i``: a row per agent with the last frame, the 16 H1 maps, the 16
    attention-output maps and the Grad-CAM overlay, titled with the action and the two measures."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    frame = obs[i, -1]  # (84, 84): the newest frame of the stack
    rows = len(explanations)
    # Square panels: 4 cells of `cell` inches with `gap` between them; `title` inches above each row.
    width, left, right, cell_gap = 12.5, 0.4, 0.12, 0.1
    cell = (width - left - right) / (4 + 3 * cell_gap)
    title, head, foot = 0.5, 0.45, 0.1
    height = head + rows * (title + cell) + foot
    fig = Figure(figsize=(width, height))
    outer = fig.add_gridspec(rows, 4, left=left / width, right=1 - right / width, bottom=foot / height,
                             top=1 - (head + title) / height, wspace=cell_gap, hspace=title / cell)
    for r, e in enumerate(explanations):
        _frame_panel(fig, outer[r, 0], frame, "last frame")
        fig.text(0.012, outer[r, 0].get_position(fig).y0 + 0.5 * outer[r, 0].get_position(fig).height,
                 e.label, rotation=90, va="center", ha="center", fontsize=12, fontweight="bold")
        _map_grid(fig, outer[r, 1], e.h1[i], "H1: rectified conv1 maps (16 × 20×20)")
        if e.agent == "NA":
            ax = fig.add_subplot(outer[r, 2])
            ax.text(0.5, 0.5, "NA: no attention block", ha="center", va="center", fontsize=10, color="0.4")
            ax.axis("off")
        else:
            o, c = float(e.orientation[i]), float(e.complementarity[i])
            _map_grid(fig, outer[r, 2], e.attention[i],
                      f"attention output (before residual)\nO = {o:+.2f} ({side(o)}) · r(H1, att) = {c:+.2f}")
        _frame_panel(fig, outer[r, 3], frame, f"Grad-CAM of action {e.action_name(i)}", cam=e.gradcam[i])
    fig.suptitle(f"State representation · {name}", fontsize=12, y=1 - 0.12 / height, va="top")
    _save_figure(fig, path)


def orientation_figure(names: Sequence[str], explanations: Sequence[Explanation], path: str | Path) -> None:
    """Orientation of every agent on every observation (dots) and its mean (bar), with the two sides marked."""
    from matplotlib.figure import Figure

    shown = [e for e in explanations if np.isfinite(e.orientation).any()]
    fig = Figure(figsize=(1.3 + 1.2 * max(len(shown), 1), 3.6))
    ax = fig.add_subplot()
    ax.axhspan(SIDE_MARGIN, 1.05, color="tab:orange", alpha=0.08)
    ax.axhspan(-1.05, -SIDE_MARGIN, color="tab:blue", alpha=0.08)
    ax.axhline(0, color="k", lw=0.8)
    rng = np.random.default_rng(0)  # jitter only, so the dots of one agent do not overlap
    for k, e in enumerate(shown):
        o = e.orientation[np.isfinite(e.orientation)]
        ax.bar(k, o.mean(), width=0.6, color="tab:orange" if o.mean() > 0 else "tab:blue", alpha=0.5)
        ax.scatter(k + rng.uniform(-0.18, 0.18, len(o)), o, s=14, color="k", zorder=3)
    ax.set_xticks(range(len(shown)), [e.label for e in shown])
    ax.set_xlim(-0.6, max(len(shown), 1) - 0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("orientation O")
    ax.text(1.01, 0.97, "horizontal", transform=ax.transAxes, va="top", rotation=90, color="tab:orange")
    ax.text(1.01, 0.03, "vertical", transform=ax.transAxes, va="bottom", rotation=90, color="tab:blue")
    ax.set_title(f"Attention orientation on {len(names)} observation(s)", fontsize=10)
    _save_figure(fig, path)


# --------------------------------------------------------------------------- the `dimattn explain` command
def _unique(labels: Sequence[str]) -> list[str]:
    """Make labels unique by numbering repeats: [CWCA, CWCA, NA] -> [CWCA-1, CWCA-2, NA]."""
    out = []
    for i, lab in enumerate(labels):
        n = labels.count(lab)
        out.append(f"{lab}-{labels[:i + 1].count(lab)}" if n > 1 else lab)
    return out


def _game_action_meanings(model: ActorCritic, game: str | None) -> list[str]:
    """The game's action names if ``game`` (or the checkpoint's recorded game) fits the model, else []."""
    from dimattn.games import canonical_game
    from dimattn.envs import action_meanings

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
    from tqdm import tqdm

    from dimattn.checkpoints import load_agent
    from dimattn.games import canonical_game
    from dimattn.record import check_game_fits, collect_observations

    console = console or Console(stderr=False)
    if agent is not None and len(checkpoints) > 1:
        raise DimattnError("--agent applies to a single --checkpoint; --compare reads each agent from its file")
    models = [load_agent(c, agent) for c in checkpoints]
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
    for i, name in enumerate(tqdm(names, desc="figures", unit="obs", disable=len(names) < 3)):
        state_representation_figure(obs, name, explanations, i, out / f"state_{name}.png")
    save_arrays(out / "explain.npz", obs, names, explanations)
    write_measures_csv(out / "measures.csv", names, explanations)
    atomic_write_text(out / "orientation.md", markdown_table(names, explanations))
    if any(e.agent != "NA" for e in explanations):
        orientation_figure(names, explanations, out / "orientation.png")

    table = Table(title=f"Attention orientation and complementarity on {len(names)} observation(s)")
    for col in ("agent", "O mean", "O min", "O max", "side", "r mean"):
        table.add_column(col, justify="left" if col in ("agent", "side") else "right")
    for e in explanations:
        s = summary(e)
        table.add_row(e.label, _fmt(s["orientation"]), _fmt(s["min"]), _fmt(s["max"]), str(s["side"]),
                      _fmt(s["complementarity"]))
    console.print(table)
    console.print("O: +1 horizontal, -1 vertical, 0 as H1; r < 0: cold H1 regions are hot in the attention map.")
    console.print(f"wrote {len(names)} figure(s), explain.npz, measures.csv, orientation.md to {out}")
    return explanations
