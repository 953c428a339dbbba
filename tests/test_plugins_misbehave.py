"""Plugins that misbehave (issue 31, items 7 and 8): a module that calls ``sys.exit`` on import, two
providers of one name, a block whose output is not finite. Each is one line naming the plugin (exit 2,
nothing written); ``dimattn agents --plugin M`` checks each block as ``train`` does and marks a broken one.

The plugins are real modules in a temporary folder, imported by ``--plugin`` in this process; the registry,
the imported modules and ``$DIMATTN_PLUGINS`` are put back after each test.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cli_helpers import assert_one_line, run
from dimattn.agents import registry
from dimattn.agents.checkpoints import load_tensors

HEADER = "import torch\nimport torch.nn as nn\nfrom dimattn.agents.registry import register\n"
PLUGINS = {
    "exits": "import sys\nsys.exit(3)\n",
    "exits_quietly": "raise SystemExit\n",
    "gate_a": HEADER + "register('GATE', lambda shape: nn.Identity(), 'the first gate', 'none')\n",
    "gate_b": HEADER + "register('gate', lambda shape: nn.Identity(), 'a second gate', 'none')\n",
    "nanblock": HEADER + "class NaN(nn.Module):\n    def forward(self, x):\n        return x * float('nan')\n"
                         "register('NANB', lambda shape: NaN(), 'turns every value into NaN', 'none')\n",
    "fine": HEADER + "register('FINE', lambda shape: nn.Identity(), 'the identity', 'none')\n",
}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """``tmp_path`` holding the plugin modules, as the working folder; the registry restored afterwards."""
    for name, text in PLUGINS.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    monkeypatch.setenv(registry.PLUGINS_ENV, "")  # import_plugin adds to it; put back as it was after the test
    blocks, loaded = dict(registry._BLOCKS), set(registry._loaded)
    yield tmp_path
    registry._BLOCKS.clear()
    registry._BLOCKS.update(blocks)
    registry._loaded.clear()
    registry._loaded.update(loaded)
    for name in PLUGINS:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("module,code", [("exits", "3"), ("exits_quietly", "None")])
def test_a_plugin_that_exits_on_import_is_one_line_naming_it(module, code, plugins, capsys):
    rc, out, err = run(["agents", "--plugin", module], capsys)
    assert_one_line(rc, err, f"--plugin {module} failed to import (it called sys.exit({code}) on import")
    assert out == ""


def test_a_name_two_plugins_register_names_both_providers(plugins, capsys):
    rc, _, err = run(["agents", "--plugin", "gate_a", "--plugin", "gate_b"], capsys)
    assert_one_line(rc, err, "two blocks named GATE: one from module gate_a")
    assert "one from module gate_b" in err


def test_agents_checks_each_plugin_block_and_marks_a_broken_one(plugins, capsys):
    rc, out, err = run(["agents", "--plugin", "nanblock", "--plugin", "fine"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    nan = next(i for i, line in enumerate(lines) if line.startswith("NANB"))
    assert "BROKEN: turns every value into NaN" in lines[nan]
    assert "why: block NANB (module nanblock)" in lines[nan + 1] and "not finite (NaN or infinite)" in lines[nan + 1]
    fine = next(line for line in lines if line.startswith("FINE"))
    assert "BROKEN" not in fine and "why:" not in "\n".join(lines[lines.index(fine) + 1:])


def test_a_block_that_is_not_finite_is_refused_before_a_run_folder_exists(plugins, capsys):
    rc, _, err = run(["train", "--env", "Pong", "--plugin", "nanblock", "--agent", "NANB", "-f", "logs"], capsys)
    assert_one_line(rc, err, "block NANB (module nanblock)")
    assert "returns values that are not finite" in err and not (plugins / "logs").exists()


def test_an_agent_name_one_typo_away_is_suggested(capsys):
    rc, _, err = run(["train", "--env", "Pong", "--agent", "CWAC", "-f", str(Path(os.devnull))], capsys)
    assert_one_line(rc, err, "unknown agent 'CWAC' (did you mean CWCA")


GRADNAN = HEADER + '''
class NaNWhenLearning(nn.Module):
    """The identity while acting (no gradient), NaN in an update: it passes every check made before training."""

    def forward(self, x):
        return x * float("nan") if torch.is_grad_enabled() else x


register("GRADNAN", lambda shape: NaNWhenLearning(), "NaN as soon as it learns", "none")
'''


@pytest.mark.parametrize("engine", ["fast", "sb3"])
def test_a_block_that_turns_non_finite_stops_training_at_once_and_saves_no_model(engine, plugins, capsys):
    (plugins / "gradnan.py").write_text(GRADNAN)
    argv = ["train", "--env", "Pong", "--plugin", "gradnan", "--agent", "GRADNAN", "--engine", engine, "-n", "512",
            "--eval-freq", "0", "--save-freq", "128", "-f", "logs", "-params", "n_envs:2", "n_steps:64",
            "batch_size:64", "n_epochs:1"]
    try:
        rc, _, err = run(argv, capsys)
    finally:
        sys.modules.pop("gradnan", None)
    assert_one_line(rc, err, "training stopped at step 128: the update's ")
    assert "not finite (NaN or infinite)" in err and "block GRADNAN (module gradnan)" in err
    assert not list((plugins / "logs").rglob("PongNoFrameskip-v4.zip"))  # no final model
    for checkpoint in (plugins / "logs").rglob("*.zip"):  # SB3 checkpoints step 128 before its first update
        with zipfile.ZipFile(checkpoint) as zf:
            weights = load_tensors(zf.read("policy.pth"), str(checkpoint))
        assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint
