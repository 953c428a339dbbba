"""The axis-of-dynamics measure on a frame sequence (docs/axes.md), pure NumPy + OpenCV components.

Input: emulator frames ``(T, H, W)`` uint8 (ALE palette indices or grey levels), consecutive, every
emulator frame. Steps:

1. Background = per-pixel median over the sequence; foreground = pixels that differ from it.
2. Frames are taken in pairs; a pixel is foreground if it is in either frame of the pair (Atari
   games draw many objects on alternate frames; the pair's union sees them every time).
3. Connected components of the foreground, at most :data:`MAX_AREA` pixels (small objects: balls,
   projectiles, sprites; not terrain or scrolling playfields), are tracked from pair to pair by mutual
   nearest centroid (similar area, within :data:`MAX_JUMP` pixels).
4. Persistent motion energy: along each track, displacements ``D_t`` over :data:`LAG` pairs; the
   energy along x is ``Σ D_t,x · D_{t+LAG},x`` (same for y), the lag-``LAG`` autocovariance of the
   motion. An object that keeps moving the same way (a ball, a shot, a scrolling object) adds
   ``v²`` per step; one that jitters back and forth (a randomly steered player) adds about 0.
5. ``h`` = E_x / (E_x + E_y). Label horizontal if ``h ≥ TAU``, vertical if ``h ≤ 1 − TAU``, else other.
   Confidence = share of block-bootstrap resamples (over time) that give the same label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: Pixels of the largest object tracked (~2% of a 210×160 screen): sprites, balls, shots; not terrain.
MAX_AREA = 600
#: Largest displacement (pixels) of one object between two frame pairs (2 emulator frames).
MAX_JUMP = 30.0
#: Frame pairs per displacement, and the lag of the autocovariance (4 pairs = 8 frames = 2 agent steps).
LAG = 4
#: Emulator frames per pair (the union of their foregrounds is one tracked frame).
PAIR = 2
#: The one decision threshold: the dominant axis must hold at least this share of the persistent energy
#: (2/3: at least twice the other axis). Set a priori, not fitted to the published labels.
TAU = 2 / 3
#: Bootstrap: blocks of the sequence and resamples for the confidence.
BLOCKS, RESAMPLES = 10, 200
LABELS = ("horizontal", "vertical", "other")


@dataclass
class Tracks:
    """Tracked objects: one row per (object, frame pair)."""

    track: np.ndarray   # (N,) int track id
    t: np.ndarray       # (N,) int frame-pair index
    xy: np.ndarray      # (N, 2) float centroid (x right, y down), pixels
    area: np.ndarray    # (N,) int pixels
    n_pairs: int        # frame pairs in the sequence


@dataclass
class AxisMeasure:
    """The measure of one sequence: the label and the scores it rests on."""

    label: str
    h_share: float          # E_x / (E_x + E_y): share of persistent motion energy along x
    energy_x: float         # persistent energy along x (px² summed over objects and time)
    energy_y: float
    axial: float            # share of the energy in directions within 20° of an axis (vs diagonal)
    confidence: float       # share of bootstrap resamples with the same label
    n_tracks: int           # tracks long enough to measure
    hist: np.ndarray = field(repr=False)     # (18,) energy per 10° direction bin, 0° = horizontal
    segments: list = field(repr=False, default_factory=list)  # [(xy (L,2), energy_x, energy_y)] top tracks
    boot_h: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # (RESAMPLES,) bootstrap h


def label_of(h_share: float, tau: float = TAU) -> str:
    """``h`` -> horizontal / vertical / other (the only decision rule)."""
    if h_share >= tau:
        return "horizontal"
    if h_share <= 1 - tau:
        return "vertical"
    return "other"


def foreground(frames: np.ndarray) -> np.ndarray:
    """Frames (T, H, W) -> foreground of each frame pair (T // PAIR, H, W) bool."""
    if frames.ndim != 3 or len(frames) < PAIR:
        raise ValueError(f"need frames (T >= {PAIR}, H, W), got shape {frames.shape}")
    n = len(frames) // PAIR * PAIR
    # the median of a subsample is enough for the background and costs a fraction
    background = np.median(frames[:: max(1, n // 400)], axis=0).astype(frames.dtype)  # (H, W)
    fg = np.empty((n // PAIR, *frames.shape[1:]), bool)  # (n/PAIR, H, W)
    chunk = 512 * PAIR  # bounded temporary memory
    for start in range(0, n, chunk):
        part = frames[start:min(start + chunk, n)] != background  # (c, H, W)
        fg[start // PAIR:(start + len(part)) // PAIR] = part.reshape(-1, PAIR, *frames.shape[1:]).any(axis=1)
    return fg


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small connected components of a mask: centroids (K, 2) and areas (K,)."""
    _, _, stats, centroids = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]  # row 0 is the background
    keep = area <= MAX_AREA
    return centroids[1:][keep], area[keep]


def _match(xy: np.ndarray, area: np.ndarray, prev_xy: np.ndarray, prev_area: np.ndarray) -> np.ndarray:
    """Index into the previous frame's objects for each object (−1: none), by mutual nearest centroid."""
    out = np.full(len(xy), -1)
    if not len(xy) or not len(prev_xy):
        return out
    dist = np.linalg.norm(xy[:, None] - prev_xy[None], axis=2)  # (K, K_prev)
    ratio = area[:, None] / prev_area[None]
    dist[(ratio > 2) | (ratio < 0.5) | (dist > MAX_JUMP)] = np.inf
    nearest_prev, nearest_cur = dist.argmin(1), dist.argmin(0)
    rows = np.arange(len(xy))
    ok = np.isfinite(dist[rows, nearest_prev]) & (nearest_cur[nearest_prev] == rows)
    out[ok] = nearest_prev[ok]
    return out


def track(frames: np.ndarray) -> Tracks:
    """Frames (T, H, W) -> the tracks of their small objects (see the module docstring, steps 1-3)."""
    return track_masks(foreground(frames))


def track_masks(fg: np.ndarray) -> Tracks:
    """Masks (T, H, W) bool -> the tracks of their small connected components (step 3)."""
    ids_all, t_all, xy_all, area_all = [], [], [], []
    prev_xy, prev_area, prev_ids = np.zeros((0, 2)), np.zeros(0), np.zeros(0, int)
    next_id = 0
    for t, mask in enumerate(fg):
        xy, area = _components(mask)
        match = _match(xy, area, prev_xy, prev_area)
        ids = np.where(match >= 0, prev_ids[np.maximum(match, 0)] if len(prev_ids) else -1, -1)
        new = ids < 0
        ids[new] = np.arange(next_id, next_id + new.sum())
        next_id += int(new.sum())
        ids_all.append(ids), t_all.append(np.full(len(ids), t)), xy_all.append(xy), area_all.append(area)
        prev_xy, prev_area, prev_ids = xy, area, ids
    return Tracks(np.concatenate(ids_all), np.concatenate(t_all), np.concatenate(xy_all).reshape(-1, 2),
                  np.concatenate(area_all), len(fg))


def _split(tracks: Tracks) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tracks -> [(t (L,), xy (L, 2))] per track, in time order."""
    order = np.lexsort((tracks.t, tracks.track))
    ids, t, xy = tracks.track[order], tracks.t[order], tracks.xy[order]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    return list(zip(np.split(t, cuts), np.split(xy, cuts), strict=True))


def persistent_motion(tracks: Tracks) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-window persistent energy: times (M,), products (M, 2) = D_t ⊙ D_{t+LAG}, and per-track sums.

    Only tracks seen in every pair for at least ``2·LAG + 1`` pairs count (a displacement and the next).
    """
    times, prods, per_track = [], [], []
    for t, xy in _split(tracks):
        if len(t) < 2 * LAG + 1:
            continue
        d = xy[LAG:] - xy[:-LAG]            # (L - LAG, 2): displacement over LAG pairs
        prod = d[:-LAG] * d[LAG:]           # (L - 2·LAG, 2): its product with the next one
        times.append(t[: len(prod)])
        prods.append(prod)
        per_track.append((xy, float(prod[:, 0].sum()), float(prod[:, 1].sum()), d[:-LAG]))
    if not prods:
        return np.zeros(0), np.zeros((0, 2)), []
    return np.concatenate(times), np.concatenate(prods), per_track


def _h_share(prod: np.ndarray) -> float:
    """Products (M, 2) -> E_x / (E_x + E_y), each energy clipped at 0 (anti-persistent motion is none)."""
    e = np.maximum(prod.sum(axis=0), 0.0)
    total = e.sum()
    return float(e[0] / total) if total > 0 else 0.5


def bootstrap_h(times: np.ndarray, prod: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """``h`` of RESAMPLES block-bootstrap resamples (BLOCKS blocks of time): (RESAMPLES,)."""
    if not len(prod):
        return np.full(RESAMPLES, 0.5)
    block = np.minimum(times * BLOCKS // max(n_pairs, 1), BLOCKS - 1)
    sums = np.zeros((BLOCKS, 2))
    np.add.at(sums, block, prod)  # (BLOCKS, 2) energy per block
    draws = np.random.default_rng(seed).integers(0, BLOCKS, (RESAMPLES, BLOCKS))
    e = np.maximum(sums[draws].sum(axis=1), 0.0)  # (RESAMPLES, 2)
    return np.divide(e[:, 0], e.sum(axis=1), out=np.full(RESAMPLES, 0.5), where=e.sum(axis=1) > 0)


def _direction_hist(per_track: list) -> tuple[np.ndarray, float]:
    """Energy per 10° bin of motion direction (0° horizontal, 90° vertical) and the share near an axis."""
    hist = np.zeros(18)
    for _, _, _, d in per_track:
        angle = np.degrees(np.arctan2(np.abs(d[:, 1]), d[:, 0])) % 180  # (L,) in [0, 180)
        np.add.at(hist, np.minimum((angle // 10).astype(int), 17), (d ** 2).sum(axis=1))
    total = hist.sum()
    # bins 0-1 and 16-17 (within 20° of horizontal) and 7-10 (within 20° of vertical) are "axial"
    axial = (hist[[0, 1, 16, 17]].sum() + hist[7:11].sum()) / total if total > 0 else 0.0
    return hist, float(axial)


def measure(frames: np.ndarray, seed: int = 0, top: int = 40) -> AxisMeasure:
    """Frames (T, H, W) uint8, every emulator frame -> :class:`AxisMeasure`. ``seed``: the bootstrap's."""
    tracks = track(frames)
    return measure_tracks(tracks, seed=seed, top=top)


def measure_tracks(tracks: Tracks, seed: int = 0, top: int = 40) -> AxisMeasure:
    """Tracks -> :class:`AxisMeasure` (steps 4-5); ``top`` most energetic tracks kept for the figure."""
    times, prod, per_track = persistent_motion(tracks)
    h = _h_share(prod)
    label = label_of(h)
    e = np.maximum(prod.sum(axis=0), 0.0) if len(prod) else np.zeros(2)
    hist, axial = _direction_hist(per_track)
    ranked = sorted(per_track, key=lambda p: -(max(p[1], 0) + max(p[2], 0)))[:top]
    boot = bootstrap_h(times, prod, tracks.n_pairs, seed)
    confidence = float(np.mean([label_of(x) == label for x in boot])) if len(prod) else 0.0
    return AxisMeasure(label=label, h_share=h, energy_x=float(e[0]), energy_y=float(e[1]), axial=axial,
                       confidence=confidence, n_tracks=len(per_track), hist=hist,
                       segments=[(xy, ex, ey) for xy, ex, ey, _ in ranked], boot_h=boot)
