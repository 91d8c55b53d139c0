import itertools
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from lwfsm import Engine, Spec, load_spec
from lwfsm.cli import main
from lwfsm.diagram import DiagramError, diff, edge_label, edges_of, markdown, mermaid, render
from lwfsm.diagram.graph import dot, follows, role_colours, starts
from lwfsm.spec import Transition

from . import mermaid_browser
from .conftest import SPECS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "specs" / "lead_worker.yaml"


def expected_labels(spec: Spec) -> list[str]:
    labels = []
    for i, s, t in edges_of(spec):
        internal = t.dest is None and not t.reset
        labels.append(edge_label(t, follows(spec, i, s)) + (" [internal]" if internal else ""))
    return labels


def box_title(name: str, state: Any) -> str:
    """A state's box title: its name, role and on_enter updates (as a tag: a "+" bullet read as the diff's)."""
    enter = ", ".join(f"{k} = {v}" for k, v in state.on_enter.items())
    return f"{name} [role: {state.role}" + (f", on enter: {enter}]" if enter else "]")


def loops_back(t: Transition) -> bool:
    """A transition that stays in its state: mermaid lists it in the state's box, not as an edge."""
    return not t.reset and (t.dest is None or t.source == [t.dest])


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_mermaid_renders_in_a_real_browser_with_every_state_and_edge(path: Path, tmp_path: Path) -> None:
    spec = load_spec(path)
    _svg, texts = mermaid_browser.render(mermaid(spec), tmp_path)
    joined = "\n".join(texts)
    for name, state in spec.states.items():
        assert box_title(name, state) in texts, name
    pieces = {piece.strip() for text in texts for piece in text.split(" | ")}
    for i, s, t in edges_of(spec):
        label = edge_label(t, follows(spec, i, s))
        assert label in pieces, f"transition {label!r} missing from the rendered SVG"
    assert "any state" in texts
    assert spec.name in joined
    assert all(condition in texts for _, condition in starts(spec) if condition)  # every start the spec can take


ENTITIES = {"<": "#lt;", ">": "#gt;", "#": "#35;", ";": "#59;"}  # mermaid's codes for text it would parse


def _edges(text: str) -> list[tuple[str, str, str]]:
    """(label as the browser shows it, source, dest) of each edge of mermaid text, in order."""
    shown = {code: char for char, code in ENTITIES.items()}
    return [
        (re.sub(r"#(lt|gt|35|59);", lambda m: shown[m[0]], label), src, dst)
        for src, dst, label in re.findall(r"^  (\w+|\[\*\]) --> (\w+): (.*)$", text, re.M)
    ]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_mermaid_edge_labels_cover_no_state_and_no_other_label(path: Path, tmp_path: Path) -> None:
    """Where mermaid really puts them, in a browser. It drew a self-loop's label over the state's other
    labels (on the dashboard it hid the start of `lead_initial -> worker`), so a transition back to its
    own state is listed in the state's box. Mermaid may still let the labels of two opposite edges
    between the same two states touch (planning's `plan` and its return): such pairs alone are exempt."""
    spec = load_spec(path)
    text = mermaid(spec)
    assert not re.search(r"^  (\w+) --> \1:", text, re.M)  # no self-loop
    for i, s, t in edges_of(spec):
        if loops_back(t):
            state = "any_state" if s == "*" else s
            box = next(line for line in text.splitlines() if line.endswith(f'" as {state}'))
            heading = "- internal:" if t.dest is None else "- re-enter:"
            assert f"{heading}<br>" in box
            assert "<br>" + re.sub(r"[<>#;]", lambda m: ENTITIES[m[0]], edge_label(t, follows(spec, i, s))) in box
    svg, _ = mermaid_browser.render(text, tmp_path)
    states, labels = mermaid_browser.layout(svg)
    assert set(states) == {*spec.states, "any_state"}
    edges = _edges(text)
    assert [label for label, _ in labels] == [label for label, _, _ in edges]
    for label, box in labels:
        covered = [s for s, area in states.items() if mermaid_browser.overlap(box, area)]
        assert not covered, f"label {label!r} covers state {covered}"
    placed = list(zip(labels, edges, strict=True))
    for ((a, abox), (_, a_src, a_dst)), ((b, bbox), (_, b_src, b_dst)) in itertools.combinations(placed, 2):
        if (a_src, a_dst) == (b_dst, b_src):
            continue
        assert not mermaid_browser.overlap(abox, bbox), f"labels {a!r} and {b!r} overlap"


def svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)
    return [t.text.strip() for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text and t.text.strip()]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_svg_has_every_state_edge_label_and_role_in_the_legend(path: Path) -> None:
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    spec = load_spec(path)
    texts = svg_texts(render(spec, "svg"))
    for name, state in spec.states.items():
        assert box_title(name, state) in texts
    # a long label's guard and updates are lines of their own (each indented): read back together
    said = {" ".join(t.strip() for t in texts[i : i + n]) for n in (1, 2, 3) for i in range(len(texts))}
    for label in expected_labels(spec):
        assert label in said, label
    assert set(spec.roles) <= set(texts)
    # (the budget spec's longest transition was one line of 150 characters, 2,400 pixels wide)
    assert max(map(len, texts)) <= 80, max(texts, key=len)
    # the initial marker's edges: each start the spec can take, with its condition
    assert all(f"start {condition}".strip() in texts for _, condition in starts(spec))


def test_roles_are_visibly_distinct(tmp_path: Path) -> None:
    spec = load_spec(ROOT / "specs" / "planning.yaml")
    text = mermaid(spec)
    fills = dict(re.findall(r"classDef s_role_(\w+) fill:(#[0-9a-f]{6})", text))
    assert set(fills) == set(spec.roles)
    assert len(set(fills.values())) == len(fills)
    for name, state in spec.states.items():
        assert f"Class {name} s_role_{state.role}" in text


def test_markdown_page(tmp_path: Path) -> None:
    spec = load_spec(DEFAULT)
    page = markdown(spec)
    (block,) = re.findall(r"```mermaid\n(.*?)```", page, re.S)
    assert block == mermaid(spec)
    assert spec.description.strip() in page
    assert "| failure_threshold | 2 | [1, 1000] |" in page
    assert "| worker (cheap) | `#c5e0b4` | worker, recovery |" in page


def test_snapshot_view_highlights_state_and_last_transition(tmp_path: Path) -> None:
    session = Engine(load_spec(DEFAULT)).session()
    for _ in range(3):
        session.turn_completed()
    session.failure("tests failed")
    session.failure("tests failed")
    snap = tmp_path / "snap.json"
    snap.write_text(session.snapshot().model_dump_json())
    out = tmp_path / "live.mmd"
    assert main(["diagram", str(DEFAULT), "--snapshot", str(snap), "-o", str(out)]) == 0
    text = out.read_text()
    assert "Class fallback s_active_lead" in text
    assert "worker --> fallback: last: failure [failures + 1 #gt;= failure_threshold]" in text
    assert "recovery --> fallback: failure [failures + 1 #gt;= failure_threshold]" in text  # same rule, not taken
    assert 'title: "lead_worker: turn 5, lead_done=3, failures=0, fallback_done=0"' in text
    # mermaid reads CSS: transitions' Graphviz names (color, penwidth) drew red text and no frame, and the
    # state left azure, the colour of no role
    assert "Class worker s_previous_worker" in text
    assert "penwidth" not in text
    svg, texts = mermaid_browser.render(text, tmp_path)
    assert "last: failure [failures + 1 >= failure_threshold]" in texts
    styles = re.findall(r'id="[^"]*state-(\w+)-\d+".*?style="([^"]*)"', svg)
    style = {name: css.replace(" !important", "") for name, css in styles}
    assert "stroke:red" in style["fallback"]
    assert "stroke-width:3px" in style["fallback"]
    assert "fill:#c5e0b4" in style["worker"]
    assert "stroke:blue" in style["worker"]


def test_snapshot_dot_marks_the_active_state_and_previous_edge(tmp_path: Path) -> None:
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    session = Engine(load_spec(DEFAULT)).session()
    session.turn_completed()
    (tmp_path / "s.json").write_text(session.snapshot().model_dump_json())
    out = tmp_path / "live.dot"
    assert main(["diagram", str(DEFAULT), "--snapshot", str(tmp_path / "s.json"), "-f", "dot", "-o", str(out)]) == 0
    text = out.read_text()
    node = text[text.index("\tlead_initial\t[") :].split(";")[0]
    assert "color=red" in node
    assert "penwidth=3" in node
    edge = text[text.index("lead_initial -> lead_initial") :].split(";")[0]
    assert "color=blue" in edge
    assert "last: turn_completed" in edge


