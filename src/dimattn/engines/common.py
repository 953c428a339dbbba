"""What both engines share, so a run is the same run whichever engine trains it.

- ``dimattn.json`` metadata and the RNG state stored in every checkpoint zip;
- resuming: the newest checkpoint and the evaluation history cut back to it;
- the evaluation schedule (every ``eval_freq`` / ``save_freq`` total steps) and one evaluation-seed scheme
  (:func:`eval_seeds`; the games themselves are played by :func:`dimattn.envs.ale.evaluate`);
- recording an evaluation: ``evaluations.npz``, TensorBoard, the "eval @" line, whether it is the best;
- an SB3 ``PPO`` built from :class:`~dimattn.engines.config.PPOArgs` (the SB3 engine trains it, the
  fast engine uses it to write SB3 zips).
"""

from __future__ import annotations

import io
import math
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimattn.agents.checkpoints import load_tensors
from dimattn.agents.registry import block_record, split_label
from dimattn.agents.registry import get as get_block
from dimattn.engines.config import PPOArgs
from dimattn.engines.rundir import EvalHistory, checkpoints
from dimattn.errors import DimattnError

RNG_ENTRY = "dimattn_rng.pt"  # not .pth: SB3 loads every .pth entry as parameters
STATE_ENTRY = "dimattn_fast_state.pt"  # the fast engine's steps and optimiser updates
EVAL_SEED_OFFSET = 10_000  # a salt: evaluation games get seeds of their own (see eval_seeds)


def eval_seeds(seed: int, k: int, episodes: int) -> list[int]:
    """The seeds of the games of a run's ``k``-th evaluation (0-based): one per game, distinct from the
    training envs' (``seed + i``) and from every other evaluation's and run's; the same in both engines,
    in a pack and after a resume."""
    state = np.random.SeedSequence([EVAL_SEED_OFFSET, seed, k]).generate_state(episodes)
    return [int(s) % 2**31 for s in state]


def next_multiple(step: int, freq: int) -> int | None:
    """The first multiple of ``freq`` after ``step`` (None when ``freq <= 0``: never)."""
    return (step // freq + 1) * freq if freq > 0 else None


def checkpoint_meta(args: PPOArgs, steps: int) -> dict[str, Any]:
    """What ``dimattn.json`` records, so any checkpoint can be loaded without guessing."""
    block = block_record(args.agent, args.raw_policy_kwargs["features_extractor_kwargs"].get("block_kwargs"))
    return {"agent": args.agent, "game": args.game, "env_id": args.env_id, "seed": args.seed,
            "ada_attn": args.ada_attn, "norm_softmax": args.norm_softmax, "block": block,
            "engine": args.engine, "num_timesteps": int(steps)}


def rng_state_bytes(numpy_state: tuple | None = None, torch_state: torch.Tensor | None = None) -> bytes:
    """torch's RNG state and NumPy's (the global ones, or a run's own: ``numpy_state`` from a RandomState's
    ``get_state()``, ``torch_state`` from a Generator's ``get_state()``) as a ``torch.save`` file
    (tensors only: loads with weights_only)."""
    key, pos, has_gauss, gauss = (np.random.get_state() if numpy_state is None else numpy_state)[1:]
    torch_state = torch.get_rng_state() if torch_state is None else torch_state
    buf = io.BytesIO()
    torch.save({"torch": torch_state, "np_key": torch.from_numpy(key.astype(np.int64)),
                "np_rest": torch.tensor([pos, has_gauss], dtype=torch.int64), "np_gauss": torch.tensor(gauss)}, buf)
    return buf.getvalue()


def set_rng_state_bytes(raw: bytes, what: str = "checkpoint") -> None:
    s = load_tensors(raw, what)
    torch.set_rng_state(s["torch"])
    pos, has_gauss = (int(x) for x in s["np_rest"])
    np.random.set_state(("MT19937", s["np_key"].numpy().astype(np.uint32), pos, has_gauss, float(s["np_gauss"])))


#: What a write killed half-way leaves in a run folder: ``fileio.atomic_path``'s ``.<name>.<random>.tmp``,
#: the ``.<name>.<random>.zip`` that ``save_sb3`` writes beside it, and ``.write-test-*`` probes.
LEFTOVERS = (".*.tmp", ".*.zip", ".write-test-*")


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that were killed; returns what was removed. Only the
    process that trains the run calls it (under the study's run lock), so no write is in flight."""
    removed = []
    for pattern in LEFTOVERS:
        for path in Path(run_dir).glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def resume_point(run_dir: Path, resume: bool) -> tuple[int, Path | None, EvalHistory]:
    """(steps, checkpoint or None, evaluation history) to start from. The history is cut back to the
    checkpoint (evaluations made after it will be made again); the engine writes it back once the
    checkpoint has loaded, so a corrupt checkpoint leaves the files as they were. Leftovers of killed
    writes are removed first (both engines start here)."""
    removed = remove_leftovers(run_dir)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted write: "
              + ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""), flush=True)
    saved = checkpoints(run_dir) if resume else []
    if not saved:
        return 0, None, EvalHistory()
    steps, path = saved[-1]
    return steps, path, EvalHistory.load(run_dir, up_to=steps)


