"""The readers of ``compare`` and ``report`` meet broken and hostile files (issue 31, items 1-4): a run's
``evaluations.npz`` and ``config.yml``, a results pickle (``--against PKL``), the shipped published table and
empty paths. Each is one line naming the file, exit 2, nothing written, promptly; or, where a run can be left
out, left out with a note. Every case is a real file (a FIFO, a truncated zip, a pickle bomb, ...).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import dimattn
from analysis_fixtures import PUBLISHED, write_run
from cli_helpers import ENV, assert_one_line, run
from dimattn.analysis import results
from dimattn.analysis.results import DataWarning, load_results, restricted_load

STEPS = [25_000, 50_000, 75_000]


def _runs(tmp_path: Path) -> Path:
    """A folder of two good runs of Pong/NA; tests break the second one."""
    folder = tmp_path / "runs"
    for seed in (0, 1):
        write_run(folder / f"seed{seed}", "Pong", "NA", seed, STEPS, np.full((3, 2), 1.0 + seed))
    return folder


class _TooLong(BaseException):
    """Raised by the alarm: a reader that blocked or ran on."""


@contextmanager
def _within(seconds: int):
    """Fail (never hang) if the body takes more than ``seconds``: a FIFO opened for reading waits forever,
    a shared-reference graph walked path by path takes longer than the universe."""
    def expire(signum, frame):
        raise _TooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _assert_refused(argv: list[str], message: str, tmp_path: Path, capsys) -> str:
    """``dimattn argv`` is one line holding ``message``, exit 2, promptly, and writes no ``out``; its stderr."""
    with _within(60):
        rc, _, err = run(argv, capsys)
    assert_one_line(rc, err, message)
    assert not (tmp_path / "out").exists()  # nothing written
    return err


# --------------------------------------------------------------------------- evaluations.npz
def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


GOOD = _npz(timesteps=np.array(STEPS), results=np.ones((3, 2)))
BAD_EVALUATIONS = {
    "truncated": (GOOD[: len(GOOD) // 2], "truncated or not an npz"),
    "not a zip": (b"garbage" * 10, "truncated or not an npz"),
    "structured": (_npz(timesteps=np.zeros(3, dtype=[("a", "i8"), ("b", "f8")]), results=np.ones((3, 2))),
                   "timesteps has dtype"),
    "strings": (_npz(timesteps=np.array(STEPS), results=np.array([["a", "b"]] * 3)), "results has dtype <U1"),
    "no results": (_npz(timesteps=np.array(STEPS)), "has no array 'results'"),
    "duplicate": (_npz(timesteps=np.array([25_000, 25_000, 50_000]), results=np.ones((3, 2))),
                  "timesteps out of order: 25000 twice"),
    "unsorted": (_npz(timesteps=np.array([50_000, 25_000, 75_000]), results=np.ones((3, 2))),
                 "timesteps out of order: 25000 after 50000"),
    "negative": (_npz(timesteps=np.array([-5, 25_000, 50_000]), results=np.ones((3, 2))), "a negative timestep (-5)"),
    "nan step": (_npz(timesteps=np.array([np.nan, 1.0, 2.0]), results=np.ones((3, 2))), "not a finite number"),
    "fractional": (_npz(timesteps=np.array([0.5, 1.0, 2.0]), results=np.ones((3, 2))), "not a whole number"),
    "shapes": (_npz(timesteps=np.array(STEPS), results=np.ones((2, 2))), "timesteps (3,) and results (2, 2) do "
               "not match"),
    "3-d results": (_npz(timesteps=np.array(STEPS), results=np.ones((3, 2, 2))), "do not match"),
}


@pytest.mark.parametrize("case", BAD_EVALUATIONS)
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_broken_evaluations_npz_is_one_line_naming_it(case, command, tmp_path, capsys):
    data, message = BAD_EVALUATIONS[case]
    folder = _runs(tmp_path)
    (folder / "seed1" / "evaluations.npz").write_bytes(data)
    rc, _, err = run([command, str(folder), "--out", str(tmp_path / "out")], capsys)
    assert_one_line(rc, err, message)
    assert str(folder / "seed1" / "evaluations.npz") in err and not (tmp_path / "out").exists()


def test_an_npz_declaring_more_values_than_a_run_has_is_refused_before_reading_them(tmp_path, capsys):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (99999, 99999)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # 80 GB declared, 80 bytes there
        z.writestr("timesteps.npy", _npz_member(np.array(STEPS)))
        z.writestr("results.npy", header.getvalue() + b"\0" * 80)
    folder = _runs(tmp_path)
    (folder / "seed1" / "evaluations.npz").write_bytes(buf.getvalue())
    _assert_refused(["compare", str(folder), "--out", str(tmp_path / "out")], "declares shape (99999, 99999), "
                    "more than 100,000,000 values", tmp_path, capsys)


def _npz_member(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_an_empty_evaluations_npz_leaves_its_run_out_with_a_note(tmp_path):
    folder = _runs(tmp_path)
    (folder / "seed1" / "evaluations.npz").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        df = load_results(folder)
    assert sorted(set(df["seed"])) == [0]
    assert any("seed1: it has no evaluations yet (evaluations.npz is empty)" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", ["evaluations.npz", "config.yml"])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_fifo_in_a_run_is_refused_without_blocking(name, command, tmp_path, capsys):
    folder = _runs(tmp_path)
    (folder / "seed1" / name).unlink()
    os.mkfifo(folder / "seed1" / name)  # nobody writes it: opening it to read would wait forever
    _assert_refused([command, str(folder), "--out", str(tmp_path / "out")],
                    f"{folder / 'seed1' / name} is not a regular file", tmp_path, capsys)


def test_a_folder_named_evaluations_npz_is_refused(tmp_path, capsys):
    folder = _runs(tmp_path)
    (folder / "seed1" / "evaluations.npz").unlink()
    (folder / "seed1" / "evaluations.npz").mkdir()
    _assert_refused(["compare", str(folder), "--out", str(tmp_path / "out")], "is not a regular file", tmp_path,
                    capsys)


# --------------------------------------------------------------------------- config.yml
BOMB = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
BAD_CONFIGS = {
    "alias bomb": ("game: Pong\nagent: NA\nseed: 1\n" + BOMB, "holds an alias (*name), which a config.yml may not use"),
    "deep": ("game: Pong\nagent: NA\nseed: 1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    "huge": ("game: Pong\nagent: NA\nseed: 1\n# " + "x" * 1_100_000 + "\n", "more than a config.yml can be"),
    "not yaml": ("game: [Pong\n", "is not valid YAML for a config"),
    "python tag": ("game: !!python/object/apply:os.system [echo hi]\nagent: NA\nseed: 1\n", "is not valid YAML"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_hostile_config_yml_is_refused_before_it_expands(case, tmp_path, capsys):
    text, message = BAD_CONFIGS[case]
    folder = _runs(tmp_path)
    (folder / "seed1" / "config.yml").write_text(text)
    for command in ("compare", "report"):
        _assert_refused([command, str(folder), "--out", str(tmp_path / "out")], message, tmp_path, capsys)


def test_config_yml_and_study_yml_share_one_loader():
    from dimattn.engines import rundir
    from dimattn.study import spec
    from dimattn.yamlfile import load_yaml

    assert results.load_yaml is load_yaml and spec.load_yaml is load_yaml and rundir.load_yaml is load_yaml


def test_a_config_written_with_shared_values_has_no_alias_and_reads_back(tmp_path):
    from dimattn.engines.config import build_config
    from dimattn.engines.rundir import read_config, write_config
    from dimattn.yamlfile import dump_yaml, load_yaml

    shared = {"net_arch": [64, 64]}
    (tmp_path / "x.yml").write_text(dump_yaml({"a": shared, "b": shared}))  # safe_dump would write &id001
    assert load_yaml(tmp_path / "x.yml") == {"a": shared, "b": shared}
    config = build_config("Pong", agent="CWCA@conv2")
    write_config(tmp_path, config)
    assert read_config(tmp_path) == config


# --------------------------------------------------------------------------- results pickles
def _dag_bomb(levels: int = 60) -> bytes:
    """A few hundred bytes whose lists share references: 2**levels paths from the top to the bottom."""
    node: list = []
    for _ in range(levels):
        node = [node, node]
    return pickle.dumps({"PongNoFrameskip-v4": {"NA": {"timesteps": node, "mean_per_eval": node}}}, protocol=4)


class _Huge:
    """Pickles as NumPy's array reconstruction asked for 8 TB."""

    def __reduce__(self):
        return np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (10**12,), b"f8")


