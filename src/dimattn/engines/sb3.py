"""The reference engine: Stable-Baselines3's PPO with the study's protocol (SPEC §3-§4).

Evaluation and checkpoints are callbacks that count *total* environment steps (all envs together),
write atomically, and let a killed run resume from its last checkpoint: the policy, the optimiser,
the step count (hence the LR and clip schedules), the learner's RNG and the evaluation history
up to that checkpoint come back. Checkpoints are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from dimattn.agents.checkpoints import load_tensors, save_sb3
from dimattn.engines import stopping
from dimattn.engines.common import (
    RNG_ENTRY,
    check_finite_update,
    checkpoint_meta,
    eval_seeds,
    next_multiple,
    record_evaluation,
    restore_training_state,
    resume_point,
    rng_state_bytes,
    sb3_ppo,
)
from dimattn.engines.config import PPOArgs
from dimattn.engines.progress import sb3_progress_callback
from dimattn.engines.rundir import BEST_MODEL, EvalHistory, checkpoint_path, final_model_path
from dimattn.envs.ale import evaluate, evaluation_envs, make_env


class StudyCallback(BaseCallback):
    """Evaluate every ``eval_freq`` and checkpoint every ``save_freq`` total environment steps."""

    def __init__(self, args: PPOArgs, run_dir: Path, history: EvalHistory, start: int) -> None:
        super().__init__()
        self.args, self.run_dir, self.history = args, Path(run_dir), history
        self.next_eval = next_multiple(start, args.eval_freq)
        self.next_save = next_multiple(start, args.save_freq)
        self.eval_envs: list = []  # built at the first evaluation, reused by the others
        self.stopped: stopping.Stopped | None = None  # set when a signal stopped training with a checkpoint

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        if self.next_eval is not None and steps >= self.next_eval:
            with stopping.evaluating():  # Ctrl-C: finish it, then checkpoint and stop below
                self._evaluate(steps)
            self.next_eval = next_multiple(steps, self.args.eval_freq)
        saved = self.next_save is not None and steps >= self.next_save
        asked = stopping.requested() if steps < self.args.n_timesteps else None
        if saved or asked:
            self.save(checkpoint_path(self.run_dir, steps), steps)
            self.next_save = next_multiple(steps, self.args.save_freq)
        if asked:  # SIGTERM / SIGUSR1: this step's checkpoint is written, exactly a periodic one; stop learning
            self.stopped = stopping.Stopped(asked, steps, [checkpoint_path(self.run_dir, steps)])
            return False
        return True

    def _on_rollout_start(self) -> None:
        """After each update (SB3 trains, then collects the next rollout): stop at the first non-finite one,
        before its NaN weights act, are evaluated or saved."""
        logged = self.model.logger.name_to_value
        values = {name: float(logged[f"train/{name}"]) for name in ("loss", "policy_gradient_loss", "value_loss")
                  if f"train/{name}" in logged}
        weights = torch.stack([p.detach().abs().sum() for p in self.model.policy.parameters()]).sum()
        check_finite_update(self.args, self.run_dir, self.num_timesteps, {**values, "weights": float(weights)})

    def _evaluate(self, steps: int) -> None:
        def act(obs: np.ndarray) -> np.ndarray:  # (1, E, 4, 84, 84) -> (1, E), sampled as in training
            return self.model.predict(obs[0], deterministic=False)[0][None]

        seeds = eval_seeds(self.args.seed, len(self.history.timesteps), self.args.eval_episodes)
        self.eval_envs = self.eval_envs or evaluation_envs(self.args.game, self.args.eval_episodes)
        ((scores, lengths),) = evaluate(act, self.args.game, [seeds], self.eval_envs)
        best = record_evaluation(self.history, self.run_dir, steps, scores, lengths)
        self.logger.record("eval/mean_reward", float(np.mean(scores)))
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.logger.dump(steps)
        if best:
            self.save(self.run_dir / BEST_MODEL, steps)

    def _on_training_end(self) -> None:
        for env in self.eval_envs:
            env.close()

    def save(self, path: Path, steps: int) -> None:
        save_sb3(self.model, path, checkpoint_meta(self.args, steps), extra={RNG_ENTRY: rng_state_bytes()})



def _restore(model: PPO, path: Path) -> None:
    """Policy, optimiser and RNG from one of our checkpoints, without unpickling anything."""
    with zipfile.ZipFile(path) as zf:
        model.policy.load_state_dict(load_tensors(zf.read("policy.pth"), f"checkpoint {path}"))
    restore_training_state(path, model.policy.optimizer)


def train_sb3(args: PPOArgs, run_dir: Path, tensorboard_log: str | None = None,
              progress: bool = False, verbose: int = 0, resume: bool = True) -> Path:
    """Train (or resume) one run with SB3's PPO; returns the final model's path."""
    env = make_env(args.game, args.n_envs, seed=args.seed, training=True, vec_env=args.vec_env)
    tb = None if tensorboard_log is None else str(Path(tensorboard_log) / args.env_id)
    model = sb3_ppo(args, env, tensorboard_log=tb, verbose=verbose)
    start, path, history = resume_point(run_dir, resume)
    if path is not None:
        _restore(model, path)
        model.num_timesteps = start
        history.save(run_dir)
        print(f"resuming {run_dir} from {path.name}", flush=True)
    callback = StudyCallback(args, run_dir, history, start)
    # our bar, not SB3's progress_bar=True, so that both engines show the same one
    callbacks = CallbackList([callback, sb3_progress_callback(args.n_timesteps)]) if progress else callback
    try:
        if start < args.n_timesteps:
            # With reset_num_timesteps=False SB3 schedules over num_timesteps + total_timesteps,
            # so passing the remainder keeps the LR/clip schedules on the original 0 -> n_timesteps axis.
            with stopping.listening():
                try:
                    model.learn(total_timesteps=args.n_timesteps - start, callback=callbacks,
                                progress_bar=False, reset_num_timesteps=start == 0,
                                tb_log_name=Path(run_dir).name)
                except ValueError as exc:  # SB3 validates its action distribution: NaN logits in an update
                    if "invalid values" not in str(exc):
                        raise
                    check_finite_update(args, run_dir, model.num_timesteps, {"action logits": float("nan")})
            if callback.stopped is not None:
                raise callback.stopped
        final = final_model_path(run_dir, args.env_id)
        callback.save(final, model.num_timesteps)
    finally:
        env.close()
    return final
