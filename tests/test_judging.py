"""The turn judge: per-agent readers, kinds of verdict with their evidence, and the judge measured.

The floors are measured on the generated corpus (tests/judging/generated.jsonl.gz: requests real
Claude Code, Codex and aider runs sent, over scripted upstreams and small real repositories; see
tests/judging/generate.py). The public-transcript manifest (tests/judging/manifest.jsonl) holds
provenance and labels only; its figures are measured on demand with `lwfsm judge eval` once its
transcripts are fetched (`lwfsm judge sources`; the README says how).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwfsm import Engine, Spec, SpecError, load_spec
from lwfsm.cli import judging, main
from lwfsm.cli.judging import Result, evaluate, read_lines
from lwfsm.turn import TurnCore
from lwfsm.turn.agents import AGENTS, KINDS, aider, base, words
from lwfsm.turn.judge import judge

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "tests" / "judging" / "generated.jsonl.gz"
MANIFEST = ROOT / "tests" / "judging" / "manifest.jsonl"
# the keys judging reads, so generated messages reach the readers' paths
FIELDS = (
    "role",
    "content",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "id",
    "tool_call_id",
    "is_error",
    "type",
    "text",
)


def figures(results: list[Result]) -> dict[str, tuple[float, float]]:
    """(precision, recall) of `failure`, per agent and overall."""
    by: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by[r.agent].append(r)
        by["overall"].append(r)
    out = {}
    for agent, rs in by.items():
        tp = sum(r.failed and r.said_failed for r in rs)
        said, failed = sum(r.said_failed for r in rs), sum(r.failed for r in rs)
        out[agent] = (tp / said if said else 1.0, tp / failed if failed else 1.0)
    return out


def test_the_generated_corpus_meets_the_floors() -> None:
    results = list(evaluate(TurnCore(Engine(load_spec("lead_worker"))), read_lines(GENERATED)))
    assert len(results) >= 200
    assert {r.agent for r in results} == {"claude_code", "codex", "aider"}
    for agent, (precision, recall) in figures(results).items():
        floor = (0.90, 0.85) if agent == "overall" else (0.80, 0.80)
        assert precision >= floor[0], (agent, precision)
        assert recall >= floor[1], (agent, recall)


def test_the_manifest_holds_provenance_and_labels_never_transcripts() -> None:
    rows = read_lines(MANIFEST)
    figures_table = (ROOT / "README.md").read_text()  # each part has its row of figures there
    assert len(rows) >= 600
    assert len({r["agent"] for r in rows}) >= 5
    assert len({r["id"] for r in rows}) == len(rows)
    # a turn is labelled once, and a later part's file is in that part only: the same bytes under another
    # repository's name (renamed or copied) counted their turns twice, in a part that was not fresh
    assert len({(r["sha256"], json.dumps(r["locator"], sort_keys=True)) for r in rows}) == len(rows)
    parts: dict[str, set[str]] = {}
    for r in rows:
        parts.setdefault(r["sha256"], set()).add(r["split"] if r["split"].startswith("holdout") else "holdout")
    assert all(len(p) == 1 for p in parts.values())
    for r in rows:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}:.+", r["source"]), r["id"]
        assert re.fullmatch(r"[0-9a-f]{64}", r["sha256"]), r["id"]
        assert r["kind"] in KINDS, r["id"]
        assert r["second"] in KINDS, r["id"]
        assert f"| `{r['split']}`" in figures_table, r["id"]
        assert r["agent"] in AGENTS, r["id"]
        assert len(r["rationale"]) <= 240, r["id"]  # one line of ours, never a transcript's text


def test_explain_reads_each_captured_agent(capsys: pytest.CaptureFixture[str]) -> None:
    for agent in ("claude_code", "codex", "aider"):
        assert main(["judge", "explain", str(ROOT / "tests" / "agent_traffic" / f"{agent}.json")]) == 0
        out = capsys.readouterr().out
        assert f"agent {agent}; verdict " in out, out
    assert main(["judge", "explain", str(ROOT / "tests" / "agent_traffic" / "aider.json")]) == 0
    out = capsys.readouterr().out
    assert "verdict task_failure, fires failure\n  rule:     aider.lint" in out
    assert "rule:     aider.test_output" in out
    # what the gateway judges no turn from, told apart as the gateway tells them
    assert main(["judge", "explain", str(ROOT / "tests" / "agent_traffic" / "claude_code.json")]) == 0
    out = capsys.readouterr().out
    assert "[1]: a HEAD request: no model call, no turn to judge" in out
    assert "[9]: a token count: no model call, no turn to judge" in out
    assert "[13]: a side call (title): the gateway serves it apart, no turn to judge" in out
    assert "[22]: a side call (compaction): the gateway serves it apart, no turn to judge" in out
    # Claude Code resuming a session killed after a tool's result: it sends the result, its placeholder
    # reply ("No response requested.", no model's) and the person's next words. The turn judged is the
    # model's call with its result: a build that passed is ok, one that failed is a failure (it was ok)
    assert "[23]: agent claude_code; verdict ok" in out
    assert "[24]: agent claude_code; verdict task_failure, fires failure\n  rule:     claude_code.exit_status=2" in out


def test_every_transcript_reader_has_its_locators_checked() -> None:
    from lwfsm.cli.judging import LOCATORS
    from lwfsm.turn.agents import TRANSCRIPTS

    assert set(LOCATORS) == set(TRANSCRIPTS)  # a reader added without them would crash `judge eval`


def test_explain_says_what_an_ok_verdict_passed_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ok verdict on a failed run (the red phase) printed no rule, and looked like a miss (a user's trial)."""
    messages = [
        {"role": "user", "content": "the parser test fails, fix it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pytest -q"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "Exit code 1\n1 failed"}
            ],
        },
    ]
    capture = {
        "headers": {"user-agent": "claude-cli/2.1.197"},
        "body": {"model": "m", "max_tokens": 9, "messages": messages},
    }
    (tmp_path / "red.json").write_text(json.dumps(capture))
    assert main(["judge", "explain", str(tmp_path / "red.json")]) == 0
    out = capsys.readouterr().out
    assert "verdict ok, fires turn_completed\n  read:     message 1: pytest -q (exit 1, flagged)\n" in out
    assert "a failed status judged ok: a probe answering no, the red phase" in out


