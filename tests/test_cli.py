import json
import subprocess
import sys
from pathlib import Path

import pytest

from lwfsm import load_spec
from lwfsm.cli import main

from .conftest import SPECS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = str(ROOT / "specs" / "lead_worker.yaml")
INVALID = Path(__file__).parent / "specs_invalid"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, SPECS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(SPECS)
    assert any(line.endswith("lead_worker v1, 4 states, 3 events, 12 transitions, roles lead, worker") for line in out)


def test_validate_bad_prints_located_errors_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(INVALID / "many_mistakes.yaml")
    assert main(["validate", DEFAULT, bad]) == 1
    captured = capsys.readouterr()
    assert "lead_worker.yaml: ok" in captured.out
    errors = captured.err.splitlines()
    assert len(errors) == 3
    assert all(line.startswith(f"{bad}:") for line in errors)
    assert "Traceback" not in captured.err


def test_validate_with_out_of_range_param(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", DEFAULT, "--set", "fallback_turns=0"]) == 1
    assert "value 0 for param 'fallback_turns' is outside its declared range [1, 1000]" in capsys.readouterr().err


def test_trace_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", DEFAULT, "--events", "ok,ok,ok,fail,fail,ok,ok,ok,reset"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["turn", "event", "served", "by", "next"]
    rows = [line.split() for line in lines[2:]]
    assert rows[0] == ["1", "turn_completed", "lead_initial", "(lead)", "lead_initial", "(lead)"]
    assert rows[4] == ["5", "failure", "worker", "(worker)", "fallback", "(lead)"]
    assert rows[8] == ["reset", "worker", "(worker)", "lead_initial", "(lead)"]


def test_trace_json_with_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "trace",
                DEFAULT,
                "--set",
                "lead_turns=0",
                "--set",
                "failure_threshold=1",
                "--events",
                "ok,fail,ok",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "turn": 1,
            "event": "turn_completed",
            "state": "worker",
            "role": "worker",
            "next_state": "worker",
            "next_role": "worker",
        },
        {
            "turn": 2,
            "event": "failure",
            "state": "worker",
            "role": "worker",
            "next_state": "fallback",
            "next_role": "lead",
        },
        {
            "turn": 3,
            "event": "turn_completed",
            "state": "fallback",
            "role": "lead",
            "next_state": "fallback",
            "next_role": "lead",
        },
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--events", "ok,oops"],
            "unknown event 'oops' in --events; spec 'lead_worker' has: turn_completed, failure, "
            "reset (and the aliases ok, fail)",
        ),
        (["--events", "ok,failur"], "unknown event 'failur' in --events (did you mean 'failure'?); spec 'lead_worker'"),
        (["--set", "lead_turn=1", "--events", "ok"], "--set: lead_turn: unknown param 'lead_turn' (did you mean"),
        (["--set", "lead_turns=-1", "--events", "ok"], "--set: lead_turns: value -1 for param 'lead_turns' is outside"),
        (["--set", "lead_turns=x", "--events", "ok"], "--set lead_turns=x: value must be an integer, got 'x'"),
        (["--set", "lead_turns", "--events", "ok"], "--set lead_turns: expected NAME=VALUE"),
        (["--events", " , "], "--events names no event: give them in order"),
        (["--events", "ok,,fail"], "--events 'ok,,fail': event 2 is empty"),
    ],
)
def test_trace_errors_exit_1_without_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", DEFAULT, *args]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_trace_alias_of_a_judging_event_the_spec_lacks_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec without judging: `fail` stands for the default `failure`, which it lacks. The message was
    "unknown event 'failure' (did you mean 'fail'?)", and listed `fail` among the names to use."""
    spec = tmp_path / "nojudge.yaml"
    spec.write_text(
        "lwfsm: 1\nname: nojudge\nversion: 1\nroles: {lead: {}, worker: {cheap: true}}\n"
        "events: {ok: {}, bad: {}}\nstates: {w: {role: worker}, l: {role: lead}}\ninitial: w\ntransitions:\n"
        "  - {event: bad, source: w, dest: l}\n  - {event: ok, source: [w, l], dest: w}\n  - {event: bad, source: l}\n"
    )
    assert main(["trace", str(spec), "--events", "fail"]) == 1
    assert capsys.readouterr().err == (
        "lwfsm trace: 'fail' in --events stands for the spec's judging.on_failure, 'failure', which spec 'nojudge' "
        "does not have: set judging.on_failure, or name its own event (ok, bad)\n"
    )
    assert main(["trace", str(spec), "--events", "ok,bad,oops"]) == 1  # its own `ok`; no alias listed
    assert "unknown event 'oops' in --events; spec 'nojudge' has: ok, bad\n" in capsys.readouterr().err
    assert main(["trace", str(spec), "--events", "ok,bad"]) == 0


def test_trace_disallowed_event_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (INVALID / "_base.yaml.txt").read_text().replace('source: "*", reset', "source: working, reset")
    (tmp_path / "s.yaml").write_text(text)
    assert main(["trace", str(tmp_path / "s.yaml"), "--events", "fail,fail,reset"]) == 1
    out, err = capsys.readouterr()
    assert (
        "event 3 (reset) was refused: event 'reset' has no transition from state 'fallback' (it has from: working)"
        in err
    )
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [["1", "fail"], ["2", "fail"]]  # the turns so far


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", DEFAULT, "--set", "lead_turns=0"]) == 0
    out = capsys.readouterr().out
    # the conditional start, with the choice these params take (it said only "initial: worker")
    assert "states (initial: worker, of: worker when lead_turns == 0; else lead_initial)" in out
    assert "reset           no           a new conversation" in out  # events that end no turn are said so
    assert "lead_turns         0      [0, 1000]" in out
    # the hash trace records carry (`spec`), which no command showed: the rules', params left out
    rules = load_spec(DEFAULT).rules_hash
    assert out.splitlines()[0].endswith(f"; rules {rules}, as trace records name it)")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["fallback"][1:] == ["lead", "failures", "=", "0,", "fallback_done", "=", "0"]
    assert rows["6"][1:] == [
        "failure",
        "worker,",
        "recovery",
        "failures",
        "+",
        "1",
        ">=",
        "failure_threshold",
        "fallback",
    ]


def test_explain_marks_window_counters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "window"]) == 0
    counters = capsys.readouterr().out.split("\ncounters\n")[1].split("\n\n")[0].splitlines()
    assert counters[0].split() == ["name", "kind", "initial", "starts", "at", "description"]
    rows = {line.split()[0]: line.split()[1:4] for line in counters[2:]}
    assert rows["recent"] == ["window", "of", "5"]
    assert rows["lead_done"][0] == "integer"


def test_explain_says_where_counters_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The initial state's on_enter runs as a session starts: explain said `initial 5` for a counter
    every session starts at 0."""
    text = (ROOT / "specs/lead_worker.yaml").read_text()
    (tmp_path / "s.yaml").write_text(
        text.replace("  lead_initial: {role: lead,", "  lead_initial: {on_enter: {failures: 0}, role: lead,").replace(
            "failures: {description:", "failures: {initial: 5, description:"
        )
    )
    assert main(["explain", str(tmp_path / "s.yaml")]) == 0
    counters = capsys.readouterr().out.split("\ncounters\n")[1].split("\n\n")[0].splitlines()
    assert counters[3].split()[:4] == ["failures", "integer", "5", "0"]


