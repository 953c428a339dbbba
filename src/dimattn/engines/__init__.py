"""Training: a run's configuration, its folder on disk, and the two engines that fill it.

    config.py   ``RunConfig`` (what config.yml holds, checked once) and ``PPOArgs`` (the same, fully
                resolved); the defaults of a run
    literals.py hyperparameter values parsed without eval (literals, dict(...), lin_<x>, known names)
    rlzoo.py    RL Zoo's YAML files: the shipped ppo.yml, --conf-file, --hyperparams key:value items
    rundir.py   the run folder (config.yml, evaluations.npz, checkpoints, final model)
    common.py   what both engines share: checkpoint metadata, RNG state, resume, evaluation bookkeeping
    sb3.py      the reference engine: Stable-Baselines3's PPO
    fast.py     the fast engine: our PPO on EnvPool, readable top to bottom
    train.py    ``train(config, run_dir)``: picks the engine and runs it
    stopping.py SIGTERM / SIGUSR1 while training: finish the iteration, checkpoint, stop (resumable)

May import: ``dimattn.agents``, ``dimattn.envs`` and the base modules (errors, fileio, games, host).
Nothing above (study, analysis, interpret, cli).
"""
