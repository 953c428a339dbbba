"""Options that do nothing (issue 31, item 10): an option of ``study run`` that only some backends read is
refused in one line with any other backend, before the study is touched (it was silently ignored)."""

from __future__ import annotations

import pytest

from cli_helpers import TINY, assert_one_line, run

IGNORED = [
    ("local", ["--chain", "3"], "--chain is for the pbs and slurm backends; --backend local would ignore it"),
    ("ray", ["--chain", "2"], "--chain is for the pbs and slurm backends; --backend ray would ignore it"),
    ("local", ["--submit"], "--submit is for the pbs and slurm backends"),
    ("ray", ["--mem", "16gb"], "--mem is for the pbs and slurm backends"),
    ("local", ["--walltime", "1:00:00"], "--walltime is for the pbs and slurm backends"),
    ("local", ["--ngpus", "1"], "--ngpus is for the pbs and slurm backends"),
    ("ray", ["--queue", "gpu"], "--queue is for the pbs and slurm backends"),
    ("local", ["--account", "proj"], "--account is for the pbs and slurm backends"),
    ("local", ["--max-parallel", "2"], "--max-parallel is for the pbs and slurm backends"),
    ("ray", ["--array-size", "10"], "--array-size is for the pbs and slurm backends"),
    ("local", ["--setup", "module load python"], "--setup is for the pbs and slurm backends"),
    ("local", ["--python", "python3"], "--python is for the pbs and slurm backends"),
    ("local", ["--ray-address", "auto"], "--ray-address is for the ray backend; --backend local would ignore it"),
    ("slurm", ["--ray-address", "auto"], "--ray-address is for the ray backend"),
    ("slurm", ["--workers", "4"], "--workers is for the local and ray backends; --backend slurm would ignore it"),
    ("pbs", ["--workers", "4"], "--workers is for the local and ray backends"),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend") / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "256", *TINY],
               _NoCapture()) [0] == 0
    return root


class _NoCapture:
    """``run``'s capsys for a module fixture (which cannot take the function-scoped capsys)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


@pytest.mark.parametrize("backend,options,message", IGNORED, ids=[f"{b} {o[0]}" for b, o, _ in IGNORED])
def test_an_option_the_backend_would_ignore_is_refused(backend, options, message, study, capsys):
    before = sorted(p.name for p in study.iterdir())
    rc, out, err = run(["study", "run", str(study), "--backend", backend, *options], capsys)
    assert_one_line(rc, err, message)
    assert "drop it, or choose --backend" in err and out == ""
    assert sorted(p.name for p in study.iterdir()) == before  # no run started, no job script written


def test_the_options_of_the_backend_that_reads_them_still_work(study, capsys):
    rc, out, err = run(["study", "run", str(study), "--backend", "slurm", "--chain", "2", "--mem", "4gb",
                        "--setup", "echo hi"], capsys)
    assert rc == 0, err
    assert "wrote " in out and "echo hi" in (study / "jobs" / "slurm.sh").read_text()
