"""Training: a run's configuration, its folder on disk, and the two engines that fill it.

    defaults.py a run's defaults and limits (steps, evaluation, engines, seeds): plain values, no torch
    config.py   ``RunConfig`` (what config.yml holds, checked when made) and ``PPOArgs`` (what the engines
                read, resolved from it)
    literals.py hyperparameter values parsed without eval (literals, dict(...), lin_<x>, known names)
    rlzoo.py    RL Zoo's YAML files: the shipped ppo.yml, --conf-file, --hyperparams key:value items
    rundir.py   the run folder (config.yml, evaluations.npz, checkpoints, final model)
    train.py    the one road: ``prepare`` (every check; engine, device, speed and drive decided once),
                ``run_plan``, and ``train_pack`` / ``train`` (K runs; 1 = a run alone)
    plan.py     ``TrainPlan``: what ``prepare`` decided, read by everything after it
    common.py   what both engines share: checkpoint metadata, RNG state, restoring, resume, evaluation bookkeeping
    progress.py what a training shows: the progress bar (both engines), the fast engine's logs
    sb3.py      the reference engine: Stable-Baselines3's PPO (SB3's own loss), a run alone
    fast.py     the fast engine's entry: what it can run, ``train_fast`` (a plan's K runs)
    ppo.py        PPO top to bottom: rollout, GAE, loss, update, the training loop (the fast engine's loss)
    rollout.py    a rollout's buffer (T, K, N)
    learner.py    the learner interface (act, forward, update, state, close), its drives and statistics
    learners.py   its three kinds: one network, K networks in threads, K vmapped
    acting.py     the training EnvPools, action sampling, the act step (CUDA graphs)
    speed.py      how the machine is used (Speed), per device; torch threads, env groups
    members.py    each run of a pack: network, Adam, RNGs, files; its SB3-zip checkpoints
    evaluation.py when and how a pack's runs are evaluated
    stopping.py SIGTERM / SIGUSR1 while training: finish the iteration, checkpoint, stop (resumable)
    resume.py   ``train --resume RUN_DIR`` and ``-i MODEL.zip``: a run folder set up for train's resume
    tracking.py ``--track`` (Weights & Biases) and ``--mlflow``: TensorBoard's scalars, config, model

May import: ``dimattn.agents``, ``dimattn.envs`` and the base modules (errors, fileio, games, host).
Nothing above (study, analysis, interpret, cli).
"""
