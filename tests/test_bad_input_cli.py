"""Every bad input on the command line is one line and exit 2 with nothing written: bad values, counts out
of bounds or not integers, ``--speed`` items; help shows every default.

Bad inputs are one table per kind (input -> exit 2, exactly one line on stderr, no traceback, the target
left absent), run in-process through ``dimattn.cli.main``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from cli_helpers import assert_one_line, run
from dimattn import cli
from dimattn.errors import DimattnError

# ----------------------------------------------------------------------------- bad values
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


# ----------------------------------------------------------------------------- bounds, integers as integers
BAD_COUNTS = [
    (["axes", "Pong", "--steps", "99999999999999999999"], "--steps: must be at least 1 and at most 1,000,000, got "
                                                          "99999999999999999999"),
    (["axes", "Pong", "--steps", "0"], "--steps: must be at least 1"),
    (["axes", "Pong", "--steps", "٣"], "'٣' is not an integer"),           # Arabic-Indic three: int() takes it
    (["axes", "Pong", "--steps", "1_000"], "'1_000' is not an integer"),
    (["axes", "Pong", "--steps", "1e999999999"], "has more than 100 digits"),  # refused, never expanded
    (["axes", "Pong", "--seed", "-1"], "--seed: must be at least 0 and at most"),
    (["recommend", "Pong", "--steps", "10000000"], "--steps: must be at least 1 and at most 1,000,000"),
    (["recommend", "Pong", "--seed", "1e10"], "--seed: must be at least 0 and at most"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--n-obs", "0"],
     "--n-obs: must be at least 1 and at most 1,000, got 0"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--n-obs", "1e6"], "--n-obs: must be"),
    (["explain", "--checkpoint", "x.zip", "--env", "Pong", "--out", "{out}", "--every", "2.5"], "'2.5' is not an"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--episodes", "1000000"],
     "--episodes: must be at least 1 and at most 100"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--fps", "0"], "--fps: must be at least 1 and at "
                                                                                  "most 240"),
    (["record", "--checkpoint", "x.zip", "--out", "{out}/v.gif", "--max-steps", "-5"], "--max-steps: must be"),
    (["report", "x", "--out", "{out}", "--reps", "1e9"], "--reps: must be at least 1 and at most 100,000, got 1e9"),
    (["report", "x", "--out", "{out}", "--reps", "0"], "--reps: must be at least 1"),
    (["study", "run", "{out}", "--threads", "100000"], "--threads: must be at least 1 and at most 1,024"),
    (["study", "run", "{out}", "--workers", "0"], "--workers: must be at least 1"),
    (["study", "run", "{out}", "--retries", "1e6"], "--retries: must be at least 0 and at most 100"),
    (["study", "run", "{out}", "--pack", "99999"], "--pack: must be at least 1 and at most 1,000"),
    (["study", "run", "{out}", "--backend", "pbs", "--ngpus", "1000"], "--ngpus: must be at least 0 and at most 64"),
    (["study", "run-one", "{out}", "--threads", "0"], "--threads: must be at least 1"),
    (["train", "--env", "Pong", "-f", "{out}", "--eval-freq", "٢٠٠"], "is not an integer"),
    (["train", "--env", "Pong", "-f", "{out}", "--verbose", "7"], "--verbose: must be at least 0 and at most 2"),
    (["train", "--env", "Pong", "-f", "{out}", "-n", "99999999999999999999"], "above the limit of 1e+12"),
]


@pytest.mark.parametrize("argv,message", BAD_COUNTS, ids=[" ".join(a)[:60] for a, _ in BAD_COUNTS])
def test_counts_are_bounded_and_parsed_as_integers(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run([a.format(out=out) for a in argv], capsys)
    assert_one_line(rc, err, message)
    assert not out.exists()


# ----------------------------------------------------------------------------- --speed FIELD=VALUE
SPEED = ["train", "--env", "Pong", "-f", "{out}", "--engine", "fast", "--device", "cpu", "--speed"]
BAD_SPEEDS = [
    (["env_threads=٣"], "--speed env_threads takes a whole number >= 0 in digits 0-9, got '٣'"),
    (["torch_threads=1_000"], "--speed torch_threads takes a whole number >= 0 in digits 0-9"),
    (["groups=99999999999999999999"], "--speed groups must be at least 1 and at most 64"),
    (["env_threads=100000"], "--speed env_threads must be at least 0 and at most 1,024, got 100000"),
    (["collect_threads=4096"], "--speed collect_threads must be at least 0 and at most 1,024"),
    (["bf16=true", "bf16=false"], "--speed bf16 is given twice; give each field once"),
    (["env_threads=1", "env-threads=2"], "--speed env_threads is given twice"),
    (["cuda_graph=true"], "--speed cuda_graph=true needs a CUDA device, but this run is on the CPU"),
]


@pytest.mark.parametrize("items,message", BAD_SPEEDS, ids=[" ".join(i)[:40] for i, _ in BAD_SPEEDS])
def test_speed_is_parsed_strictly_before_the_run_folder_exists(items, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run([a.format(out=out) for a in SPEED] + items, capsys)
    assert_one_line(rc, err, message)
    assert not out.exists()


@pytest.mark.parametrize("text,value", [("5", 5), ("2e5", 200_000), ("2.5e6", 2_500_000), ("+7", 7),
                                        ("99999999999999999999", 99999999999999999999), ("1E3", 1000)])
def test_integers_are_exact(text, value):
    assert cli.integer(text) == value and type(cli.integer(text)) is int


def test_every_option_with_a_default_shows_it_in_help():
    missing = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            elif (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                  and "default" not in parser._get_formatter()._get_help_string(action)):
                missing.append(f"{name} {action.option_strings[-1]}")

    parser = cli.build_parser()
    walk(parser, "dimattn")
    assert not missing, missing
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    text = " ".join(train.format_help().split())
    assert "(default: 200,000)" in text and "(default: 5)" in text  # --eval-freq, --eval-episodes
