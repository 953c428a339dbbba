"""Training: a run's configuration, its folder on disk, and the two engines that fill it.

    config.py   ``RunConfig`` (what config.yml holds) and ``PPOArgs`` (the same, fully resolved);
                hyperparameters parsed without eval; the defaults of a run
    rundir.py   the run folder (config.yml, evaluations.npz, checkpoints, final model)
    common.py   what both engines share: checkpoint metadata, RNG state, resume, evaluation bookkeeping
    sb3.py      the reference engine: Stable-Baselines3's PPO
    fast.py     the fast engine: our PPO on EnvPool, readable top to bottom
    train.py    ``train(config, run_dir)``: picks the engine and runs it

May import: ``dimattn.agents``, ``dimattn.envs`` and the base modules (errors, fileio, games).
Nothing above (study, analysis, interpret, cli).
"""
