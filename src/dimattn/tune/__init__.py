"""Hyperparameter search on Optuna (``dimattn tune``, ``dimattn train -optimize``), RL Baselines3 Zoo's way.

    space.py      the search space: RL Zoo's PPO space, the attention options, a plugin block's declared
                  ranges, a YAML space file; sampling a point, a point as hyperparameters
    spec.py       the tune folder and ``tune.yml`` (what every worker of one search shares), checked once
    objective.py  one trial: its point trained as a small study, evaluations reported, pruning, its value
    workers.py    which workers are alive (locks), and retrying the trials that killed ones left running
    run.py        the Optuna study: storage, sampler, pruner, checks before any trial, a worker's loop,
                  ``--n-jobs`` local worker processes
    output.py     best.yml (a conf file), trials.csv, tune.html (Optuna's Plotly figures)
    launch.py     workers elsewhere: a Slurm / PBS Pro array script, Ray tasks

May import: ``dimattn.study`` (a trial's runs are a study), ``dimattn.analysis`` (the human-normalised score;
what a folder of runs leaves out), ``dimattn.engines`` and everything below them. Not interpret, axes or cli.
"""
