"""Plugins remembered (registry.provider / load_provider): `study init --plugin my_blocks` records, by name, where
the agent's block comes from, in study.yml and in each run's config.yml; later commands run from another folder
find it with no --plugin (study run, status, report); a provider that is missing is one line naming it.

Real processes (the registry of this test process stays as it was), one tiny run (Breakout, 128 steps).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from dimattn.agents.registry import PLUGINS_ENV

BLOCK = '''
import torch
from torch import nn

from dimattn.agents.registry import register


class RowMix(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):  # (N, C, H, W): mix each row's positions
        return x + self.w * x.mean(dim=3, keepdim=True)


register("ROWMIX", build=lambda shape: RowMix(shape[0]), description="row mixing", bias="horizontal")
'''


def dimattn(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")  # not the plugin's folder
    return subprocess.run([sys.executable, "-m", "dimattn", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_plugin_given_at_init_is_found_by_every_later_command(tmp_path):
    (tmp_path / "my_blocks.py").write_text(BLOCK)
    init = dimattn(tmp_path, "study", "init", "st", "--games", "Breakout", "--agents", "ROWMIX", "--seeds", "0",
                   "-n", "128", "--eval-freq", "128", "--eval-episodes", "1", "--save-freq", "0", "--engine", "fast",
                   "--hyperparams", "n_envs:4", "n_steps:32", "batch_size:64", "--plugin", "my_blocks")
    assert init.returncode == 0, init.stderr
    study = tmp_path / "st"
    assert yaml.safe_load((study / "study.yml").read_text())["plugins"] == {"ROWMIX": {"module": "my_blocks"}}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = dimattn(elsewhere, "study", "run", str(study), "--workers", "1", "--threads", "1")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    block = yaml.safe_load((study / "runs" / "Breakout" / "ROWMIX" / "seed0" / "config.yml").read_text())["block"]
    assert block["name"] == "ROWMIX" and block["module"] == "my_blocks" and block["package"] is None
    assert dimattn(elsewhere, "study", "status", str(study)).returncode == 0  # every run done
    report = dimattn(elsewhere, "report", str(study), "--out", "rep", "--reps", "10", "--quiet")
    assert report.returncode == 0 and "ROWMIX" in (elsewhere / "rep" / "index.html").read_text(), report.stderr

    (tmp_path / "my_blocks.py").rename(tmp_path / "moved.py")
    missing = dimattn(elsewhere, "study", "status", str(study))
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "dimattn study: error: agent ROWMIX comes from module my_blocks (as recorded), which is not found here; "
        "put my_blocks.py beside the study folder or on PYTHONPATH")


def test_a_recorded_package_that_is_missing_names_what_to_install(tmp_path):
    study = tmp_path / "st"
    study.mkdir()
    (study / "study.yml").write_text(yaml.safe_dump({
        "name": "st", "games": ["Pong"], "agents": ["GATE"], "seeds": [0],
        "plugins": {"GATE": {"package": "dimattn-gate-missing", "version": "0.1.0"}}}))
    out = dimattn(tmp_path, "study", "status", str(study))
    assert out.returncode == 2 and out.stderr.strip() == (
        "dimattn study: error: agent GATE is not registered; it comes from package dimattn-gate-missing 0.1.0, "
        "which is not installed here: pip install dimattn-gate-missing")
