"""The environment protocol: the study's (SPEC §3, the default) or Machado et al. 2018's, on both env paths.

    study    no sticky actions, minimal action set, a life loss ends a training episode, 108,000-frame cap
    machado  sticky actions (repeat_action_probability 0.25), full action set (18), no loss-of-life
             signal, 108,000-frame cap (Machado et al., "Revisiting the ALE", JAIR 2018)

A run's ``hyperparams`` may set any of :data:`ENV_KWARGS` under ``env_kwargs`` (RL Zoo's key) on top of its
protocol. :func:`using` makes a run's options the ones :func:`dimattn.envs.ale.make_env` (training and
evaluation envs, the SB3 engine and every evaluation) and :func:`dimattn.envs.pool.make_pool` (the fast
engine's training envs) build with, for the training inside the block: one process trains one protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dimattn.errors import DimattnError

MAX_EPISODE_FRAMES = 108_000
PROTOCOLS: dict[str, dict[str, Any]] = {
    "study": {"repeat_action_probability": 0.0, "full_action_space": False, "terminal_on_life_loss": True,
              "max_num_frames_per_episode": MAX_EPISODE_FRAMES},
    "machado": {"repeat_action_probability": 0.25, "full_action_space": True, "terminal_on_life_loss": False,
                "max_num_frames_per_episode": MAX_EPISODE_FRAMES},
}
DEFAULT_PROTOCOL = "study"
#: What ``env_kwargs`` may set (the keys of a protocol).
ENV_KWARGS = tuple(PROTOCOLS[DEFAULT_PROTOCOL])

_current: list[dict[str, Any]] = [PROTOCOLS[DEFAULT_PROTOCOL]]


def environment(protocol: str = DEFAULT_PROTOCOL, env_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The environment options of ``protocol`` with ``env_kwargs`` on top, checked (one line when bad)."""
    if protocol not in PROTOCOLS:
        raise DimattnError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if env_kwargs is None:
        env_kwargs = {}
    if not isinstance(env_kwargs, Mapping):
        raise DimattnError(f"env_kwargs must be dict(name=value, ...), got {env_kwargs!r}")
    unknown = set(env_kwargs) - set(ENV_KWARGS)
    if unknown:
        raise DimattnError(f"env_kwargs: unknown {', '.join(sorted(map(str, unknown)))}; dimattn's envs take "
                           f"{', '.join(ENV_KWARGS)} (the rest of SPEC §3 is fixed)")
    out = {**PROTOCOLS[protocol], **env_kwargs}
    p = out["repeat_action_probability"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise DimattnError(f"env_kwargs: repeat_action_probability must be from 0 to 1, got {p!r}")
    for key in ("full_action_space", "terminal_on_life_loss"):
        if not isinstance(out[key], bool):
            raise DimattnError(f"env_kwargs: {key} must be true or false, got {out[key]!r}")
    n = out["max_num_frames_per_episode"]
    if isinstance(n, bool) or not isinstance(n, int) or not 4 <= n <= 10**7:
        raise DimattnError(f"env_kwargs: max_num_frames_per_episode must be an integer from 4 to 10,000,000, "
                           f"got {n!r}")
    out["repeat_action_probability"] = float(p)
    return out


def current() -> dict[str, Any]:
    """The environment options envs are built with now (the study's outside :func:`using`)."""
    return _current[-1]


@contextmanager
def using(options: Mapping[str, Any]) -> Iterator[None]:
    """Build envs with ``options`` (from :func:`environment`) inside the block."""
    _current.append(dict(options))
    try:
        yield
    finally:
        _current.pop()