# -- the hard cases, one conversation each (OpenAI-shaped, a generic tool-calling agent) --


def bash(command: str, cid: str = "c1") -> dict[str, Any]:
    call = {"id": cid, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def result(text: str, cid: str = "c1") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "content": text}


EDIT = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "e1", "type": "function", "function": {"name": "edit_file", "arguments": '{"path": "src/parse.py"}'}}
    ],
}


def verdict(*messages: dict[str, Any], spec: Spec | None = None) -> tuple[str | None, str | None, Any]:
    """(event, kind, evidence) of the last assistant message's turn, judged from what follows it."""
    core = TurnCore(Engine(spec or load_spec("lead_worker")))
    msgs = [{"role": "user", "content": "fix the parser"}, *messages]
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    conv = core.start()
    core.settle(conv, core.plan(conv, msgs[:last]), role="lead", model="m", reply=msgs[last])
    v = core.verdict(conv, msgs)
    return v.event, v.kind, v.evidence


@pytest.mark.parametrize(
    ("command", "output", "kind"),
    [
        ("grep -rn parse_header src/", "exit code 1\n", "ok"),  # a search that found nothing
        ("test -f setup.cfg", "Exit code 1", "ok"),
        ("ls docs", "Exit code 2\nls: cannot access 'docs': No such file or directory", "ok"),
        ("make build || true", "Exit code 1\nmake: *** [build] Error 1", "ok"),
        ("python -m pytest -q", "Exit code 1\nFAILED tests/test_parse.py::test_header\n1 failed", "task_failure"),
        (
            "python -m pytest -q | tail -3",
            "FAILED tests/test_parse.py::test_header\n1 failed, 4 passed",
            "task_failure",
        ),
        ("python -m pytest -q | tail -3", "5 passed in 0.12s", "ok"),
        ("cat src/parse.py", "def f():\n    try:\n        g()\n    except ValueError:\n        raise\n", "ok"),
        ("pip install requests", "Exit code 1\nERROR: No matching distribution found for requests", "environment"),
        # pip told by the machine's settings (PIP_REQUIRE_VIRTUALENV) to install nothing outside one
        ("pip install -e .", "Exit code 1\nERROR: Could not find an activated virtualenv (required).", "environment"),
        # a database refusing the machine's credentials
        (
            "vendor/bin/phpunit",
            "Exit code 2\nPDOException: SQLSTATE[HY000] [1045] Access denied for user 'cms'@'localhost'",
            "environment",
        ),
        ("sleep 600", "Command timed out after 2m 0.0s", "task_failure"),
    ],
)
def test_outcomes_before_words(command: str, output: str, kind: str) -> None:
    _, got, evidence = verdict(EDIT, result("ok", "e1"), bash(command), result(output))
    assert got == kind, evidence


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        ("Now let's run the test to see it fail (RED phase):", "ok"),
        ("Running the new tests; I expect them to fail until the chunker exists.", "ok"),
        ("Let me run the tests to verify the fix.", "task_failure"),
        ("", "task_failure"),
        (
            "RED phase confirmed earlier. Now the GREEN phase: I've implemented chunker.ts. Running the tests:",
            "task_failure",
        ),
        ("Rerunning the tests - we should no longer see them fail.", "task_failure"),
        ("Let me run the tests again; I don't expect them to fail now.", "task_failure"),
        ("I added a test (we expect it to fail with ValueError). Running the suite:", "task_failure"),
    ],
)
def test_tests_the_reply_runs_to_see_them_fail_are_the_red_phase(said: str, kind: str) -> None:
    run = {**bash("npm test -- chunker.test.ts"), "content": said or None}
    missing = "Exit code 1\nFAIL src/chunker.test.ts\n  Cannot find module './chunker' from 'src/chunker.test.ts'"
    assert verdict(EDIT, result("ok", "e1"), run, result(missing))[1] == kind


@pytest.mark.parametrize(
    ("described", "kind"),
    [
        ("Run test to confirm it fails (no chunker.ts yet)", "ok"),
        ("Confirm ChunkerCard test fails", "ok"),
        ("Run the chunker tests", "task_failure"),
        ("Check that it fails gracefully on empty input", "task_failure"),
        ("Run tests to ensure no tests fail", "task_failure"),
        ("Run full suite to verify no tests fail after refactor", "task_failure"),
        ("Verify it fails closed when the token is missing", "task_failure"),
        ("Confirm all tests fail (no implementation yet)", "ok"),
        ("Verify they fail for the right reason", "ok"),
        ("Run RED test (expect failure)", "ok"),
    ],
)
def test_a_command_described_as_run_to_see_it_fail_is_the_red_phase(described: str, kind: str) -> None:
    # the model's own words for the call (Claude Code's `description`), with no text in the reply; and
    # pnpm's test command as much a test run as npm's
    args = json.dumps({"command": "pnpm test src/chunker.test.ts", "description": described})
    run = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "function": {"name": "bash", "arguments": args}}],
    }
    missing = "Exit code 1\nFAIL src/chunker.test.ts\n  Cannot find module './chunker' from 'src/chunker.test.ts'"
    assert verdict(EDIT, result("ok", "e1"), run, result(missing))[1] == kind


def test_a_red_phase_whose_test_does_not_parse_fails() -> None:
    run = {**bash("python -m pytest tests/test_chunker.py"), "content": "Run the test to see it fail (RED phase):"}
    broken = (
        'Exit code 2\n  File "tests/test_chunker.py", line 3\n    def test(:\n           ^\nSyntaxError: invalid syntax'
    )
    assert verdict(EDIT, result("ok", "e1"), run, result(broken))[1] == "task_failure"


def test_a_reproduction_fails_in_the_red_phase_only() -> None:
    crash = 'Exit code 1\nTraceback (most recent call last):\n  File "repro.py", line 3\nZeroDivisionError: x'
    assert verdict(bash("python repro.py"), result(crash))[1] == "ok"  # nothing changed yet: it shows the bug
    after_fix = verdict(
        bash("python repro.py", "r1"),
        result(crash, "r1"),
        EDIT,
        result("ok", "e1"),
        bash("python repro.py"),
        result(crash),
    )
    event, kind, evidence = after_fix
    assert (event, kind) == ("failure", "task_failure")
    assert (evidence.rule, evidence.message, evidence.line) == ("generic.exit_status=1", 0, 2)
    assert evidence.excerpt == "Traceback (most recent call last):"


