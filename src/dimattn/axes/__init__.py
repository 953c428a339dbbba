"""The axis of dynamics measured from play (issue 14), and an agent recommendation for any Atari game.

    play.py       plays a game through the ALE (random policy or a trained checkpoint), keeps its frames and
                  probes what the actions do
    control.py    the action probes: branches from cloned emulator states, the player's moves and the
                  agent's shots found where the branches differ
    measure.py    the motion measure on a frame sequence (pure NumPy + OpenCV components): small objects
                  tracked between frames, their persistent motion split into a horizontal and a vertical energy
    decide.py     the rule: shots, else the player's confinement, else motion; bootstrap confidence
    run.py        ``dimattn axes``: measure games, print, write ``axes.csv`` and one figure per game
    figures.py    the per-game figure (tracks and probe effects over a frame, direction histogram, the rule)
    recommend.py  ``dimattn recommend``: a game's axis + the agent the published alignment of biases favours,
                  computed from the published results

The measured labels of the 56 games ship as package data, read by ``dimattn.games.measured_axes``.
Definition and agreement with the published study's labels: docs/axes.md.

May import: ``dimattn.agents`` (checkpoints, agent names), ``dimattn.envs``, ``dimattn.engines`` and the
base modules (errors, fileio, games); sideways ``dimattn.analysis`` (results, alignment counts) and
``dimattn.interpret``. Not study or cli.
"""