def test_a_diff_styles_an_edge_as_all_its_transitions_changed_and_each_line_as_its_own(tmp_path: Path) -> None:
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    text = DEFAULT.read_text()
    assert "  - {event: failure, source: fallback}\n" in text
    changed = text.replace("  - {event: failure, source: fallback}\n", "")  # beside an unchanged self-loop
    changed = changed.replace("  recovery: {role: worker,", "  review: {role: lead}\n  recovery: {role: worker,")
    changed = changed.replace(
        "  - {event: turn_completed, source: fallback, updates:",
        "  - {event: failure, source: fallback, dest: review}\n"
        "  - {event: turn_completed, source: review, dest: worker}\n"
        "  - {event: turn_completed, source: fallback, updates:",
    )
    (tmp_path / "new.yaml").write_text(changed)
    out = tmp_path / "diff.dot"
    assert main(["diagram", "--diff", str(DEFAULT), str(tmp_path / "new.yaml"), "-f", "dot", "-o", str(out)]) == 0
    dot = out.read_text()
    loop = dot[dot.index("fallback -> fallback") :].split(";")[0]
    # the removed transition's line in the legend's red (it was black, only its mark said so); the edge
    # is not drawn as removed: the unchanged transition shares it
    assert '<font color="red">- failure [internal]</font><br align="left"/>' in loop
    # unmarked, its updates on a line of their own (as wide as the drawing's other labels)
    assert 'turn_completed [else]<br align="left"/>  / fallback_done = fallback_done + 1 [internal]<br' in loop
    assert "color" not in re.sub(r"label=<.*>", "", loop, flags=re.S)  # the edge: not red, not dashed
    review = dot[dot.index("\treview\t[") :].split(";")[0]
    assert "color=darkgreen" in review
    assert (
        f'fillcolor="{role_colours(load_spec(DEFAULT))["lead"]}"' in review
    )  # the added state keeps its role's colour