HOSTILE_PICKLES = {
    "dag bomb": (_dag_bomb(), "a list referenced twice"),
    "huge array": (pickle.dumps({"x": _Huge()}, protocol=4), "refusing an array of shape (1000000000000,)"),
    "huge bytes": (b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b".", "expected 1152921504606846976 bytes"),
    "huge frame": (b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"N.", "a frame of 1,152,921,504,606,846,976 bytes"),
    "reduce": (b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00hi\x85R.", "refusing to load global os.system"),
    "codecs other": (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",
                     "refusing _codecs.encode other than of text to latin1 bytes"),
}


@pytest.mark.parametrize("case", HOSTILE_PICKLES)
def test_a_hostile_pickle_is_refused_promptly(case, tmp_path, capsys):
    data, message = HOSTILE_PICKLES[case]
    assert len(data) < 1000
    (tmp_path / "bomb.pkl").write_bytes(data)
    folder = _runs(tmp_path)
    err = _assert_refused(["compare", str(folder), "--against", str(tmp_path / "bomb.pkl"), "--out",
                           str(tmp_path / "out")], message, tmp_path, capsys)
    assert f"cannot read {tmp_path / 'bomb.pkl'}: refused or corrupt pickle" in err


def test_a_pickle_beyond_the_size_bound_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.pkl"
    with open(big, "wb") as f:
        f.truncate(results.MAX_PICKLE_BYTES + 1)  # sparse: no disk used
    _assert_refused(["report", str(big), "--out", str(tmp_path / "out")], "more than a results pickle can be",
                    tmp_path, capsys)


def test_a_fifo_pickle_is_refused_without_blocking(tmp_path, capsys):
    os.mkfifo(tmp_path / "r.pkl")
    _assert_refused(["report", str(tmp_path / "r.pkl"), "--out", str(tmp_path / "out")],
                    "r.pkl is not a regular file", tmp_path, capsys)


@pytest.fixture(scope="module")
def two_published_games() -> tuple[dict, object]:
    """Pong and Breakout of the published pickle, as read from it, and as the tidy table."""
    published = restricted_load(PUBLISHED)
    two = {g: published[g] for g in ("PongNoFrameskip-v4", "BreakoutNoFrameskip-v4")}
    return two, results.from_published(two)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_pickle_of_the_published_format_is_read_at_every_protocol(protocol, two_published_games, tmp_path):
    two, table = two_published_games
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(two, protocol=protocol))
    assert load_results(tmp_path / "p.pkl").equals(table)


