"""The expression compiler against an independent evaluator: hypothesis builds expression trees,
renders them to text, and computes their value straight from the tree."""

import operator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwfsm.spec.expr import ExprError, compile_expr, parse

COUNTERS = {"a": 0, "b": 1}
PARAMS = {"p": 3, "q": -2}
SCOPE = {**{c: "counter" for c in COUNTERS}, **{p: "param" for p in PARAMS}}
CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

ints = st.recursive(
    st.one_of(st.tuples(st.just("lit"), st.integers(-5, 5)), st.tuples(st.just("name"), st.sampled_from("abpq"))),
    lambda sub: st.one_of(
        st.tuples(st.sampled_from(["+", "-"]), sub, sub),
        st.tuples(st.just("neg"), sub),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(sub, min_size=2, max_size=3)),
    ),
    max_leaves=8,
)
bools = st.recursive(
    st.tuples(
        st.just("cmp"),
        st.lists(st.sampled_from(list(CMP)), min_size=1, max_size=2),
        st.lists(ints, min_size=3, max_size=3),
    ),
    lambda sub: st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), st.lists(sub, min_size=2, max_size=3)),
        st.tuples(st.just("not"), sub),
    ),
    max_leaves=4,
)


def text(t: Any) -> str:
    kind = t[0]
    if kind == "lit":
        return f"({t[1]})"
    if kind == "name":
        return t[1]
    if kind in ("+", "-"):
        return f"({text(t[1])} {kind} {text(t[2])})"
    if kind == "neg":
        return f"(-{text(t[1])})"
    if kind in ("min", "max"):
        return f"{kind}({', '.join(text(x) for x in t[1])})"
    if kind == "cmp":
        ops, sides = t[1], t[2]
        parts = [text(sides[0])]
        for op, side in zip(ops, sides[1:], strict=False):
            parts += [op, text(side)]
        return f"({' '.join(parts)})"
    if kind in ("and", "or"):
        return "(" + f" {kind} ".join(text(x) for x in t[1]) + ")"
    return f"(not {text(t[1])})"


def value(t: Any, env: dict[str, int]) -> Any:
    kind = t[0]
    if kind == "lit":
        return t[1]
    if kind == "name":
        return env[t[1]]
    if kind == "+":
        return value(t[1], env) + value(t[2], env)
    if kind == "-":
        return value(t[1], env) - value(t[2], env)
    if kind == "neg":
        return -value(t[1], env)
    if kind in ("min", "max"):
        vals = [value(x, env) for x in t[1]]
        return min(vals) if kind == "min" else max(vals)
    if kind == "cmp":
        ops, sides = t[1], [value(x, env) for x in t[2]]
        return all(CMP[op](sides[i], sides[i + 1]) for i, op in enumerate(ops))
    if kind == "and":
        return all(value(x, env) for x in t[1])
    if kind == "or":
        return any(value(x, env) for x in t[1])
    return not value(t[1], env)


@given(ints, st.integers(-20, 20), st.integers(-20, 20))
def test_int_expressions_compute_what_they_say(tree: Any, a: int, b: int) -> None:
    fn = compile_expr(parse(text(tree), SCOPE, "int"), COUNTERS, PARAMS)
    assert fn([a, b]) == value(tree, {"a": a, "b": b, **PARAMS})


