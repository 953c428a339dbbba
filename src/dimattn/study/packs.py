"""Packs: the study's unit of work. A pack is up to K runs of one game and agent (``--pack K``); a run alone
is a pack of one (K = 1, the default).

The study's runs are cut into packs: the runs of one (game, agent), in the study's order of seeds, in chunks
of K (the last chunk of a (game, agent) may be smaller). Packs are numbered 0..P-1 in run order; with K = 1
pack N is run N. Local workers, Ray tasks and PBS Pro / Slurm array tasks each take one pack at a time
(``dimattn study run-one --pack K --index N``), and :func:`dimattn.study.execute.execute` trains it: one run
with :func:`dimattn.engines.train.train` (any engine), several together with
:func:`dimattn.engines.train.train_pack` (the fast engine). Each run keeps its own folder, exactly as if
trained alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dimattn.engines.rundir import CONFIG, read_config
from dimattn.errors import DimattnError
from dimattn.study.spec import Run, Study


@dataclass(frozen=True)
class RunGroup:
    """A pack: up to K runs of one (game, agent), trained in one process; ``index`` is the pack's number.
    (In that process each run is one of the engine's members, :class:`dimattn.engines.members.Member`.)"""

    index: int
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        first = self.runs[0]
        return f"{first.game}/{first.agent}/seed{','.join(str(r.seed) for r in self.runs)}"


def form_packs(study: Study, size: int) -> list[RunGroup]:
    """The study's packs of at most ``size`` runs: each (game, agent)'s runs in seed order, in chunks."""
    if not isinstance(size, int) or size < 1:
        raise DimattnError(f"--pack must be a positive integer, got {size!r}")
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in study.runs:  # games × agents × seeds: a (game, agent)'s runs are consecutive
        groups.setdefault((run.game, run.agent), []).append(run)
    chunks = [runs[i:i + size] for runs in groups.values() for i in range(0, len(runs), size)]
    return [RunGroup(n, tuple(chunk)) for n, chunk in enumerate(chunks)]


def pack_of(study: Study, size: int, index: int) -> RunGroup:
    """Pack ``index`` of the study's packs of ``size`` (with size 1: run ``index`` alone)."""
    if size == 1:
        return RunGroup(index, (study.run(index),))  # its error names runs, not packs
    packs = form_packs(study, size)
    if not 0 <= index < len(packs):
        raise DimattnError(f"pack index {index} is out of range: study {study.spec.name} with --pack {size} has "
                           f"packs 0-{len(packs) - 1}")
    return packs[index]


def check_runnable(study: Study, size: int, runs: list[Run] | None = None) -> None:
    """Refuse, before anything is written, what cannot start: a spec edited after runs started
    (:meth:`Study.check_unchanged`) and, for packs of several runs (``size`` > 1), a study the fast engine
    cannot train (the SB3 engine, or configurations it cannot run). In packs of several, a member whose
    ``config.yml`` is unreadable is left to fail alone when its pack runs (its check, in
    :func:`dimattn.study.execute.execute`); a run alone is refused here, as it always was."""
    runs = study.runs if runs is None else runs
    if size == 1:
        study.check_unchanged(runs)
        return
    if study.spec.engine == "sb3":
        raise DimattnError("packed runs need the fast engine, and this study's engine is sb3: "
                           "run it without --pack (or with --pack 1)")
    from dimattn.engines.train import prepare

    for game, agent in dict.fromkeys((r.game, r.agent) for r in runs):
        config = study.config_for(game, agent)
        try:
            prepare([dataclasses.replace(config, engine="fast")])
        except DimattnError as exc:
            raise DimattnError(f"packed runs need the fast engine, which cannot run {game}/{agent}: {exc}") \
                from None
    readable = []
    for run in runs:
        if (run.dir / CONFIG).is_file():
            try:
                read_config(run.dir)
            except Exception:  # noqa: BLE001 - a corrupt member: reported failed with its reason when its pack runs
                continue
            readable.append(run)
    study.check_unchanged(readable)
