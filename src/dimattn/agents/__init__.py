"""The agents: the attention blocks (SPEC §2), the network they sit in (SPEC §1), and checkpoints.

    attention.py    NA / SWA / CWRA / CWCA / CWRCA blocks, ``AGENTS``, ``build_attention``
    registry.py     attention blocks by name: the five, then plugins' (``register``, ``dimattn.agents``
                    entry points, ``--plugin``); an agent is a block at a place (``CWCA@conv2``)
    networks.py     ``SelfAttnCNN`` (SB3 features extractor) and ``ActorCritic`` (the PPO network)
    checkpoints.py  SB3 zips read without running code (``load_agent``), written atomically

May import: ``dimattn.errors``, ``dimattn.fileio``, ``dimattn.games``. Nothing above (envs, engines, ...).
"""