# --------------------------------------------------------------------------- the shipped table, empty paths
def _without_score(path: Path) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress("\n".join(",".join(x.split(",")[:-1]) for x in lines).encode()))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"\x00garbage" * 100),
    "no score column": _without_score,
    "empty": lambda p: p.write_bytes(gzip.compress(b"")),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
}
REINSTALL = "published_scores.csv.gz) are unreadable ("
REINSTALL_TODO = "the installation is damaged: reinstall dimattn (pip install --force-reinstall dimattn)"


@pytest.mark.parametrize("case", DAMAGE)
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_damaged_shipped_table_says_to_reinstall(case, command, tmp_path, capsys, monkeypatch):
    damaged = tmp_path / "data" / "published_scores.csv.gz"  # a copy of the shipped file, then damaged
    damaged.parent.mkdir()
    shutil.copy(Path(dimattn.__file__).parent / results.PUBLISHED_TABLE, damaged)
    DAMAGE[case](damaged)
    monkeypatch.setattr(results, "PUBLISHED_TABLE", str(damaged))  # the package's files, joined to it
    argv = [str(_runs(tmp_path))] if command == "compare" else ["published"]
    assert REINSTALL_TODO in _assert_refused([command, *argv, "--out", str(tmp_path / "out")], REINSTALL, tmp_path,
                                             capsys)


def test_an_installation_without_the_shipped_table_says_to_reinstall(tmp_path):
    """A real damaged installation: a copy of the package without the file, run as the user runs it."""
    site = tmp_path / "site"
    shutil.copytree(Path(dimattn.__file__).parent, site / "dimattn", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "dimattn" / results.PUBLISHED_TABLE).unlink()
    done = subprocess.run([sys.executable, "-m", "dimattn", "report", "published", "--out", "out"],
                          capture_output=True, text=True, cwd=tmp_path, env={**ENV, "PYTHONPATH": str(site)},
                          timeout=300)
    assert_one_line(done.returncode, done.stderr, REINSTALL)
    assert f"No such file or directory); {REINSTALL_TODO}" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["compare", ""], "the runs to compare is an empty path"),
    (["compare", "RUNS", "--against", ""], "--against is an empty path"),
    (["compare", "RUNS", "--against", " "], "--against is an empty path"),
    (["report", ""], "the input is an empty path"),
    (["report", "RUNS", "--against", ""], "--against is an empty path"),
])
def test_an_empty_path_is_refused(argv, message, tmp_path, capsys, monkeypatch):
    folder = _runs(tmp_path)
    monkeypatch.chdir(folder)  # an empty path used to mean this folder, whose runs would be read
    argv = [str(folder) if a == "RUNS" else a for a in argv] + ["--out", str(tmp_path / "out")]
    _assert_refused(argv, message, tmp_path, capsys)


def test_yaml_module_is_only_read_by_the_loader():
    """Every YAML read of a run or study goes through dimattn.yamlfile (the writers' safe_dump aside)."""
    src = Path(dimattn.__file__).parent
    readers = [str(p.relative_to(src)) for p in src.rglob("*.py") if "yaml.safe_load(" in p.read_text()]
    assert readers == ["engines/rlzoo.py"], readers  # RL Zoo files may use anchors; they are not a run's
