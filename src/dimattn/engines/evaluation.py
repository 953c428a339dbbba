"""When and how the fast engine evaluates a pack's runs (K = 1: a run alone), as the SB3 engine does.

SPEC's protocol: every ``eval_freq`` steps, ``eval_episodes`` whole games per run with raw scores and the
stochastic policy, on separate Gymnasium + SB3 ``AtariWrapper`` envs (:func:`dimattn.envs.ale.evaluate`);
each result goes to the run's ``evaluations.npz`` and a new best writes ``best_model.zip``. The games of
all runs are played together (one batched forward per step); the envs are built at the first evaluation
and kept for the others.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from dimattn.engines import stopping
from dimattn.engines.acting import sample
from dimattn.engines.common import eval_seeds, next_multiple, record_evaluation
from dimattn.engines.learner import Learner
from dimattn.engines.members import Member
from dimattn.engines.rundir import BEST_MODEL
from dimattn.engines.speed import Speed, torch_threads
from dimattn.envs.ale import evaluate, evaluation_envs


class Evaluations:
    """The evaluations of ``members`` by ``learner`` from the members' start on; ``seconds``: the time
    spent in them."""

    def __init__(self, members: list[Member], learner: Learner, speed: Speed, verbose: int = 0) -> None:
        self.members, self.learner, self.speed, self.verbose = members, learner, speed, verbose
        self.args = members[0].args
        self.next = next_multiple(members[0].start, self.args.eval_freq)
        self.envs: list = []
        self.seconds = 0.0

    def run_due(self, steps: int) -> None:
        """Every evaluation due by ``steps``. SB3 evaluates in the middle of a rollout, at the first step
        (a multiple of n_envs) past each eval_freq; the policy does not change within a rollout, so the
        engine evaluates it after the rollout, under the step SB3 would have recorded."""
        args, k = self.args, len(self.members)
        while self.next is not None and self.next <= steps:
            at = math.ceil(self.next / args.n_envs) * args.n_envs
            t0 = time.perf_counter()
            self.envs = self.envs or evaluation_envs(args.game, k * args.eval_episodes)
            with torch_threads(self.speed.collect_threads), stopping.evaluating():  # Ctrl-C: stop after it
                self._evaluate(at)
            self.seconds += time.perf_counter() - t0
            if self.verbose:
                print(f"evaluated at {at:,} steps: {k} × {args.eval_episodes} games in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            self.next = next_multiple(at, args.eval_freq)

    def _evaluate(self, steps: int) -> None:
        args = self.args
        seeds = [eval_seeds(m.args.seed, len(m.history.timesteps), args.eval_episodes) for m in self.members]

        def policy(obs: np.ndarray) -> np.ndarray:  # (K, E, 4, 84, 84) -> (K, E)
            with torch.no_grad():
                logits, _ = self.learner.forward(torch.as_tensor(obs, device=args.device))
            return sample(logits)[0].cpu().numpy()

        results = evaluate(policy, args.game, seeds, self.envs)
        for i, (m, (scores, lengths)) in enumerate(zip(self.members, results)):
            if record_evaluation(m.history, m.run_dir, steps, scores, lengths, m.writer):
                m.save(m.run_dir / BEST_MODEL, steps, *self.learner.state(i))

    def close(self) -> None:
        for env in self.envs:
            env.close()