@given(bools, st.integers(-20, 20), st.integers(-20, 20))
def test_conditions_compute_what_they_say(tree: Any, a: int, b: int) -> None:
    fn = compile_expr(parse(text(tree), SCOPE, "bool"), COUNTERS, PARAMS)
    assert bool(fn([a, b])) == value(tree, {"a": a, "b": b, **PARAMS})


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("a ** 2", "operator Pow is not allowed", 0),
        ("a / 2 > 1", "operator Div is not allowed", 0),
        ("a % b > 1", "the right side of % must be a constant (a number or a param), not b", 4),
        ("a // (b + 1) > 1", "the right side of // must be a constant (a number or a param), not b", 6),
        ("a = 1", "'=' assigns; to compare write '=='", 2),
        ("a > 1 && b > 1", "'&&' is not an operator here: write 'and'", 6),
        ("a > 1 || b > 1", "'||' is not an operator here: write 'or'", 6),
        ("!(a > 1)", "'!' is not an operator here: write 'not'", 0),
        ("push(a, 1) > 1", "push() needs a window counter first (windows: none declared)", 5),
        ("a >= pp", "unknown name 'pp' (did you mean 'p'?)", 5),
        ("a in b", "comparison In is not allowed", 0),
        ("a is b", "comparison Is is not allowed", 0),
        ("a if b else p", "IfExp is not allowed", 0),
        ("[a][0]", "subscript is not allowed", 0),
        ("a.__class__", "attribute access is not allowed", 0),
        ("__import__('os')", "only min(), max(), push() and ones() may be called", 0),
        ("min(a)", "min() takes two or more plain arguments", 0),
        ("max(*[a, b])", "max() takes two or more plain arguments", 0),
        ("min(a, b, key=p)", "min() takes two or more plain arguments", 0),
        ("(x := 1)", "NamedExpr is not allowed", 1),
        ("a + True", "operand of + must be an integer, got a condition", 4),
        ("not a", "operand of 'not' must be a condition, got an integer", 4),
        ("a and b", "operand of and/or must be a condition, got an integer", 0),
        ("a > 1 > True", "operand of a comparison must be an integer, got a condition", 8),
        ("'x'", "str literal 'x' is not allowed", 0),
        ("1.0", "float literal 1.0 is not allowed", 0),
        ("None", "NoneType literal None is not allowed", 0),
        ("lambda: 1", "lambda is not allowed", 0),
        ("  a >= zz", "unknown name 'zz' (known counters and params: a, b, p, q)", 7),
        ("", "empty expression", 0),
        ("a >=", "syntax error: the expression ends too early", 4),
        ("  a b", "syntax error: invalid syntax", 4),
        ("ａ >= 1", "character 'ａ' is not allowed: expressions are plain ASCII", 0),
        ("a >= ｐ", "character 'ｐ' is not allowed", 5),
        ("a + " + "+".join(["1"] * 1000) + " > 0", "expression is too long (2007 characters, at most 500)", 0),
        ("not " * 120 + "a > 1", "expression is nested too deeply (123 levels, at most 100)", 0),
        ("-" * 300 + "a > 1", "expression is nested too deeply (303 levels, at most 100)", 0),
        ("a + " + "+".join(["1"] * 150) + " > 0", "expression is nested too deeply", 0),
    ],
)
def test_rejected(source: str, message: str, offset: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(source, SCOPE, "bool")
    assert message in info.value.message
    assert info.value.offset == offset


def test_kinds_are_enforced() -> None:
    with pytest.raises(ExprError, match=r"expected a condition \(e.g. 'failures >= 1'\), got an integer"):
        parse("a + 1", SCOPE, "bool")
    with pytest.raises(ExprError, match=r"expected an integer \(e.g. 'failures \+ 1'\), got a condition"):
        parse("a > 1", SCOPE, "int")
    assert parse("a + p", SCOPE, "int").names == {"a", "p"}


def test_multiplication_division_and_modulo_by_constants() -> None:
    fn = compile_expr(parse("a * 3 + a // p - a % 4", SCOPE, "int"), COUNTERS, PARAMS)
    for a in range(-9, 30):
        assert fn([a, 0]) == a * 3 + a // PARAMS["p"] - a % 4


def test_division_by_a_constant_below_one_is_refused_when_compiled() -> None:
    with pytest.raises(ExprError, match="the right side of % must be a number or a param of at least 1, got 0"):
        compile_expr(parse("a % (p - p)", SCOPE, "int"), COUNTERS, PARAMS)


def test_windows_push_bits_and_count_them() -> None:
    scope = {**SCOPE, "w": "window"}
    push = compile_expr(parse("push(w, a > 0)", scope, "int"), {**COUNTERS, "w": 2}, PARAMS, {"w": 3})
    ones = compile_expr(parse("ones(w)", scope, "int"), {**COUNTERS, "w": 2}, PARAMS, {"w": 3})
    w = 0
    for a in [1, 0, 1, 1, 0]:
        w = push([a, 0, w])
    assert w == 0b110  # the last three outcomes, newest in the lowest bit
    assert ones([0, 0, w]) == 2
