"""What a person watches: the live board of ``study run``, its closing report, and ``study status``'s table.

Progress is read from what the runs write to disk (checkpoints and evaluations), so it works for any
engine and from any node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from dimattn.study.execute import Outcome
from dimattn.study.spec import ERROR_LOG, Run, Study
from dimattn.study.status import STATES, RunStatus, is_done, progress_on_disk


@dataclass
class RunSummary:
    """What one ``study run`` achieved, by run index."""

    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # index -> the last attempt's error summary
    busy: list[int] = field(default_factory=list)  # trained by another process meanwhile
    already_done: int = 0


class Board:
    """Live display: runs done / running / failed / pending and steps per second (rich; plain lines when
    the output is not a terminal, e.g. a cluster job's log)."""

    def __init__(self, study: Study, console: Console | None = None, running_label: str = "running") -> None:
        self.study, self.label = study, running_label
        if console is None:  # logs (not a terminal) get wide lines rather than rich's 80 columns
            console = Console(stderr=True)
            console = console if console.is_terminal else Console(stderr=True, width=160)
        self.console = console
        self.done = sum(is_done(r) for r in study.runs)
        self.failed = self.busy = self.running = 0
        self.start = time.monotonic()
        self.base: dict[int, int] = {}  # steps on disk when this process first saw the run active
        self.now: dict[int, int] = {}
        self.last_read = 0.0
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("runs · {task.fields[info]}"), TimeElapsedColumn(), console=self.console)
        self.task = self.progress.add_task(study.spec.name, total=len(study.runs), completed=self.done, info="")

    def __enter__(self) -> Board:
        self.update([], force=True)
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update([], force=True)
        self.progress.stop()

    def event(self, run: Run, text: str) -> None:
        self.progress.console.print(f"{run.index:>4} {run.name}: {text}", highlight=False)

    def update(self, active: Iterable[Run], force: bool = False) -> None:
        """Refresh counts; re-read the active runs' steps from disk every 2 s (less often for many runs)."""
        active = list(active)
        self.running = len(active)
        if force or time.monotonic() - self.last_read > max(2.0, len(active) / 50):
            self.last_read = time.monotonic()
            for run in active:
                steps = progress_on_disk(run)[0]
                self.base.setdefault(run.index, steps)
                self.now[run.index] = steps
        made = sum(self.now[i] - self.base[i] for i in self.now)
        rate = made / max(time.monotonic() - self.start, 1e-9)
        pending = len(self.study.runs) - self.done - self.failed - self.busy - self.running
        info = (f"{self.label} {self.running} · failed {self.failed} · pending {pending}"
                + (f" · elsewhere {self.busy}" if self.busy else "") + f" · {rate:,.0f} steps/s")
        self.progress.update(self.task, completed=self.done, info=info)

    def finish(self, run: Run, outcome: Outcome, retrying: bool) -> None:
        steps = progress_on_disk(run)
        self.base.setdefault(run.index, steps[0])
        self.now[run.index] = steps[0]
        if outcome.state == "done":
            self.done += 1
            score = "" if steps[1] is None else f", last score {steps[1]:.2f}"
            self.event(
                run, f"[green]done[/] ({steps[0]:,} steps{score})" + (f" {outcome.message}" if outcome.message else "")
            )
        elif outcome.state == "busy":
            self.busy += 1
            self.event(run, f"[yellow]skipped[/]: {outcome.message}")
        else:
            self.failed += 0 if retrying else 1
            self.event(run, f"[red]failed[/]: {outcome.message}" + ("; retrying" if retrying else ""))


def print_report(study: Study, report: RunSummary, write: Callable[[str], None] = print) -> None:
    """Totals, then each failed run with the last lines of its error."""
    n = len(study.runs)
    write(f"study {study.spec.name}: {report.already_done + len(report.done)}/{n} runs done "
          f"({len(report.done)} now, {report.already_done} before), {len(report.failed)} failed"
          + (f", {len(report.busy)} being trained by another process" if report.busy else ""))
    for index in sorted(report.failed):
        run = study.runs[index]
        lines = (
            (run.dir / ERROR_LOG).read_text(errors="replace").splitlines() if (run.dir / ERROR_LOG).is_file() else []
        )
        write(f"  FAILED {index} {run.name}: {report.failed[index]}")
        for line in [ln for ln in lines[2:] if ln.strip()][-6:]:
            write(f"      {line}")
    if report.failed:
        write(f"  full errors: {study.root}/runs/<Game>/<Agent>/seed<k>/{ERROR_LOG}; "
              "`dimattn study run` again retries them from their last checkpoint")


def status_table(study: Study, rows: list[RunStatus]) -> Table:
    """One line per run: state, steps a resume keeps (the newest checkpoint) / total, the last evaluation's
    step and mean score, and a note. An evaluation past the checkpoint is work a resume redoes."""
    table = Table(title=f"study {study.spec.name} ({study.root})", title_justify="left")
    for name, justify in (("#", "right"), ("game", "left"), ("agent", "left"), ("seed", "right"),
                          ("state", "left"), ("steps kept", "right"), ("last eval", "right"),
                          ("last score", "right"), ("note", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    colour = {"done": "green", "running": "cyan", "failed": "red", "pending": "white", "stopped": "yellow"}
    for s in rows:
        table.add_row(str(s.run.index), s.run.game, s.run.agent, str(s.run.seed),
                      f"[{colour[s.state]}]{s.state}[/]", f"{s.steps:,}/{study.spec.n_timesteps:,}",
                      "" if s.eval_steps is None else f"{s.eval_steps:,}",
                      "" if s.last_score is None else f"{s.last_score:.2f}", s.note)
    return table


def status_summary(rows: list[RunStatus]) -> str:
    counts = {state: sum(r.state == state for r in rows) for state in STATES}
    return (f"{len(rows)} runs: " + ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "failed", "pending"))
            + (f", {counts['stopped']} stopped (resumable)" if counts["stopped"] else ""))
