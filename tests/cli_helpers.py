"""Helpers of the tests that run ``dimattn`` in-process and check what it says: ``run`` (exit code, stdout,
stderr), ``assert_one_line`` (a refusal: exit 2, one line, no traceback), ``fake_checkpoint`` (an SB3-style
zip written without SB3); ``tests/conftest.py``'s ``files`` fixture builds its inputs with them.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import torch

from dimattn import cli

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
TINY = ["-params", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``dimattn`` in this process: (exit code, stdout, stderr)."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = int(exc.code)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc: int, err: str, message: str) -> None:
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


def fake_checkpoint(path: Path, agent: str = "NA", game: str = "Pong", n_actions: int = 6) -> Path:
    """An SB3-style zip of an untrained network, written without SB3 (it is only read here)."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(__import__("dimattn").ActorCritic(n_actions, agent).state_dict(), buf)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("policy.pth", buf.getvalue())
        zf.writestr("dimattn.json", json.dumps({"agent": agent, "game": game, "ada_attn": None,
                                                "norm_softmax": True}))
    return path
