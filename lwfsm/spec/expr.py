"""The small expression language of guards, counter updates and invariants.

Grammar (a whitelist over Python's `ast`; anything else is refused):
integer literals, True/False, counter and param names, the read-only turn count `turn`, unary
and binary `+`/`-`/`*`, `//` and `%` by a constant (a number or a param), comparisons
(`== != < <= > >=`, chainable), `and`/`or`/`not`, `min(...)`/`max(...)` with two or more
arguments, and for window counters `push(window, bit)` and `ones(x)`. Expressions are
type-checked (int vs bool) and compiled to plain closures over a list of counter values (then the
turn count); params are folded in as constants. Nothing is ever passed to `eval`.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import did_you_mean

__all__ = ["ALLOWED", "Compiled", "Expr", "ExprError", "Kind", "compile_expr", "parse"]

Kind = Literal["int", "bool"]
Values = list[int]
Compiled = Callable[[Values], int]  # bools are ints in Python; guards return bool

_CMP: dict[type[ast.cmpop], Callable[[int, int], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCS = {"min": min, "max": max}
_ARITH: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}
ALLOWED = (
    "integers, counter and param names, turn, + - * // %, == != < <= > >=, and/or/not, min(), max(), push(), ones()"
)
# Python's parser and this module's checks recurse once per nesting level: a 3000-term `+` chain
# or a long `not` chain raises RecursionError. Rules are short; a bound on the text bounds both.
MAX_LENGTH = 500
MAX_DEPTH = 100


class ExprError(Exception):
    """A mistake in an expression; `offset` is the 0-based column within the expression text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Expr:
    """A parsed, type-checked expression."""

    text: str
    kind: Kind
    names: frozenset[str]
    tree: ast.expr


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return f"{type(node.value).__name__} literal {node.value!r}"
    if isinstance(node, ast.Attribute):
        return "attribute access"
    if isinstance(node, ast.Subscript):
        return "subscript"
    if isinstance(node, ast.Call):
        return "function call"
    if isinstance(node, ast.Lambda):
        return "lambda"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "comprehension"
    if isinstance(node, ast.BinOp):
        return f"operator {type(node.op).__name__}"
    return type(node).__name__


