"""Reading spec YAML: `safe_load` semantics, every node's line and column kept for messages.

Also refuses what YAML 1.1 would silently change (`on:`/`yes`/`no` as booleans, `010` as octal),
duplicate keys, merge keys and tags: a spec must fail loudly, never mean something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ..errors import SpecIssue

__all__ = ["Loc", "Marks", "find_mark", "path_text", "read_yaml", "short", "yaml_kind"]

Loc = tuple[int | str, ...]
Marks = dict[Loc, tuple[int, int, int]]  # loc -> (line, column, extra column for a quote)

_BOOL_WORDS = {"true", "false"}
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_SURROGATE = re.compile("[\ud800-\udfff]")


def short(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters for a message: never echo a huge value."""
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


# Specs are a few levels deep; 64 leaves room while staying far from Python's recursion limit
# (PyYAML composes nodes recursively: ~600 levels raise RecursionError).
MAX_DEPTH = 64


class _Checks(yaml.composer.Composer):
    """The Python composer on top of either parser, refusing aliases and deep nesting."""

    _depth = 0
    check_event: Any  # from the parser it is mixed with (annotations only: nothing is shadowed)
    peek_event: Any

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        # Aliases are refused outright, not limited: a spec is small and hand-written, so it never
        # needs shared sub-trees, and without aliases an "alias bomb" (each level repeating the
        # previous one 9 times) or a self-referencing alias (`x: &a [*a]`) cannot be written at all.
        # A located message is also clearer than one pointing at an anchor far away.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in a spec; write the value out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


class _Loader(_Checks, yaml.SafeLoader):
    pass


