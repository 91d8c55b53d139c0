"""Line-range edits that break a file's structure, read from what the agent showed.

SWE-agent's `edit N:M` replaces lines N to M with the text up to `end_of_edit`, and lints only
Python files: in any other language a broken edit is applied and answered "File updated". The lines
it replaced were shown earlier, numbered (`N:text`), in the last window of that file. An edit whose
brackets do not balance the way the replaced lines did (a method pasted over its own signature line,
a class's closing brace replaced by a new method) leaves the file unbalanced. Only a change of balance
counts: what the brackets mean is not parsed, strings and comments are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["unbalanced_edit"]

_EDIT = re.compile(r"^edit (\d+):(\d+)\n(.*?)^end_of_edit\s*$", re.M | re.S)
_FILE = re.compile(r"^\[File: (\S+) \(\d+ lines total\)\]", re.M)
_NUMBERED = re.compile(r"^(\d+):(.*)$", re.M)
_UPDATED = "File updated."
# Strings, characters and comments: their brackets are text (a Python file is linted by the agent).
_LITERALS = re.compile(
    r'(?<!\\)"(?:\\.|[^"\\\n])*"|(?<!\\)\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?(?:\*/|\Z)|'
    r"^[ \t]*\*[^\n]*|(?:^|(?<=\s))#[^\n]*",
    re.M | re.S,
)
_LINTED = (".py", ".pyi")
_MAX = 20_000  # characters of an edit worth counting


def balance(code: str) -> tuple[int, int, int]:
    """Opened minus closed `{`, `(` and `[` in code, strings and comments left out."""
    code = _LITERALS.sub("", code)
    return (code.count("{") - code.count("}"), code.count("(") - code.count(")"), code.count("[") - code.count("]"))


def _window(before: Sequence[Mapping[str, Any]], path: str) -> dict[int, str]:
    """The numbered lines of `path` its last window showed (an older one may be stale)."""
    for msg in reversed(before):
        if msg.get("role") not in ("user", "tool"):
            continue
        content = msg.get("content")
        text = content if isinstance(content, str) else ""
        header = _FILE.search(text[:2000])
        if header is not None and header.group(1) == path:
            return {int(m.group(1)): m.group(2) for m in _NUMBERED.finditer(text)}
    return {}


# A line that leaves its statement open, and a line that starts a new one (C-like languages).
_OPEN_END = re.compile(r"(=|\+|-|\*|/|&&|\|\||\(|,|\?)\s*$")
_STATEMENT = re.compile(r"^\s*(if|for|while|try|return|switch|do|throw|public|private|protected|static|@\w+)\b")


def _trimmed(lines: Sequence[str]) -> list[str]:
    return [x.strip() for x in lines if x.strip() and x.strip() not in ("}", "{", ")", "};", "]")]


def unbalanced_edit(reply: str, observation: str, before: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the applied edit in `reply` leaves the file broken, or None: its brackets do not balance
    like the lines it replaced, it starts a statement inside an open one, or it repeats the lines
    that follow it."""
    if _UPDATED not in observation:
        return None
    edit = _EDIT.search(reply)
    header = _FILE.search(observation[:2000])
    if edit is None or header is None or header.group(1).endswith(_LINTED) or len(edit.group(3)) > _MAX:
        return None
    start, end = int(edit.group(1)), int(edit.group(2))
    if end < start or end - start > 400:
        return None
    shown = _window(before, header.group(1))
    if not all(n in shown for n in range(start, end + 1)):
        return None
    old = [shown[n] for n in range(start, end + 1)]
    new = edit.group(3).splitlines()
    was, now = balance("\n".join(old)), balance(edit.group(3))
    if was != now:
        change = ", ".join(f"{b} {n - w:+d}" for b, n, w in zip("{([", now, was, strict=True) if n != w)
        return f"edit {start}:{end} changes the file's bracket balance ({change})"
    above = _LITERALS.sub("", shown.get(start - 1, "")).rstrip()
    first = next((x for x in new if x.strip()), "")
    if above and _OPEN_END.search(above) and _STATEMENT.match(first) and not _STATEMENT.match(old[0]):
        return f"edit {start}:{end} starts a statement inside the open one on line {start - 1}"
    tail = _trimmed(new)[-2:]
    following = _trimmed([shown[n] for n in range(end + 1, end + 8) if n in shown])[:2]
    if len(tail) == 2 and tail == following and _trimmed(old)[-2:] != tail:
        return f"edit {start}:{end} repeats the lines that follow it"
    return None
