"""Results into tables and pictures (SPEC §5).

    results.py  loading: a study, any folder of runs, or the published results pickle (restricted unpickler)
    stats.py    per-game table, winners, human-normalised scores, rliable aggregates, alignment of biases
    tables.py   Markdown / LaTeX / CSV tables
    figures.py  rliable figures and learning curves
    report.py   ``build_report``: all of the above into a folder with one ``index.html``

May import: ``dimattn.engines.rundir`` (file names of a run), ``dimattn.agents.attention`` (agent names)
and the base modules. Not study, interpret or cli.
"""