def test_a_reproduction_printing_after_a_change_what_it_printed_before_any_fails() -> None:
    """The fix changed nothing the reproduction shows: it exits 0 and prints the bug as before."""
    wrong = "Exit code 0\nparse('a,\"b,c\"') = ['a', '\"b', 'c\"']\nexpected ['a', 'b,c']"
    fixed = "Exit code 0\nparse('a,\"b,c\"') = ['a', 'b,c']\nexpected ['a', 'b,c']"
    red = (bash("python reproduce.py", "r1"), result(wrong, "r1"))
    event, kind, evidence = verdict(*red, EDIT, result("ok", "e1"), bash("python  reproduce.py"), result(wrong))
    assert (event, kind, evidence.rule, evidence.message) == (
        "failure",
        "task_failure",
        "generic.unchanged_reproduction",
        0,
    )
    assert verdict(*red, EDIT, result("ok", "e1"), bash("python reproduce.py"), result(fixed))[1] == "ok"
    assert verdict(*red, bash("python reproduce.py"), result(wrong))[1] == "ok"  # nothing changed: a look
    # compared with what ran before the first change only: once the output moved, the same again is no news
    later = (EDIT, result("ok", "e1"), bash("python reproduce.py", "r2"), result(fixed, "r2"), EDIT, result("ok", "e1"))
    assert verdict(*red, *later, bash("python reproduce.py"), result(fixed))[1] == "ok"
    # a change and the run in one reply
    both = {
        "role": "assistant",
        "content": None,
        "tool_calls": [EDIT["tool_calls"][0], bash("python reproduce.py")["tool_calls"][0]],
    }
    assert verdict(*red, both, result("ok", "e1"), result(wrong))[1] == "task_failure"
    # only a reproduction's output says what the fix should have changed (a listing, a test run's, no)
    assert (
        verdict(
            bash("ls src", "r1"),
            result("Exit code 0\nparse.py  util.py", "r1"),
            EDIT,
            result("ok", "e1"),
            bash("ls src"),
            result("Exit code 0\nparse.py  util.py"),
        )[1]
        == "ok"
    )


def test_a_reproduction_unchanged_by_no_change_of_its_own_is_no_news() -> None:
    """Found by a review: what printed the same for reasons other than a fix that changed nothing."""
    wrong = "Exit code 0\nparse('a,\"b,c\"') = ['a', '\"b', 'c\"']\nexpected ['a', 'b,c']"
    red = (bash("python reproduce.py", "r1"), result(wrong, "r1"))
    fixed = (EDIT, result("ok", "e1"))
    # a look again at what the last run after the change showed, nothing changed since (once is a failure)
    again = (*red, *fixed, bash("python reproduce.py", "r2"), result(wrong, "r2"))
    assert verdict(*again, bash("python reproduce.py"), result(wrong))[1] == "ok"
    # reads of the script, and runs that print nothing but the agent's frame or SWE-agent's closing line
    assert verdict(*red, *fixed, bash("cat reproduce.py"), result(wrong))[1] == "ok"
    for quiet in ("Exit code 0\n", "Exit code 0\nScript completed successfully, no errors.\n"):
        assert (
            verdict(
                bash("python reproduce.py", "r1"),
                result(quiet, "r1"),
                *fixed,
                bash("python reproduce.py"),
                result(quiet),
            )[1]
            == "ok"
        )
    # an undo: the person asked for it, or git put the files back
    undo = ({"role": "user", "content": "Please revert your change"}, EDIT, result("ok", "e1"))
    assert verdict(*red, *fixed, *undo, bash("python reproduce.py"), result(wrong))[1] == "ok"
    stash = (bash("git stash", "g1"), result("Exit code 0\nSaved working directory", "g1"))
    assert verdict(*red, *fixed, *stash, bash("python reproduce.py"), result(wrong))[1] == "ok"


def test_a_reproduction_unchanged_read_as_a_second_review_asked() -> None:
    wrong = "Exit code 1\nparse('a,\"b,c\"') = ['a', '\"b', 'c\"']\nexpected ['a', 'b,c']"
    red = (bash("python reproduce.py", "r1"), result(wrong, "r1"))
    fixed = (EDIT, result("ok", "e1"))
    # the same output with another status is news (the script's own verdict moved)
    passed = wrong.replace("Exit code 1", "Exit code 0")
    assert verdict(*red, *fixed, bash("python reproduce.py"), result(passed))[1] == "ok"
    # the reply itself puts the code back first: it looks at the code as given
    stash = bash("git stash", "g1")["tool_calls"][0]
    run = bash("python reproduce.py")["tool_calls"][0]
    both = {"role": "assistant", "content": None, "tool_calls": [stash, run]}
    quiet = (bash("python reproduce.py", "r1"), result(passed, "r1"))  # a script that prints the bug, exit 0
    assert verdict(*quiet, *fixed, bash("python reproduce.py"), result(passed))[1] == "task_failure"
    assert verdict(*quiet, *fixed, both, result("Saved", "g1"), result(passed))[1] == "ok"
    # a run before the edit in one reply showed the code as given: the next unchanged run after it failed
    run_then_edit = {
        "role": "assistant",
        "content": None,
        "tool_calls": [bash("python reproduce.py", "r1")["tool_calls"][0], EDIT["tool_calls"][0]],
    }
    assert (
        verdict(run_then_edit, result(wrong, "r1"), result("ok", "e1"), bash("python reproduce.py"), result(wrong))[1]
        == "task_failure"
    )
    # what the script printed last before the change is what counts (it was rewritten to show the bug)
    resolved = "Exit code 0\nIssue resolved: the parser keeps quoted commas"
    shows = "Exit code 0\nIssue reproduced: the parser splits quoted commas"
    rewrite = {
        **EDIT,
        "tool_calls": [
            {
                **EDIT["tool_calls"][0],
                "id": "w1",
                "function": {"name": "edit_file", "arguments": '{"path": "reproduce.py"}'},
            }
        ],
    }
    steps = (bash("python reproduce.py", "r1"), result(resolved, "r1"), rewrite, result("ok", "w1"))
    steps += (bash("python reproduce.py", "r2"), result(shows, "r2"), *fixed)
    assert verdict(*steps, bash("python reproduce.py"), result(resolved))[1] == "ok"
    assert verdict(*steps, bash("python reproduce.py"), result(shows))[1] == "task_failure"
    # a scratch file the editor writes under /tmp is not the project's code
    scratch = {
        **EDIT,
        "tool_calls": [
            {**EDIT["tool_calls"][0], "function": {"name": "edit_file", "arguments": '{"path": "/tmp/inspect.py"}'}}
        ],
    }
    assert verdict(*red, scratch, result("ok", "e1"), bash("python reproduce.py"), result(wrong))[1] == "ok"