NOTED = """lwfsm: 1
name: enter
version: 1
roles: {lead: {}, worker: {cheap: true}}
counters: {n: {initial: 5}, m: {initial: 2}}
events: {ok: {}, bad: {}}
states:
  w: {role: worker, on_enter: {n: 0, m: m + 1}}
  l: {role: lead}
initial: w
transitions:
  - {event: bad, source: w, dest: l}
  - {event: ok, source: w}
  - {event: ok, source: l, dest: w, updates: {n: 3, m: 7}}
  - {event: bad, source: l}
judging: {on_success: ok, on_failure: bad, technical_fallback: {worker: worker}}
"""


def test_validate_notes_what_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Values the entered state's on_enter sets again without reading them (on_enter runs after the updates,
    and as a session starts) and a role falling back to itself do nothing: said, and still loaded (a spec
    that has them runs as it did). `m`, which on_enter reads, is no note."""
    (tmp_path / "s.yaml").write_text(NOTED)
    assert main(["validate", str(tmp_path / "s.yaml")]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  note: ")]
    assert [n.split(": ", 3)[2:] for n in notes] == [
        [
            "transitions[2].updates.n",
            "this update of 'n' never shows: state 'w' sets it on entering (n = 0), after the transition's updates",
        ],
        [
            "counters.n.initial",
            "this initial value of 'n' never shows: the initial state 'w' sets it on entering (n = 0)",
        ],
        [
            "judging.technical_fallback.worker",
            "role 'worker' falls back to itself, which changes nothing: name another role, or leave it out",
        ],
    ]
    assert all(n.startswith(f"  note: {tmp_path / 's.yaml'}:") for n in notes)  # located
    assert main(["validate", DEFAULT]) == 0
    assert "note" not in capsys.readouterr().out


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "lwfsm spec"
    assert "transitions" in schema["required"]


def test_python_dash_m_and_usage_errors() -> None:
    out = subprocess.run([sys.executable, "-m", "lwfsm", "validate", DEFAULT], capture_output=True, text=True)
    assert out.returncode == 0
    assert "ok: lead_worker" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lwfsm", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice: 'frobnicate'" in out.stderr


def test_explain_shows_the_judging_rules_even_when_the_spec_has_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "specs" / "lead_worker.yaml").read_text()
    (tmp_path / "s.yaml").write_text(
        text[: text.index("# How every front end judges")] + text[text.index("invariants:") :]
    )
    assert main(["explain", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert "judging (the spec has no judging: section; these are the defaults)" in out
    assert "technical fallback: none" in out
    assert "a turn judged environment fires turn_completed (default)" in out
    assert "a turn judged rejected fires failure (default)" in out


@pytest.mark.parametrize("name", ["lead_worker", "planning", "escalation", "reviewer", "window", "budget"])
def test_demo_runs_on_every_shipped_spec(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("litellm")
    assert main(["demo", "--spec", name]) == 0
    assert "the same tokens on the lead alone" in capsys.readouterr().out


def test_demo_without_the_litellm_extra_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['litellm'] = None; from lwfsm.cli import main; raise SystemExit(main(['demo']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert 'pip install "lwfsm[litellm]"' in out.stderr
    assert "Traceback" not in out.stderr


# -- serve --check-only: a deploy pipeline's gate --


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The roles bound as serve needs them (--check-only checks the bindings too)."""
    monkeypatch.setenv("LWFSM_LEAD_MODEL", "openai/lead")
    monkeypatch.setenv("LWFSM_WORKER_MODEL", "openai/worker")
    monkeypatch.setenv("LWFSM_WORKER_API_BASE", "http://127.0.0.1:9/v1")  # keyless: a local server


