"""State diagrams of a spec, drawn by transitions' own diagram support.

A drawing-only `GraphMachine` is built from the spec (it never runs, so its "callbacks" are the
spec's own update text): states carry their role as a tag and a colour per role, edges carry
`event [guard] / updates`. Mermaid needs nothing native; DOT, SVG and PNG go through pygraphviz
(the `diagrams` extra, whose wheels bundle Graphviz). Only the spec is drawn: no bound models,
keys or API bases ever reach a diagram.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..engine import Snapshot
from ..errors import DiagramError
from ..spec import Spec, Transition, describe_params
from ..spec.reading import short

__all__ = [
    "Diff",
    "DiagramError",
    "diff",
    "dot",
    "dot_text",
    "edge_label",
    "edges_of",
    "follows",
    "markdown",
    "mermaid",
    "render",
    "role_colours",
    "starts",
    "svg_is_current",
]

CHEAP_COLOUR = "#c5e0b4"  # green: the cheap role(s)
COLOURS = ["#f8cbad", "#bdd7ee", "#e2c6f0", "#ffe699", "#d9d9d9"]  # orange, blue, purple, yellow, grey
MARKS = {"added": "+ ", "removed": "- ", "changed": "~ "}
DIFF_STYLES = {
    "added": {"color": "darkgreen", "penwidth": "3", "fontcolor": "darkgreen"},
    "removed": {"color": "red", "style": "dashed", "fontcolor": "red"},
    "changed": {"color": "darkorange", "penwidth": "3", "fontcolor": "darkorange"},
}


ANY = "any_state"  # drawing-only marker for transitions whose source is "*"
FONT = "Helvetica"


def role_colours(spec: Spec) -> dict[str, str]:
    warm = iter(COLOURS * 4)
    return {name: CHEAP_COLOUR if role.cheap else next(warm) for name, role in spec.roles.items()}


def edge_label(t: Transition, after: bool = False) -> str:
    """`event [guard] / updates`; `after`: an earlier transition of the state takes the same event when its
    guard holds, so this one only when none does (`[else]`, `[else if guard]`)."""
    if after:
        label = t.event_text + (f" [else if {t.guard}]" if t.guard else " [else]")
    else:
        label = t.event_text + (f" [{t.guard}]" if t.guard else "")
    if t.reset:
        return label + " / restart"
    if t.updates:
        label += " / " + ", ".join(f"{k} = {v}" for k, v in t.updates.items())
    return label


def starts(spec: Spec) -> list[tuple[str, str]]:
    """Where a conversation starts, as the spec's `initial` chooses: (state, its condition as drawn) for
    each choice up to the first without one ("[else]" after others; "" when it is the only choice)."""
    out: list[tuple[str, str]] = []
    for choice in spec.initial:
        out.append((choice.state, f"[{choice.when}]" if choice.when is not None else ("[else]" if out else "")))
        if choice.when is None:
            break
    return out


Edge = tuple[int, str, Transition]  # (index in its spec's transitions, one source or "*", transition)


def follows(spec: Spec, index: int, source: str) -> bool:
    """Whether, in state `source`, every event of transition `index` is taken first by an earlier one (the
    first whose guard holds wins). A "*" edge, drawn once for every state, is not marked."""
    if source == "*":
        return False
    earlier = [u for u in spec.transitions[:index] if source in u.source or u.source == ["*"]]
    return all(any(e in u.events for u in earlier) for e in spec.transitions[index].events)


def edges_of(spec: Spec) -> list[Edge]:
    """Transitions as drawn: one edge per source state, a "*" source kept as one edge."""
    return [(i, s, t) for i, t in enumerate(spec.transitions) for s in (["*"] if t.source == ["*"] else t.source)]


@dataclass
class Diff:
    """What changed from an old spec to a new one, edge by edge, as the diagram marks it."""

    states: dict[str, str] = field(default_factory=dict)  # state -> added | removed | changed
    marks: dict[tuple[int, str], str] = field(default_factory=dict)  # new (index, source) -> added | changed
    removed: list[Edge] = field(default_factory=list)  # edges of the old spec
    lines: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # params, counters, events, roles, invariants, judging
    details: dict[str, str] = field(default_factory=dict)  # changed state -> what changed in it

    def summary(self) -> list[str]:
        states = [
            f"{MARKS[mark]}state {name}" + (f": {self.details[name]}" if name in self.details else "")
            for name, mark in self.states.items()
        ]
        return states + self.lines + self.others or ["no changes"]


def _state_changes(old: Any, new: Any) -> str:
    """What changed in a state: its role, each on_enter update and ignored event that came or went."""
    out = [f"role {new.role} (was {old.role})"] if old.role != new.role else []
    a, b = old.on_enter, new.on_enter
    out += [f"on_enter + {k} = {b[k]}" for k in b if k not in a]
    out += [f"on_enter - {k} = {a[k]}" for k in a if k not in b]
    out += [f"on_enter ~ {k} = {b[k]} (was {a[k]})" for k in b if k in a and a[k] != b[k]]
    out += [f"ignore + {e}" for e in new.ignore if e not in old.ignore]
    out += [f"ignore - {e}" for e in old.ignore if e not in new.ignore]
    return "; ".join(out)


def _strip_description(state: Any) -> Any:
    return state.model_copy(update={"description": ""})


def _edge_key(s: str, t: Transition) -> tuple[Any, ...]:
    return (tuple(t.events), s, t.dest, t.reset)


def _edge_text(mark: str, s: str, t: Transition, note: str = "") -> str:
    return f"{MARKS[mark]}transition {s} -> {t.dest or '(stay)'}: {edge_label(t)}{note}"


def diff(old: Spec, new: Spec) -> Diff:
    out = Diff()
    for name in new.states:
        if name not in old.states:
            out.states[name] = "added"
        elif _strip_description(old.states[name]) != _strip_description(new.states[name]):
            out.states[name] = "changed"
            out.details[name] = _state_changes(old.states[name], new.states[name])
    for name in old.states:
        if name not in new.states:
            out.states[name] = "removed"
    unmatched: dict[tuple[Any, ...], list[Edge]] = {}
    for edge in edges_of(old):
        unmatched.setdefault(_edge_key(edge[1], edge[2]), []).append(edge)
    for i, s, t in edges_of(new):
        before = unmatched.get(_edge_key(s, t))
        if not before:
            out.marks[i, s] = "added"
            out.lines.append(_edge_text("added", s, t))
            continue
        _, _, was = before.pop(0)
        if (was.guard, was.updates) != (t.guard, t.updates):
            out.marks[i, s] = "changed"
            out.lines.append(_edge_text("changed", s, t, f" (was: {edge_label(was)})"))
    for rest in unmatched.values():
        out.removed += rest
        out.lines += [_edge_text("removed", s, t) for _, s, t in rest]
    for section in ("params", "counters", "events", "roles"):
        out.others += _named_changes(section[:-1], getattr(old, section), getattr(new, section))
    before, after = [_strip(i) for i in old.invariants], [_strip(i) for i in new.invariants]
    out.others += [f"- invariant {_brief(i)}" for i in before if i not in after]
    out.others += [f"+ invariant {_brief(i)}" for i in after if i not in before]
    if old.initial != new.initial:
        out.others.append(f"~ initial: {_brief(new.initial)} (was: {_brief(old.initial)})")
    ka, kb = old.judging.kind_events, new.judging.kind_events  # what each kind fires, defaults filled in
    out.others += [f"~ judging.kinds.{k}: {kb[k]} (was: {ka[k]})" for k in ka if ka[k] != kb.get(k)]
    if old.judging != new.judging:
        a, b = old.judging.model_dump(exclude={"kinds"}), new.judging.model_dump(exclude={"kinds"})
        for k in (k for k in a if a[k] != b[k]):
            if isinstance(a[k], list):  # pattern lists: name what came and went
                out.others += [f"+ judging.{k}: {p!r}" for p in b[k] if p not in a[k]]
                out.others += [f"- judging.{k}: {p!r}" for p in a[k] if p not in b[k]]
            else:
                out.others.append(f"~ judging.{k}: {_brief(b[k])} (was: {_brief(a[k])})")
    out.others += _handoff_changes(old, new)
    return out


def _handoff_changes(old: Spec, new: Spec) -> list[str]:
    """Handoffs added, removed, or with another note, by the switch they are for."""

    def by_switch(spec: Spec) -> dict[str, str]:
        return {f"handoff to {h.dest} from {', '.join(h.source) or '(any)'}": h.note for h in spec.handoffs}

    a, b = by_switch(old), by_switch(new)
    lines = [f"+ {k}: {short(b[k])!r}" for k in b if k not in a]
    lines += [f"- {k}" for k in a if k not in b]
    for k in (k for k in b if k in a and a[k] != b[k]):
        was, now = a[k].splitlines() or [""], b[k].splitlines() or [""]
        n = next((i for i, (x, y) in enumerate(zip(was, now, strict=False)) if x != y), min(len(was), len(now)))
        line, before = (now + [""])[n], (was + [""])[n]
        lines.append(f"~ {k}: note line {n + 1}: {short(line, 100)!r} (was: {short(before, 100)!r})")
    return lines


def _strip(model: Any) -> Any:
    """A spec part without its description: descriptions change no behaviour."""
    return model.model_dump(exclude={"description"}) if hasattr(model, "model_dump") else model


def _brief(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_brief(v) for v in value) + "]"
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude={"description"}, exclude_defaults=True)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in value.items()) + "}"
    return str(value)


def _named_changes(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = [f"+ {kind} {name}: {_brief(new[name])}" for name in new if name not in old]
    lines += [f"- {kind} {name}" for name in old if name not in new]
    lines += [
        f"~ {kind} {name}: {_brief(new[name])} (was: {_brief(old[name])})"
        for name in new
        if name in old and _strip(old[name]) != _strip(new[name])
    ]
    return lines


def _graph(
    spec: Spec,
    engine: Literal["pygraphviz", "mermaid"],
    *,
    snapshot: Snapshot | None = None,
    changes: Diff | None = None,
    old: Spec | None = None,
    initial: str | None = None,
    loops: dict[tuple[str, str], list[str]] | None = None,
) -> Any:
    """The drawing. With `loops`, a transition back to its own state is not drawn as an edge: its label
    is collected there under (state, "internal" or "re-enter"), for the caller to write in the box."""
    from transitions.extensions import GraphMachine
    from transitions.extensions.states import Tags

    if engine == "pygraphviz":
        try:
            import pygraphviz  # noqa: F401
        except ImportError:
            raise DiagramError(
                'SVG, PNG and DOT need the diagrams extra: pip install "lwfsm[diagrams]" '
                "(pygraphviz wheels bundle Graphviz); mermaid and md need nothing"
            ) from None

    class Drawing(GraphMachine):
        state_cls = type("DrawingState", (Tags, GraphMachine.state_cls), {})

    colours = role_colours(spec)
    initial = initial or spec.initial_state
    # A transition from every state (typically reset) is drawn once, from an "any state" marker.
    star = ANY not in spec.states and any(t.source == ["*"] for t in spec.transitions)
    removed_states = [n for n, m in (changes.states if changes else {}).items() if m == "removed"]
    states = []
    for name, st in [*spec.states.items(), *((n, old.states[n]) for n in removed_states if old)]:
        # on_enter as a tag, not the library's "- enter: + x" lines: a "+" there read as the diff's "added"
        enter = [f"on enter: {', '.join(f'{k} = {v}' for k, v in st.on_enter.items())}"] if st.on_enter else []
        states.append(Drawing.state_cls(name, tags=[f"role: {st.role}", *enter]))
    if star:
        states.append(Drawing.state_cls(ANY, tags=[]))
    title = (
        spec.name
        if snapshot is None
        else (f"{spec.name}: turn {snapshot.turn}, " + ", ".join(f"{k}={v}" for k, v in snapshot.counters.items()))
    )
    machine = Drawing(
        model=None,
        states=states,
        initial=initial,
        auto_transitions=False,
        graph_engine=engine,
        show_state_attributes=True,
        title=title,
    )
    machine.machine_attributes = {**GraphMachine.machine_attributes, "rankdir": "TB"}
    styles: dict[str, Any] = copy.deepcopy(GraphMachine.style_attributes)
    machine.style_attributes = styles
    nodes, edges = styles["node"], styles["edge"]
    nodes["any"] = {"style": "dashed,rounded", "shape": "rectangle", "fillcolor": "white", "color": "grey"}
    for role, colour in colours.items():
        nodes[f"role_{role}"] = {"fillcolor": colour, "style": "rounded,filled", "shape": "rectangle"}
        nodes[f"active_{role}"] = {"fillcolor": colour, "color": "red", "penwidth": "3", "peripheries": "2"}
    for mark, style in DIFF_STYLES.items():
        nodes[mark] = {
            **style,
            "style": "rounded,filled" + (",dashed" if mark == "removed" else ""),
            "fillcolor": "white" if mark == "removed" else "#f2f2f2",
        }
        for role, colour in colours.items() if changes else ():  # an added or changed state keeps its colour
            nodes[f"{mark}_{role}"] = {**nodes[mark], "fillcolor": colour}
        edges[mark] = style
    edges["previous"] = {"color": "blue", "penwidth": "3", "fontcolor": "blue"}

    # (mark, index in spec.transitions or None for removed edges, source or "*", transition)
    drawn: list[tuple[str, int | None, str, Transition]] = [
        (changes.marks.get((i, src), "") if changes else "", i, src, t) for i, src, t in edges_of(spec)
    ]
    if changes:
        drawn += [("removed", None, src, t) for _, src, t in changes.removed]
    last = snapshot.last if snapshot and not changes else None
    pair_lines: dict[tuple[str, str], list[tuple[str, str]]] = {}  # one edge's transitions: (mark, label)
    for mark, index, src, t in drawn:
        sources = ([ANY] if star else list(spec.states)) if src == "*" else [src]
        dest = initial if t.reset else t.dest
        for s in sources:
            if s not in machine.states:
                continue
            taken = last is not None and index == last.transition and s == last.source
            after = index is not None and follows(spec, index, s)
            label = ("last: " if taken else "") + MARKS.get(mark, "") + edge_label(t, after)
            if loops is not None and dest in (None, s):
                loops.setdefault((s, "internal" if dest is None else "re-enter"), []).append(_escape(label, engine))
                continue
            machine.add_transition(t.events[0], s, dest, label=_escape(label, engine))
            pair_lines.setdefault((s, dest or s), []).append((mark, label + (" [internal]" if dest is None else "")))
    graph = machine.graph_cls(machine)
    if star:
        graph.set_node_style(ANY, "any")
    for name, st in [*spec.states.items(), *((n, old.states[n]) for n in removed_states if old)]:
        graph.set_node_style(name, f"role_{st.role}")
    if changes:
        for name, mark in changes.states.items():  # an added or changed state is one of the new spec's
            graph.set_node_style(name, "removed" if mark == "removed" else f"{mark}_{spec.states[name].role}")
        if engine == "pygraphviz":  # mermaid cannot style edges: the +/-/~ label marks say it there
            for (src, dst), lines in pair_lines.items():
                marks = {mark for mark, _ in lines}
                edge = cast(Any, graph).fsm_graph.get_edge(src, dst)
                if len(marks) == 1 and (mark := next(iter(marks))):
                    edge.attr.update(DIFF_STYLES[mark])
                elif len(marks) > 1:  # one edge for transitions marked differently: each line in its colour
                    edge.attr["label"] = "<" + "".join(_coloured(mark, text) for mark, text in lines) + ">"
    if snapshot:
        if snapshot.last:
            graph.set_previous_transition(snapshot.last.source, snapshot.last.dest)
        graph.set_node_style(snapshot.state, f"active_{spec.states[snapshot.state].role}")
    return graph.get_graph(title=_escape(title, engine) if engine == "pygraphviz" else f"title: {json.dumps(title)}")


WRAP = 60  # characters of a transition's line in a Graphviz drawing before its guard and updates wrap
_LINE_END = '<br align="left"/>'  # of a line of an HTML label (no spec's text holds it: no quotes in them)


def _coloured(mark: str, text: str) -> str:
    """A transition's lines of a Graphviz HTML label, in its diff mark's colour (unmarked: the default)."""
    out = ""
    for line in _wrapped(text):
        line = html.escape(line, quote=False)
        out += (f'<font color="{DIFF_STYLES[mark]["fontcolor"]}">{line}</font>' if mark else line) + _LINE_END
    return out


def _escape(text: str, engine: str) -> str:
    if engine == "mermaid":
        # Mermaid reads '<' '>' as HTML and '#' ';' as entity syntax: use its entity codes.
        return re.sub(r"[<>#;]", lambda m: {"<": "#lt;", ">": "#gt;", "#": "#35;", ";": "#59;"}[m[0]], text)
    return text


def mermaid(spec: Spec, **kw: Any) -> str:
    """Mermaid stateDiagram-v2 text (no native dependency). Transitions back to their own state are
    listed inside its box, as UML lists internal ones: mermaid puts a self-loop's label where it covers
    the labels of the state's other edges."""
    loops: dict[tuple[str, str], list[str]] = {}
    source: str = _graph(spec, "mermaid", loops=loops, **kw).source
    lines = []
    for line in source.replace(f'state "{ANY}" as {ANY}', f'state "any state" as {ANY}').splitlines():
        if line.lstrip().startswith('state "'):
            # Mermaid shows transitions' "\n" in state descriptions literally; it breaks lines on <br>.
            label, name = line.replace("\\n", "<br>").rsplit('" as ', 1)
            for kind in ("internal", "re-enter"):
                if (name, kind) in loops:
                    label += f"<br>- {kind}:" + "".join(f"<br>{text}" for text in loops[name, kind])
            if name in spec.states and spec.states[name].ignore:
                label += "<br>- ignores: " + ", ".join(spec.states[name].ignore)
            line = f'{label}" as {name}'
        lines.append(line)
    source = "\n".join(lines)
    # Every start the spec can take, each with its condition (transitions draws the one these params take).
    chosen = kw.get("initial") or spec.initial_state
    drawn = [
        f"  [*] --> {state}" + (f": {_escape(label, 'mermaid')}" if label else "") for state, label in starts(spec)
    ]
    source = re.sub(rf"^  \[\*\] --> {chosen}$", lambda _: "\n".join(drawn), source, count=1, flags=re.M)
    source = _css_classes(source, spec)
    legend = ", ".join(f"{role} = {colour}" for role, colour in role_colours(spec).items())
    return source.rstrip("\n") + f"\n%% roles: {legend}\n"


