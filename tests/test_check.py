import json
from pathlib import Path

import pytest

from lwfsm import Spec, load_spec
from lwfsm.check import TooLarge, Unsaturable, check, check_grid, saturation_bounds
from lwfsm.cli import main

from .conftest import SPECS

BASE = (Path(__file__).parent / "specs_invalid" / "_base.yaml.txt").read_text()
DEFAULT = (Path(__file__).resolve().parent.parent / "specs" / "lead_worker.yaml").read_text()


def spec(text: str, old: str = "", new: str = "") -> Spec:
    assert old in text
    return Spec.from_text(text.replace(old, new, 1), source="s.yaml")


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_specs_are_clean(path: Path) -> None:
    report = check(load_spec(path))
    assert report.ok, report.findings
    assert report.configurations > 1


def test_default_spec_configuration_count_and_bounds() -> None:
    report = check(Spec.from_text(DEFAULT))
    # lead_initial x lead_done 0..2, worker x failures 0..1, fallback x fallback_done 0..1,
    # recovery x failures 0..1, all with the counters the path there leaves behind
    assert report.configurations == 11
    assert report.bounds == {"lead_done": 3, "failures": 2, "fallback_done": 2}
    assert check(Spec.from_text(DEFAULT), depth=2).configurations == 3


def test_violated_invariant_comes_with_the_shortest_path() -> None:
    s = spec(
        DEFAULT,
        "{event: failure, source: lead_initial, updates: {lead_done: lead_done + 1}}",
        "{event: failure, source: lead_initial, updates: {lead_done: lead_done + 1, failures: failures + 1}}",
    )
    findings = [f for f in check(s).findings if f.kind == "invariant"]
    assert (
        findings[0].message
        == "invariant 'lead_done < lead_turns and failures == 0' is violated in state 'lead_initial'"
    )
    assert findings[0].path == ["failure"]
    assert findings[0].counters == {"lead_done": 1, "failures": 1, "fallback_done": 0}


def test_incomplete_guards_are_found() -> None:
    s = spec(
        BASE,
        "{event: fail, source: working, updates: {failures: failures + 1}}",
        "{event: fail, source: working, guard: failures > 5, updates: {failures: failures + 1}}",
    )
    s = s.with_params({"threshold": 3})
    finding, *consequences = check(s).findings  # nothing is reachable past the gap
    assert {f.kind for f in consequences} == {"unreachable_state", "dead_transition"}
    assert finding.kind == "incomplete"
    assert finding.path == ["fail"]
    assert "no guard of its transitions holds" in finding.message


def test_ignored_events_are_not_incomplete() -> None:
    text = BASE.replace("  reset: {turn: false}", "  reset: {turn: false}\n  plan: {turn: false}")
    text = text.replace("working: {role: worker}", "working: {role: worker, ignore: [plan]}")
    s = spec(
        text,
        "fallback: {role: lead, on_enter: {failures: 0}}",
        "fallback: {role: lead, on_enter: {failures: 0}, ignore: [plan]}",
    )
    assert check(s).ok


def test_stuck_on_the_expensive_model() -> None:
    s = spec(
        BASE.replace("worker: {}", "worker: {cheap: true}"),
        "{event: ok, source: fallback, dest: working}",
        "{event: ok, source: fallback}",
    )
    (finding,) = check(s).findings
    assert finding.kind == "stuck"
    assert finding.state == "fallback"
    assert finding.path == ["fail", "fail"]


def test_dead_transition_is_located() -> None:
    s = spec(
        BASE,
        "  - {event: ok, source: working, updates: {failures: 0}}",
        "  - {event: ok, source: working, guard: failures > 100, dest: fallback}\n"
        "  - {event: ok, source: working, updates: {failures: 0}}",
    )
    (finding,) = check(s).findings
    assert finding.kind == "dead_transition"
    assert finding.message == "transitions[0] (ok from working [failures > 100]) never fires at s.yaml:20:5"


def test_unsound_saturation_is_refused_and_depth_explores_instead() -> None:
    s = spec(BASE, "updates: {failures: 0}}", "updates: {failures: failures - 1}}")
    with pytest.raises(Unsaturable) as info:
        saturation_bounds(s)
    assert info.value.problems == ["transitions[0].updates.failures: 'failures - 1' decrements 'failures'"]
    report = check(s, depth=5)
    assert report.depth == 5
    assert report.ok


HISTORY = """
lwfsm: 1
name: hist
version: 1
roles: {lead: {}, worker: {cheap: true}}
counters: {h: {}}
events: {ok: {}, bad: {}}
states: {w: {role: worker}}
initial: w
transitions:
  - {event: ok, source: w, updates: {h: h * 2}}
  - {event: bad, source: w, updates: {h: h * 2 + 1}}
judging: {on_success: ok, on_failure: bad}
"""


def test_a_depth_bounded_check_stops_at_the_configuration_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """A counter that keeps the whole history of events doubles the configurations at each level: --depth 40
    took gigabytes, past --max-configurations, which the refusal itself suggests using."""
    s = Spec.from_text(HISTORY)
    assert check(s, depth=5).ok
    with pytest.raises(TooLarge, match="within 40 events the search reached 1,000 configurations, the limit"):
        check(s, depth=40, max_configurations=1000)


