"""Shared helpers for the analysis tests: real run directories written with NumPy and YAML.

A run directory is what ``dimattn train`` leaves (RL Zoo layout): ``evaluations.npz`` (timesteps
(E,), results (E, episodes), ep_lengths (E, episodes)) and a resolved ``config.yml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from shared_data import SHARED

PUBLISHED = SHARED / "data" / "seed-results" / "post_processed_results_56.pkl"


def write_run(run_dir: Path, game: str, agent: str, seed: int, timesteps, results) -> Path:
    """Write one run: ``results`` is (E, episodes) of episode returns at ``timesteps`` (E,)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results = np.asarray(results, dtype=np.float64)
    np.savez(run_dir / "evaluations.npz", timesteps=np.asarray(timesteps, dtype=np.int64), results=results,
             ep_lengths=np.full(results.shape, 1000, dtype=np.int64))
    config = {"game": game, "env_id": f"{game}NoFrameskip-v4", "agent": agent, "seed": seed,
              "n_timesteps": 1_000_000}
    (run_dir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


def write_study(root: Path, games=("Pong", "Breakout"), agents=("NA", "SWA", "CWRA", "CWCA", "CWRCA"),
                seeds=(0, 1), n_evals: int = 4, episodes: int = 3) -> Path:
    """A study directory ``<root>/runs/<Game>/<Agent>/seed<k>/`` of deterministic made-up runs, plus
    ``study.yml``. Scores differ by game, agent and seed so every agent wins something."""
    rng = np.random.default_rng(1234)
    (root / "study.yml").parent.mkdir(parents=True, exist_ok=True)
    study = {"games": list(games), "agents": list(agents), "seeds": list(seeds)}
    (root / "study.yml").write_text(yaml.safe_dump(study))
    steps = np.arange(1, n_evals + 1) * 25_000
    for gi, game in enumerate(games):
        for ai, agent in enumerate(agents):
            for seed in seeds:
                base = 10.0 * (gi + 1) + 3.0 * ((ai + gi) % len(agents)) + seed
                results = base + rng.normal(0, 1, size=(n_evals, episodes)) + np.arange(n_evals)[:, None]
                write_run(root / "runs" / game / agent / f"seed{seed}", game, agent, seed, steps, results)
    return root
