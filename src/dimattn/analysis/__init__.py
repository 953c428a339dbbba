"""Results into tables and pictures (SPEC §5).

    results.py  loading: a study, any folder of runs, or the published results pickle (restricted unpickler)
    stats.py    per-game table, winners, human-normalised scores, rliable aggregates, alignment of biases
    tables.py   Markdown / LaTeX / CSV tables
    figures.py  rliable figures and learning curves
    report.py   ``build_report``: all of the above into a folder with one ``index.html``
    protocol.py        a run's config.yml against the published protocol (SPEC §3–4)
    compare.py         ``compare``: your runs against the published study at a matched budget, with a
                       calibrated verdict per game and agent; the calibration itself
    compare_report.py  a comparison as compare.md / .csv, curves and aggregates figures
    plan.py            ``dimattn plan``: seeds per game for compare to detect a difference (or what given
                       seeds detect) on the published spreads, checked by simulation; the cost in hours

May import: ``dimattn.engines.rundir`` (file names of a run), ``dimattn.engines.config`` and
``dimattn.engines.rlzoo`` (the published protocol, which is dimattn's defaults), ``dimattn.agents.attention``
and ``dimattn.agents.registry`` (agent names, their order and biases, plugins' included), ``dimattn.games``
(games' names, reference scores and axes), ``dimattn.envs.protocol`` (the environment protocols' settings) and
the base modules ``dimattn.errors``, ``dimattn.fileio``, ``dimattn.console`` and ``dimattn.yamlfile``. Nothing
else of engines, envs or agents (training code); not study, interpret or cli.
"""
