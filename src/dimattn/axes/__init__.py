"""Axis of dynamics measured from play (issue 14), and an agent recommendation for any Atari game.

- :mod:`dimattn.axes.measure`: the measure itself, pure NumPy (+ OpenCV's connected components) on a
  sequence of full-resolution ALE frames: small objects are tracked between frames and the persistent
  part of their motion is split into a horizontal and a vertical energy (docs/axes.md).
- :mod:`dimattn.axes.play`: plays a game (random policy or a trained checkpoint) through the ALE and
  returns its frames.
- :mod:`dimattn.axes.run`: ``dimattn axes``: measure games, print, write ``axes.csv`` and figures.
- :mod:`dimattn.axes.figures`: the per-game figure (tracks over a frame, direction histogram, energies).
- :mod:`dimattn.axes.labels`: the shipped measured labels of the 56 games (package data).
- :mod:`dimattn.axes.recommend`: ``dimattn recommend``: axis + the agent the published alignment of
  biases favours, computed from the published results.

This package may import only :mod:`dimattn.errors`, :mod:`dimattn.fileio`, :mod:`dimattn.games`, the
environment code (:mod:`dimattn.envs`), the checkpoint loader (:mod:`dimattn.checkpoints`) and the
analysis code (:mod:`dimattn.analysis`, :mod:`dimattn.results`); never the CLI. Importing this
``__init__`` loads nothing heavy.
"""
