"""Issue 13: every bad input is one line and exit 2 with nothing written; a killed ``study run`` takes its
workers down; leftovers of killed writes are cleaned at resume; the newcomer's path.

Bad inputs are one table per kind (input -> exit 2, exactly one line on stderr, no traceback, the target
left absent), run in-process through ``dimattn.cli.main``; subprocesses only where a kill or the output of
C code is the point.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dimattn import cli
from dimattn.errors import DimattnError
from dimattn.fileio import writing

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


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
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


# ----------------------------------------------------------------------------- bad values (points 1, 2, 4)
DEEP_MINUS = "-" * 50_000 + "1"
BAD_VALUES = [
    # (argv after the command, what the message says); {out} is the folder that must stay absent
    (["train", "--env", "Pong", "-f", "{out}", "-n", "1e30"], "above the limit of 1e+12"),
    (["train", "--env", "Pong", "-f", "{out}", "--eval-freq", "1e13"], "above the limit"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "learning_rate:-0.001"], "learning_rate must be above 0"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "learning_rate:lin_-1"], "learning_rate must be above 0"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "learning_rate:1e400"], "learning_rate must be a finite"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "gamma:1.5"], "gamma must be at least 0 and at most 1"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "gae_lambda:-0.1"], "gae_lambda must be"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "clip_range:-0.2"], "clip_range must be above 0"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "vf_coef:-1"], "vf_coef must be"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "ent_coef:'x'"], "ent_coef must be a finite number"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "max_grad_norm:0"], "max_grad_norm must be above 0"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "normalize_advantage:3"], "normalize_advantage must be"),
    (["train", "--env", "Pong", "-f", "{out}", "--seed", "3000000000"], "seed must be an integer from 0"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "n_envs:100000", "n_steps:100000", "batch_size:1000"],
     "GiB of memory and this machine has"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", f"ent_coef:{DEEP_MINUS}"], "longer than 2,000 characters"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "ent_coef:" + "-" * 1000 + "1"], "nested more than 20"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "ent_coef:" + "[" * 30 + "]" * 30], "nested more than 20"),
    (["train", "--env", "Pong", "-f", "{out}", "-params", "ent_coef:" + "(" * 25 + "1" + ")" * 25],
     "nested more than 20"),
    (["train", "--env", "Pong", "-f", "{out}", "--speed", "bf16=maybe"], "--speed bf16 takes true or false"),
    (["train", "--env", "Pong", "-f", "{out}", "--speed", "turbo=1"], "unknown --speed field 'turbo'"),
    (["train", "--env", "Pong", "-f", "{out}", "--speed", "bf16"], "malformed --speed item 'bf16'"),
    (["train", "--env", "Pong", "-f", "{out}", "--speed", "env_threads=-2"], "takes a whole number >= 0"),
    (["train", "--env", "Pong", "-f", "{out}", "--speed", "groups=0"], "groups must be at least 1"),
    (["train", "--env", "Pong", "-f", "{out}", "--engine", "sb3", "--speed", "bf16=1"], "drop --speed"),
    (["study", "init", "{out}", "--games", "Pong", "-params", "learning_rate:-1"], "learning_rate must be above 0"),
    (["study", "init", "{out}", "--games", "Pong", "-n", "1e30"], "above the limit of 1e+12"),
    (["study", "init", "{out}", "--games", "Pong", "--seeds", "0-100000000"], "at most 1,000"),
    (["study", "init", "{out}", "--games", "Pong", "--seeds", "0-500,600-1200"], "at most 1,000"),
    (["study", "init", "{out}", "--games", "Pong", "--seeds", "4000000000"], "above the largest seed"),
    (["record", "--checkpoint", "{pong}", "--out", "{out}/v.gif", "--scale", "100000"], "above the limit of 8"),
    (["explain", "--checkpoint", "{hostile}", "--obs", "{obs}", "--out", "{out}"], "holds objects other than tensors"),
    (["record", "--checkpoint", "{hostile}", "--out", "{out}/v.gif"], "holds objects other than tensors"),
    (["explain", "--compare", "{pong}", "{breakout}", "--obs", "{obs}", "--out", "{out}"], "different games"),
    (["explain", "--checkpoint", "{pong}", "--obs", "{notes}", "--out", "{out}"], "is not a NumPy .npy file"),
]


@pytest.mark.parametrize("argv,message", BAD_VALUES, ids=[" ".join(a)[:70] for a, _ in BAD_VALUES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(argv, message, files, tmp_path, capsys):
    out = tmp_path / "out"
    names = {k: str(v) for k, v in files.items()}
    rc, _, err = run([a.format(out=out, **names) if "{" in a and "}" in a else a for a in argv], capsys)
    assert_one_line(rc, err, message)
    assert "weights_only" not in err  # never the advice to load a file unsafely
    assert not out.exists()
    assert not Path("pwned").exists() and not (files["hostile"].parent / "pwned").exists()


def test_a_huge_seed_range_is_refused_at_once():
    from dimattn.study.spec import parse_seeds

    start = time.monotonic()
    with pytest.raises(DimattnError, match="at most 1,000"):
        parse_seeds("0-99999999999")
    assert time.monotonic() - start < 0.5


# ----------------------------------------------------------------------------- folders that cannot be written (3)
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
    from analysis_fixtures import write_study

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


# ----------------------------------------------------------------------------- kills and leftovers (7, 8, 9)
def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (its parent, the fork server, may not have reaped it yet)
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_sigkill_of_study_run_takes_its_worker_down_and_the_run_resumes(tmp_path):
    from dimattn.engines.rundir import checkpoints
    from dimattn.study.locks import lock_holder

    root = tmp_path / "s"
    subprocess.run([sys.executable, "-m", "dimattn", "study", "init", str(root), "--games", "Pong", "--agents",
                    "NA", "--seeds", "0", "-n", "1024", "--eval-freq", "0", "--save-freq", "128", "--engine", "sb3",
                    *TINY], env=ENV, check=True, capture_output=True)
    run_dir = root / "runs" / "Pong" / "NA" / "seed0"
    runner = subprocess.Popen([sys.executable, "-m", "dimattn", "study", "run", str(root), "--workers", "1"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: run_dir.is_dir() and checkpoints(run_dir), 180, "the worker's first checkpoint")
        holder = lock_holder(run_dir)
        assert holder is not None
        worker = int(holder.split()[0])
        assert worker != runner.pid and _alive(worker)
        runner.send_signal(signal.SIGKILL)  # the runner alone: its worker must follow
        runner.wait(10)
        _wait(lambda: not _alive(worker), 10, f"worker {worker} to die with its runner")
    finally:
        if runner.poll() is None:
            runner.kill()
    _wait(lambda: lock_holder(run_dir) is None, 5, "the run's lock to be released")
    assert not (run_dir / "PongNoFrameskip-v4.zip").exists()
    kept = checkpoints(run_dir)[-1][0]
    # what a write killed half-way leaves: atomic_path's temporary file and save_sb3's temporary zip
    leftovers = [run_dir / f".rl_model_{kept + 128}_steps.zip.k1ll3d.tmp",
                 run_dir / f".rl_model_{kept + 128}_steps.zip.k1ll3d.zip"]
    for path in leftovers:
        path.write_bytes(b"PK\x03\x04 half a zip")
    done = subprocess.run([sys.executable, "-m", "dimattn", "study", "run", str(root), "--workers", "1"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (run_dir / "train.log").read_text()
    assert f"resuming {run_dir} from rl_model_{kept}_steps.zip" in log
    assert "removed 2 temporary file(s)" in log and "A.L.E" not in log
    assert not any(p.exists() for p in leftovers)
    assert (run_dir / "PongNoFrameskip-v4.zip").is_file()


def test_status_shows_the_steps_a_resume_keeps_and_the_later_evaluation_apart(tmp_path, capsys):
    from dimattn.fileio import atomic_savez
    from dimattn.study.spec import Study
    from dimattn.study.status import statuses

    root = tmp_path / "s"
    assert run(["study", "init", str(root), "--games", "Pong", "--agents", "NA", "--seeds", "0", "-n", "4096",
                *TINY], capsys)[0] == 0
    run_dir = root / "runs" / "Pong" / "NA" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "rl_model_1024_steps.zip").write_bytes(b"")  # status reads names only
    atomic_savez(run_dir / "evaluations.npz", timesteps=np.array([512, 1536]), results=np.array([[1.0], [3.0]]),
                 ep_lengths=np.array([[100], [100]]))
    (row,) = statuses(Study.load(root, validate=False))
    assert (row.state, row.steps, row.eval_steps, row.last_score) == ("pending", 1024, 1536, 3.0)
    rc, out, _ = run(["study", "status", str(root)], capsys)
    assert rc == 1 and "1,024/4,096" in out and "1,536" in out and "steps kept" in out


# ----------------------------------------------------------------------------- progress and banners (14)
def test_the_progress_bar_never_passes_its_total_and_shows_the_score(capsys):
    from dimattn.engines.progress import ProgressBar

    bar = ProgressBar(total=50_000, initial=2_048)
    for steps in range(4_096, 53_248, 2_048):  # the fast engine's rollouts overshoot 50,000 by 1,248
        bar.update_to(steps, [3.0, 5.0])
    assert bar.bar.n == 50_000
    bar.close()
    text = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert "50.0k/50.0k" in text and "100%" in text and "game score 4.0" in text and "step/s" in text


def test_ale_prints_no_banner():
    code = ("from dimattn.envs.ale import make_env, action_meanings\n"
            "env = make_env('Pong', 1, seed=0); env.reset(); env.close(); action_meanings('Breakout')\n")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "A.L.E" not in done.stdout + done.stderr and "Stella" not in done.stdout + done.stderr


def test_a_reader_that_goes_away_stops_the_command_quietly():
    # `dimattn axes Pong Breakout | head -1`: the second line meets a closed pipe.
    cmd = [sys.executable, "-m", "dimattn", "axes", "Pong", "Breakout", "--steps", "30"]
    env = {**ENV, "PYTHONUNBUFFERED": "1"}  # each line leaves at once, as on a terminal: the close lands mid-run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert first.startswith("Pong ") and "Traceback" not in err and "Error" not in err, err
    assert "A.L.E" not in first + err  # and ale-py's banner is not printed by the axes' play either


# ----------------------------------------------------------------------------- options and the newcomer (15, 16)
def test_vec_env_subproc_with_the_fast_engine_is_noted_and_config_records_envpool(capsys):
    pytest.importorskip("envpool")
    from dimattn.engines.config import build_config
    from dimattn.engines.train import prepare

    config = prepare([build_config("Pong", vec_env="subproc")]).configs[0]
    out = capsys.readouterr().out
    assert (config.engine, config.vec_env) == ("fast", "envpool")
    assert out.count("\n") == 1 and "--vec-env subproc applies to the SB3 engine" in out
    assert prepare([build_config("Pong", vec_env="subproc", engine="sb3")]).configs[0].vec_env == "subproc"


def test_help_texts(capsys):
    rc, out, _ = run(["train", "--help"], capsys)
    assert rc == 0 and "rl_model_26624_steps.zip" in " ".join(out.split())
    rc, out, _ = run(["study", "status", "--help"], capsys)
    assert rc == 0 and "the steps a resume would keep" in " ".join(out.split())
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"dimattn {__import__('dimattn').__version__}"


def test_observations_are_taken_in_natural_order(tmp_path):
    from dimattn.interpret.explain import load_observations

    for i in (10, 2, 1):
        np.save(tmp_path / f"pong_{i}.npy", np.full((4, 84, 84), i, np.uint8))
    obs, names = load_observations([tmp_path / f"pong_{i}.npy" for i in (10, 2, 1)])
    assert names == ["pong_1", "pong_2", "pong_10"] and list(obs[:, 0, 0, 0]) == [1, 2, 10]


def test_explaining_one_na_checkpoint_says_why_there_is_no_orientation_png(files, tmp_path, capsys):
    out = tmp_path / "explain"
    rc, stdout, _ = run(["explain", "--checkpoint", str(files["pong"]), "--obs", str(files["obs"]), "--out",
                         str(out)], capsys)
    assert rc == 0 and (out / "orientation.md").is_file() and not (out / "orientation.png").exists()
    assert "no orientation.png: NA has no attention block" in " ".join(stdout.split())


def test_the_closing_lines_name_what_the_run_wrote(tmp_path):
    final = tmp_path / "PongNoFrameskip-v4.zip"
    assert "evaluations:" not in cli.done_message(tmp_path, final)
    for name in ("evaluations.npz", "rl_model_2048_steps.zip", "best_model.zip"):
        (tmp_path / name).write_bytes(b"")
    text = cli.done_message(tmp_path, final)
    assert f"evaluations:  {tmp_path / 'evaluations.npz'}" in text and f"final model:  {final}" in text
    assert f"checkpoints:  {tmp_path}/rl_model_*_steps.zip, {tmp_path}/best_model.zip" in text


def test_speed_sets_the_fast_engines_levers_on_top_of_the_defaults(tmp_path, capsys):
    rc, out, _ = run(["train", "--env", "Breakout", "-f", str(tmp_path), "-n", "128", "--eval-freq", "0",
                      "--speed", "channels_last=false", "env_threads=2", "collect-threads=0", *TINY], capsys)
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("fast engine on"))
    assert "2 EnvPool thread(s) each" in line and "channels_last" not in line, line
    assert "while acting" not in line, line  # collect_threads=0: torch's threads throughout
    # The closing lines name only what was written: no evaluations, no checkpoints here.
    assert "final model:" in out and "evaluations:" not in out and "checkpoints:" not in out, out
