"""Folders that cannot be written are one line naming the folder and the cause, before anything is written:
a file where a folder is expected, the kernel's write errors, a study's runs behind a link to storage that
cannot be written.
"""

from __future__ import annotations

import errno
import os

import pytest

from analysis_fixtures import write_study
from cli_helpers import TINY, assert_one_line, run
from dimattn.errors import DimattnError
from dimattn.fileio import writing

UNWRITABLE = [
    (["train", "--env", "Pong", "-f", "{file}/logs"], "cannot write log folder {file}/logs: not a directory"),
    (["train", "--env", "Pong", "-f", "{out}", "-tb", "{file}/tb"],
     "cannot write TensorBoard folder {file}/tb: not a directory"),
    (["study", "init", "{file}/study", "--games", "Pong"], "cannot write study folder {file}/study"),
    (["report", "{study}", "--out", "{file}/report", "--quiet", "--reps", "5"],
     "cannot write report folder {file}/report: not a directory"),
    (["explain", "--checkpoint", "{pong}", "--obs", "{obs}", "--out", "{file}/explain"],
     "cannot write output folder {file}/explain"),
    (["record", "--checkpoint", "{breakout}", "--out", "{file}/v.gif"], "cannot write video {file}/v.gif"),
]


@pytest.mark.parametrize("argv,message", UNWRITABLE, ids=[a[0] + (" -tb" if "-tb" in a else "") for a, _ in UNWRITABLE])
def test_a_file_where_a_folder_is_expected_is_one_line(argv, message, files, tmp_path, capsys):

    study = write_study(tmp_path / "results", games=("Pong",), agents=("NA", "CWCA"), seeds=(0,), n_evals=1,
                        episodes=1)
    names = {k: str(v) for k, v in files.items()} | {"out": str(tmp_path / "out"), "study": str(study)}
    rc, _, err = run([a.format(**names) for a in argv], capsys)
    assert_one_line(rc, err, message.format(**names))
    assert "choose another" in err
    assert files["file"].read_text() == "a file where a folder is expected"
    assert not (tmp_path / "out").exists()  # -tb refused before the run folder was made


def test_study_run_refuses_a_study_it_cannot_write(tmp_path, capsys):
    root = tmp_path / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "256",
                *TINY], capsys)[0] == 0
    (root / "runs").write_text("not a folder")
    for argv in (["study", "run", str(root)], ["study", "run-one", str(root), "--index", "0"]):
        rc, _, err = run(argv, capsys)
        assert_one_line(rc, err, f"cannot write study's runs folder {root / 'runs'}: a file stands where a folder")


@pytest.mark.parametrize("code,cause", [
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"),
    (errno.ENOSPC, "no space left on the device"),
    (errno.ENOTDIR, "not a directory"),
    (errno.EDQUOT, "disk quota exceeded"),
])
def test_write_errors_name_the_path_and_the_cause(code, cause):
    # Tests run as root, which ignores permission bits, and cannot mount a read-only or full file system:
    # the errors the kernel would give are raised as it would raise them.
    with pytest.raises(DimattnError) as info, writing("/data/report", "report folder", "--out"):
        raise OSError(code, os.strerror(code), "/data/report/tables/x.md")
    text = str(info.value)
    assert text.startswith("cannot write report folder /data/report: " + cause)
    assert "/data/report/tables/x.md" in text and "\n" not in text
    assert ("free some space" in text) == (code in (errno.ENOSPC, errno.EDQUOT))


def test_other_os_errors_are_not_disguised_as_write_errors():
    with pytest.raises(ConnectionRefusedError), writing("/data", "folder"):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")


@pytest.mark.skipif(not os.access("/sys/kernel", os.F_OK), reason="needs /sys/kernel (a folder no one may write)")
def test_runs_behind_a_link_to_storage_that_cannot_be_written_is_one_line(tmp_path, capsys):
    root = tmp_path / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "256",
                *TINY], capsys)[0] == 0
    (root / "runs").symlink_to("/sys/kernel")  # sysfs: even root gets "permission denied" writing there
    for argv in (["study", "run", str(root)], ["study", "run-one", str(root), "--index", "0"]):
        rc, _, err = run(argv, capsys)
        assert_one_line(rc, err, f"cannot write study's runs folder {root / 'runs'}: permission denied")
    (root / "runs").unlink()
    (root / "runs").symlink_to(tmp_path / "unmounted")
    rc, _, err = run(["study", "run", str(root)], capsys)
    assert_one_line(rc, err, f"cannot write study's runs folder {root / 'runs'}: it links to {tmp_path / 'unmounted'}"
                             ", which does not exist")
