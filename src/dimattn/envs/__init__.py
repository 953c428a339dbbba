"""Atari environments with the study's semantics (SPEC §3).

    ale.py       Gymnasium + ale-py + SB3's ``AtariWrapper``: training and evaluation envs, ``evaluate``
    pool.py      the same semantics on EnvPool, for the fast engine
    protocol.py  the study's protocol or Machado et al.'s (sticky actions...), which both build with

May import: ``dimattn.errors``, ``dimattn.games``. Nothing above (agents, engines, ...).
"""