_CSS = {"color": "stroke", "fontcolor": "color", "penwidth": "stroke-width"}  # Graphviz's name -> CSS's


def _css_classes(source: str, spec: Spec) -> str:
    """The styles transitions writes with Graphviz's names, in CSS's, which mermaid reads: `color` is
    Graphviz's border and CSS's text, `penwidth` is unknown to CSS (the current state came out red text
    without its thick border). The state the last transition came from keeps its role's fill, with a
    blue dashed border (transitions' `s_previous` drew it azure, the colour of no role)."""

    def css(m: re.Match[str]) -> str:
        props = []
        for prop in m[2].split(","):
            name, _, value = prop.partition(":")
            name = _CSS.get(name, name)
            props.append(f"{name}:{value}px" if name == "stroke-width" else f"{name}:{value}")
        if m[1].split()[-1].startswith("s_removed"):  # Graphviz's dashed style has no CSS name here
            props.append("stroke-dasharray:5 3")
        return f"{m[1]} {','.join(props)}"

    source = re.sub(r"^(  classDef \S+) (.+)$", css, source, flags=re.M)
    fills = role_colours(spec)
    previous = "".join(
        f"\n  classDef s_previous_{role} fill:{colour},stroke:blue,stroke-width:3px,stroke-dasharray:5 3"
        for role, colour in fills.items()
    )
    source = re.sub(r"^(  classDef s_previous .*)$", lambda m: m[1] + previous, source, count=1, flags=re.M)
    return re.sub(
        r"^(  Class (\S+) )s_previous$",
        lambda m: f"{m[1]}s_previous_{spec.states[m[2]].role}" if m[2] in spec.states else m[0],
        source,
        flags=re.M,
    )


