"""YAML files that dimattn writes and reads back: ``study.yml`` and a run's ``config.yml``.

One loader for both, bounded before anything expands: a regular file (a FIFO would block the reader) of
at most :data:`MAX_YAML_BYTES`, no aliases (``*name`` lets a short document expand without bound, a
"billion laughs"; dimattn never writes one, see :func:`dump_yaml`), nesting at most :data:`MAX_DEPTH`
deep, and PyYAML's safe tags only. Every refusal is one :class:`DimattnError` line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dimattn.errors import DimattnError
from dimattn.fileio import read_regular

#: A study.yml is a few KB (56 games), a config.yml about 2 KB: a megabyte is a typo or a hostile file.
MAX_YAML_BYTES = 1_000_000
#: A config.yml nests 4 levels (hyperparams / policy_kwargs / features_extractor_kwargs / block_kwargs).
MAX_DEPTH = 32


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and nesting beyond :data:`MAX_DEPTH`, as the parser
    meets them (before any node is built)."""

    kind = "YAML file"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"holds an alias (*name), which a {self.kind} may not "
                                              "use; write the value out", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"is nested too deeply (more than {MAX_DEPTH} "
                                                  "levels)", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: Path, kind: str) -> str:
    """The text of regular file ``path``, refused unread when it is larger than a ``kind`` can be."""
    return read_regular(path, MAX_YAML_BYTES, f"a {kind}").decode()


def load_yaml(path: str | Path, kind: str = "YAML file") -> Any:
    """The parsed YAML file at ``path`` (``kind``: what it should be, e.g. "study.yml", for the messages)."""
    path = Path(path)
    loader = type("_Loader", (_BoundedLoader,), {"kind": kind})
    try:
        return yaml.load(_read_text(path, kind), Loader=loader)  # noqa: S506 - a SafeLoader, stricter
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())[:200]
        raise DimattnError(f"{path} is not valid YAML for a {kind.removesuffix('.yml')}: {what}{where}") from None
    except RecursionError:  # a flow collection's depth is the scanner's, not the composer's
        raise DimattnError(f"{path} is nested too deeply to be a {kind}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DimattnError(f"cannot read {path}: {exc}") from None


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two keys out twice, never as an alias, so :func:`load_yaml` reads it back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text without aliases, keys in the order given."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)
