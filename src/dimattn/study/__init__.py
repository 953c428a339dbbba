"""Studies: games × agents × seeds, defined once in ``study.yml``, run anywhere, resumed after any fault.

    spec.py        the study spec, its expansion into runs, creating a study (``init_study``), run status
    execute.py     executing one run: its lock, its log, retries (``run_one``, ``execute_run``)
    launch.py      running many: a local pool of workers, Ray
    jobscripts.py  PBS Pro and Slurm job-array scripts

May import: ``dimattn.engines`` and everything below it. Not analysis, interpret or cli.
"""