def _wrapped(line: str) -> list[str]:
    """A long transition's guard and its updates on lines of their own where the line is too long: a
    spec with a budget wrote labels 150 characters long, and its diagram came out 2,400 pixels wide."""
    if len(line) <= WRAP:
        return [line]
    head, sep, updates = line.partition(" / ")
    event, bracket, guard = head.partition(" [")
    lines = [event]
    for part in ([f"[{guard}"] if bracket else []) + ([f"/ {updates}"] if sep else []):
        if len(lines[-1]) + 1 + len(part) <= WRAP:
            lines[-1] += " " + part
        else:
            lines.append("  " + part)
    return lines


def dot(spec: Spec, **kw: Any) -> Any:
    """The pygraphviz AGraph, with a legend of the role colours."""
    initial = spec.initial_state
    graph = _graph(spec, "pygraphviz", initial=initial, **kw)
    graph.graph_attr.update(labelloc="t", fontsize="16", fontname=FONT + " Bold", nodesep="0.6", ranksep="0.7")
    graph.node_attr.update(fontname=FONT, fontsize="11")
    graph.edge_attr.update(fontname=FONT, fontsize="9")
    for edge in graph.edges():
        # transitions joins the labels of parallel transitions with " | ": one per line reads better.
        label = edge.attr.get("label") or ""
        if _LINE_END not in label:  # (an HTML label, a diff's lines in their colours, has its lines)
            edge.attr["label"] = "".join(x + "\\l" for line in label.split(" | ") for x in _wrapped(line))
    if ANY in graph:
        graph.get_node(ANY).attr["label"] = "any state"
    for name, st in spec.states.items():  # events a state takes and does nothing with, by the spec's word
        if st.ignore and name in graph:
            node = graph.get_node(name)
            node.attr["label"] = node.attr["label"] + "- ignores: " + ", ".join(st.ignore) + "\\l"
    # UML's start dot marks the initial state (mermaid gets `[*] -->` from transitions); the spec's other
    # starts, which other params would take, are dashed.
    graph.add_node("initial_marker", label="", shape="circle", style="filled", fillcolor="black", width="0.2")
    for state, condition in starts(spec):
        other = {} if state == initial else {"style": "dashed", "color": "grey", "fontcolor": "grey"}
        graph.add_edge("initial_marker", state, label=f"start {condition}".strip(), **other)
    legend = graph.add_subgraph(name="cluster_legend", label="legend", fontsize="10", style="rounded", color="grey")
    for role, colour in role_colours(spec).items():
        legend.add_node(
            f"legend_role_{role}",
            label=role,
            shape="rectangle",
            style="rounded,filled",
            fillcolor=colour,
            fontsize="10",
        )
    if kw.get("changes"):
        for mark, style in DIFF_STYLES.items():
            legend.add_node(
                f"legend_{mark}",
                label=f"{MARKS[mark]}{mark}",
                shape="rectangle",
                style="rounded" + (",dashed" if mark == "removed" else ""),
                color=style["color"],
                fontcolor=style["color"],
                fontsize="10",
            )
    return graph


