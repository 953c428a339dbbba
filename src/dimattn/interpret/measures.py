"""What a trained agent computes on an observation (SPEC §6): feature maps, Grad-CAM, and two measures.

For a batch of N stacked observations (N, 4, 84, 84) uint8 this module gives

* ``h1``        (N, 16, 20, 20)  the rectified first-conv maps H1,
* ``attention`` (N, 16, 20, 20)  the attention block's output *before* the residual (zeros for NA); for a
                                 block placed after conv2, (N, 32, 9, 9); for a block without an
                                 ``attention`` method, its output minus its input,
* ``attention_maps``             what the block's registered maps function returns (its attention weights),
* ``gradcam``   (N, 84, 84)      Grad-CAM of the chosen action's logit on the first conv, in [0, 1],
* ``orientation`` (N,)           whether the block's output is more horizontal or vertical than its input
                                 (H1, or H2 after conv2), for any block,
* ``complementarity`` (N,)       the spatial correlation of input activity and attention activity.

The two measures are defined in :func:`orientation` and :func:`complementarity` and documented in
``docs/interpret.md``; :mod:`dimattn.interpret.panels` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from dimattn.agents.networks import ActorCritic
from dimattn.agents.registry import attention_maps

#: An orientation above +SIDE_MARGIN is called horizontal, below -SIDE_MARGIN vertical.
SIDE_MARGIN = 0.1


def _as_input(obs: np.ndarray | torch.Tensor, model: ActorCritic) -> torch.Tensor:
    """(N, 4, 84, 84) uint8 -> float tensor in [0, 255] on the model's device (the model divides by 255)."""
    device = next(model.parameters()).device
    return torch.as_tensor(np.asarray(obs), device=device).float()


# --------------------------------------------------------------------------- maps and Grad-CAM
@torch.no_grad()
def feature_maps(model: ActorCritic, obs: np.ndarray) -> dict[str, torch.Tensor]:
    """``h1``, ``input`` (the block's), ``attention``, ``block`` (each (N, 16, 20, 20) for a block after conv1),
    ``logits`` (N, n_actions), and ``maps/<key>``: the block's attention maps, where it provides them."""
    x = _as_input(obs, model)
    maps = model.features_extractor.maps(x / 255.0)
    logits = model.action_net(maps["features"])
    weights = attention_maps(model.agent, model.features_extractor.attention, maps["input"])
    return {"h1": maps["h1"], "input": maps["input"], "attention": maps["attention"], "block": maps["block"],
            "logits": logits, **{f"maps/{k}": v for k, v in weights.items()}}


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
    attention_maps: dict[str, np.ndarray] = field(default_factory=dict)  # the block's own maps, if it gives any

    def action_name(self, i: int) -> str:
        a = int(self.action[i])
        return self.action_names[a] if a < len(self.action_names) else str(a)


def explain(model: ActorCritic, obs: np.ndarray, label: str | None = None,
            action_names: Sequence[str] = ()) -> Explanation:
    """Maps, Grad-CAM of the greedy action, orientation and complementarity for (N, 4, 84, 84) uint8."""
    maps = feature_maps(model, obs)
    action = maps["logits"].argmax(1)
    h1, inp, att = maps["h1"], maps["input"], maps["attention"]
    has_block = model.agent.split("@")[0] != "NA"
    nan = np.full(len(obs), np.nan)
    return Explanation(
        label=label or model.agent, agent=model.agent,
        h1=h1.cpu().numpy(), attention=att.cpu().numpy(), block=maps["block"].cpu().numpy(),
        logits=maps["logits"].cpu().numpy(), action=action.cpu().numpy(),
        gradcam=grad_cam(model, obs, action).cpu().numpy(),
        orientation=orientation(inp, att) if has_block else nan,
        complementarity=complementarity(inp, att) if has_block else nan,
        action_names=list(action_names),
        attention_maps={k[len("maps/"):]: v.cpu().numpy() for k, v in maps.items() if k.startswith("maps/")},
    )
