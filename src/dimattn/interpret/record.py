"""``dimattn record``: whole evaluation games as GIF/MP4 videos.

Frames are the emulator's full-resolution RGB screens (210×160), optionally scaled up, with a caption
band under the game that holds the episode and its score so far, and optionally the Grad-CAM saliency
of the chosen action blended over the screen (the 84×84 observation is a resize of the whole screen,
so the saliency maps back by a plain resize).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dimattn.agents.networks import ActorCritic
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_path
from dimattn.interpret.play import check_game_fits, play

VIDEO_SUFFIXES = (".gif", ".mp4")
#: Upscaling beyond 8 (1680×1280 frames) only costs memory: --scale 10000 once tried to allocate terabytes.
MAX_SCALE = 8


def check_options(out: str | Path, episodes: int = 1, fps: int = 15, scale: int = 2,
                  max_steps: int | None = None) -> None:
    """Refuse bad video options in one line, before a checkpoint is loaded or a frame allocated."""
    if Path(out).suffix.lower() not in VIDEO_SUFFIXES:
        raise DimattnError(f"cannot write {Path(out).name}: the output must end in .gif or .mp4")
    if episodes < 1 or fps < 1 or scale < 1 or (max_steps is not None and max_steps < 1):
        raise DimattnError("--episodes, --fps, --scale and --max-steps must be at least 1")
    if scale > MAX_SCALE:
        raise DimattnError(f"--scale {scale} is above the limit of {MAX_SCALE} ({210 * MAX_SCALE}×{160 * MAX_SCALE} "
                           "frames); give a smaller --scale")


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

    from dimattn.console import progress as progress_bar
    from dimattn.interpret.measures import grad_cam

    out = Path(out)
    suffix = out.suffix.lower()
    check_options(out, episodes, fps, scale, max_steps)
    scores: list[float] = []
    with atomic_path(out) as tmp:
        video = tmp.with_name(tmp.stem + suffix)  # imageio picks the format from the suffix
        kwargs = dict(format="GIF", duration=1000 / fps, loop=0) if suffix == ".gif" \
            else dict(format="FFMPEG", fps=fps, codec="libx264", quality=7, macro_block_size=16)
        try:
            writer = imageio.get_writer(video, mode="I", **kwargs)
        except Exception as exc:  # e.g. no ffmpeg backend
            video.unlink(missing_ok=True)
            raise DimattnError(f"cannot write {suffix} videos here ({exc}); "
                               "install imageio-ffmpeg for .mp4 or write a .gif") from None
        written = False
        try:
            bar = progress_bar(total=episodes, desc=f"recording {model.agent} on {game}", unit="episode",
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
            written = True
        finally:
            writer.close()
            if not written:  # interrupted (Ctrl-C) or failed: atomic_path removes tmp, this the video beside it
                video.unlink(missing_ok=True)
        os.replace(video, tmp)
    return scores


def record_command(checkpoint: str | Path, out: str | Path, agent: str | None = None, game: str | None = None,
                   episodes: int = 1, **kwargs) -> list[float]:
    """``dimattn record``: load the agent, check the game fits it, write the video, print the scores."""
    from dimattn.agents.checkpoints import load_agent
    from dimattn.games import canonical_game

    check_options(out, episodes, kwargs.get("fps", 15), kwargs.get("scale", 2), kwargs.get("max_steps"))
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
