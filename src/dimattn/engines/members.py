"""A pack's runs (K = 1: a run alone): each one's network, Adam, RNG streams and files, and its checkpoints.

A checkpoint is an SB3 zip (loadable by :func:`dimattn.agents.checkpoints.load_agent` and by SB3's
``PPO.load``) with the fast engine's full training state beside the weights::

    rl_model_<steps>_steps.zip
        policy.pth, policy.optimizer.pth, data   SB3's own entries (weights under SB3's names, Adam)
        dimattn.json                             what the run is (common.checkpoint_meta)
        dimattn_rng.pt                           torch's and NumPy's RNG states (the run's own in a pack)
        dimattn_fast_state.pt                    steps and optimiser updates done

:func:`new_member` builds a run's network and restores it from its newest checkpoint;
:func:`save_members` writes every run's checkpoint from what its learner holds.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimattn.agents.checkpoints import read_checkpoint, save_sb3
from dimattn.agents.networks import ActorCritic
from dimattn.engines.common import (
    RNG_ENTRY,
    STATE_ENTRY,
    checkpoint_meta,
    restore_training_state,
    resume_point,
    rng_state_bytes,
    sb3_ppo,
)
from dimattn.engines.config import PPOArgs
from dimattn.engines.learner import ADAM_BETAS, ADAM_EPS, Drive, Learner
from dimattn.engines.rundir import EvalHistory
from dimattn.envs.pool import make_pool
from dimattn.errors import DimattnError


@dataclass
class Member:
    """One run of a pack (or the run alone): its configuration, folder, files and learning state.

    ``policy``/``optimizer`` are the run's own network and torch Adam: the ones that learn when the run
    is alone or in a threaded pack, a CPU copy that checkpoints are written from and restored into in a
    vmapped pack (:class:`dimattn.engines.learners.VmappedLearner`).
    """

    args: PPOArgs
    run_dir: Path
    policy: ActorCritic
    optimizer: torch.optim.Adam
    saver: Saver
    history: EvalHistory
    rng: Any  # NumPy RNG of the minibatch draws: the global one alone (as SB3), a RandomState in a pack
    gen: torch.Generator | None = None  # the actions' draws in a threaded pack (else torch's global RNG)
    start: int = 0
    checkpoint: Path | None = None
    n_updates: int = 0
    writer: Any = None  # its TensorBoard SummaryWriter, or None

    def save(self, path: Path, steps: int, policy: ActorCritic, optimizer: torch.optim.Optimizer) -> Path:
        """Write the run's checkpoint at ``steps`` from ``policy`` and ``optimizer`` (its learner's state),
        with its own RNG states where they are not the global ones (a pack member's)."""
        numpy_state = None if self.rng is np.random else self.rng.get_state()
        torch_state = None if self.gen is None else self.gen.get_state()
        return self.saver.save(path, policy, optimizer, steps, self.n_updates, numpy_state, torch_state)


def new_member(args: PPOArgs, run_dir: Path, drive: Drive, resume: bool) -> Member:
    """A run's network, Adam and files, restored from its newest checkpoint: on the run's device, or on
    the CPU for a vmapped pack (whose stacked copy learns on the device). A member's minibatch RNG is
    NumPy's global one alone, a RandomState of its own seed in a pack; in a threaded pack its actions are
    drawn from a torch Generator of its own too (worker threads would take turns on the global one in
    no fixed order)."""
    alone, stacked = drive == "alone", drive == "vmapped"
    device = torch.device("cpu") if stacked else args.device
    torch.manual_seed(args.seed)  # each member's initial weights are the ones it would have alone
    n_actions = _n_actions(args.game)
    policy = ActorCritic(n_actions, args.agent, ada_attn=args.ada_attn,
                         norm_softmax=args.norm_softmax, features_dim=args.features_dim,
                         block_kwargs=args.raw_policy_kwargs["features_extractor_kwargs"].get("block_kwargs")).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS,
                                 fused=not stacked and device.type == "cuda")
    rng = np.random if alone else np.random.RandomState(args.seed)
    start, path, history = resume_point(run_dir, resume)
    member = Member(args, run_dir, policy, optimizer, Saver(args, n_actions), history, rng)
    if path is not None:
        steps, n_updates = restore(path, policy, optimizer)
        if not alone:  # restore set NumPy's global RNG: that state is this member's stream
            rng.set_state(np.random.get_state())
        member.start, member.checkpoint = steps, path
        member.n_updates = n_updates if n_updates is not None else steps // args.rollout_size * args.n_epochs
        history.save(run_dir)
    if drive == "threaded":  # after restore, which set torch's global RNG to this member's state
        member.gen = torch.Generator(device)
        member.gen.set_state(torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device))
    return member


def _n_actions(game: str) -> int:
    pool = make_pool(game, 1, 0, num_threads=1)
    try:
        return int(pool.action_space.n)
    finally:
        pool.close()


def save_members(members: list[Member], learner: Learner, steps: int,
                 path_of: Callable[[Member], Path]) -> list[Path]:
    """Every run's checkpoint at ``steps``, at ``path_of(member)``, from its learner's state."""
    return [m.save(path_of(m), steps, *learner.state(i)) for i, m in enumerate(members)]


# ----------------------------------------------------------------------------------------------
# SB3 zips with the full training state
# ----------------------------------------------------------------------------------------------

def _state_bytes(steps: int, n_updates: int) -> bytes:
    buf = io.BytesIO()
    torch.save({"num_timesteps": torch.tensor(steps), "n_updates": torch.tensor(n_updates)}, buf)
    return buf.getvalue()


class Saver:
    """Writes SB3 zips of a run's network, optimiser, step count and RNG states."""

    def __init__(self, args: PPOArgs, n_actions: int) -> None:
        self.args = args
        self.model = sb3_ppo(args, n_actions=n_actions)

    def save(self, path: Path, policy: ActorCritic, optimizer: torch.optim.Optimizer, steps: int, n_updates: int,
             numpy_state: tuple | None = None, torch_state: torch.Tensor | None = None) -> Path:
        """``numpy_state``/``torch_state``: the run's RNG states where they are not the global ones (a
        pack member's)."""
        ours = policy.state_dict()
        theirs = {k: ours[re.sub(r"^(pi_|vf_)features_extractor\.", "features_extractor.", k)]
                  for k in self.model.policy.state_dict()}  # SB3 aliases the shared extractor
        self.model.policy.load_state_dict(theirs)
        # SB3's optimiser holds the policy's parameters in our order, so the state transfers as is.
        self.model.policy.optimizer.load_state_dict(optimizer.state_dict())
        self.model.num_timesteps = steps
        meta = checkpoint_meta(self.args, steps)
        extra = {RNG_ENTRY: rng_state_bytes(numpy_state, torch_state), STATE_ENTRY: _state_bytes(steps, n_updates)}
        return save_sb3(self.model, path, meta, extra=extra)


def restore(path: Path, policy: ActorCritic, optimizer: torch.optim.Optimizer) -> tuple[int, int | None]:
    """Load policy, optimiser and RNG states from a checkpoint; returns (steps, n_updates or None)."""
    state, meta = read_checkpoint(path)
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise DimattnError(
            f"cannot resume from {path}: it holds another network ({str(exc).splitlines()[0]})"
        ) from None
    steps, n_updates = restore_training_state(path, optimizer)
    # not written by this engine: count from the steps
    return (int(meta["num_timesteps"] or 0) if steps is None else steps), n_updates