@pytest.mark.parametrize(
    ("between", "kind"),
    [
        ((bash("git checkout main", "g1"), result("Exit code 0\nSwitched to branch 'main'", "g1")), "task_failure"),
        ((bash("git restore -S src/parse.py", "g1"), result("Exit code 0", "g1")), "task_failure"),
        ((bash("grep -rn 'git stash' docs", "g1"), result("Exit code 1", "g1")), "task_failure"),
        ((bash("git apply -R fix.patch", "g1"), result("Exit code 0", "g1")), "ok"),
        ((bash("git checkout -- src/parse.py", "g1"), result("Exit code 0", "g1")), "ok"),
        (({"role": "user", "content": "No, revert that change."}, EDIT, result("ok", "e1")), "ok"),
        (({"role": "user", "content": "That broke the build, undo it"}, EDIT, result("ok", "e1")), "ok"),
        (
            ({"role": "user", "content": "Now handle the transaction rollback too"}, EDIT, result("ok", "e1")),
            "task_failure",
        ),
    ],
)
def test_what_puts_the_code_back_as_a_third_review_wrote_it(between: tuple[dict[str, Any], ...], kind: str) -> None:
    wrong = "Exit code 0\nparse('a,\"b,c\"') = ['a', '\"b', 'c\"']\nexpected ['a', 'b,c']"
    red = (bash("python reproduce.py", "r1"), result(wrong, "r1"), EDIT, result("ok", "e1"))
    assert verdict(*red, *between, bash("python reproduce.py"), result(wrong))[1] == kind