def test_a_counter_past_64_bits_is_refused_and_the_session_unchanged() -> None:
    """An update that squares a counter grew it without end: 28 events took a minute, and the session could
    not be restored (its snapshot refuses a counter past 64 bits)."""
    from lwfsm import Engine, TransitionNotAllowed

    session = Engine(Spec.from_text(HISTORY.replace("h * 2 + 1", "h * h + 2"))).session()
    for _ in range(6):
        session.fire("bad")
    before = session.snapshot()
    with pytest.raises(TransitionNotAllowed, match="would take counter 'h' past 64 bits"):
        session.fire("bad")
    assert session.snapshot() == before
    session.fire("ok")  # it goes on from where it was


def test_a_counter_starting_past_64_bits_is_refused_with_its_params() -> None:
    """Validation reads a counter's start with the default params only: --set p=4000000000 gave a session
    past 64 bits (its snapshot unrestorable), and the initial state's on_enter was not read at all."""
    from lwfsm import Engine, SpecError

    text = HISTORY.replace("counters: {h: {}}", "params: {p: {default: 10, min: 0}}\ncounters: {h: {initial: p * p}}")
    assert Engine(Spec.from_text(text)).session().counters == {"h": 100}
    with pytest.raises(SpecError, match=r"counters.h: starts past 64 bits with params p=4000000000"):
        Engine(Spec.from_text(text).with_params({"p": 4_000_000_000}))
    entered = text.replace("initial: p * p}", "}").replace(
        "states: {w: {role: worker}}", "states: {w: {role: worker, on_enter: {h: p * p * p}}}"
    )
    with pytest.raises(SpecError, match="counters.h: starts past 64 bits"):
        Engine(Spec.from_text(entered).with_params({"p": 3_000_000}))


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            "guard: failures + 1 >= threshold",
            "guard: failures >= failures2",
            "transitions[1].guard: 'failures >= failures2' compares two counters",
        ),
        (
            "updates: {failures: 0}}",
            "updates: {failures2: failures}}",
            "transitions[0].updates.failures2: 'failures' copies counter 'failures' into 'failures2'",
        ),
        (
            "guard: failures + 1 >= threshold",
            'guard: "min(failures, 3) >= threshold"',
            "transitions[1].guard: 'min(failures, 3) >= threshold' uses counter 'failures' other than as counter + "
            "constant (an unbounded counter can only be compared with constants)",
        ),
    ],
)
def test_saturation_refusals_say_why(old: str, new: str, reason: str) -> None:
    s = spec(BASE.replace("  failures: {}", "  failures: {}\n  failures2: {}"), old, new)
    with pytest.raises(Unsaturable) as info:
        saturation_bounds(s)
    assert info.value.problems == [reason]


def test_param_grid_reports_unused_only_when_unused_everywhere() -> None:
    default = Spec.from_text(DEFAULT)
    alone = check(default.with_params({"lead_turns": 0}))
    assert {f.kind for f in alone.findings} == {"unreachable_state", "dead_transition"}
    grid = check_grid(default, 2)
    assert grid.ok
    assert grid.combinations == 3 * 3 * 3


