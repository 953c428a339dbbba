"""Fixtures shared by several test files (most live in helper modules: analysis_fixtures, shared_data)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import torch  # here: every test session reads this file, most need neither torch nor dimattn's CLI

    from cli_helpers import fake_checkpoint

    d = tmp_path_factory.mktemp("inputs")
    hostile = d / "hostile.zip"
    buf = io.BytesIO()
    torch.save({"action_net.weight": _Evil()}, buf)
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("policy.pth", buf.getvalue())
    (d / "notes.md").write_text("# not an array\n")
    np.save(d / "obs.npy", np.zeros((4, 84, 84), np.uint8))
    (d / "file").write_text("a file where a folder is expected")
    return {"pong": fake_checkpoint(d / "pong_na.zip", "NA", "Pong", 6),
            "breakout": fake_checkpoint(d / "breakout_cwca.zip", "CWCA", "Breakout", 4),
            "hostile": hostile, "notes": d / "notes.md", "obs": d / "obs.npy", "file": d / "file"}


@pytest.fixture
def dimattn():
    """``dimattn`` as the console script runs it: argv -> exit code."""
    from dimattn import cli

    def run(argv: list[str]) -> int:
        try:
            return cli.main(argv)
        except SystemExit as exc:
            return int(exc.code)

    return run
