"""The example plugin package (examples/dimattn-gate), installed as a researcher would install theirs, runs
through every command: dimattn agents, train (with keyword arguments, after conv2), study (2 tiny runs),
report, explain and SB3's ``PPO.load``.

It is installed into a virtual environment of its own that sees this test environment's packages, so the
test environment itself is left as it was: ``pip install --no-deps --no-build-isolation -e`` works offline.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dimattn.agents.registry import PLUGINS_ENV

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "dimattn-gate"
TINY = ["--eval-episodes", "1", "--hyperparams", "n_envs:2", "n_steps:128", "batch_size:64", "n_epochs:1"]


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    """A venv's python with dimattn-gate installed (editable), seeing this environment's site-packages."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    base = sysconfig.get_paths()["purelib"]  # this environment's: dimattn, torch, pip, setuptools
    Path(purelib, "_test_environment.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE)],
                   check=True, capture_output=True, text=True, timeout=600)
    return py


def run(py: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (PLUGINS_ENV, "PYTHONPATH")}
    result = subprocess.run([str(py), "-m", "dimattn", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_example_plugin_runs_through_every_command(python, tmp_path):
    listed = run(python, tmp_path, "agents").stdout
    assert "GATE   spatial     dimattn-gate 0.1.0" in listed

    # train: the block after conv2, with a keyword argument; files hold names and plain data only
    run(python, tmp_path, "train", "--env", "Pong", "--agent", "GATE@conv2", "-f", "logs", "-n", "256",
        "--eval-freq", "256", "--save-freq", "0", *TINY,
        "policy_kwargs:dict(features_extractor_kwargs=dict(block_kwargs=dict(reduction=2)))")
    run_dir = next((tmp_path / "logs" / "ppo").iterdir())
    config = (run_dir / "config.yml").read_text()
    final = run_dir / "PongNoFrameskip-v4.zip"
    with zipfile.ZipFile(final) as zf:
        meta = json.loads(zf.read("dimattn.json"))
    assert meta["block"] == {"name": "GATE", "attention_after": "conv2", "kwargs": {"reduction": 2},
                             "bias": "spatial", "package": "dimattn-gate", "version": "0.1.0"}
    assert "dimattn_gate" not in config and "dimattn_gate" not in json.dumps(meta)  # no import path

    # SB3 loads it as it loads the five (the plugin is installed): 32 channels after conv2, reduction 2
    probe = (f"from stable_baselines3 import PPO; m = PPO.load({str(final)!r}, device='cpu'); "
             "a = m.policy.features_extractor.attention; "
             "print(type(a).__name__, a.channel[0].in_channels, a.channel[0].out_channels)")
    loaded = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=600)
    assert loaded.stdout.split() == ["Gate", "32", "16"], loaded.stderr[-2000:]

    # a study of NA and GATE (2 tiny runs), its report and an explanation of both agents
    run(python, tmp_path, "study", "init", "study", "--games", "Pong", "--agents", "NA,gate", "--seeds", "0",
        "-n", "512", "--eval-freq", "256", "--save-freq", "0", *TINY)
    run(python, tmp_path, "study", "run", "study", "--workers", "2", "--threads", "1")
    run(python, tmp_path, "report", "study", "--out", "report", "--reps", "20", "--quiet")
    tables = tmp_path / "report" / "tables"
    assert "| Game | NA | GATE |" in (tables / "per_game.md").read_text().replace("  ", " ")
    assert [r["agent"] for r in csv.DictReader((tables / "probability_of_improvement.csv").open())] == ["GATE"]
    assert "GATE (spatial)" in (tables / "alignment.md").read_text()
    models = sorted((tmp_path / "study" / "runs").rglob("PongNoFrameskip-v4.zip"))
    assert [m.parts[-3] for m in models] == ["GATE", "NA"]
    run(python, tmp_path, "explain", "--compare", *map(str, models), "--env", "Pong", "--n-obs", "2",
        "--out", "explained")
    with np.load(tmp_path / "explained" / "explain.npz", allow_pickle=False) as z:
        assert z["GATE/maps/spatial_gate"].shape == (2, 1, 20, 20)
        assert np.isfinite(z["GATE/orientation"]).all() and np.isnan(z["NA/orientation"]).all()
