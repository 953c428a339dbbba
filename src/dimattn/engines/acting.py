"""Acting: the training envs, drawing actions from the policy, and filling a rollout.

- :class:`Envs`: the EnvPools of a pack's K runs (K = 1 alone), split into groups stepped in turn, and
  what carries over between rollouts (current observations, done flags, finished games' scores);
- :func:`sample`: actions from the policy's logits (Gumbel-max), :func:`acting` the act step (no
  gradients, the engine's autocast), :func:`cuda_graphed` the same step replayed as a CUDA graph;
- :func:`act_steps`: the act step of each env group, as :func:`dimattn.engines.ppo.collect` calls them.

The network that acts is a learner's (:mod:`dimattn.engines.learners`): obs (K, n, 4, 84, 84) uint8 ->
logits (K, n, A), values (K, n).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from dimattn.agents.networks import OBS_SHAPE
from dimattn.engines.speed import Speed, env_groups
from dimattn.envs.pool import FRAME_SKIP, make_pool

#: The act step: obs (K, n, 4, 84, 84) uint8 -> actions, log-probs, values, each (K, n).
ActStep = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class Envs:
    """The training EnvPools of K runs and what the engine carries between rollouts: each env's
    current observation and done flags, and each run's finished games for ``rollout/ep_rew_mean``.

    Env j of run k is seeded ``seeds[k] + j``, as when the run trains alone. Group g's pool holds, for
    every run, its envs in slice g, run-major: pool index m = k * n_g + j'. ``obs[g]`` (K, n_g, 4, 84, 84)
    is that group's current observation in (pinned) host memory, uploaded once per step.
    """

    def __init__(self, game: str, seeds: list[int], n_envs: int, speed: Speed, pin: bool = False) -> None:
        self.slices = env_groups(n_envs, speed)
        self.k, n_g = len(seeds), self.slices[0].stop - self.slices[0].start
        threads = speed.env_threads or max(1, (os.cpu_count() or 1) // len(self.slices))
        self.pools = [make_pool(game, self.k * n_g, [sk + j for sk in seeds for j in range(s.start, s.stop)],
                                training=True, num_threads=min(threads, self.k * n_g)) for s in self.slices]
        self.n_actions = int(self.pools[0].action_space.n)
        self.obs = [torch.zeros(self.k, n_g, *OBS_SHAPE, dtype=torch.uint8, pin_memory=pin) for _ in self.slices]
        self.done = np.zeros((self.k, n_envs), dtype=bool)
        self.trunc = np.zeros((self.k, n_envs), dtype=bool)
        self.game_score = np.zeros((self.k, n_envs))
        self.game_steps = np.zeros((self.k, n_envs), dtype=np.int64)
        self.finished: list[deque[tuple[float, int]]] = [deque(maxlen=100) for _ in seeds]  # (score, frames)
        for pool in self.pools:
            pool.async_reset()
        for g in range(len(self.pools)):
            self.receive(g)

    def receive(self, g: int) -> np.ndarray:
        """Wait for group ``g``'s step; update its obs and flags; return its rewards (K, n_g)."""
        obs, reward, terminated, truncated, info = self.pools[g].recv()
        order = np.argsort(info["env_id"])  # EnvPool may return envs in any order
        s, shape = self.slices[g], (self.k, -1)
        self.obs[g].numpy().reshape(-1, *OBS_SHAPE)[:] = obs[order]
        terminated, truncated = terminated[order].reshape(shape), truncated[order].reshape(shape)
        self.done[:, s] = terminated | truncated
        self.trunc[:, s] = truncated & ~terminated
        # A game ends at game over or time limit (a life loss only ends the training episode).
        self.game_score[:, s] += info["reward"][order].reshape(shape)
        self.game_steps[:, s] += 1
        ended = info["terminated"][order].reshape(shape).astype(bool) | truncated
        for k, j in zip(*np.nonzero(ended)):
            self.finished[k].append((float(self.game_score[k, s][j]), int(self.game_steps[k, s][j]) * FRAME_SKIP))
        self.game_score[:, s][ended] = 0.0
        self.game_steps[:, s][ended] = 0
        return reward[order].reshape(shape).astype(np.float32)

    def send(self, g: int, actions: np.ndarray) -> None:
        """Actions (K, n_g) for group ``g``."""
        self.pools[g].send(actions.reshape(-1).astype(np.int32), np.arange(actions.size, dtype=np.int32))

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw actions from Categorical(logits) by the Gumbel-max trick and return (actions, log-probs).

    argmax(logits + G) with G ~ Gumbel(0, 1) i.i.d. is distributed as softmax(logits): one uniform
    draw and a few element-wise kernels, no ``torch.distributions`` object per step
    (tests/test_ppo.py::test_gumbel_sampler_draws_from_the_policy). logits (..., A) -> (...,), (...,).
    ``generator``: the uniform draw's (default torch's global one).
    """
    logp = torch.log_softmax(logits.float(), -1)
    uniform = torch.rand(logp.shape, generator=generator, dtype=logp.dtype, device=logp.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(logp.dtype).tiny)))
    action = torch.argmax(logp + gumbel, -1)
    return action, logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def acting(forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], speed: Speed,
           generator: torch.Generator | None = None) -> ActStep:
    """The act step of :func:`collect`: obs (K, n, 4, 84, 84) uint8 -> (actions, log-probs, values),
    each (K, n), without gradients, under the engine's autocast; actions drawn with ``generator``."""

    def step(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad(), torch.autocast(obs.device.type, torch.bfloat16, enabled=speed.bf16):
            logits, value = forward(obs)
        return (*sample(logits, generator), value.float())

    return step


def cuda_graphed(step: Callable, example: torch.Tensor) -> Callable:
    """``step`` replayed as a CUDA graph on a static copy of ``example``'s shape: one launch instead of
    one per kernel. The network's parameters are updated in place, so the graph keeps reading them."""
    static_in = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up outside the graph (cuDNN autotuning, lazy allocations)
            step(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step(static_in)

    def replay(obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        static_in.copy_(obs, non_blocking=True)
        graph.replay()
        return static_out

    return replay


def act_steps(step: ActStep, envs: Envs, speed: Speed, device: torch.device) -> list[ActStep]:
    """One act step per env group for :func:`collect` (a CUDA graph each, with ``speed.cuda_graph``)."""
    if speed.cuda_graph and device.type == "cuda":
        return [cuda_graphed(step, obs.to(device)) for obs in envs.obs]
    return [step] * len(envs.slices)
