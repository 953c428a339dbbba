"""Hyperparameter values parsed without ``eval``: literals, ``dict(...)``, ``lin_<x>`` schedules, known names.

``--hyperparams key:value`` values and ``policy_kwargs`` strings in RL Zoo files are Python expressions
*parsed* by :func:`parse_value` (``ast``, never executed); :func:`as_float_schedule` reads a number or a
``lin_<x>`` schedule. Both are pure text -> value functions.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from dimattn.errors import DimattnError

#: Names a ``--hyperparams`` value may mention, kept as strings in the config and resolved when the
#: model is built (see :func:`dimattn.engines.config.resolve_policy_kwargs`).
KNOWN_NAMES = ("SelfAttnCNNPPO", "SelfAttnCNN", "nn.ReLU", "nn.Tanh", "nn.LeakyReLU", "nn.ELU")
_SCHEDULE = re.compile(r"^lin_([0-9.eE+-]+)$")

#: Caps on a ``--hyperparams`` value, checked before parsing: the longest real one (policy_kwargs with
#: every option) is ~200 characters and 3 levels deep. Without them, e.g. 50,000 unary minus signs
#: exhaust Python's parser (MemoryError) or our recursive walk (RecursionError).
MAX_VALUE_CHARS = 2_000
MAX_VALUE_DEPTH = 20
_OPENERS = re.compile(r"[-+(\[{]")


def _short(text: str) -> str:
    """``text`` for an error message: long values are cut, so the message stays one readable line."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text):,} characters)"


def parse_value(text: str) -> Any:
    """Parse one ``--hyperparams`` value: ``0.1``, ``'lin_2.5e-4'``, ``lin_2.5e-4``, ``[64, 64]``,
    ``dict(a=1, b=dict(c='x'))``, ``SelfAttnCNNPPO``, ``nn.ReLU``. Raises DimattnError otherwise."""
    text = text.strip()
    if _SCHEDULE.match(text):
        return text
    if len(text) > MAX_VALUE_CHARS:
        raise DimattnError(f"hyperparameter value {_short(text)} is longer than {MAX_VALUE_CHARS:,} characters; "
                           "give a shorter value")
    # Every level of nesting needs an opening bracket or a sign, so counting them bounds the depth
    # before Python's parser (which recurses in C) ever sees the text.
    if len(_OPENERS.findall(text)) > MAX_VALUE_DEPTH and _depth_bound(text) > MAX_VALUE_DEPTH:
        raise DimattnError(f"hyperparameter value {_short(text)} is nested more than {MAX_VALUE_DEPTH} levels "
                           "deep; give a plain value")
    try:
        tree = ast.parse(text, mode="eval")
        return _literal(tree.body, text)
    except SyntaxError:
        raise DimattnError(f"cannot parse hyperparameter value {_short(text)}: not a Python literal") from None
    except (RecursionError, MemoryError):
        raise DimattnError(f"hyperparameter value {_short(text)} is too deeply nested; give a plain value") from None


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth of ``text``: brackets open, plus the longest run of signs
    (``--+-1`` is 4 unary operators deep). Brackets inside strings count too: a safe overestimate."""
    depth = deepest = run = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        run = run + 1 if ch in "+-" else 0 if not ch.isspace() else run
        deepest = max(deepest, depth + run)
    return deepest


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, text) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise DimattnError(f"cannot parse {_short(text)}: dict(**...) is not allowed")
        return {kw.arg: _literal(kw.value, text) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = ast.unparse(node)
        if name in KNOWN_NAMES:
            return name
        raise DimattnError(
            f"unknown name {name!r} in hyperparameter value {_short(text)}; known names: {', '.join(KNOWN_NAMES)}"
        )
    raise DimattnError(
        f"cannot parse hyperparameter value {_short(text)}: only literals, dict(...), lin_<x> and known names "
        f"are allowed (never code)"
    )


def as_float_schedule(value: Any, name: str) -> tuple[float, bool]:
    """``'lin_2.5e-4'`` -> (2.5e-4, True); ``0.1`` -> (0.1, False)."""
    if isinstance(value, str):
        m = _SCHEDULE.match(value)
        if not m:
            raise DimattnError(f"{name} must be a number or lin_<x>, got {value!r}")
        return float(m.group(1)), True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    raise DimattnError(f"{name} must be a number or lin_<x>, got {value!r}")