@pytest.mark.usefixtures("bound")
def test_serve_check_only_passes_a_shipped_spec_binding_and_opening_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import socket

    db = tmp_path / "s.db"
    with socket.socket() as taken:  # serve would refuse this port: --check-only must not try it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--check-only", DEFAULT, "--port", port, "--store", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{DEFAULT}: lead_worker (lead_turns=3, failure_threshold=2, fallback_turns=2): 11 reachable "
        "configurations (counters saturated above lead_done 3, failures 2, fallback_done 2): ok"
    ]
    assert not db.exists()


def test_serve_check_only_fails_an_invalid_spec_with_its_located_message(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(INVALID / "bad_state_name.yaml")
    assert main(["serve", "--check-only", bad]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{bad}:18:3: states.lead-initial: 'lead-initial' is not a usable name")
    assert "Traceback" not in captured.err


@pytest.mark.usefixtures("bound")
def test_serve_check_only_fails_a_named_key_variable_that_is_not_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LWFSM_LEAD_API_KEY_ENV", "LEAD_KEY_NOT_SET")
    monkeypatch.delenv("LEAD_KEY_NOT_SET", raising=False)
    assert main(["serve", "--check-only", DEFAULT]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lwfsm serve: LEAD_KEY_NOT_SET (the key of the lead model openai/lead) not set: set it,")
    monkeypatch.delenv("LWFSM_LEAD_MODEL")
    assert main(["serve", "--check-only", DEFAULT]) == 1
    assert "no model for role 'lead' of spec 'lead_worker': set LWFSM_LEAD_MODEL" in capsys.readouterr().err


@pytest.mark.usefixtures("bound")
def test_serve_check_only_fails_a_gateway_key_variable_that_is_not_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate passed, and the deploy it let through failed at start-up: serve refuses to start without
    the gateway key's variable."""
    monkeypatch.delenv("GW_KEY_NOT_SET", raising=False)
    assert main(["serve", "--check-only", DEFAULT, "--api-key-env", "GW_KEY_NOT_SET"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "lwfsm serve: --api-key-env GW_KEY_NOT_SET: that variable is not set (it should hold the gateway key)\n"
    )
    monkeypatch.setenv("GW_KEY_NOT_SET", "a-key")
    assert main(["serve", "--check-only", DEFAULT, "--api-key-env", "GW_KEY_NOT_SET"]) == 0


@pytest.mark.usefixtures("bound")
def test_serve_check_only_fails_a_spec_with_a_finding(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = Path(DEFAULT).read_text()
    old = "{event: failure, source: lead_initial, updates: {lead_done: lead_done + 1}}"
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(
        text.replace(
            old, "{event: failure, source: lead_initial, updates: {lead_done: lead_done + 1, failures: failures + 1}}"
        )
    )
    assert main(["serve", "--check-only", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(
        ": 15 reachable configurations (counters saturated above lead_done 3, "
        "failures 2, fallback_done 2): 2 finding(s)"
    )
    assert "  invariant: invariant 'lead_done < lead_turns and failures == 0' is violated" in out
    assert "shortest path: failure" in out


@pytest.mark.usefixtures("bound")
def test_serve_check_only_refuses_a_provider_litellm_does_not_know(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # it would have answered every worker call with a 400, as if the client's request were wrong
    monkeypatch.setenv("LWFSM_WORKER_MODEL", "opnai/worker")
    assert main(["serve", "--check-only", DEFAULT]) == 1
    assert capsys.readouterr().err == (
        "lwfsm serve: the worker model 'opnai/worker' names provider 'opnai', which LiteLLM does not know "
        "(did you mean 'openai'?): set LWFSM_WORKER_MODEL to 'provider/model'\n"
    )
    monkeypatch.setenv("LWFSM_WORKER_MODEL", "ollama/llama3")  # one LiteLLM calls
    assert main(["serve", "--check-only", DEFAULT]) == 0


@pytest.mark.usefixtures("bound")
def test_serve_check_only_checks_the_params_serve_would_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # lead_turns=0 leaves lead_initial unreachable, which the spec uses at its defaults: a note, not a finding
    # (a deploy pipeline or a rollout with these valid params was refused)
    assert main(["serve", "--check-only", DEFAULT, "--set", "lead_turns=0"]) == 0
    out = capsys.readouterr().out
    assert "(lead_turns=0, failure_threshold=2, fallback_turns=2): 8 reachable configurations" in out
    assert "  note: with these params, state 'lead_initial' is never reached (unreachable_state; used at" in out
    monkeypatch.setenv("LWFSM_PARAM_LEAD_TURNS", "0")
    assert main(["serve", "--check-only", DEFAULT]) == 0
    assert "(lead_turns=0," in capsys.readouterr().out
    monkeypatch.setenv("LWFSM_PARAM_LEAD_TURNS", "many")
    assert main(["serve", "--check-only", DEFAULT]) == 1
    assert "LWFSM_PARAM_LEAD_TURNS='many' is not an integer (param 'lead_turns')" in capsys.readouterr().err


def test_a_list_of_specs_goes_on_after_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    window = str(ROOT / "specs" / "window.yaml")
    assert main(["check", DEFAULT, "--set", "lead_turns=2", window]) == 0
    out = capsys.readouterr().out
    assert "lead_worker (lead_turns=2" in out
    assert "window (lead_turns=2" in out
    assert main(["validate", DEFAULT, "--set", "lead_turns=2", "--", window]) == 0  # "--" then positionals
    assert "window v1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:  # a command that takes one spec still refuses a second
        main(["explain", DEFAULT, "--set", "lead_turns=2", window])
    assert usage.value.code == 2
    assert f"unrecognized arguments: {window}" in capsys.readouterr().err