def dot_text(spec: Spec, **kw: Any) -> str:
    return str(dot(spec, **kw).string())


def render(spec: Spec, fmt: str, **kw: Any) -> bytes:
    """Render to `fmt`: mermaid, md, dot, svg or png."""
    if fmt == "mermaid":
        return mermaid(spec, **kw).encode()
    if fmt == "md":
        return markdown(spec, **kw).encode()
    graph = dot(spec, **kw)
    source = str(graph.string())  # before layout, which adds positions to the graph
    if fmt == "dot":
        return source.encode()
    data: bytes = graph.draw(format=fmt, prog="dot")
    if fmt == "svg":
        # The SVG names the digest of its DOT source, so `lwfsm diagram --check` can tell a stale file
        # from one merely drawn by another Graphviz version.
        stamp = f"<!-- lwfsm-dot-sha256: {_digest(source)} -->\n"
        data = data.replace(b"<svg ", stamp.encode() + b"<svg ", 1)
    return data


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def markdown(spec: Spec, **kw: Any) -> str:
    """A Markdown page: the mermaid block (rendered natively by GitHub/GitLab), description, legend, params."""
    out = [f"# {_cell(spec.name)} v{spec.version}", ""]
    if spec.description:
        out += [spec.description.strip(), ""]
    out += ["```mermaid", mermaid(spec, **kw).rstrip("\n"), "```", ""]
    out += ["| role | colour | states |", "|---|---|---|"]
    for role, colour in role_colours(spec).items():
        served = ", ".join(n for n, s in spec.states.items() if s.role == role)
        out.append(f"| {role}{' (cheap)' if spec.roles[role].cheap else ''} | `{colour}` | {served} |")
    out.append("")
    if spec.params:
        out += ["| param | value | range | description |", "|---|---|---|---|"]
        out += [f"| {n} | {v} | {r} | {_cell(d)} |" for n, v, r, d in describe_params(spec)]
        out.append("")
    snap = kw.get("snapshot")
    if snap is not None:
        out += [
            f"Snapshot at turn {snap.turn}: state **{snap.state}**, "
            + ", ".join(f"{k}={v}" for k, v in snap.counters.items()),
            "",
        ]
    if kw.get("changes") is not None:
        # the mark in code: a bare `- ` or `+ ` after the bullet would start a nested list in Markdown
        marked = [
            f"`{line[0]}` {_cell(line[2:])}" if line[:2] in ("+ ", "- ", "~ ") else _cell(line)
            for line in kw["changes"].summary()
        ]
        out += ["Changes:", "", *[f"- {line}" for line in marked], ""]
    # The file name only: the page must not depend on the directory it was generated from.
    source = spec.source.replace("\\", "/").rsplit("/", 1)[-1]
    out.append(f"_Generated by `lwfsm diagram` from `{_cell(source)}`; edit the spec, not this file._")
    return "\n".join(out) + "\n"


def _digest(dot_source: str) -> str:
    return hashlib.sha256(dot_source.encode()).hexdigest()


def svg_is_current(spec: Spec, data: bytes | None) -> bool:
    """Whether an SVG written by `render` was drawn from this spec's current DOT source."""
    m = re.search(rb"<!-- lwfsm-dot-sha256: ([0-9a-f]{64}) -->", data or b"")
    return m is not None and m.group(1).decode() == _digest(dot_text(spec))