def test_diff_marks_changes_and_summarises_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = load_spec(DEFAULT), load_spec(ROOT / "specs" / "strict_recovery.yaml")
    changes = diff(old, new)
    # Edge by edge: worker's failure edges did not change, only recovery's did.
    assert changes.summary() == [
        "~ transition recovery -> fallback: failure (was: failure [failures + 1 >= failure_threshold])",
        "- transition recovery -> (stay): failure / failures = failures + 1",
        "+ invariant {expr: failures == 0, states: [recovery]}",
    ]
    out = tmp_path / "diff.md"
    assert (
        main(
            [
                "diagram",
                "--diff",
                str(DEFAULT),
                str(ROOT / "specs" / "strict_recovery.yaml"),
                "-f",
                "md",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "~ transition recovery -> fallback: failure (was: " in capsys.readouterr().err
    page = out.read_text()
    assert "recovery --> fallback: ~ failure\n" in page
    assert 'state "recovery [role: worker]<br>- internal:<br>- failure / failures = failures + 1" as recovery' in page
    assert "worker --> fallback: failure [failures + 1 #gt;= failure_threshold]\n" in page  # unchanged: unmarked
    # the marks in code: a bare `- ` after the bullet would render as a nested list, the mark lost
    assert "Changes:\n\n- `~` transition recovery -> fallback: failure (was: " in page
    (block,) = re.findall(r"```mermaid\n(.*?)```", page, re.S)
    _svg, texts = mermaid_browser.render(block, tmp_path)
    assert "~ failure" in texts


def test_diff_of_states_and_guards() -> None:
    old = load_spec(DEFAULT)
    data = old.model_dump()
    data["states"]["review"] = {"role": "lead"}
    data["transitions"].insert(0, {"event": "failure", "source": "fallback", "dest": "review", "guard": "failures > 5"})
    data["transitions"][9]["guard"] = "fallback_done + 2 >= fallback_turns"
    new = Spec.from_dict(data)
    changes = diff(old, new)
    assert changes.states == {"review": "added"}
    summary = changes.summary()
    assert "+ state review" in summary
    assert (
        "~ transition fallback -> recovery: turn_completed [fallback_done + 2 >= fallback_turns] "
        "(was: turn_completed [fallback_done + 1 >= fallback_turns])"
    ) in summary
    text = mermaid(new, changes=changes, old=old)
    assert "Class review s_added" in text


def test_diff_says_what_changed_in_a_state() -> None:
    """A changed state was summarised as `~ state fallback` alone: an on_enter update dropped showed
    nowhere, in the summary nor in either drawing."""
    old = load_spec(DEFAULT)
    data = old.model_dump()
    data["states"]["fallback"]["on_enter"] = {"failures": "0", "lead_done": "1"}  # fallback_done = 0 gone
    data["states"]["worker"]["ignore"] = ["plan"]
    data["states"]["recovery"]["role"] = "lead"
    data["handoffs"] = []
    data["events"]["plan"] = {"turn": False}
    changes = diff(old, Spec.from_dict(data))
    summary = changes.summary()
    assert "~ state fallback: on_enter + lead_done = 1; on_enter - fallback_done = 0" in summary
    assert "~ state worker: ignore + plan" in summary
    assert "~ state recovery: role lead (was worker)" in summary


def test_diff_reports_handoffs_added_removed_and_reworded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = load_spec(DEFAULT)
    data = old.model_dump()
    data["handoffs"].pop(1)  # recovery's
    data["handoffs"][0]["note"] = data["handoffs"][0]["note"].replace("re-run the tests yourself", "run the tests")
    data["handoffs"].append({"dest": "worker", "source": ["lead_initial"], "note": "The plan is in PLAN.md."})
    new = Spec.from_dict(data)
    summary = diff(old, new).summary()
    assert "+ handoff to worker from lead_initial: 'The plan is in PLAN.md.'" in summary
    assert "- handoff to recovery from fallback" in summary
    assert (
        "~ handoff to fallback from worker, recovery: note line 5: 're-read the files it changed and run the tests; "
        "fix the cause, not the symptom.' (was: 're-read the files it changed and re-run the tests yourself; fix "
        "the cause, not the symptom.')"
    ) in summary
    assert diff(old, load_spec(DEFAULT)).summary() == ["no changes"]
    # explain shows each handoff and its template as written
    assert main(["explain", str(DEFAULT)]) == 0
    shown = capsys.readouterr().out
    assert "handoffs (the first call served after the switch carries the note" in shown
    assert "  entering fallback from worker, recovery:\n    | [lwfsm handoff" in shown
    assert "    | {evidence}" in shown


def test_all_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    specs, out = tmp_path / "specs", tmp_path / "diagrams"
    specs.mkdir()
    (specs / "lead_worker.yaml").write_text(DEFAULT.read_text())
    args = ["--specs-dir", str(specs), "--out-dir", str(out)]
    assert main(["diagram", "--check", *args]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'lead_worker.md'}: missing (from {specs / 'lead_worker.yaml'})" in err
    assert f"{out / 'lead_worker.svg'}: missing" in err
    assert main(["diagram", "--all", *args]) == 0
    capsys.readouterr()
    assert main(["diagram", "--check", *args]) == 0
    assert capsys.readouterr().out == f"up to date: every diagram in {out}/ matches its spec in {specs}/\n"
    # A param default shows in the md page's table but not in the drawing: only the md is stale.
    (specs / "lead_worker.yaml").write_text(DEFAULT.read_text().replace("default: 3, min: 0", "default: 4, min: 0"))
    capsys.readouterr()
    assert main(["diagram", "--check", *args]) == 1
    err = capsys.readouterr().err
    assert "lead_worker.md: stale" in err
    assert "lead_worker.svg" not in err
    # A changed guard shows in both.
    (specs / "lead_worker.yaml").write_text(DEFAULT.read_text().replace("fallback_done + 1 >=", "fallback_done + 2 >="))
    assert main(["diagram", "--check", *args]) == 1
    err = capsys.readouterr().err
    assert "lead_worker.md: stale" in err
    assert "lead_worker.svg: stale" in err


def test_shipped_diagrams_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    assert main(["diagram", "--check", "--specs-dir", str(ROOT / "specs"), "--out-dir", str(ROOT / "diagrams")]) == 0


def test_readme_shows_the_default_diagram_kept_in_sync() -> None:
    """The README shows the SVG and links the mermaid page; both are the ones `diagram --check` keeps in sync."""
    readme = (ROOT / "README.md").read_text()
    assert "![lead_worker state diagram](diagrams/lead_worker.svg)" in readme
    assert "(diagrams/lead_worker.md)" in readme
    (block,) = re.findall(r"```mermaid\n(.*?)```", (ROOT / "diagrams" / "lead_worker.md").read_text(), re.S)
    assert block == mermaid(load_spec(DEFAULT))


def test_no_secrets_and_odd_names_are_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak-1234")
    monkeypatch.setenv("LWFSM_LEAD_API_BASE", "https://secret.invalid/v1")
    text = DEFAULT.read_text().replace("name: lead_worker", "name: 'lead: \"worker\" #1 <b>|x</b>; ok'")
    text = text.replace("failures < failure_threshold", "failures < failure_threshold and failures >= 0")
    spec = Spec.from_text(text)
    outputs = [mermaid(spec), markdown(spec)]
    try:
        outputs.append(render(spec, "svg").decode())
    except DiagramError:
        pass
    for out in outputs:
        assert "sk-do-not-leak" not in out
        assert "secret.invalid" not in out
    _svg, texts = mermaid_browser.render(mermaid(spec), tmp_path)
    assert 'lead: "worker" #1 <b>|x</b>; ok' in texts  # the title, shown as text, not markup
    assert '# lead: "worker" #1 <b>\\|x</b>; ok v1' in markdown(spec)


def test_missing_diagrams_extra_gives_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pygraphviz", None)  # import pygraphviz now raises ImportError
    with pytest.raises(DiagramError, match=r'pip install "lwfsm\[diagrams\]"'):
        render(load_spec(DEFAULT), "svg")
    assert main(["diagram", str(DEFAULT), "-f", "svg", "-o", "/dev/null"]) == 1
    err = capsys.readouterr().err
    assert 'SVG, PNG and DOT need the diagrams extra: pip install "lwfsm[diagrams]"' in err
    assert "Traceback" not in err
    assert main(["diagram", str(DEFAULT), "-f", "mermaid"]) == 0  # text formats need nothing


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram"]) == 1
    assert "give a SPEC, --diff OLD NEW, --all or --check" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["diagram", str(DEFAULT), "--snapshot", str(tmp_path / "bad.json")]) == 1
    assert "bad.json: not a valid lwfsm snapshot: spec: Field required (and 5 more)\n" in capsys.readouterr().err
    session = Engine(load_spec(DEFAULT, params={"lead_turns": 1})).session()
    (tmp_path / "other.json").write_text(session.snapshot().model_dump_json())
    assert main(["diagram", str(DEFAULT), "--snapshot", str(tmp_path / "other.json")]) == 1  # other params
    assert "the rules or params differ" in capsys.readouterr().err
    assert main(["diagram", str(DEFAULT), "-f", "png"]) == 1
    assert "-f png writes binary data: give -o PATH" in capsys.readouterr().err


def test_diff_reports_params_counters_invariants_and_judging(tmp_path: Path) -> None:
    old = (ROOT / "specs" / "lead_worker.yaml").read_text()
    new = (
        old.replace("lead_turns: {default: 3, min: 0", "lead_turns: {default: 4, min: 0")
        .replace(
            "  fallback_done: {description: successful turns served in fallback}\n",
            "  fallback_done: {}\n  spare: {}\n",
        )
        .replace("    environment: turn_completed", "    environment: failure")
        .replace(
            "  technical_fallback: {worker: lead}\n",
            "  technical_fallback: {worker: lead}\n  correction_patterns: [nope]\n",
        )
        .replace("technical_fallback: {worker: lead}", "technical_fallback: {}")
        .replace(
            "  - {expr: failures < failure_threshold, description: reaching the threshold always enters fallback}\n", ""
        )
    )
    a, b = Spec.from_text(old), Spec.from_text(new)
    summary = diff(a, b).summary()
    assert summary == [
        "~ param lead_turns: {default: 4, min: 0, max: 1000} (was: {default: 3, min: 0, max: 1000})",
        "+ counter spare: {}",
        "- invariant {expr: failures < failure_threshold, states: []}",
        "~ judging.kinds.environment: failure (was: turn_completed)",
        "~ judging.technical_fallback: {} (was: {worker: lead})",
        "+ judging.correction_patterns: 'nope'",
    ]
    assert diff(a, Spec.from_text(old.replace("description: >-", "description: >-\n  Reworded."))).summary() == [
        "no changes"
    ]


def test_every_start_the_spec_can_take_is_drawn_with_its_condition(tmp_path: Path) -> None:
    """`initial` may choose by params: the diagram draws each choice, the one these params take plainly
    (in SVG; the others dashed), so a reviewer sees that lead_turns=0 starts with the worker."""
    spec = load_spec(DEFAULT)
    assert starts(spec) == [("worker", "[lead_turns == 0]"), ("lead_initial", "[else]")]
    lines = [line for line in mermaid(spec).splitlines() if line.startswith("  [*] -->")]
    assert lines == ["  [*] --> worker: [lead_turns == 0]", "  [*] --> lead_initial: [else]"]
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    for params, plain in (({}, "lead_initial"), ({"lead_turns": 0}, "worker")):
        graph = dot(load_spec(DEFAULT, params))
        edges = {str(e[1]): e.attr for e in graph.out_edges("initial_marker")}
        assert {s: a["label"] for s, a in edges.items()} == {
            "worker": "start [lead_turns == 0]",
            "lead_initial": "start [else]",
        }
        assert [state for state, attrs in edges.items() if attrs.get("style") != "dashed"] == [plain]
    only = tmp_path / "one.yaml"
    only.write_text(DEFAULT.read_text().replace("  - {state: worker, when: lead_turns == 0}\n", ""))
    assert starts(load_spec(only)) == [("lead_initial", "")]
    assert "  [*] --> lead_initial\n" in mermaid(load_spec(only))


def test_a_states_ignored_events_are_in_its_box() -> None:
    """`ignore:` says on purpose that a state takes an event and does nothing: the diagram says so too."""
    spec = load_spec(ROOT / "specs" / "planning.yaml")
    ignoring = {name: state.ignore for name, state in spec.states.items() if state.ignore}
    assert len(ignoring) >= 4
    boxes = {line.rsplit('" as ', 1)[1]: line for line in mermaid(spec).splitlines() if line.startswith('  state "')}
    for name, events in ignoring.items():
        assert boxes[name].endswith(f'<br>- ignores: {", ".join(events)}" as {name}')
    assert [name for name, box in boxes.items() if "ignores" in box] == list(ignoring)
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    texts = svg_texts(render(spec, "svg"))
    assert sorted(t for t in texts if t.startswith("- ignores:")) == sorted(
        f"- ignores: {', '.join(events)}" for events in ignoring.values()
    )


def test_a_transition_taken_only_when_an_earlier_ones_guard_fails_says_else() -> None:
    """The first transition whose guard holds wins: a later one for the same event in the same state is
    drawn `[else]` (`[else if guard]`), so the worker's failure count is not read as happening always."""
    spec = load_spec(DEFAULT)
    boxes = {line.rsplit('" as ', 1)[1]: line for line in mermaid(spec).splitlines() if line.startswith('  state "')}
    assert "<br>failure [else] / failures = failures + 1" in boxes["worker"]
    assert "<br>turn_completed / failures = 0" in boxes["worker"]  # the only one for its event there
    assert "<br>failure [else] / failures = failures + 1" in boxes["recovery"]
    assert "worker --> fallback: failure [failures + 1 #gt;= failure_threshold]" in mermaid(spec)
    data = spec.model_dump()
    data["transitions"][:0] = [
        {"event": "failure", "source": "worker", "guard": "failures >= 5", "dest": "fallback"},
        {"event": "failure", "source": "worker", "guard": "failures >= 2", "dest": "recovery"},
        {
            "event": ["failure", "turn_completed"],
            "source": "worker",
            "guard": "turn > 50",
            "updates": {"failures": "0"},
        },
    ]
    guarded = Spec.from_dict(data)
    labels = [edge_label(t, follows(guarded, i, s)) for i, s, t in edges_of(guarded)[:3]]
    assert labels == [
        "failure [failures >= 5]",
        "failure [else if failures >= 2]",
        "failure, turn_completed [turn > 50] / failures = 0",  # the first for turn_completed there: not marked
    ]
    assert not follows(spec, len(spec.transitions) - 1, "*")  # reset, drawn once for every state


def test_a_mermaid_diff_draws_removed_states_dashed() -> None:
    """Graphviz's dashed style has no CSS name: translated, the removed state's class lost it, and dashed blue
    now marks the state a live diagram came from."""
    from lwfsm.diagram import diff, mermaid

    old, new = load_spec(DEFAULT), load_spec(ROOT / "specs" / "escalation.yaml")
    text = mermaid(new, changes=diff(old, new), old=old)
    removed = next(line for line in text.splitlines() if line.startswith("  classDef s_removed "))
    assert "stroke:red" in removed
    assert "stroke-dasharray:5 3" in removed