_FastLoader: Any = None
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    # libyaml scans and parses several times faster than PyYAML's Python parser (large specs); the
    # nodes are still composed in Python, so the checks above and every mark stay the same. Text
    # libyaml refuses is read again by the Python parser, whose messages the docs and tests show.
    class _CLoader(_Checks, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Checks.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _FastLoader = _CLoader


def read_yaml(text: str, source: str) -> tuple[Any, dict[Loc, tuple[int, int, int]], list[SpecIssue]]:
    """safe_load, keeping each node's line/column and reporting YAML 1.1 traps and duplicate keys."""
    marks: dict[Loc, tuple[int, int, int]] = {}  # loc -> (line, col, extra col for quotes)
    issues: list[SpecIssue] = []
    trapped: set[Loc] = set()  # keys already reported as YAML traps
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # unprintable characters are refused before parsing
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        msg = f"not valid YAML: character {char!r} (U+{ord(char):04X}) is not allowed in YAML text"
        return None, marks, [SpecIssue(source, line, col, "", msg)]
    node, done = None, False
    if _FastLoader is not None:
        fast = _FastLoader(text)
        try:
            node, done = fast.get_single_node(), True
        except yaml.YAMLError:
            fast.dispose()  # the Python parser below says what is wrong, as it always has
        else:
            loader.dispose()
            loader = fast  # it constructs the scalars too
    try:
        if not done:
            node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where: tuple[int | None, int | None] = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = getattr(exc, "problem", None) or str(exc)
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        lines = text.splitlines() if mark else []
        here = lines[mark.line] if mark and mark.line < len(lines) else ""
        mid_line = mark is not None and here[: mark.column].strip() != ""  # a token after others on its line
        if mark and problem.startswith("expected <block end>") and ctx_mark and mid_line:
            found = here[mark.column : mark.column + 1]
            problem = (
                f"a '{found}' that closes nothing open: remove it, or open what it closes"
                if found in "}]"
                else f"{here[mark.column :].strip()[:40]!r} comes after this line's value ended: remove it, or quote "
                "the whole value"
            )
        elif mark and problem.startswith("expected <block end>") and ctx_mark:
            # PyYAML's words for a line indented unlike its neighbours: say it in the author's terms.
            problem = _misindented(text, mark.line, mark.column + 1)
        elif mark and problem.startswith("mapping values are not allowed") and (deeper := _deeper(text, mark.line)):
            # `role: lead` then a key indented further: YAML reads it as more of the value above
            problem = (
                f"line {mark.line + 1} is indented more than line {deeper} above it, so YAML reads it as more of "
                f"that line's value; indent it like the other keys of its block"
            )
        elif mark and "'\\t'" in problem:
            problem = "a tab cannot indent YAML: indent with spaces"
        elif ctx and ctx_mark:
            problem += f" ({ctx} at line {ctx_mark.line + 1}, column {ctx_mark.column + 1})"
        return None, marks, [SpecIssue(source, *where, "", f"not valid YAML: {problem}")]
    finally:
        loader.dispose()
    if node is None:
        return None, marks, issues

    def issue(n: yaml.Node, path: Loc, msg: str) -> None:
        issues.append(SpecIssue(source, n.start_mark.line + 1, n.start_mark.column + 1, path_text(path), msg))

    def build(n: yaml.Node, path: Loc, is_key: bool = False) -> Any:
        if isinstance(n, yaml.ScalarNode) and n.style == "":
            n.style = None  # libyaml's plain style; PyYAML's is None
        quote = 1 if isinstance(n, yaml.ScalarNode) and n.style in ("'", '"') else 0
        marks[path] = (n.start_mark.line + 1, n.start_mark.column + 1, quote)
        if isinstance(n, yaml.ScalarNode) and n.end_mark.line > n.start_mark.line:
            for k, segment in enumerate(_segments(lines, n)):
                marks[path + ("<line>", k)] = segment
        elif quote and isinstance(n, yaml.ScalarNode):
            for k, segment in enumerate(_escapes(lines, n)):
                marks[path + ("<line>", k)] = segment
        if not isinstance(n, yaml.ScalarNode) and n.tag not in _PLAIN_TAGS:
            tag = n.tag.replace("tag:yaml.org,2002:", "!!")
            issue(n, path, f"YAML tag '{tag}' is not allowed: specs are plain YAML (mappings, lists, scalars)")
            trapped.add(path)
            return None
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            first: dict[Any, yaml.Node] = {}
            for k, v in n.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    issue(k, path, "merge keys (<<) are not supported; write the keys out")
                    continue
                key = build(k, (*path, "<keynode>"), is_key=True)
                if isinstance(k, yaml.ScalarNode) and not isinstance(key, str):
                    issue(
                        k,
                        (*path, k.value),
                        f"key '{k.value}' is read by YAML as {yaml_kind(key)}; quote it: \"{k.value}\"",
                    )
                    key = k.value
                    trapped.add((*path, key))
                elif not isinstance(key, str):
                    issue(k, path, "keys must be plain names")
                    continue
                if key in first:
                    issue(k, (*path, key), f"duplicate key '{key}' (first at line {first[key].start_mark.line + 1})")
                    continue
                first[key] = k
                marks[path + (key, "<key>")] = (k.start_mark.line + 1, k.start_mark.column + 1, 0)
                out[key] = build(v, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        assert isinstance(n, yaml.ScalarNode)
        try:
            value = loader.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            issue(n, path, f"cannot read value: {getattr(exc, 'problem', exc)}")
            return None
        except ValueError:  # int() past Python's 4300-digit limit, or an impossible timestamp
            what = f"a number of {len(n.value)} digits" if n.tag.endswith(":int") else f"'{short(n.value)}'"
            issue(n, path, f"cannot read value: {what} is not usable here")
            trapped.add(path)
            return None
        if isinstance(value, str) and (bad := _SURROGATE.search(value)):
            # A lone surrogate loads, then crashes every print: refuse it where it is.
            issue(n, path, f"text contains a lone surrogate (U+{ord(bad.group()):04X}); remove it")
            trapped.add(path)
            return None if not is_key else n.value.encode("ascii", "backslashreplace").decode()
        if is_key:
            return value
        if n.style is None and isinstance(value, bool) and n.value.lower() not in _BOOL_WORDS:
            issue(
                n,
                path,
                f"'{n.value}' is read by YAML 1.1 as the boolean {str(value).lower()}; "
                f'write {str(value).lower()}, or quote it if you meant the text "{n.value}"',
            )
        elif n.style is None and type(value) is int and not _PLAIN_INT.fullmatch(n.value):
            # `030` (octal), `1:30` (base 60), `1_000`: say which number each reading gives
            digits = n.value.lstrip("+-0").replace("_", "") or "0"
            meant = (
                f" or {n.value[0] if n.value[0] in '+-' else ''}{digits}"
                if digits.isdigit() and int(digits) != value
                else ""
            )
            issue(
                n,
                path,
                f"'{n.value}' is read by YAML 1.1 as the number {value}; "
                f'write {value}{meant}, or quote it if you meant the text "{n.value}"',
            )
        return value

    lines = text.splitlines()
    data = build(node, ())
    marks.update({(*loc, "<trapped>"): (0, 0, 0) for loc in trapped})
    return data, marks, issues


def yaml_kind(v: Any) -> str:
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if v is None:
        return "null"
    return f"the {type(v).__name__} {v!r}"


def path_text(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "<key>":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _segments(lines: list[str], n: yaml.ScalarNode) -> list[tuple[int, int, int]]:
    """(line, column, offset in the value) where each source line of a scalar written over several
    lines starts: YAML folds them into one value, and a place in the value is on one of them. Stops at
    a line whose words the value does not hold as written (escapes in a quoted scalar)."""
    out: list[tuple[int, int, int]] = []
    value, at = str(n.value), 0
    for ln in range(n.start_mark.line, min(n.end_mark.line + 1, len(lines))):
        src = lines[ln]
        if ln == n.start_mark.line:
            if n.style in ("|", ">"):
                continue  # the indicator line: the text starts below it
            col = n.start_mark.column + (1 if n.style in ("'", '"') else 0)
        else:
            col = len(src) - len(src.lstrip())
        content = src[col:].strip()
        words = content[:12].rstrip("'\"")
        if not words:
            continue  # a blank line folds into a line break
        found = value.find(words, at)
        if found < 0:
            break
        out.append((ln + 1, col + 1, found))
        # past the whole line where the value holds it as written (else past the words found)
        at = found + (len(content) if value.startswith(content, found) else len(words))
    return out


_ESCAPE_LENGTH = {"x": 4, "u": 6, "U": 10}  # a YAML escape's characters in the source; others are 2


def _escapes(lines: list[str], n: yaml.ScalarNode) -> list[tuple[int, int, int]]:
    """(line, column, offset in the value) after each escape of a quoted scalar on one line (`\\"`,
    `\\u00e9`, `''`): an escape is one character of the value and several of the source, so the places
    past it move left."""
    out: list[tuple[int, int, int]] = []
    if n.start_mark.line >= len(lines):
        return out
    src, at, offset = lines[n.start_mark.line], n.start_mark.column + 1, 0
    end = n.end_mark.column - 1  # the closing quote
    while at < end:
        if n.style == '"' and src[at] == "\\":
            at += _ESCAPE_LENGTH.get(src[at + 1 : at + 2], 2)
        elif n.style == "'" and src.startswith("''", at):
            at += 2
        else:
            at, offset = at + 1, offset + 1
            continue
        offset += 1
        out.append((n.start_mark.line + 1, at + 1, offset))
    return out


def locate(marks: Mapping[Loc, tuple[int, int, int]], loc: Loc, offset: int) -> tuple[int, int] | None:
    """(line, column) of the character `offset` into the value at `loc` (a scalar over several lines
    included), or of the value itself when `offset` is negative; None when the value has no place."""
    mark = find_mark(marks, loc)
    if mark is None:
        return None
    if offset < 0:
        return mark[0], mark[1]
    line, column, start = mark[0], mark[1] + mark[2], 0
    k = 0
    while (segment := marks.get(loc + ("<line>", k))) is not None and segment[2] <= offset:
        line, column, start = segment
        k += 1
    return line, column + offset - start


def find_mark(marks: Mapping[Loc, tuple[int, int, int]], loc: Loc) -> tuple[int, int, int] | None:
    loc = tuple(loc)
    while True:
        if loc in marks:
            return marks[loc]
        if not loc:
            return None
        loc = loc[:-1]


# --- building and checking ---------------------------------------------------------------


_BLOCK_SCALAR = re.compile(r"(?:^\s*-|:)\s+[|>][-+0-9]*\s*(?:#.*)?$")


def _misindented(text: str, line: int, col: int) -> str:
    """What to do with line `line` (0-based), at column `col`, that belongs to no block above it: the
    columns of the lines it may line up with (the blocks open above it, nearest first)."""
    lines = text.splitlines()
    # the lines above that YAML reads as keys or list items: not blank, not comments, not the text of a
    # block scalar (`description: |` and the lines indented under it)
    structure: list[tuple[int, int]] = []
    scalar_at = None  # the indentation of the line that opened a block scalar
    for n, above in enumerate(lines[:line]):
        if not above.strip() or above.lstrip().startswith("#"):
            continue
        at = len(above) - len(above.lstrip(" ")) + 1
        if scalar_at is not None and at > scalar_at:
            continue
        scalar_at = at if _BLOCK_SCALAR.search(above) else None
        structure.append((n + 1, at))
    levels: list[tuple[int, int]] = []
    for n, at in reversed(structure):
        if not levels or at < levels[-1][1]:
            levels.append((n, at))

    def kind(n: int) -> str:  # 0-based
        return "a list item" if n < len(lines) and lines[n].lstrip().startswith("-") else "a key"

    same = [n for n, at in levels if at == col]
    if same:  # a list item where its block has keys, or a key among list items
        deeper = [(n, at) for n, at in levels if at > col]
        n, at = deeper[-1] if deeper else (same[0], col)
        fix = f"indent it like line {n} (column {at})" if deeper else f"write it as {kind(n - 1)} like line {n}"
        return (
            f"indentation: line {line + 1} is {kind(line)} at the column of line {same[0]}, which is "
            f"{kind(same[0] - 1)}: {fix} if it belongs with that line"
        )
    choices = ", ".join(f"line {n} at column {at}" for n, at in levels[:3])
    return (
        f"indentation: line {line + 1} starts at column {col}, which lines up with no line above it ({choices}): "
        "indent it like the lines of the block it belongs to"
    )


def _deeper(text: str, line: int) -> int | None:
    """The line (1-based) above `line` (0-based) holding a `key: value` that `line` is indented under."""
    lines = text.splitlines()
    if line >= len(lines):
        return None
    indent = len(lines[line]) - len(lines[line].lstrip(" "))
    for n in range(line - 1, -1, -1):
        above = lines[n]
        if not above.strip() or above.lstrip().startswith("#"):
            continue
        if len(above) - len(above.lstrip(" ")) < indent and ": " in above and not above.rstrip().endswith(":"):
            return n + 1
        return None
    return None