def _offset(text: str, line: int | None, column: int) -> int:
    """The place in `text` of Python's (line, column) in it: an expression may span lines."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    return starts[min(line or 1, len(starts)) - 1] + column


def parse(text: str, names: Mapping[str, str], want: Kind) -> Expr:
    """Parse and type-check `text`. `names` maps each usable name to "counter" or "param"."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("empty expression")
    lead = len(text) - len(text.lstrip())
    if len(text.strip()) > MAX_LENGTH:
        raise ExprError(
            f"expression is too long ({len(text.strip())} characters, at most {MAX_LENGTH}); "
            "split the rule over several transitions or counters",
            lead,
        )
    if not text.isascii():
        # Python's parser NFKC-normalises identifiers: a fullwidth 'ｆailures' would silently mean 'failures'.
        at = next(i for i, ch in enumerate(text) if not ch.isascii())
        raise ExprError(f"character {text[at]!r} is not allowed: expressions are plain ASCII", at)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (RecursionError, MemoryError):
        raise ExprError(f"expression is nested too deeply (at most {MAX_DEPTH} levels)", lead) from None
    except SyntaxError as exc:
        _other_languages(text)
        if not exc.offset:  # Python gives no position when the text simply stops early
            raise ExprError("syntax error: the expression ends too early", len(text.rstrip())) from None
        raise ExprError(f"syntax error: {exc.msg}", lead + _offset(text.strip(), exc.lineno, exc.offset - 1)) from None
    used: set[str] = set()

    def fail(node: ast.AST, msg: str) -> ExprError:
        return ExprError(msg, lead + _offset(text.strip(), getattr(node, "lineno", 1), getattr(node, "col_offset", 0)))

    def check(node: ast.expr) -> Kind:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return "bool"
            if isinstance(node.value, int):
                if node.value.bit_length() > 63:  # counters are 64-bit (the engine refuses more)
                    raise fail(node, "an integer past 64 bits is not usable here")
                return "int"
            raise fail(node, f"{_describe(node)} is not allowed (allowed: {ALLOWED})")
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise fail(node, f"name {node.id!r} is not allowed")
            if node.id not in names:
                known = ", ".join(sorted(n for n in names if n != "turn")) or "none"
                hint = did_you_mean(node.id, names)
                turn = "; and turn" if "turn" in names else ""
                raise fail(node, f"unknown name {node.id!r}{hint} (known counters and params: {known}{turn})")
            used.add(node.id)
            return "int"
        if isinstance(node, ast.UnaryOp):
            kind = check(node.operand)
            if isinstance(node.op, ast.Not):
                _expect(node.operand, kind, "bool", "operand of 'not'")
                return "bool"
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                _expect(node.operand, kind, "int", "operand of unary minus")
                return "int"
            raise fail(node, f"operator {type(node.op).__name__} is not allowed (allowed: {ALLOWED})")
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITH:
                raise fail(node, f"operator {type(node.op).__name__} is not allowed (allowed: {ALLOWED})")
            symbol = _SYMBOL[type(node.op)]
            for side in (node.left, node.right):
                _expect(side, check(side), "int", f"operand of {symbol}")
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)):
                varying = sorted(
                    n.id for n in ast.walk(node.right) if isinstance(n, ast.Name) and names.get(n.id) != "param"
                )
                if varying:
                    raise fail(
                        node.right,
                        f"the right side of {symbol} must be a constant (a number or a param), "
                        f"not {', '.join(varying)}",
                    )
            return "int"
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                _expect(value, check(value), "bool", "operand of and/or")
            return "bool"
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMP:
                    raise fail(node, f"comparison {type(op).__name__} is not allowed (allowed: {ALLOWED})")
            for side in (node.left, *node.comparators):
                _expect(side, check(side), "int", "operand of a comparison")
            return "bool"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("push", "ones"):
            name = node.func.id
            if node.keywords or len(node.args) != (2 if name == "push" else 1):
                raise fail(
                    node, "push() takes a window counter and a bit" if name == "push" else "ones() takes one value"
                )
            if name == "push":
                target = node.args[0]
                if not (isinstance(target, ast.Name) and names.get(target.id) == "window"):
                    windows = ", ".join(n for n, k in names.items() if k == "window") or "none declared"
                    raise fail(target, f"push() needs a window counter first (windows: {windows})")
                used.add(target.id)
            if name == "push":
                check(node.args[1])  # the bit: a condition, or an integer (non-zero pushes a 1)
            else:
                _expect(node.args[0], check(node.args[0]), "int", "argument of ones()")
            return "int"
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
                raise fail(node, f"only min(), max(), push() and ones() may be called (allowed: {ALLOWED})")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or len(node.args) < 2:
                raise fail(node, f"{node.func.id}() takes two or more plain arguments")
            for arg in node.args:
                _expect(arg, check(arg), "int", f"argument of {node.func.id}()")
            return "int"
        raise fail(node, f"{_describe(node)} is not allowed (allowed: {ALLOWED})")

    def _expect(node: ast.expr, got: Kind, want_: Kind, what: str) -> None:
        if got != want_:
            raise fail(node, f"{what} must be {_KIND_TEXT[want_]}, got {_KIND_TEXT[got]}")

    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    depth = 0  # measured without recursion: check() and compile recurse per level
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    if depth > MAX_DEPTH:
        raise ExprError(f"expression is nested too deeply ({depth} levels, at most {MAX_DEPTH})", lead)
    kind = check(tree)
    if kind != want:
        hint = " (e.g. 'failures >= 1')" if want == "bool" else " (e.g. 'failures + 1')"
        raise ExprError(f"expected {_KIND_TEXT[want]}{hint}, got {_KIND_TEXT[kind]}", lead)
    return Expr(text=text.strip(), kind=kind, names=frozenset(used), tree=tree)


_KIND_TEXT = {"int": "an integer", "bool": "a condition"}


