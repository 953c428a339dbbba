"""Benchmark: how long the command line takes to answer before any command runs (goal: < 0.5 s on the
2-core machine): ``dimattn --help``, every subcommand's ``--help``, a usage error, and, for scale,
``import torch`` and a command that needs it (``dimattn agents``).

    PYTHONPATH=src python benchmarks/cli_startup.py [--repeat 5]

Each case is a fresh interpreter (``python -m dimattn ...``); the median of ``--repeat`` wall-clock times
is printed, with the slowest. tests/test_cli_startup.py checks that no heavy library loads in these paths.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
GOAL_S = 0.5


def _cases() -> list[tuple[str, list[str]]]:
    sys.path.insert(0, str(SRC))
    from dimattn.cli import COMMANDS

    cases = [("dimattn --help", ["-m", "dimattn", "--help"])]
    cases += [(f"dimattn {name} --help", ["-m", "dimattn", name, "--help"]) for name, _, _ in COMMANDS]
    cases += [("dimattn study run --help", ["-m", "dimattn", "study", "run", "--help"]),
              ("usage error: dimattn train --total-timesteps 5", ["-m", "dimattn", "train", "--total-timesteps", "5"]),
              ("for scale: python -c 'import torch'", ["-c", "import torch"]),
              ("for scale: dimattn agents (imports torch)", ["-m", "dimattn", "agents"])]
    return cases


def _time(argv: list[str], repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each case (median shown)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'case':52s} {'median s':>9s} {'max s':>7s}")
    for name, argv in _cases():
        times = _time(argv, args.repeat)
        flag = "" if name.startswith("for scale") or statistics.median(times) < GOAL_S else f"  over {GOAL_S} s"
        print(f"{name:52s} {statistics.median(times):9.3f} {max(times):7.3f}{flag}")


if __name__ == "__main__":
    main()
