"""Training: a run's configuration, its folder on disk, and the two engines that fill it.

    config.py   ``RunConfig`` (what config.yml holds, checked once) and ``PPOArgs`` (the same, fully
                resolved); the defaults of a run
    literals.py hyperparameter values parsed without eval (literals, dict(...), lin_<x>, known names)
    rlzoo.py    RL Zoo's YAML files: the shipped ppo.yml, --conf-file, --hyperparams key:value items
    rundir.py   the run folder (config.yml, evaluations.npz, checkpoints, final model)
    common.py   what both engines share: checkpoint metadata, RNG state, resume, evaluation bookkeeping
    progress.py what a training shows: the progress bar (both engines), the fast engine's logs
    sb3.py      the reference engine: Stable-Baselines3's PPO
    fast.py     the fast engine's entry: what it can run, ``train_pack`` (K runs; 1 = a run alone)
    ppo.py        PPO top to bottom: rollout, GAE, loss, update, the training loop
    learners.py   one network, K networks in threads, K vmapped: one interface (act, update, state)
    acting.py     the training EnvPools, action sampling, the act step (CUDA graphs)
    speed.py      how the machine is used (Speed), per device; torch threads, env groups
    members.py    each run of a pack: network, Adam, RNGs, files; its SB3-zip checkpoints
    evaluation.py when and how a pack's runs are evaluated
    train.py    ``train(config, run_dir)``: picks the engine and runs it
    stopping.py SIGTERM / SIGUSR1 while training: finish the iteration, checkpoint, stop (resumable)
    resume.py   ``train --resume RUN_DIR`` and ``-i MODEL.zip``: a run folder set up for train's resume
    tracking.py ``--track`` (Weights & Biases) and ``--mlflow``: TensorBoard's scalars, config, model

May import: ``dimattn.agents``, ``dimattn.envs`` and the base modules (errors, fileio, games, host).
Nothing above (study, analysis, interpret, cli).
"""
