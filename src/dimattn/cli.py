"""The ``dimattn`` command line: a thin layer over the Python API.

Each subcommand is a pair of functions here: ``_add_<name>(subparsers)`` declares its options and
``_run_<name>(args)`` calls the API. Bad input raises :class:`DimattnError`; ``main`` prints it on one
line and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from dimattn.errors import DimattnError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse prints the whole usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# --------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    from dimattn.train import add_train_arguments

    p = sub.add_parser("train", help="train one agent on one Atari game", description=(
        "Train one agent on one Atari game with the study's PPO protocol (SPEC §4). Accepts the "
        "published RL Zoo command line verbatim."))
    add_train_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    from dimattn.train import train_from_args

    train_from_args(args)
    return 0


# --------------------------------------------------------------------------- explain
def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="feature maps, attention maps, Grad-CAM and attention orientation", description=(
        "For each observation draw the state-representation panel (last frame, the 16 rectified H1 "
        "maps, the 16 attention-output maps, Grad-CAM of the chosen action) and measure the attention "
        "orientation and complementarity (SPEC §6; docs/interpret.md). Writes <obs>.png per observation, "
        "explain.npz (raw arrays), measures.csv, orientation.md and orientation.png to --out."))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="MODEL.zip", help="the agent to explain (an SB3 model .zip)")
    which.add_argument("--compare", nargs="+", metavar="MODEL.zip",
                       help="several agents (e.g. the five agents of one game), drawn side by side")
    p.add_argument("--agent", help="the agent kind of --checkpoint, if the file does not record it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--obs", nargs="+", metavar="FILE.npy",
                     help="stacked observations: uint8 .npy files of shape (4,84,84) or (n,4,84,84)")
    src.add_argument("--env", metavar="GAME", help="take observations from the (first) agent playing GAME")
    p.add_argument("--n-obs", type=int, default=4, help="with --env: how many observations (default 4)")
    p.add_argument("--every", type=int, default=25, help="with --env: agent steps between observations (default 25)")
    p.add_argument("--seed", type=int, default=0, help="with --env: environment and policy seed (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")


def _run_explain(args: argparse.Namespace) -> int:
    from dimattn.interpret import explain_command

    explain_command(checkpoints=args.compare or [args.checkpoint], agent=args.agent, obs_files=args.obs,
                    game=args.env, n_obs=args.n_obs, every=args.every, seed=args.seed, out=args.out)
    return 0


# --------------------------------------------------------------------------- record
def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="a GIF/MP4 of an agent playing whole games", description=(
        "Record an agent playing whole evaluation games (SPEC §3) at full resolution, with the episode "
        "score in the corner and optionally its Grad-CAM saliency blended over the screen."))
    p.add_argument("--checkpoint", required=True, metavar="MODEL.zip", help="the agent (an SB3 model .zip)")
    p.add_argument("--agent", help="the agent kind, if the checkpoint does not record it")
    p.add_argument("--env", metavar="GAME", help="the game (default: the one the checkpoint records)")
    p.add_argument("--episodes", type=int, default=1, help="whole games to record (default 1)")
    p.add_argument("--out", required=True, metavar="FILE", help="output video: .gif or .mp4")
    p.add_argument("--saliency", action="store_true", help="blend the Grad-CAM of each chosen action over the screen")
    p.add_argument("--deterministic", action="store_true", help="greedy actions (default: sampled, as in evaluation)")
    p.add_argument("--seed", type=int, default=0, help="environment and policy seed (default 0)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each episode after this many agent steps")
    p.add_argument("--fps", type=int, default=15, help="frames per second; 15 is real time (default 15)")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the 210x160 screen (default 2)")


def _run_record(args: argparse.Namespace) -> int:
    from dimattn.record import record_command

    record_command(checkpoint=args.checkpoint, agent=args.agent, game=args.env, episodes=args.episodes,
                   out=args.out, saliency=args.saliency, deterministic=args.deterministic, seed=args.seed,
                   max_steps=args.max_steps, fps=args.fps, scale=args.scale)
# --------------------------------------------------------------------------- report
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, rliable figures and an HTML report from results", description=(
        "Write the study's per-game table, rliable aggregate metrics and figures, alignment of biases and one "
        "self-contained index.html (SPEC §5) from a study directory, a folder of RL Zoo runs or the published "
        "post-processed results pickle."))
    p.add_argument("input", help="study directory, folder of runs (evaluations.npz + config.yml) or results .pkl")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--use-last", action="store_true",
                   help="score each seed by its last evaluation instead of the mean over all evaluations")
    p.add_argument("--se", choices=("ddof0", "ddof1"), default="ddof0",
                   help="standard error over seeds: std with ddof=0 (published, default) or ddof=1")
    p.add_argument("--reps", type=_positive_int, default=2000, help="bootstrap replicates (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from dimattn.report import build_report

    report = build_report(args.input, args.out, use_last=args.use_last, se=args.se, reps=args.reps,
                          seed=args.seed, progress=not args.quiet)
    for text in report.notes:
        print(f"dimattn report: note: {text}", file=sys.stderr)
    wins = ", ".join(f"{a} {n}" for a, n in report.wins.items())
    print(f"wrote {len(report.files)} files to {report.out}; open {report.out / 'index.html'} (wins: {wins})")
    return 0


# Subcommands in the order `dimattn --help` lists them.
COMMANDS: list[tuple[str, Callable, Callable]] = [
    ("train", _add_train, _run_train),
    ("explain", _add_explain, _run_explain),
    ("record", _add_record, _run_record),
    ("report", _add_report, _run_report),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dimattn", description=(
        "Self-attention over dimensions of a CNN feature map in visual deep RL: train agents, run "
        "studies, analyse results and look inside trained agents."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for _, add, _ in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = {name: run for name, _, run in COMMANDS}[args.command]
    try:
        return int(run(args) or 0)
    except DimattnError as exc:
        print(f"dimattn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dimattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
