"""Going on with a run: ``dimattn train --resume RUN_DIR`` and ``-i/--trained-agent MODEL.zip``.

Neither is a second way to train: both put a run folder in the state :func:`dimattn.engines.train.train`
resumes from (its newest ``rl_model_<steps>_steps.zip`` and ``evaluations.npz`` up to it), the path a
study's resume takes.

- ``--resume RUN_DIR``: the run folder as it is (stopped by a signal, killed, crashed), with its own
  ``config.yml``; training goes on in the same folder.
- ``-i MODEL.zip`` (RL Zoo's ``--trained-agent``): a new run folder seeded with the model, written as its
  checkpoint, and the evaluations of the model's own run folder up to the model's step::

      <new run>/rl_model_<steps>_steps.zip   MODEL.zip, with dimattn.json added if it had none
      <new run>/evaluations.npz              <MODEL's folder>/evaluations.npz up to <steps>

  A dimattn checkpoint carries weights, Adam, RNG states and the step count, so the continued run equals
  the uninterrupted one bit for bit on the CPU. An SB3 zip from elsewhere carries weights (and Adam):
  it starts at step 0 with a note of what it lacked.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dimattn.agents.checkpoints import META_NAME, read_checkpoint
from dimattn.engines.common import RNG_ENTRY, checkpoint_meta
from dimattn.engines.config import RunConfig
from dimattn.engines.rundir import CONFIG, EvalHistory, checkpoint_path, checkpoints, final_model_path, read_config
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_path


def resume_command(run_dir: Path) -> str:
    """The command that resumes ``run_dir`` (named by the "stopped (resumable)" line)."""
    return f"dimattn train --resume {run_dir}"


def check_resumable(run_dir: str | Path) -> RunConfig:
    """The configuration of the run in ``run_dir``, checked (before anything is written): a run folder
    with a readable ``config.yml`` that is not finished."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DimattnError(f"--resume {run_dir}: no such run folder; give a folder that dimattn train made, "
                           "e.g. logs/ppo/PongNoFrameskip-v4_1")
    if not (run_dir / CONFIG).is_file():
        raise DimattnError(f"--resume {run_dir}: not a run folder (no {CONFIG}); give a folder that dimattn "
                           "train made")
    config = read_config(run_dir)
    final = final_model_path(run_dir, config.env_id)
    if final.is_file():
        raise DimattnError(f"--resume {run_dir}: the run is finished ({final.name}); to train it further, "
                           f"continue from its model into a new run: dimattn train -i {final} --env {config.game} "
                           f"--agent {config.agent} -n <more steps>")
    return config


@dataclass(frozen=True)
class TrainedAgent:
    """A model to continue from (``-i``): where it is, the step it reached, what it lacks."""

    path: Path
    steps: int
    ours: bool        # a dimattn checkpoint: RNG states and the step count inside
    lacks: tuple[str, ...]


def check_trained_agent(path: str | Path, config: RunConfig) -> TrainedAgent:
    """``-i MODEL.zip`` checked against the run's ``config`` (before anything is written): a readable SB3
    zip of the same game and agent, short of ``config.n_timesteps``."""
    path = Path(path)
    if path.suffix != ".zip" or not path.is_file():
        raise DimattnError(f"--trained-agent {path}: no such model; give an SB3 model .zip "
                           "(e.g. a run's rl_model_<steps>_steps.zip or best_model.zip)")
    state, meta = read_checkpoint(path)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    ours = META_NAME in names and RNG_ENTRY in names
    for key, want in (("game", config.game), ("agent", config.agent)):
        if meta.get(key) is not None and meta[key] != want:
            raise DimattnError(f"--trained-agent {path} is a {meta[key]} model, but this run is {key} {want}; "
                               f"give --{'env' if key == 'game' else key} {meta[key]}")
    _check_network(path, state, config)
    lacks = tuple(what for what, entry in (("the optimizer state", "policy.optimizer.pth"),
                                           ("the RNG states and step count", RNG_ENTRY)) if entry not in names)
    steps = int(meta.get("num_timesteps") or 0) if ours else 0
    if steps >= config.n_timesteps:
        raise DimattnError(f"--trained-agent {path} has trained {steps:,} steps already, -n is {config.n_timesteps:,}"
                           f"; give -n above {steps:,} (the total the run trains, as the schedules count it)")
    return TrainedAgent(path, steps, ours, lacks)


def _check_network(path: Path, state: dict, config: RunConfig) -> None:
    """The model's weights fit the network this run builds (its agent, options and the game's actions under
    its protocol), checked before the run folder exists."""
    from dimattn.agents.networks import ActorCritic
    from dimattn.envs.ale import action_meanings

    args = config.resolve()
    n_actions = 18 if config.environment["full_action_space"] else len(action_meanings(config.game))
    policy = ActorCritic(n_actions, args.agent, ada_attn=args.ada_attn, norm_softmax=args.norm_softmax,
                         features_dim=args.features_dim,
                         block_kwargs=args.raw_policy_kwargs["features_extractor_kwargs"].get("block_kwargs"))
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DimattnError(f"--trained-agent {path} does not fit this run's network ({config.agent} on "
                           f"{config.game}, {n_actions} actions): {detail[:200]}") from None


def seed_run(agent: TrainedAgent, config: RunConfig, run_dir: Path) -> None:
    """Put ``agent`` into the new ``run_dir`` as its checkpoint, with the evaluations of the model's own
    run folder up to its step, so :func:`dimattn.engines.train.train` resumes from it."""
    if agent.lacks:
        print(f"note: {agent.path.name} is not a dimattn checkpoint: it lacks {' and '.join(agent.lacks)}; "
              "continuing from its weights at step 0 (the schedules start anew)", flush=True)
    target = checkpoint_path(run_dir, agent.steps)
    with atomic_path(target) as tmp:
        if agent.ours:
            shutil.copyfile(agent.path, tmp)
        else:  # its entries, with our dimattn.json at step 0, so both engines count from there alike
            with zipfile.ZipFile(agent.path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
                for name in src.namelist():
                    if name != META_NAME:
                        dst.writestr(name, src.read(name))
                dst.writestr(META_NAME, json.dumps(checkpoint_meta(config.resolve(), 0), sort_keys=True))
    source = agent.path.parent
    if agent.ours and (source / "evaluations.npz").is_file():
        EvalHistory.load(source, up_to=agent.steps).save(run_dir)
    print(f"continuing from {agent.path} at {agent.steps:,} steps", flush=True)


def newest_checkpoint(run_dir: Path) -> str:
    """What a resume of ``run_dir`` starts from, in words."""
    saved = checkpoints(run_dir)
    return f"{saved[-1][1].name}" if saved else "the start (no checkpoint yet)"
