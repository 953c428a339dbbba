"""Watching an agent play: whole evaluation games as GIF/MP4 videos, and observations taken from play.

Frames are the emulator's full-resolution RGB screens (210×160), optionally scaled up, with a caption
band under the game that holds the episode and its score so far, and optionally the Grad-CAM saliency
of the chosen action blended over the screen (the 84×84 observation is a resize of the whole screen,
so the saliency maps back by a plain resize).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from dimattn.envs import action_meanings, make_env
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_path
from dimattn.networks import ActorCritic

VIDEO_SUFFIXES = (".gif", ".mp4")


def check_game_fits(model: ActorCritic, game: str, what: str = "checkpoint") -> None:
    """A one-line error if ``game``'s action set does not match the model's policy head."""
    n_game, n_model = len(action_meanings(game)), int(model.config["n_actions"])
    if n_game != n_model:
        trained = model.meta.get("game") if hasattr(model, "meta") else None
        hint = f" (it was trained on {trained})" if trained else ""
        raise DimattnError(f"{game} has {n_game} actions but the {what} has {n_model}{hint}; "
                           "give the game the checkpoint was trained on")


@dataclass
class PlayStep:
    """One agent step: the observation (4, 84, 84) uint8 and screen (210, 160, 3) uint8 it acts on."""

    obs: np.ndarray
    screen: np.ndarray
    action: int
    episode: int   # 0-based
    t: int         # step within the episode, 0-based
    score: float   # the episode's score before this step's reward
    end: str = ""  # on the extra step after an episode: "game over" or "max steps"


def play(model: ActorCritic, game: str, episodes: int, seed: int = 0, deterministic: bool = False,
         max_steps: int | None = None) -> Iterator[PlayStep]:
    """Play ``episodes`` whole games (or stop an episode after ``max_steps`` agent steps).

    The policy samples its actions (the study's evaluation) from a generator seeded with ``seed``
    unless ``deterministic``. Yields one :class:`PlayStep` per agent step, then one extra step per
    episode with ``action = -1``, the final score and ``end`` saying why the episode ended.
    """
    env = make_env(game, n_envs=1, seed=seed, training=False, render_mode="rgb_array")
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    try:
        obs = env.reset()  # (1, 4, 84, 84)
        for episode in range(episodes):
            score, t = 0.0, 0
            while True:
                screen = env.get_images()[0]  # (210, 160, 3): the screen the observation was made from
                with torch.no_grad():
                    logits, _ = model(torch.as_tensor(obs, device=device))
                probs = torch.softmax(logits.double().cpu(), -1)
                action = int(probs.argmax(-1)) if deterministic else int(torch.multinomial(probs[0], 1, generator=gen))
                yield PlayStep(obs[0], screen, action, episode, t, score)
                obs, reward, done, _ = env.step(np.array([action]))
                score, t = score + float(reward[0]), t + 1
                if done[0] or (max_steps is not None and t >= max_steps):
                    yield PlayStep(obs[0], screen, -1, episode, t, score, "game over" if done[0] else "max steps")
                    if not done[0]:
                        obs = env.reset()
                    break
    finally:
        env.close()


def collect_observations(model: ActorCritic, game: str, n_obs: int, seed: int = 0,
                         every: int = 25) -> tuple[np.ndarray, list[str]]:
    """Observations (n_obs, 4, 84, 84) uint8 met while ``model`` plays ``game``: one every ``every``
    agent steps (counted across episodes), named ``<game>_ep<episode>_t<step>``."""
    if n_obs < 1 or every < 1:
        raise DimattnError("--n-obs and --every must be at least 1")
    out, names, steps = [], [], 0
    for step in play(model, game, episodes=10**9, seed=seed):
        if step.action < 0:  # the extra end-of-episode step
            continue
        if steps > 0 and steps % every == 0:  # `steps` agent steps taken before this observation
            out.append(step.obs.copy())
            names.append(f"{game}_ep{step.episode}_t{step.t:05d}")
            if len(out) == n_obs:
                break
        steps += 1
    return np.stack(out), names


# --------------------------------------------------------------------------- frames
def saliency_overlay(screen: np.ndarray, saliency: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Blend a saliency map (84, 84) in [0, 1] over a screen (h, w, 3) uint8 -> (h, w, 3) uint8.

    Where the saliency is 0 the screen is untouched; where it is 1 the jet colour covers ``strength``.
    """
    import cv2
    from matplotlib import colormaps

    s = cv2.resize(saliency.astype(np.float32), (screen.shape[1], screen.shape[0]), interpolation=cv2.INTER_LINEAR)
    s = np.clip(s, 0.0, 1.0)[..., None]  # (h, w, 1)
    colour = colormaps["jet"](s[..., 0])[..., :3] * 255.0  # (h, w, 3)
    return (screen * (1 - strength * s) + colour * strength * s).astype(np.uint8)


def captioned(screen: np.ndarray, left: str, right: str, scale: int) -> np.ndarray:
    """Scale a screen (h, w, 3) by ``scale`` (nearest) and add a black caption band below it:
    -> (scale·(h + 14), scale·w, 3) uint8. With h = 210 the height is a multiple of 16 (video codecs)."""
    import cv2

    big = np.repeat(np.repeat(screen, scale, axis=0), scale, axis=1)
    band = np.zeros((14 * scale, big.shape[1], 3), np.uint8)
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.33 * scale, max(1, scale // 2)
    base = 10 * scale
    cv2.putText(band, left, (3 * scale, base), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    (w, _), _ = cv2.getTextSize(right, font, size, thick)
    cv2.putText(band, right, (big.shape[1] - w - 3 * scale, base), font, size, (170, 170, 170), thick, cv2.LINE_AA)
    return np.concatenate([big, band], axis=0)


def _score(x: float) -> str:
    return f"{x:g}"


def record(model: ActorCritic, game: str, out: str | Path, episodes: int = 1, seed: int = 0,
           saliency: bool = False, deterministic: bool = False, max_steps: int | None = None,
           fps: int = 15, scale: int = 2, progress: bool = False) -> list[float]:
    """Write a video of ``model`` playing ``episodes`` games of ``game`` to ``out`` (.gif or .mp4).

    One frame per agent step (4 emulator frames, so ``fps=15`` is real time); the last frame of each
    episode is held for a second with the final score. Returns the episode scores.
    """
    import imageio.v2 as imageio
    from tqdm import tqdm

    from dimattn.interpret import grad_cam

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise DimattnError(f"cannot write {out.name}: the output must end in .gif or .mp4")
    if episodes < 1 or fps < 1 or scale < 1 or (max_steps is not None and max_steps < 1):
        raise DimattnError("--episodes, --fps, --scale and --max-steps must be at least 1")
    scores: list[float] = []
    with atomic_path(out) as tmp:
        video = tmp.with_name(tmp.stem + suffix)  # imageio picks the format from the suffix
        kwargs = dict(format="GIF", duration=1000 / fps, loop=0) if suffix == ".gif" \
            else dict(format="FFMPEG", fps=fps, codec="libx264", quality=7, macro_block_size=16)
        try:
            writer = imageio.get_writer(video, mode="I", **kwargs)
        except Exception as exc:  # e.g. no ffmpeg backend
            raise DimattnError(f"cannot write {suffix} videos here ({exc}); "
                               "install imageio-ffmpeg for .mp4 or write a .gif") from None
        try:
            bar = tqdm(total=episodes, desc=f"recording {model.agent} on {game}", unit="episode",
                       disable=not progress)
            for step in play(model, game, episodes, seed, deterministic, max_steps):
                screen = step.screen
                left = f"episode {step.episode + 1}/{episodes}  score {_score(step.score)}"
                if step.action < 0:  # end of episode: hold the final score for a second
                    frame = captioned(screen, f"{left}  ({step.end})", model.agent, scale)
                    for _ in range(fps):
                        writer.append_data(frame)
                    scores.append(step.score)
                    bar.update(1)
                    bar.set_postfix(score=_score(step.score))
                    continue
                if saliency:
                    cam = grad_cam(model, step.obs[None], np.array([step.action]))[0].cpu().numpy()
                    screen = saliency_overlay(screen, cam)
                writer.append_data(captioned(screen, left, model.agent, scale))
            bar.close()
        finally:
            writer.close()
        os.replace(video, tmp)
    return scores


def record_command(checkpoint: str | Path, out: str | Path, agent: str | None = None, game: str | None = None,
                   episodes: int = 1, **kwargs) -> list[float]:
    """``dimattn record``: load the agent, check the game fits it, write the video, print the scores."""
    from dimattn.checkpoints import load_agent
    from dimattn.games import canonical_game

    if Path(out).suffix.lower() not in VIDEO_SUFFIXES:
        raise DimattnError(f"cannot write {Path(out).name}: the output must end in .gif or .mp4")
    model = load_agent(checkpoint, agent)
    game = game or model.meta.get("game")
    if not game:
        raise DimattnError(f"checkpoint {checkpoint} does not record its game; pass --env GAME")
    game = canonical_game(str(game))
    check_game_fits(model, game, what=f"checkpoint {checkpoint}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one observation per step: thread hand-offs cost more than they save
    try:
        scores = record(model, game, out, episodes=episodes, progress=True, **kwargs)
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {out}: {model.agent} on {game}, scores " + ", ".join(_score(s) for s in scores))
    return scores
