"""Experiment tracking (dimattn.engines.tracking): a real tiny run sent to Weights & Biases (offline: its files
read back) and to MLflow's default local store (read back with MLflow's own client): TensorBoard's scalars under
their names, the config, every evaluation, the final model; a resumed run continues the same tracked runs.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

FINAL = "BreakoutNoFrameskip-v4.zip"


def dimattn(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "dimattn", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def wandb_records(path: Path) -> list:
    """The records of an offline run's ``run-<id>.wandb``: W&B's LevelDB-style log (a 7-byte header, then 32 KiB
    blocks of chunks, each: crc32, length, type 1 full / 2 first / 3 middle / 4 last) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, chunk, i = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while i + 7 <= len(data):
        space = 32768 - i % 32768
        length, kind = struct.unpack("<HB", data[i + 4:i + 7]) if space >= 7 else (0, 0)
        if space < 7 or (length == 0 and kind == 0):
            i += space  # the block's padding
            continue
        chunk += data[i + 7:i + 7 + length]
        i += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


def wandb_history(run_file: Path) -> tuple[list, list[dict], list]:
    runs, history, artifacts = [], [], []
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            runs.append(r.run)
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "artifact":
            artifacts.append((r.artifact.type, sorted(m.path for m in r.artifact.manifest.contents)))
    return runs, history, artifacts


def test_track_and_mlflow_log_a_run_and_its_resume_to_the_same_tracked_runs(tmp_path):
    from mlflow import MlflowClient

    from dimattn.engines.tracking import mlflow_store, read_record

    done = dimattn(tmp_path, "train", "--env", "Breakout", "--agent", "NA", "-n", "256", "--eval-freq", "128",
                   "--eval-episodes", "1", "--save-freq", "128", "--engine", "fast", "--device", "cpu",
                   "--hyperparams", "n_envs:4", "n_steps:32", "batch_size:64", "--track",
                   "--wandb-project-name", "dimattn-test", "--wandb-tags", "daily", "--mlflow")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "logs" / "ppo" / "BreakoutNoFrameskip-v4_1"
    record = read_record(run)
    assert record["tensorboard_log"] == str(run / "tb")  # tracking logs TensorBoard into the run by default

    # W&B, offline: the run, TensorBoard's scalars at their steps, the evaluations and the final model
    (wb_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    runs, history, artifacts = wandb_history(wb_file)
    assert runs[0].run_id == record["wandb"]["id"] and runs[0].project == "dimattn-test"
    assert {"daily", "Breakout", "NA"} <= set(runs[0].tags)
    config = {i.key: json.loads(i.value_json) for i in runs[0].config.update}
    assert config["game"] == "Breakout" and config["hyperparams"]["n_envs"] == 4
    evals = {h["global_step"]: h["eval/mean_reward"] for h in history if "eval/mean_reward" in h}
    assert sorted(evals) == [128, 256] and {"train/value_loss", "train/learning_rate"} <= set(history[0])
    assert ("model", sorted([FINAL, "evaluations.npz"])) in artifacts

    # MLflow, the default ./mlruns store, read with MLflow's client
    client = MlflowClient(tracking_uri=mlflow_store(tmp_path / "mlruns"))
    (found,) = client.search_runs([client.get_experiment_by_name("dimattn").experiment_id])
    assert found.info.run_id == record["mlflow"]["run_id"] and found.info.status == "FINISHED"
    assert found.data.params["game"] == "Breakout" and found.data.tags["agent"] == "NA"
    mlflow_evals = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "eval/mean_reward")}
    assert mlflow_evals == evals  # the same numbers under the same names
    assert {"train/value_loss", "time/fps"} <= set(found.data.metrics)
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yml", "evaluations.npz", "model"} <= names
    assert [a.path for a in client.list_artifacts(found.info.run_id, "model")] == [f"model/{FINAL}"]

    # as if killed after 128 steps: --resume continues the same W&B run and the same MLflow run
    for name in ("rl_model_256_steps.zip", FINAL):
        (run / name).unlink()
    shutil.rmtree(run / "wandb")
    resumed = dimattn(tmp_path, "train", "--resume", str(run), "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    (wb_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    runs, history, _ = wandb_history(wb_file)
    assert runs[0].run_id == record["wandb"]["id"] and any(h.get("global_step") == 256 for h in history)
    (again,) = client.search_runs([found.info.experiment_id])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "eval/mean_reward")]
    assert steps == [128, 256, 256]  # the evaluation redone after the checkpoint, sent once more


def test_tracking_options_are_checked_before_a_run_folder_exists(tmp_path, capsys):
    from dimattn.cli import main

    (tmp_path / "file").write_text("")
    logs = ["-f", str(tmp_path / "logs")]
    for argv, message in ((["--track", "--wandb-project-name", "a b"], "--wandb-project-name 'a b'"),
                          (["--wandb-entity", "me"], "need --track"),
                          (["--mlflow", str(tmp_path / "file" / "x")], "MLflow folder")):
        assert main(["train", "--env", "Breakout", *logs, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "logs").exists()


def test_a_study_run_is_tracked_grouped_by_study_game_and_agent(tmp_path):
    from mlflow import MlflowClient

    from dimattn.engines.tracking import mlflow_store

    init = dimattn(tmp_path, "study", "init", "st", "--games", "Breakout", "--agents", "NA", "--seeds", "3", "-n",
                   "128", "--eval-freq", "128", "--eval-episodes", "1", "--save-freq", "0", "--engine", "fast",
                   "--hyperparams", "n_envs:4", "n_steps:32", "batch_size:64")
    assert init.returncode == 0, init.stderr
    ran = dimattn(tmp_path, "study", "run", "st", "--workers", "1", "--threads", "1", "--track", "--mlflow")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    run = tmp_path / "st" / "runs" / "Breakout" / "NA" / "seed3"
    (wb_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    runs, history, artifacts = wandb_history(wb_file)
    assert runs[0].run_group == "st/Breakout/NA" and [h["global_step"] for h in history] == [128]
    client = MlflowClient(tracking_uri=mlflow_store(tmp_path / "mlruns"))
    (found,) = client.search_runs([client.get_experiment_by_name("st").experiment_id])
    assert (found.data.tags["study"], found.data.tags["game"], found.data.tags["agent"]) == ("st", "Breakout", "NA")
    assert [m.step for m in client.get_metric_history(found.info.run_id, "eval/mean_reward")] == [128]