def test_an_output_of_many_lines_is_read_in_bounded_time() -> None:
    """One pattern over a whole output, anchored at each line, scanned on across the blank lines after it
    from every line's start (71 s at 100,000 newlines)."""
    import signal

    def hang(*_: object) -> None:
        raise TimeoutError("reading 100,000 blank lines did not finish within 5 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        red = (bash("python reproduce.py", "r1"), result("Exit code 0\nstart\n" + "\n" * 100_000 + "end", "r1"))
        assert verdict(*red, EDIT, result("ok", "e1"), bash("python reproduce.py"), result("Exit code 0\nstart\nend"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_reproductions_run_again_and_again_are_read_once_per_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work: the runs before the reply are read once for all its reproduction runs, and each of
    its calls is asked once whether it changed the code (per run, both were quadratic: 94 s at 30,000)."""
    built: list[int] = []
    reproductions = base.Reader._reproductions
    monkeypatch.setattr(base.Reader, "_reproductions", lambda self, b: built.append(1) or reproductions(self, b))
    asked: list[int] = []
    changes = base._changes
    monkeypatch.setattr(base, "_changes", lambda o: asked.append(1) or changes(o))
    calls = [bash("python reproduce.py", f"r{n}")["tool_calls"][0] for n in range(2_000)]
    reply = {"role": "assistant", "content": None, "tool_calls": calls}
    history = [
        m for n in range(500) for m in (bash("python reproduce.py", f"h{n}"), result(f"Exit code 0\nrun {n}", f"h{n}"))
    ]
    messages = [{"role": "user", "content": "fix it"}, *history, EDIT, result("ok", "e1"), reply]
    messages += [result("Exit code 0\nrun 0 and the bug", f"r{n}") for n in range(2_000)]
    judge(reply, messages[len(history) + 4 :], messages=messages)
    assert (len(built), len(asked) <= 2_000) == (1, True)


def test_a_second_look_at_a_counted_failure_counts_nothing() -> None:
    failing = "Exit code 1\nFAILED tests/test_parse.py::test_header\n1 failed"
    first = (EDIT, result("ok", "e1"), bash("python -m pytest -q", "p1"), result(failing, "p1"))
    assert verdict(*first)[1] == "task_failure"
    assert verdict(*first, bash("python -m pytest -q tests/test_parse.py -x", "p2"), result(failing, "p2"))[1] == "ok"
    again = (*first, EDIT, result("ok", "e1"), bash("python -m pytest -q", "p3"), result(failing, "p3"))
    assert verdict(*again)[1] == "task_failure"  # a new attempt that fails again is news


def test_a_new_run_failing_after_a_persons_complaint_is_no_look() -> None:
    """After the person says the change broke something, the model's next runs are attempts too: a script
    it runs for another purpose that crashes failed (the manifest's verdicts did not depend on reading
    such runs as looks; holdout51 had two failed runs read so)."""
    complaint = {"role": "user", "content": "It still doesn't work: the login page shows a 500."}
    crash = (
        'Exit code 1\nTraceback (most recent call last):\n  File "seed.py", line 3\nImproperlyConfigured: no settings'
    )
    turns = (EDIT, result("ok", "e1"), {"role": "assistant", "content": "Fixed the view."}, complaint)
    assert verdict(*turns, bash("python seed.py", "s1"), result(crash, "s1"))[1] == "task_failure"
    # a reproduction that shows what the person reported is a look at it, counted with their complaint
    shown = "Exit code 1\nTraceback (most recent call last):\nrequests.exceptions.HTTPError: 500 Server Error"
    assert verdict(*turns, bash("python repro_login.py", "s1"), result(shown, "s1"))[1] == "ok"


def test_a_change_and_its_check_in_one_reply_fail_each_time() -> None:
    failing = "Exit code 1\nFAILED tests/test_parse.py::test_header\n1 failed"
    calls = [
        {"id": f"e{n}", "type": "function", "function": {"name": "edit_file", "arguments": '{"path": "src/parse.py"}'}}
        for n in (1, 2)
    ]
    tests = [{**bash("python -m pytest -q", f"p{n}")["tool_calls"][0]} for n in (1, 2)]

    def both(n: int) -> tuple[dict[str, Any], ...]:
        reply = {"role": "assistant", "content": None, "tool_calls": [calls[n], tests[n]]}
        return reply, result("ok", f"e{n + 1}"), result(failing, f"p{n + 1}")

    assert verdict(*both(0))[1] == "task_failure"  # not the red phase: the reply changed the code first
    assert verdict(*both(0), *both(1))[1] == "task_failure"  # not a second look: it changed the code again
    fix_and_run = bash("sed -i 's/tab/\\t/' src/parse.py && python -m pytest -q", "p3")
    assert verdict(*both(0), fix_and_run, result(failing, "p3"))[1] == "task_failure"
    look_again = bash("python -m pytest -q tests/test_parse.py", "p3")  # nothing changed since: a look
    assert verdict(*both(0), look_again, result(failing, "p3"))[1] == "ok"


def test_a_reply_of_many_calls_is_read_once_each_for_its_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work on a hostile body: each failed run asks whether the reply changed the code before it,
    and the calls before it are looked at once in all (asked afresh each time it was quadratic: 1 s at
    1,000 calls)."""
    from lwfsm.turn.agents import base

    looked: list[int] = []
    changes = base._changes
    monkeypatch.setattr(base, "_changes", lambda o: looked.append(1) or changes(o))
    calls, after = [], []
    for n in range(300):
        calls += [bash("ls src", f"a{n}")["tool_calls"][0], bash("python -m pytest -q", f"b{n}")["tool_calls"][0]]
        after += [result("Exit code 0\nparse.py", f"a{n}"), result("Exit code 1\nFAILED t::x\n1 failed", f"b{n}")]
    reply = {"role": "assistant", "content": None, "tool_calls": calls}
    assert verdict(reply, *after)[1] == "ok"  # the red phase: nothing changed
    assert 0 < len(looked) <= len(calls)


def test_an_openhands_edit_and_a_failing_run_in_one_reply_fail() -> None:
    edit = {
        "id": "e1",
        "type": "function",
        "function": {
            "name": "str_replace_editor",
            "arguments": json.dumps({"command": "str_replace", "path": "/workspace/src/parse.py", "old_str": "a"}),
        },
    }
    test = bash("python -m pytest -q", "p1")["tool_calls"][0] | {
        "function": {"name": "execute_bash", "arguments": json.dumps({"command": "python -m pytest -q"})}
    }
    failing = "FAILED tests/test_parse.py::test_header\n1 failed\n[The command completed with exit code 1.]"
    reply = {"role": "assistant", "content": None, "tool_calls": [edit, test]}
    core = TurnCore(Engine(load_spec("lead_worker")), agent="openhands")
    msgs = [{"role": "user", "content": "fix the parser"}, reply]
    conv = core.start()
    core.settle(conv, core.plan(conv, msgs[:1]), role="lead", model="m", reply=reply)
    after = [result("The file /workspace/src/parse.py has been edited.", "e1"), result(failing, "p1")]
    assert core.verdict(conv, [*msgs, *after]).kind == "task_failure"


def test_a_refusal_before_claude_codes_placeholder_is_the_replys_outcome() -> None:
    # Resuming after the person refused a call, Claude Code puts "No response requested." in as the
    # assistant's message and sends it on: the refusal before it is what the pending reply came to.
    # (Claude Code's Anthropic messages, read as the gateway's codec gives them to the turn core.)
    from lwfsm.gateway.codec.messages import anthropic_messages

    def chat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return anthropic_messages({"messages": messages})

    push = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "git push"}}
    sent = {"role": "assistant", "content": [push]}
    (reply,) = chat([sent])
    refused = "The user doesn't want to proceed with this tool use. The tool use was rejected."
    core = TurnCore(Engine(load_spec("lead_worker")), agent="claude_code")
    msgs = [{"role": "user", "content": "push it"}, sent]
    conv = core.start()
    core.settle(conv, core.plan(conv, msgs[:1]), role="worker", model="m", reply=reply)
    after = [
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": refused, "is_error": True}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "No response requested."}]},
        {"role": "user", "content": "open a pull request instead"},
    ]
    v = core.verdict(conv, chat([*msgs, *after]))
    assert (v.kind, v.evidence.rule if v.evidence else None) == ("rejected", "claude_code.rejected")
    # `judge explain` on the same request reads the same reply
    reply_of, after_of = judging.request_turn({"messages": [*msgs, *after]})[:2]
    assert reply_of == sent
    assert len(after_of) == 2
    # a model's own reply of those words is a reply: what came before it is not this turn's
    said = {"role": "assistant", "content": [{"type": "text", "text": "No response requested."}, push]}
    assert core.verdict(conv, chat([*msgs, *after[:1], said, after[2]])).kind == "ok"
    words = {"role": "assistant", "content": "No response requested."}
    core.settle(conv, core.plan(conv, chat([*msgs, *after[:1]])), role="worker", model="m", reply=words)
    thanks = {"role": "user", "content": "thanks, looks good"}
    assert core.verdict(conv, chat([*msgs, *after[:1], words, thanks])).kind == "ok"
    # with no reply but placeholders, what came before the last is not the turn's: the task is not a correction
    task = {"role": "user", "content": "No, that's wrong: the parser must keep tabs. Fix it."}
    assert core.verdict(conv, chat([task, after[1], {"role": "user", "content": "go on"}])).kind == "ok"


@pytest.mark.parametrize(
    "said",
    [
        "Claude requested permissions to write to /tmp/w/NOTES.md, but you haven't granted it yet.",
        "This command requires approval",
        "Permission to use Bash with command git push origin main has been denied.",
        "Write to /var/tmp/x needs approval. The path is outside the working directories for this session.",
    ],
)
def test_claude_codes_permission_layer_declining_a_call_is_a_rejection(said: str) -> None:
    # Claude Code's own words when the person's permission settings (or -p mode) decline a call, flagged
    # is_error: a rejection, as the corpus labels them; they were read as the tool failing (4 of 5)
    refused = {**result(said), "is_error": True}
    assert verdict(bash("curl -sI https://pypi.org/simple/tabulate/"), refused)[:2] == ("failure", "rejected")


def test_corrections_and_rejections_are_their_own_kinds() -> None:
    said = {"role": "assistant", "content": "Done: the header parser handles tabs now."}
    event, kind, evidence = verdict(said, {"role": "user", "content": "No, it still fails on tabs."})
    assert (event, kind, evidence.rule) == ("failure", "user_correction", "generic.correction")
    assert verdict(said, {"role": "user", "content": "Thanks. Now add a test for CRLF."})[1] == "ok"
    refused = result("The user doesn't want to proceed with this tool use. The tool use was rejected.")
    assert verdict(bash("rm -rf build"), refused)[1] == "rejected"


def test_the_spec_says_what_each_kind_fires() -> None:
    env = (bash("python -c 'import yaml'"), result("Exit code 1\nModuleNotFoundError: No module named 'yaml'"))
    assert verdict(*env)[:2] == ("turn_completed", "environment")  # the default: the lead would hit it too
    text = (ROOT / "specs" / "lead_worker.yaml").read_text()
    strict = Spec.from_text(text.replace("    environment: turn_completed", "    environment: failure"))
    assert verdict(*env, spec=strict)[:2] == ("failure", "environment")
    with pytest.raises(SpecError, match=r"s.yaml:\d+:5: judging.kinds.enviroment: unknown verdict kind 'enviroment' "):
        Spec.from_text(text.replace("    environment: turn_completed", "    enviroment: failure"), source="s.yaml")
    with pytest.raises(SpecError, match=r"judging.kinds.rejected: unknown event 'fail' \(did you mean 'failure'\?\)"):
        Spec.from_text(text.replace("    rejected: failure", "    rejected: fail"), source="s.yaml")


# -- lwfsm judge eval on a manifest: sources are checked, and missing ones say how to fetch them --


def test_eval_checks_each_transcript_before_reading_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = (
        "#### fix the parser\n\nparser.py\n```\nx\n```\n\n> # 1 SEARCH/REPLACE block failed to match!\n\n#### ok\n"
    )
    path = tmp_path / "src" / "someone" / "repo" / ".aider.chat.history.md"
    path.parent.mkdir(parents=True)
    path.write_text(history)
    row = {
        "id": "a-1",
        "agent": "aider",
        "source": "someone/repo@" + "0" * 40 + ":.aider.chat.history.md",
        "sha256": hashlib.sha256(history.encode()).hexdigest(),
        "locator": {"user_block": 1},
        "kind": "task_failure",
    }
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 0
    assert re.search(r"aider\s+1\s+1\s+1\s+0\s+0\s+1.00\s+1.00", capsys.readouterr().out)
    path.write_text(history + "changed")
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    said = capsys.readouterr().err
    assert "row 1 (a-1): " in said
    assert (
        f"its sha256 is {hashlib.sha256((history + 'changed').encode()).hexdigest()}, the manifest's {row['sha256']}"
        in said
    )
    path.unlink()
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    err = capsys.readouterr().err
    assert "missing; fetch it with: git clone https://github.com/someone/repo && git -C repo show 000" in err
    manifest.write_text(json.dumps(row) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")  # a hostile line
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    assert "m.jsonl:2: nested too deeply to read" in capsys.readouterr().err


def test_eval_names_a_turn_no_reader_could_read_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file in a format the reader does not know stopped the whole evaluation with the reader's error
    alone ("Expecting value: line 1 column 1"): no row, no file. Now that turn is named, with its file,
    locator and error, counted as one the judge saw nothing of (a labelled failure is a miss), the
    others judged, and the command exits 1."""
    history = (
        "#### fix the parser\n\nparser.py\n```\nx\n```\n\n> # 1 SEARCH/REPLACE block failed to match!\n\n#### ok\n"
    )
    rollout = "{not a rollout\n"
    rows = []
    for name, text, agent, locator in (
        ("someone/repo/.aider.chat.history.md", history, "aider", {"user_block": 1}),
        ("someone/repo/rollout.jsonl", rollout, "codex", {"line": 1}),
    ):
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        source = "someone/repo@" + "0" * 40 + ":" + name.split("/", 2)[2]
        sha = hashlib.sha256(text.encode()).hexdigest()
        rows.append({"id": agent, "agent": agent, "source": source, "sha256": sha, "locator": locator})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**r, "kind": "task_failure"}) + "\n" for r in rows))
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"overall\s+2\s+2\s+1\s+0\s+1\s+1.00\s+0.50", out)  # the unread failure is a miss
    assert "UNREAD (1:" in out
    assert 'src/someone/repo/rollout.jsonl at {"line": 1}: JSONDecodeError: ' in out
    # a transcript nested too deeply to read is a turn no reader could read, not a crash of the evaluation
    deep = tmp_path / "src" / "someone" / "repo" / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    nested = {**rows[1], "source": rows[1]["source"].replace("rollout.jsonl", "deep.jsonl")}
    nested["sha256"] = hashlib.sha256(deep.read_bytes()).hexdigest()
    manifest.write_text(json.dumps({**nested, "kind": "ok"}) + "\n")
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    assert 'deep.jsonl at {"line": 1}: RecursionError' in capsys.readouterr().out
    manifest.write_text(json.dumps({**rows[0], "locator": None, "kind": "ok"}) + "\n")  # the manifest's error
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    assert "row 1 (aider): its locator must name the turn in its file (user_block), got None" in capsys.readouterr().err
    # a label's typo, a position that is no whole number, a locator of another agent's files: each refused
    for changed, says in (
        (
            {"kind": "task_falure"},
            "row 1 (aider): unknown kind 'task_falure'; a turn's kind is one of ok, task_failure",
        ),
        ({"locator": {"user_block": 1.5}}, "row 1 (aider): a locator's position is a whole number from 0"),
        ({"locator": {"user_block": True}}, "row 1 (aider): a locator's position is a whole number from 0"),
        ({"locator": {"line": 1}}, "row 1 (aider): its locator must name the turn in its file (user_block)"),
    ):
        manifest.write_text(json.dumps({**rows[0], "kind": "ok", **changed}) + "\n")
        assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
        assert says in capsys.readouterr().err
    manifest.write_text(json.dumps({**rows[0], "agent": "goose", "kind": "ok"}) + "\n")
    assert main(["judge", "eval", str(manifest), "--sources", str(tmp_path / "src")]) == 1
    assert "row 1 (aider): no reader of goose's transcript files" in capsys.readouterr().err


def test_judge_sources_prints_no_command_a_manifest_could_turn_into_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its commands are meant for a shell, and a manifest may be anyone's: each field is checked and quoted."""
    row = {"id": "x", "agent": "aider", "kind": "ok", "sha256": "0" * 64}
    for source, says in (
        ("a/b;touch${IFS}/tmp/PWNED;#@" + "0" * 40 + ":f.md", "is not a GitHub owner/repository"),
        ("a/b@$(touch /tmp/PWNED):f.md", "is not a commit"),
        ("a/b@" + "0" * 40 + ":../../../etc/escaped", "is not a path inside the repository"),
        ("a/b@" + "0" * 40 + ":/etc/passwd", "is not a path inside the repository"),
    ):
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(json.dumps({**row, "source": source}) + "\n")
        assert main(["judge", "sources", str(manifest), "--sources", str(tmp_path / "src")]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert says in err
    manifest.write_text(json.dumps({**row, "source": "o/r@" + "a" * 40 + ":dir/it's here.md"}) + "\n")
    assert main(["judge", "sources", str(manifest), "--sources", str(tmp_path / "src")]) == 0
    assert "show 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:dir/it'\"'\"'s here.md' >" in capsys.readouterr().out
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    assert main(["judge", "eval", str(tmp_path / "bin.jsonl")]) == 1
    assert "bin.jsonl:1: not UTF-8 text" in capsys.readouterr().err
    manifest.write_text(json.dumps({"id": "y", "agent": "aider"}) + "\n")
    assert main(["judge", "eval", str(manifest)]) == 1
    assert "row 1: not a labelled turn (an object with its 'kind')" in capsys.readouterr().err


def test_judge_eval_names_a_gz_file_cut_short_or_damaged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    row = {"id": "x", "agent": "aider", "kind": "ok"}
    whole = gzip.compress(b"".join(json.dumps({**row, "n": i}).encode() + b"\n" for i in range(2000)))
    for name, data, says in (
        ("cut.jsonl.gz", whole[: len(whole) // 2], "cut.jsonl.gz:"),
        ("noise.jsonl.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "noise.jsonl.gz:1: cannot read"),
    ):
        (tmp_path / name).write_bytes(data)
        assert main(["judge", "eval", str(tmp_path / name)]) == 1  # a message, not a traceback
        assert says in capsys.readouterr().err


def test_a_front_end_names_its_agent_or_it_is_told_from_the_request() -> None:
    from lwfsm.errors import ConfigError
    from lwfsm.turn.front import Front

    spec = load_spec("lead_worker")
    with pytest.raises(ConfigError, match="agent must be one of claude_code, codex, aider"):
        TurnCore(Engine(spec), agent="cursor")
    front = Front(spec, {"lead": "big", "worker": "small"}, agent="aider")
    assert front.core.agent == "aider"
    said = {"role": "user", "content": "# 1 SEARCH/REPLACE block failed to match!\n..."}
    reply = {"role": "assistant", "content": "parser.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE"}
    assert front.core.judgement(reply, [said]).kind == "task_failure"  # aider's own format
    assert TurnCore(Engine(spec)).judgement(reply, [said]).kind == "ok"  # a generic agent's reader


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=40)
    | st.sampled_from(["Exit code 1", "<returncode>2</returncode>"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(list(FIELDS)), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    reply=json_values,
    after=st.lists(json_values, max_size=5),
    before=st.lists(json_values, max_size=5),
    agent=st.sampled_from([None, *AGENTS]),
)
def test_no_shape_of_messages_breaks_the_judge(
    reply: Any, after: list[Any], before: list[Any], agent: str | None
) -> None:
    """A client controls every byte of the messages: the judge reads what it can and never raises."""
    from lwfsm.turn.judge import judge

    j = judge(reply, after, after, agent=agent, messages=[*before, reply, *after])
    assert j.kind in KINDS


def test_tools_that_are_not_objects_are_passed_over() -> None:
    """The offered tools are read only as far as the names called (a client's list may hold anything);
    arguments that are JSON, `null` too, are well formed."""
    from lwfsm.turn.judge import judge

    tools: list[Any] = [1, "x", None, ["run"], {"function": 5}, {"type": "function", "function": {"name": "run"}}]
    for name, args, kind in (
        ("run", "{}", "ok"),
        ("run", "null", "ok"),
        ("run", "{", "task_failure"),
        ("walk", "{}", "task_failure"),
    ):
        call = {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}
        reply = {"role": "assistant", "content": None, "tool_calls": [call]}
        assert judge(reply, [{"role": "tool", "tool_call_id": "c1", "content": "done"}], tools).kind == kind
    # a list with no object in it offers no names to check a call against
    call = {"id": "c1", "type": "function", "function": {"name": "walk", "arguments": "{}"}}
    reply = {"role": "assistant", "content": None, "tool_calls": [call]}
    for nothing in ([1], ["walk"], [None, "x"], "walk"):
        assert judge(reply, [{"role": "tool", "tool_call_id": "c1", "content": "done"}], nothing).kind == "ok"


GATED = {
    "environment": base.ENVIRONMENT,
    "broken_run": base._BROKEN_RUN,
    "aider_edit_failed": aider.EDIT_FAILED,
    "complaint": base._COMPLAINT,
    "still": words.STILL,
}


@pytest.mark.parametrize("name", list(GATED))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_words_before_a_long_pattern_never_hide_a_match(name: str, data: st.DataObject) -> None:
    """A gated pattern runs only when one of its words is present: every text the pattern matches must
    pass the gate (a new alternative without its word would fail here). ASCII text: the patterns'
    character classes are ASCII."""
    gated = GATED[name]
    text = data.draw(st.from_regex(gated.pattern, alphabet=st.characters(max_codepoint=127)))
    hit = base.first_match(gated.pattern, text)
    assert hit is not None
    assert base.first_match(gated, text) == hit


def test_a_gate_lets_through_what_case_folding_matches_beyond_its_words() -> None:
    # re.I without re.A folds "ſ" to "s": no lowercase word is in such a text
    assert base._COMPLAINT.search("ſtill getting it") is not None
    assert words.STILL.match("the page is ſtill blank") is not None
    # an ASCII pattern's gate holds on any text: a tool's output with a tick is not searched for nothing
    assert base._BROKEN_RUN.pattern.flags & re.A
    assert base._BROKEN_RUN._may("✓ 12 passed") is False


def test_arguments_are_read_from_any_text_and_not_kept_when_they_could_not_be() -> None:
    assert base.arguments(None) == {}
    assert base.arguments("") == {}
    assert base.arguments(bytearray(b'{"a": 1}')) == {"a": 1}
    assert base.arguments(5) is base.NOT_JSON
    assert base.arguments("{") is base.NOT_JSON
    # nesting too deep for a caller already deep in its stack is no verdict on the text: read again at the top
    text = "[" * 600 + "]" * 600

    def deep(n: int) -> Any:
        return deep(n - 1) if n else base.arguments(text)

    assert deep(sys.getrecursionlimit() - 300) is base.NOT_JSON
    assert base.arguments(text) is not base.NOT_JSON


# Patterns tried only where a line or an output holds one of their words (what every match holds).
WORDS = {
    "misused": (base._MISUSED, base._MISUSED_WORDS),
    "summary": (base._SUMMARY, base._SUMMARY_WORDS),
    "failed_count": (base._FAILED_COUNT, base._SUMMARY_WORDS),
    "junit": (base._JUNIT, base._SUMMARY_WORDS),
    "passed": (base._PASSED, base._PASSED_WORDS),
}


@pytest.mark.parametrize("name", list(WORDS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_match_holds_one_of_the_words_looked_for_first(name: str, data: st.DataObject) -> None:
    pattern, words = WORDS[name]
    text = data.draw(st.from_regex(pattern, alphabet=st.characters(max_codepoint=127)))
    assert pattern.search(text) is not None
    assert any(w in text for w in words), text


# goose's tools and request formats, as its source writes them (block/goose: the developer extension's
# shell.rs and edit.rs, crates/goose/src/agents/platform_extensions/developer/; the OpenAI and Anthropic
# request formats, crates/goose/src/providers/formats/). No goose transcript was found in public
# repositories and goose is not installable from a package registry: these are its formats, not a
# measurement.
GOOSE_SYSTEM = (
    "You are a general-purpose AI agent called goose, created by Block, the parent company of Square, CashApp, and "
    "Tidal.\ngoose is being developed as an open-source software project.\n\n# Extensions\n\n## developer\n"
)


def _goose_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


GOOSE_PYTEST, GOOSE_EDIT = {"command": "pytest -q"}, {"path": "src/p.py", "before": "a", "after": "b"}
NO_MATCH = "No match found for the specified text.\n\nFile preview:\n```\n   1: import os\n```"
MANY = "Found 2 matches. Please provide more context to identify a unique match:\n"
CALL_ERROR = "The tool call returned the following error:\n-32602: missing field `repo`"


@pytest.mark.parametrize(
    ("tool", "args", "result", "kind"),
    [
        ("shell", GOOSE_PYTEST, "1 failed, 4 passed in 0.2s\n\nCommand exited with code 1", "task_failure"),
        ("shell", {"command": "make check"}, "checking...\n\nCommand exited with code 2", "task_failure"),
        ("shell", GOOSE_PYTEST, "5 passed in 0.2s", "ok"),
        ("shell", {"command": "grep -rn parse_quotes src"}, "(no output)\n\nCommand exited with code 1", "ok"),
        (
            "shell",
            {"command": "npm test", "timeout_secs": 30},
            "RUNS\n\nCommand timed out after 30 seconds",
            "task_failure",
        ),
        (
            "developer__shell",
            {"command": "cargo test"},
            "test result: FAILED.\n\nCommand exited with code 101",
            "task_failure",
        ),
        ("edit", GOOSE_EDIT, "Edited src/p.py (1 lines -> 1 lines)", "ok"),
        ("edit", GOOSE_EDIT, NO_MATCH, "task_failure"),
        ("edit", GOOSE_EDIT, MANY, "task_failure"),
        ("tree", {"path": "."}, "src/  12\n  p.py  40", "ok"),
        ("github__create_issue", {"title": "x"}, CALL_ERROR, "task_failure"),
    ],
)
def test_goose_is_read_in_its_own_words(tool: str, args: dict[str, Any], result: str, kind: str) -> None:
    """goose flags a failed command or edit as an error, but neither request format it sends carries the
    flag: its tools' own words are read (after an edit, so a failing check is no red phase)."""
    from lwfsm.turn.agents import detect
    from lwfsm.turn.judge import judge

    edit = _goose_call("edit", {"path": "src/p.py", "before": "x = 1", "after": "x = 2"}, "c0")
    reply = _goose_call(tool, args, "c1")
    messages = [
        {"role": "system", "content": GOOSE_SYSTEM},
        {"role": "user", "content": "Fix the failing test."},
        edit,
        {"role": "tool", "tool_call_id": "c0", "content": "Edited src/p.py (1 lines -> 1 lines)"},
        reply,
        {"role": "tool", "tool_call_id": "c1", "content": result},
    ]
    assert detect(messages) == "goose"
    assert judge(reply, messages[5:], messages=messages).kind == kind


def test_aider_is_told_by_the_prompt_of_every_edit_format() -> None:
    """aider with a model it does not know (the README's `--model openai/lwfsm`) uses the whole-file format,
    whose prompt has no SEARCH/REPLACE: it was read as a generic agent."""
    from lwfsm.turn.agents import detect

    # the two lines every aider code format's prompt opens with (facts aider is told by), then words of ours
    opening = "Act as an expert software developer.\nTake requests for changes to the supplied code.\n"
    whole = opening + "Reply with each changed file whole."
    messages = [{"role": "system", "content": whole}, {"role": "user", "content": "Fix the parser."}]
    assert detect(messages) == "aider"
    assert detect([{"role": "system", "content": "You are a coding agent."}, messages[1]]) == "generic"
    # one line alone, as a home-made assistant's prompt may copy it: not aider
    copied = "You are my helper. Take requests for changes to the supplied code."
    assert detect([{"role": "system", "content": copied}, messages[1]]) == "generic"
