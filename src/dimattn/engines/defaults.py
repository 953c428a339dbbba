"""A run's defaults and limits: plain numbers and names, importable without torch (the command line
builds its ``--help`` from them before it knows whether a command will train).

:mod:`dimattn.engines.config` checks runs against them and re-exports them.
"""

#: A run's defaults (SPEC §4-§5), used by ``dimattn train``, ``dimattn study init`` and the API alike.
DEFAULT_N_TIMESTEPS = 10_000_000
DEFAULT_EVAL_FREQ = 200_000
DEFAULT_EVAL_EPISODES = 5
DEFAULT_SAVE_FREQ = 500_000
#: ``auto``: the fast engine where it can run the config (EnvPool installed, the game in EnvPool, SPEC §4
#: options), else the SB3 engine. Both learn the same (docs/benchmarks.md, learning parity).
ENGINES = ("auto", "fast", "sb3")
#: How a run's training envs are vectorised: SB3's dummy / subproc, or (the fast engine) EnvPool.
VEC_ENVS = ("dummy", "subproc", "envpool")
DEFAULT_ENGINE = "auto"


#: Above this many steps a number is a typo (``-n 1e30``), not a plan: 1e12 steps is ~30 years of
#: training at 1,000 steps/s.
MAX_STEPS = 10**12
#: Seeds stay below 2**31 (EnvPool and ALE take signed 32-bit seeds) with room for the training envs'
#: ``seed + i`` (the rollout's memory check keeps n_envs far below 2**20). Evaluation seeds come from a
#: SeedSequence of the seed (common.eval_seeds): any seed gives them.
MAX_SEED = 2**31 - 2**20
#: Experiment tracking's defaults (engines/tracking.py): the W&B project, and MLflow's local store.
DEFAULT_PROJECT = "dimattn"
DEFAULT_MLRUNS = "mlruns"