def _other_languages(text: str) -> None:
    """Name the habits of other languages that make an expression unparsable."""
    for wrong, right in (("&&", "and"), ("||", "or")):
        if wrong in text:
            raise ExprError(f"'{wrong}' is not an operator here: write '{right}'", text.index(wrong))
    single = re.search(r"(?<![=!<>])=(?!=)", text)
    if single:
        raise ExprError("'=' assigns; to compare write '=='", single.start())
    bang = re.search(r"!(?!=)", text)
    if bang:
        raise ExprError("'!' is not an operator here: write 'not'", bang.start())


def compile_expr(
    expr: Expr, index: Mapping[str, int], params: Mapping[str, int], windows: Mapping[str, int] | None = None
) -> Compiled:
    """Compile to a closure over the counter-value list; params become constants. `windows` gives
    each window counter's size. Raises ExprError for a division or modulo by a constant below 1."""
    windows = windows or {}

    def build(node: ast.expr) -> tuple[Compiled, int | None]:
        # Returns (closure, constant value or None) so constant sub-trees fold away.
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int)  # parse() admits only int and bool literals
            value = node.value
            return (lambda v: value), value
        if isinstance(node, ast.Name):
            if node.id in params:
                const = params[node.id]
                return (lambda v: const), const
            i = index[node.id]
            return (lambda v: v[i]), None
        if isinstance(node, ast.UnaryOp):
            f, c = build(node.operand)
            if isinstance(node.op, ast.Not):
                return _fold(lambda v: not f(v), c, lambda x: not x)
            if isinstance(node.op, ast.USub):
                return _fold(lambda v: -f(v), c, operator.neg)
            return f, c
        if isinstance(node, ast.BinOp):
            op = _ARITH[type(node.op)]
            (lf, lc), (rf, rc) = build(node.left), build(node.right)
            if op in (operator.floordiv, operator.mod) and (rc is None or rc < 1):
                got = "a counter" if rc is None else rc
                raise ExprError(
                    f"the right side of {_SYMBOL[type(node.op)]} must be a number or a param of at least 1, got {got}",
                    node.right.col_offset,
                )
            if lc is not None and rc is not None:
                value = op(lc, rc)
                return (lambda v: value), value
            if rc is not None and op in (operator.add, operator.sub) and isinstance(node.left, ast.Name):
                if node.left.id in index:
                    i, k = index[node.left.id], (rc if op is operator.add else -rc)
                    return (lambda v: v[i] + k), None  # the common `counter + 1`
            return (lambda v: op(lf(v), rf(v))), None
        if isinstance(node, ast.BoolOp):
            parts = [build(x)[0] for x in node.values]
            if isinstance(node.op, ast.And):
                return (lambda v: all(p(v) for p in parts)), None
            return (lambda v: any(p(v) for p in parts)), None
        if isinstance(node, ast.Compare):
            ops = [_CMP[type(o)] for o in node.ops]
            sides = [build(x) for x in (node.left, *node.comparators)]
            if len(ops) == 1:
                cmp = ops[0]
                (lf, lc), (rf, rc) = sides
                if rc is not None and isinstance(node.left, ast.Name) and node.left.id in index:
                    i = index[node.left.id]
                    return (lambda v: cmp(v[i], rc)), None  # the common `counter >= param`
                return (lambda v: cmp(lf(v), rf(v))), None
            fns = [s[0] for s in sides]

            def chain(v: Values) -> bool:
                vals = [f(v) for f in fns]
                return all(op(vals[k], vals[k + 1]) for k, op in enumerate(ops))

            return chain, None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "push":
            assert isinstance(node.args[0], ast.Name)
            i, mask = index[node.args[0].id], (1 << windows[node.args[0].id]) - 1
            bit = build(node.args[1])[0]
            return (lambda v: ((v[i] << 1) | (1 if bit(v) else 0)) & mask), None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ones":
            arg = build(node.args[0])[0]
            return (lambda v: bin(arg(v)).count("1")), None
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            fn = _FUNCS[node.func.id]
            args = [build(a)[0] for a in node.args]
            return (lambda v: fn(a(v) for a in args)), None
        raise AssertionError(f"unchecked node {node!r}")  # parse() refuses everything else

    return build(expr.tree)[0]


def _fold(f: Compiled, const: int | None, op: Callable[[int], int]) -> tuple[Compiled, int | None]:
    if const is None:
        return f, None
    value = op(const)
    return (lambda v: value), value
