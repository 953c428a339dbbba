"""Check before you work (issue 31, item 5): an output folder that cannot be written is refused in one line
before any computation, creating nothing; a disk that fills up while a command writes leaves no half-written
output folder. Real folders: a file in the way, sysfs (which nobody, root included, may write), and a
file-size limit (``RLIMIT_FSIZE``) standing for a full disk, which any process can set for itself."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest

from analysis_fixtures import write_study
from cli_helpers import ENV, assert_one_line, run

UNWRITABLE = {
    "sysfs": ("/sys/dimattn-test-out", "cannot write {what} /sys/dimattn-test-out: permission denied; choose another"),
    "a file": ("{tmp}/file", "cannot write {what} {tmp}/file: a file stands where a folder is expected"),
    "under a file": ("{tmp}/file/out", "cannot write {what} {tmp}/file/out: not a directory"),
}


@pytest.mark.parametrize("case", UNWRITABLE)
@pytest.mark.parametrize("command,what", [("report", "report folder"), ("compare", "output folder")])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(case, command, what, tmp_path, capsys):
    (tmp_path / "file").write_text("a file where a folder is expected")
    out, message = (text.format(tmp=tmp_path, what=what) for text in UNWRITABLE[case])
    before = sorted(tmp_path.iterdir())
    rc, stdout, err = run([command, "published", "--out", out, "--reps", "5"], capsys)
    assert_one_line(rc, err, message)  # one line: no progress line of a bootstrap that ran first
    assert stdout == "" and sorted(tmp_path.iterdir()) == before


def _fill_at(limit: int):
    """For a child process: files may grow to ``limit`` bytes, then writes fail with EFBIG (a full disk)."""
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing it
    return limit_files


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_disk_that_fills_up_leaves_no_half_written_output_folder(command, tmp_path):
    study = write_study(tmp_path / "study", games=("Pong",), agents=("NA", "CWCA"), seeds=(0, 1), n_evals=3,
                        episodes=2)
    argv = [command, str(study), "--out", str(tmp_path / "deep" / "out"), "--reps", "5"]
    argv += ["--against", str(study)] if command == "compare" else ["--quiet"]
    done = subprocess.run([sys.executable, "-m", "dimattn", *argv], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=600, preexec_fn=_fill_at(4096))
    last = done.stderr.strip().splitlines()[-1]  # after the notes about the data, if any
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith(f"dimattn {command}: error: cannot write ") and "file too large for the file system" in last
    assert not (tmp_path / "deep").exists()  # the folders it made are gone, half-written files with them
