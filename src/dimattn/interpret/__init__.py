"""Looking inside trained agents (SPEC §6).

    measures.py  feature maps, Grad-CAM, orientation and complementarity of the attention maps
    panels.py    the figures: state-representation panels, orientation plot
    play.py      an agent playing a game: observations, screens, actions
    explain.py   ``dimattn explain``: measures and panels for observation files or played games
    record.py    ``dimattn record``: videos of whole games, optionally with saliency

May import: ``dimattn.agents``, ``dimattn.envs``, ``dimattn.analysis.figures`` (saving figures) and the
base modules. Not engines, study or cli.
"""
