"""A command line that answers at once (issue 31): ``import dimattn``, ``dimattn --help``, every subcommand's
``--help`` and every usage error import no heavy library; each command imports what it uses when it runs.

How long they take is measured by benchmarks/cli_startup.py (docs/benchmarks.md), not here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dimattn
from dimattn.cli import COMMANDS

SRC = Path(dimattn.__file__).parent.parent
#: What must not load before a command runs: each costs 0.1 s (NumPy) to 2.5 s (torch) on the 2-core machine.
HEAVY = ("torch", "numpy", "pandas", "matplotlib", "scipy", "gymnasium", "stable_baselines3", "envpool", "ale_py",
         "cv2", "rliable", "rich", "optuna", "ray")
STUDY_ACTIONS = ("init", "run", "run-one", "status")
#: Usage errors argparse answers (exit 2, one line) before any command runs.
USAGE_ERRORS = [[], ["bogus"], ["train"], ["train", "--env", "Pong", "--seed", "x"],
                ["train", "--total-timesteps", "5"], ["report"], ["compare", "runs", "--reps", "0"], ["study"],
                ["study", "run"], ["study", "init", "s"], ["explain", "--out", "o"], ["record"],
                ["axes", "--steps", "-1"], ["recommend"], ["agents", "extra"]]


def _in_fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter (nothing imported yet) and return the JSON it prints last."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _heavy_after(calls: list[list[str]]) -> dict:
    code = f"""
import contextlib, io, json, sys
from dimattn.cli import main
codes = []
for argv in {calls!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        codes.append((argv, main(argv), err.getvalue()))
print(json.dumps({{"codes": codes, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    return _in_fresh_python(code)


def test_import_dimattn_loads_no_heavy_library_and_its_names_load_on_use():
    out = _in_fresh_python(f"""
import json, sys
import dimattn
before = sorted(m for m in {HEAVY!r} if m in sys.modules)
names = sorted(n for n in dimattn.__all__ if getattr(dimattn, n) is not None)
print(json.dumps({{"before": before, "torch_after": "torch" in sys.modules, "names": names}}))
""")
    assert out["before"] == []
    assert out["torch_after"] and out["names"] == sorted(dimattn.__all__)  # every public name still there


def test_help_of_every_command_loads_no_heavy_library():
    calls = [["--help"], ["--version"]] + [[name, "--help"] for name, _, _ in COMMANDS]
    calls += [["study", action, "--help"] for action in STUDY_ACTIONS]
    out = _heavy_after(calls)
    assert [code for _, code, _ in out["codes"]] == [0] * len(calls)
    assert out["heavy"] == []


def test_usage_errors_load_no_heavy_library():
    out = _heavy_after(USAGE_ERRORS)
    for argv, code, err in out["codes"]:
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and "--help" in err, (argv, err)
    assert out["heavy"] == []


def test_a_command_still_loads_what_it_needs():
    out = _heavy_after([["agents"]])
    assert out["codes"][0][1] == 0 and "torch" in out["heavy"]