def test_cli_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = str(Path(__file__).resolve().parent.parent / "specs" / "lead_worker.yaml")
    assert main(["check", path]) == 0
    assert ": 11 reachable configurations (counters saturated above lead_done 3, failures 2, fallback_done 2): ok" in (
        capsys.readouterr().out
    )
    assert main(["check", path, "--json", "--set", "lead_turns=0"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["params"]["lead_turns"] == 0
    assert {f["kind"] for f in report["findings"]} == {"unreachable_state", "dead_transition"}

    (tmp_path / "dec.yaml").write_text(BASE.replace("updates: {failures: 0}}", "updates: {failures: failures - 1}}"))
    assert main(["check", str(tmp_path / "dec.yaml")]) == 1
    err = capsys.readouterr().err
    assert "counters cannot be saturated soundly because" in err
    assert "'failures - 1' decrements 'failures'" in err
    assert "use --depth N" in err
    assert main(["check", str(tmp_path / "dec.yaml"), "--depth", "3"]) == 0
    assert "every sequence of up to 3 events" in capsys.readouterr().out


SATURATING = """
lwfsm: 1
name: saturating
version: 1
roles: {lead: {}, worker: {cheap: true}}
counters: {used: {initial: 0}}
events: {turn_completed: {}, failure: {}}
states: {a: {role: worker}, b: {role: worker}, c: {role: lead}}
initial: a
transitions:
  - {event: [turn_completed, failure], source: a, dest: b, updates: {used: used + 1}}
  - {event: [turn_completed, failure], source: b, guard: used >= 1, dest: c, updates: {used: used + 1}}
  - {event: turn_completed, source: c, updates: {used: used + 1}}
"""


def test_a_saturated_value_is_shown_as_at_least(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`used` matters only as >= 1: in state c the configuration stands for used = 2, 3, 4, ..."""
    (tmp_path / "s.yaml").write_text(SATURATING)
    report = check(Spec.from_text(SATURATING))
    assert report.bounds == {"used": 1}
    assert sorted((f.kind, f.saturated) for f in report.findings) == [("incomplete", ["used"]), ("stuck", ["used"])]
    assert main(["check", str(tmp_path / "s.yaml")]) == 1
    out = capsys.readouterr().out
    assert out.count(" at c (used>=2); shortest path: ") == 2
    assert "used=" not in out
    assert main(["check", str(tmp_path / "s.yaml"), "--depth", "3"]) == 1  # exact values: no saturation
    assert " at c (used=2); shortest path: " in capsys.readouterr().out
    (grid,) = [f for f in check_grid(Spec.from_text(SATURATING), 0).findings if f.kind == "incomplete"]
    assert grid.saturated == ["used"]


def test_size_guard_names_a_window_when_no_counter_is_saturated() -> None:
    from lwfsm import TooLarge

    text = """
lwfsm: 1
name: windows
version: 1
roles: {lead: {}, worker: {cheap: true}}
counters: {a: {window: 16}, b: {window: 16}}
events: {ok: {}, fail: {}}
states: {w: {role: worker}}
initial: w
transitions:
  - {event: ok, source: w, updates: {a: "push(a, 1)"}}
  - {event: fail, source: w, updates: {a: "push(a, 0)", b: "push(b, 1)"}}
"""
    # a takes every one of its 65,536 values: past the look the check takes before it refuses
    with pytest.raises(TooLarge, match=r"about 4,294,967,296 configurations .*: counter 'a' can take 65,536 values"):
        check(Spec.from_text(text))
    # when b moves alone, a stays 0 and the whole reachable space is 17 fillings of b: checked, not refused
    report = check(Spec.from_text(text.replace('{a: "push(a, 0)", b: "push(b, 1)"}', '{b: "push(b, 1)"}')))
    assert report.ok
    assert report.configurations == 17 * 17


def test_an_estimate_too_large_to_write_out_is_refused_with_its_power_of_ten() -> None:
    from lwfsm import TooLarge

    n = 900  # 900 windows of 65,536 values each: 10^4334 configurations, more digits than Python writes out
    counters = ", ".join(f"a{i}: {{window: 16}}" for i in range(n))
    pushes = ", ".join(f'a{i}: "push(a{i}, 1)"' for i in range(n))
    text = f"""
lwfsm: 1
name: windows
version: 1
roles: {{lead: {{}}, worker: {{cheap: true}}}}
counters: {{{counters}}}
events: {{ok: {{}}, fail: {{}}}}
states: {{w: {{role: worker}}}}
initial: w
transitions:
  - {{event: ok, source: w, updates: {{{pushes}}}}}
  - {{event: fail, source: w, updates: {{a0: "push(a0, 0)"}}}}
"""
    # (a low limit: what `check` explores before refusing costs ~1 ms a configuration at 900 counters)
    with pytest.raises(TooLarge, match=r"about 10\^4334 configurations .*: counter 'a0' can take 65,536 values"):
        check(Spec.from_text(text), max_configurations=1000)


def test_a_spec_at_its_declared_maximum_params_is_checked_when_it_reaches_few_configurations() -> None:
    # estimated as 4 states x 1,002^3 counter values; each counter moves in one state only: 5,000 reached
    spec = load_spec("lead_worker", params={"lead_turns": 1000, "failure_threshold": 1000, "fallback_turns": 1000})
    report = check(spec)
    assert report.ok
    assert report.configurations == 5000
    text = (Path(__file__).parent.parent / "specs" / "lead_worker.yaml").read_text()
    for old in ("{default: 3, min: 0,", "{default: 2, min: 1,", "{default: 2, min: 1,"):
        text = text.replace(old, "{default: 1000, min: 1000,", 1)
    grid = check_grid(Spec.from_text(text), up_to=0)  # the grid's one combination, checked the same way
    assert grid.ok
    assert grid.configurations == 5000


def test_what_chosen_params_leave_unused_is_told_apart_from_a_mistake() -> None:
    from lwfsm.check import unused_only_here

    declared = load_spec("lead_worker")
    at_one = check(declared.with_params({"lead_turns": 1}))
    assert [f.kind for f in at_one.findings] == ["dead_transition", "dead_transition"]
    assert unused_only_here(at_one, declared) == at_one.findings  # the counting transitions, used at 3
    assert unused_only_here(check(declared), declared) == []  # at its defaults nothing is set aside
    # a transition dead at the defaults too is the spec's mistake, whatever the params
    dead = spec(
        BASE, "  - {event: fail, source: fallback}", "  - {event: fail, source: fallback, guard: threshold > 10}"
    )
    at_five = check(dead.with_params({"threshold": 5}))
    assert "dead_transition" in [f.kind for f in at_five.findings]  # (and `fail` unhandled in fallback)
    assert unused_only_here(at_five, dead) == []
