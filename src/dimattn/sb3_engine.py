"""The reference engine: Stable-Baselines3's PPO with the study's protocol (SPEC §3-§4).

Evaluation and checkpoints are callbacks that count *total* environment steps (all envs together),
write atomically, and let a killed run resume from its last checkpoint: the policy, the optimiser,
the step count (hence the LR and clip schedules), the learner's RNG and the evaluation history
up to that checkpoint come back. Checkpoints are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule

from dimattn.checkpoints import save_sb3
from dimattn.config import RunConfig, as_float_schedule, resolve_policy_kwargs
from dimattn.envs import make_env
from dimattn.rundir import BEST_MODEL, EvalHistory, checkpoint_path, checkpoints, final_model_path

RNG_ENTRY = "dimattn_rng.pt"  # not .pth: SB3 loads every .pth entry as parameters


def _schedule(value: Any, name: str) -> float | LinearSchedule:
    start, linear = as_float_schedule(value, name)
    # progress goes 1 -> 0 over training; lin_x decays x -> 0 linearly (RL Zoo's linear_schedule)
    return LinearSchedule(start, 0.0, 1.0) if linear else start


def checkpoint_meta(config: RunConfig, steps: int) -> dict[str, Any]:
    """What ``dimattn.json`` records, so any checkpoint can be loaded without guessing."""
    kw = config.hyperparams["policy_kwargs"]["features_extractor_kwargs"]
    return {"agent": config.agent, "game": config.game, "env_id": config.env_id, "seed": config.seed,
            "ada_attn": kw.get("ada_attn"), "norm_softmax": kw.get("norm_softmax", True),
            "engine": config.engine, "num_timesteps": int(steps)}


def rng_state_bytes() -> bytes:
    key, pos, has_gauss, gauss = np.random.get_state()[1:]
    buf = io.BytesIO()
    torch.save({"torch": torch.get_rng_state(), "np_key": torch.from_numpy(key.astype(np.int64)),
                "np_rest": torch.tensor([pos, has_gauss], dtype=torch.int64), "np_gauss": torch.tensor(gauss)}, buf)
    return buf.getvalue()


def set_rng_state_bytes(raw: bytes) -> None:
    s = torch.load(io.BytesIO(raw), weights_only=True)
    torch.set_rng_state(s["torch"])
    pos, has_gauss = (int(x) for x in s["np_rest"])
    np.random.set_state(("MT19937", s["np_key"].numpy().astype(np.uint32), pos, has_gauss, float(s["np_gauss"])))


class StudyCallback(BaseCallback):
    """Evaluate every ``eval_freq`` and checkpoint every ``save_freq`` total environment steps."""

    def __init__(self, config: RunConfig, run_dir: Path, history: EvalHistory, start: int) -> None:
        super().__init__()
        self.config, self.run_dir, self.history = config, Path(run_dir), history
        freq_e, freq_s = config.eval_freq, config.save_freq
        self.next_eval = (start // freq_e + 1) * freq_e if freq_e > 0 else None
        self.next_save = (start // freq_s + 1) * freq_s if freq_s > 0 else None
        self.eval_env = None

    def _on_training_start(self) -> None:
        if self.next_eval is not None:
            self.eval_env = make_env(self.config.game, 1, seed=self.config.seed + 10_000, training=False)

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        if self.next_eval is not None and steps >= self.next_eval:
            self._evaluate(steps)
            self.next_eval = (steps // self.config.eval_freq + 1) * self.config.eval_freq
        if self.next_save is not None and steps >= self.next_save:
            self.save(checkpoint_path(self.run_dir, steps), steps)
            self.next_save = (steps // self.config.save_freq + 1) * self.config.save_freq
        return True

    def _evaluate(self, steps: int) -> None:
        best = self.history.best
        scores, lengths = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.config.eval_episodes,
            deterministic=False, return_episode_rewards=True,
        )
        self.history.append(steps, np.asarray(scores), np.asarray(lengths))
        self.history.save(self.run_dir)
        mean = float(np.mean(scores))
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.logger.dump(steps)
        print(f"eval @ {steps:,} steps: score {mean:.2f} ± {np.std(scores):.2f} over {len(scores)} games", flush=True)
        if mean > best:
            self.save(self.run_dir / BEST_MODEL, steps)

    def save(self, path: Path, steps: int) -> None:
        save_sb3(self.model, path, checkpoint_meta(self.config, steps), extra={RNG_ENTRY: rng_state_bytes()})

    def _on_training_end(self) -> None:
        if self.eval_env is not None:
            self.eval_env.close()


def _restore(model: PPO, path: Path) -> None:
    """Policy, optimiser and RNG from one of our checkpoints, without unpickling anything."""
    with zipfile.ZipFile(path) as zf:
        model.policy.load_state_dict(torch.load(io.BytesIO(zf.read("policy.pth")), weights_only=True))
        model.policy.optimizer.load_state_dict(
            torch.load(io.BytesIO(zf.read("policy.optimizer.pth")), weights_only=True))
        if RNG_ENTRY in zf.namelist():
            set_rng_state_bytes(zf.read(RNG_ENTRY))


def train_sb3(config: RunConfig, run_dir: Path, tensorboard_log: str | None = None,
              progress: bool = False, verbose: int = 0, resume: bool = True) -> Path:
    """Train (or resume) one run with SB3's PPO; returns the final model's path."""
    hp = config.hyperparams
    env = make_env(config.game, hp["n_envs"], seed=config.seed, training=True, vec_env=config.vec_env)
    model = PPO(
        "CnnPolicy", env,
        learning_rate=_schedule(hp["learning_rate"], "learning_rate"),
        n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
        gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
        clip_range=_schedule(hp["clip_range"], "clip_range"), clip_range_vf=hp.get("clip_range_vf"),
        normalize_advantage=hp.get("normalize_advantage", True),
        ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
        target_kl=hp.get("target_kl"),
        policy_kwargs=resolve_policy_kwargs(hp["policy_kwargs"]),
        tensorboard_log=None if tensorboard_log is None else str(Path(tensorboard_log) / config.env_id),
        seed=config.seed, device=config.device, verbose=verbose,
    )
    start, saved = 0, checkpoints(run_dir) if resume else []
    if saved:
        start, path = saved[-1]
        _restore(model, path)
        model.num_timesteps = start
        print(f"resuming {run_dir} from {path.name}", flush=True)
    history = EvalHistory.load(run_dir, up_to=start) if start else EvalHistory()
    if start:
        history.save(run_dir)  # drop evaluations made after the checkpoint we resume from
    callback = StudyCallback(config, run_dir, history, start)
    try:
        if start < config.n_timesteps:
            # With reset_num_timesteps=False SB3 schedules over num_timesteps + total_timesteps,
            # so passing the remainder keeps the LR/clip schedules on the original 0 -> n_timesteps axis.
            model.learn(total_timesteps=config.n_timesteps - start, callback=callback,
                        progress_bar=progress, reset_num_timesteps=start == 0,
                        tb_log_name=Path(run_dir).name)
        final = final_model_path(run_dir, config.env_id)
        callback.save(final, model.num_timesteps)
    finally:
        env.close()
    return final