def restore_training_state(path: Path, optimizer: torch.optim.Optimizer) -> tuple[int | None, int | None]:
    """The optimiser's state and the RNG states from one of our checkpoints (both engines), through the
    safe tensor loader; returns (steps, optimiser updates) where the fast engine recorded them, else
    (None, None). The network's weights are the caller's: each engine names them its own way."""
    what = f"checkpoint {path}"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if "policy.optimizer.pth" in names:
            optimizer.load_state_dict(load_tensors(zf.read("policy.optimizer.pth"), what))
        if RNG_ENTRY in names:
            set_rng_state_bytes(zf.read(RNG_ENTRY), what)
        if STATE_ENTRY in names:
            s = load_tensors(zf.read(STATE_ENTRY), what)
            return int(s["num_timesteps"]), int(s["n_updates"])
    return None, None


def record_evaluation(history: EvalHistory, run_dir: Path, steps: int, scores: np.ndarray,
                      lengths: np.ndarray, writer: Any = None) -> bool:
    """Append one evaluation to ``evaluations.npz``, log it, print it; True if it is the best so far."""
    best = history.best
    history.append(steps, scores, lengths)
    history.save(run_dir)
    mean = float(np.mean(scores))
    if writer is not None:
        writer.add_scalar("eval/mean_reward", mean, steps)
        writer.add_scalar("eval/mean_ep_length", float(np.mean(lengths)), steps)
    games = f"{len(scores)} game" + "s" * (len(scores) != 1)
    print(f"eval @ {steps:,} steps: score {mean:.2f} ± {np.std(scores):.2f} over {games}", flush=True)
    return mean > best


def sb3_ppo(args: PPOArgs, env: Any = None, n_actions: int | None = None, tensorboard_log: str | None = None,
            verbose: int = 0) -> Any:
    """SB3's ``PPO`` with the run's hyperparameters (SPEC §4) on ``env``, or, given ``n_actions`` instead,
    on a stand-in env with the run's spaces (to write SB3 zips of another learner's weights)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import LinearSchedule

    def schedule(start: float, linear: bool) -> Any:
        # progress goes 1 -> 0 over training; lin_x decays x -> 0 linearly (RL Zoo's linear_schedule)
        return LinearSchedule(start, 0.0, 1.0) if linear else start

    if env is None:
        env = _spaces_env(n_actions or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a stand-in env's buffer is smaller than batch_size
        return PPO("CnnPolicy", env, learning_rate=schedule(args.learning_rate, args.lr_linear),
                   n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                   gamma=args.gamma, gae_lambda=args.gae_lambda,
                   clip_range=schedule(args.clip_range, args.clip_linear), clip_range_vf=args.clip_range_vf,
                   normalize_advantage=args.normalize_advantage, ent_coef=args.ent_coef, vf_coef=args.vf_coef,
                   max_grad_norm=args.max_grad_norm, target_kl=args.target_kl, policy_kwargs=args.policy_kwargs,
                   tensorboard_log=tensorboard_log, seed=args.seed,
                   device=args.device if n_actions is None else "cpu", verbose=verbose)


def _spaces_env(n_actions: int) -> Any:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dimattn.agents.networks import observation_space as spaces_of_observations

    class Spaces(gym.Env):
        observation_space = spaces_of_observations()
        action_space = gym.spaces.Discrete(n_actions)

    return DummyVecEnv([Spaces])


def check_finite_update(args: PPOArgs, run_dir: Path, steps: int, values: dict[str, float]) -> None:
    """Stop training at the first update whose loss terms (``values``: name -> value) are not finite:
    the network's weights are NaN from there on, and every checkpoint and the final model would be too.
    One line naming the run, the agent's block and the step; the checkpoints written before stay."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if not bad:
        return
    block = get_block(split_label(args.agent)[0])
    raise DimattnError(
        f"{run_dir}: training stopped at step {steps:,}: the update's {', '.join(bad)} "
        f"{'is' if len(bad) == 1 else 'are'} not finite (NaN or infinite), so the network's weights are "
        f"too; its attention block {block.name} ({block.source}) is the "
        "likely cause: check its output (dimattn agents); no model was saved at or after this step")
