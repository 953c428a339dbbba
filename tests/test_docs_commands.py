"""Every ``dimattn`` command in README.md and docs/*.md: parsed by the real parser (all), run (the quick
ones), naming only checkpoints the reader has; the docs' Python API example run as written. A doc that
drifts from the command line fails here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dimattn import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Checkpoints a reader has without a command on the page: the ones `make demo` writes.
DEMO = ("demo-logs/", "demo-logs-200k/")


def _code_lines(text: str) -> list[str]:
    """Lines of fenced (```) and indented (4 spaces after a blank line) code blocks."""
    out, fenced, indented, blank = [], False, False, True
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        indented = line.startswith("    ") and (indented or blank) and not fenced
        if fenced or indented:
            out.append(line)
        blank = not line.strip()
    return out


def commands(path: Path) -> list[str]:
    """The ``dimattn ...`` commands of one file: continuation lines joined, ``&&`` chains split."""
    found, lines = [], _code_lines(path.read_text())
    i = 0
    while i < len(lines):
        line = lines[i].strip().removeprefix("$ ")
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        found += [c.strip() for c in line.split("&&") if c.strip().startswith("dimattn ")]
        i += 1
    return found


def _synopsis(command: str) -> bool:
    """A usage line (``dimattn compare MINE [--against ...]``), not a command to type."""
    return "<" in command or " [" in command


ALL = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in commands(p) if not _synopsis(c)]


def _argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)[1:]


def test_the_docs_have_commands_and_only_three_synopses():
    assert len(ALL) > 60, len(ALL)
    synopses = [c for p in DOCS for c in commands(p) if _synopsis(c)]
    assert sorted(s.split()[1] for s in synopses) == ["compare", "plan", "report"], synopses


@pytest.mark.parametrize("where, command", ALL, ids=[f"{w}:{c[:60]}" for w, c in ALL])
def test_every_command_parses(where, command):
    try:
        cli.build_parser().parse_args(_argv(command))
    except SystemExit as exc:
        pytest.fail(f"{where}: `{command}` does not parse (exit {exc.code})")


def _quick(command: str) -> bool:
    """Seconds, not minutes: no training, no probe, no game played (recommend on a game of the measured table)."""
    from dimattn.games import measured_axes

    argv = _argv(command)
    return (argv[0] == "agents" or (argv[0] == "recommend" and argv[1] in measured_axes())
            or (argv[0] == "plan" and ("--rate" in argv or "--no-probe" in argv)))


QUICK = [(w, c) for w, c in ALL if _quick(c)]


@pytest.mark.parametrize("where, command", QUICK, ids=[f"{w}:{c[:60]}" for w, c in QUICK])
def test_quick_commands_run(where, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(_argv(command)) == 0, f"{where}: `{command}`: {capsys.readouterr().err}"


def test_quick_commands_include_every_plan_example():
    assert len(QUICK) >= 8 and any(c.startswith("dimattn plan") for w, c in QUICK if w == "docs/plan.md")


def _checkpoints(argv: list[str]) -> list[str]:
    paths, taking = [], False
    for a in argv:
        if a in ("--checkpoint", "--compare"):
            taking = True
        elif a.startswith("-"):
            taking = False
        elif taking:
            paths.append(a)
    return paths


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_checkpoint_is_one_the_reader_has(path):
    """The demo's, or one a `dimattn train` (its --log-folder) or `study init` (its folder) on the same page makes."""
    made = list(DEMO)
    for c in commands(path):
        argv = _argv(c)
        if argv[0] == "train":
            folder = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-f", "--log-folder")), "logs")
            made.append(f"{folder}/ppo/")
        elif argv[:2] == ["study", "init"]:
            made.append(f"{argv[2]}/runs/")
    for c in commands(path):
        for checkpoint in _checkpoints(_argv(c)):
            assert checkpoint.startswith(tuple(made)), f"{path.name}: `{c}` names {checkpoint}, which no reader has"


def test_no_user_doc_points_outside_the_repository():
    """docs/benchmarks.md is the developers' record of measurements (a GPU machine's tool lives in shared/)."""
    for path in DOCS:
        if path.name == "benchmarks.md":
            continue
        for c in commands(path):
            assert "../" not in c, f"{path.name}: `{c}`"
        assert "../shared" not in path.read_text(), path.name
    readme = (ROOT / "README.md").read_text()
    assert "[docs/spec.md](docs/spec.md)" in readme and "SPEC.md" not in readme  # one SPEC


def test_the_report_python_example_works_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "report.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], "docs/report.md", "exec"), scope)  # the docs' own example, not user input
    assert len(scope["table"]) == 56 * 5 and (tmp_path / "mine.pkl").stat().st_size > 0


def test_the_worked_plan_in_the_docs_is_what_the_command_prints(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "plan.md").read_text()
    command = next(c for c in commands(ROOT / "docs" / "plan.md") if "--diff 6se" in c)
    rows = re.findall(r"^\| \d+ \| .*\|$", text, re.M)
    assert len(rows) == 10
    monkeypatch.chdir(tmp_path)
    assert cli.main(_argv(command)) == 0
    out = capsys.readouterr().out
    for row in rows:
        assert row in out, row
    total = next(line.strip() for line in text.splitlines() if line.strip().startswith("total ("))
    assert total in out


def test_make_demo_trains_to_the_first_published_evaluation_and_ends_on_compare():
    """The Makefile's demo: its commands parse, the run it compares reaches the published study's first
    evaluation (200,000 steps, the fewest compare can judge), and compare is the last command."""
    from dimattn.analysis.results import load_results

    make = (ROOT / "Makefile").read_text()
    var = dict(re.findall(r"^(DEMO_[A-Z_]+) \?= (.*)$", make, re.M))
    demo = make.split("\ndemo:", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert demo[-1].strip().startswith("$(VENV)/bin/dimattn compare $(DEMO_LOGS)-200k")
    args = cli.build_parser().parse_args(["train", *shlex.split(var["DEMO_COMPARE_RUN"])])
    first = int(load_results("published")["timestep"].min())
    assert args.n_timesteps >= first and args.eval_freq == first and args.eval_episodes == 5
    shown = cli.build_parser().parse_args(["train", "--agent", "NA", *shlex.split(var["DEMO_RUN"])])
    assert shown.n_timesteps == 30_000  # what the demo already showed, unchanged
