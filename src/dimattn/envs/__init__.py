"""Atari environments with the study's semantics (SPEC §3).

    ale.py   Gymnasium + ale-py + SB3's ``AtariWrapper``: training and evaluation envs, ``evaluate``
    pool.py  the same semantics on EnvPool, for the fast engine

May import: ``dimattn.errors``, ``dimattn.games``. Nothing above (agents, engines, ...).
"""
