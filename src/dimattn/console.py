"""What long work shows while it runs: a tqdm bar on a terminal, plain periodic lines anywhere else; and the
caveats a command collects to say once, as notes (:func:`notes_of`).

A bar redraws one line with carriage returns. In a file or a pipe (``dimattn train -P > log``, a job's
output) that becomes one ever-longer line, with the evaluation lines printed between redraws glued onto
it. :func:`progress` therefore gives tqdm only when its stream is a terminal; otherwise a :class:`Lines`,
which takes the same calls and prints one whole line every ``every`` seconds and one when it closes::

    training: 12.3k/30.0k steps (41%), 0:01:02 elapsed, 198step/s, game score 1.5

Caveats about the input (a missing seed, a diverged run) are warnings of one category (the analysis's
``DataWarning``) raised wherever they are found; :func:`notes_of` collects them around a command's work,
each message once, for the command to write as notes (``notes.txt``, ``note:`` lines).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: Seconds between two lines when the output is not a terminal (a training's status lines use the same).
EVERY = 30.0


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             initial: float = 0, disable: bool = False, every: float = EVERY, file: TextIO | None = None,
             **tqdm_options: Any) -> Any:
    """A tqdm bar where ``file`` (default stderr) is a terminal, else a :class:`Lines` with the same calls."""
    file = file or sys.stderr
    if disable or _is_terminal(file):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=file,
                    **tqdm_options)
    return Lines(iterable, total=total, desc=desc, unit=unit, initial=initial, every=every, file=file,
                 unit_scale=tqdm_options.get("unit_scale", False))


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Lines:
    """tqdm's calls (update, set_postfix_str, set_postfix, close, iteration, ``with``), printed as whole lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, every: float = EVERY, file: TextIO | None = None,
                 unit_scale: bool = False) -> None:
        self.iterable, self.desc, self.unit, self.every, self.file = iterable, desc, unit, every, file or sys.stderr
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = self.start = initial
        self.unit_scale, self.postfix, self.closed = unit_scale, "", False
        self.printed: tuple[float, str] | None = None  # the count and postfix the last line showed
        self.t0 = self.last = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._print()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.printed != (self.n, self.postfix):  # a periodic line may already have said it all
                self._print()

    def line(self) -> str:
        from tqdm import tqdm

        elapsed = time.monotonic() - self.t0
        done = self.n - self.start
        return tqdm.format_meter(
            self.n, self.total, elapsed, prefix=self.desc, unit=self.unit, unit_scale=self.unit_scale,
            rate=done / elapsed if elapsed > 0 and done else None, postfix=self.postfix or None,
            bar_format="{desc}: {n_fmt}" + ("/{total_fmt} ({percentage:.0f}%)" if self.total else "")
                       + ", {elapsed} elapsed, {rate_fmt}{postfix}")

    def _print(self) -> None:
        self.last, self.printed = time.monotonic(), (self.n, self.postfix)
        print(self.line(), file=self.file, flush=True)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def notes_of(category: type[Warning]) -> Iterator[list[str]]:
    """Collect the warnings of ``category`` raised in the block: the list it gives holds their messages,
    each once, in order, once the block ends (also when it raises). Other warnings are shown as usual."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        try:
            yield notes
        finally:
            notes.extend(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, category)))
    for w in caught:  # outside the block's catch: to whatever shows warnings here (a caller's notes_of, stderr)
        if not issubclass(w.category, category):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
