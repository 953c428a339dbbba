"""Studies: games × agents × seeds, defined once in ``study.yml``, run anywhere, resumed after any fault.

The unit of work is the pack: up to K seeds of one game and agent trained in one process (``--pack K``);
a run alone is a pack of one (the default).

    spec.py        the study spec and its expansion into runs, creating a study (``init_study``)
    packs.py       the runs cut into packs (``RunGroup``, ``form_packs``), what must hold before any starts
    locks.py       a run's lock (``flock`` on ``<run>/.lock``): one process trains a run at a time
    execute.py     one attempt at one pack in this process: locks, members' checks, output, failures
                   (``execute``); what an array task runs (``run_one``)
    launch.py      running every pack: one queue with retries, a local pool of workers, Ray
    schedulers.py  each batch scheduler (PBS Pro, Slurm) as data: directives, variables, commands (``SCHEDULERS``)
    jobscripts.py  job-array scripts for a scheduler, one array task per pack; submitting them, chains
    status.py      each run's state read from its folder: pending / running / done / failed / stopped
    board.py       what a person watches: the live board, the closing report, ``study status``'s table

May import: ``dimattn.engines``, ``dimattn.host`` and everything below them. Not analysis, interpret or cli.
"""
