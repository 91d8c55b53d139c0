"""What real agents send, replayed: requests captured from Claude Code 2.1.197, Codex CLI 0.171.0 and
aider 0.86.2 talking to a fake server on 127.0.0.1 (tests/agent_traffic/*.json, keys redacted, long
prompts trimmed to their head and tail, except that aider's format reminder after the person's words
is trimmed to its tail; each request labelled with what it was: a turn, a title, a compaction...).

The captured requests go, headers and bodies as sent, to a real gateway process in front of a fake
upstream. Side calls (titles, compactions, commit messages, history summaries) are served but never
counted as turns; sub-agents get conversations of their own; the turn numbers advance on turns only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from lwfsm.gateway.codec.common import first_user_text  # noqa: E402
from lwfsm.gateway.codec.messages import anthropic_messages, anthropic_tools  # noqa: E402
from lwfsm.gateway.codec.responses import responses_messages  # noqa: E402
from lwfsm.gateway.fingerprint import opening  # noqa: E402
from lwfsm.gateway.identity import identify, side_call  # noqa: E402

from . import openai_server  # noqa: E402
from .test_gateway import GATEWAY_KEY, Gateway, ant, ant_gateway, oai, oai_gateway  # noqa: E402

__all__ = ["ant", "ant_gateway", "oai", "oai_gateway"]  # the fixtures, shared with test_gateway

TRAFFIC = Path(__file__).parent / "agent_traffic"
TURNS = {"turn", "subagent_turn", "auto_test_turn", "auto_lint_turn"}  # the rest are side calls
_NOT_FORWARDED = {"host", "content-length", "connection", "accept-encoding"}
# The agents were pointed at the capture server with a key (redacted here); here they present the gateway's.
_KEYS = {"authorization": "Bearer " + GATEWAY_KEY, "x-api-key": GATEWAY_KEY}


def _requests(agent: str) -> list[dict[str, Any]]:
    return [r for r in json.loads((TRAFFIC / f"{agent}.json").read_text()) if r["method"] == "POST"]


def _scenario(agent: str, name: str) -> list[dict[str, Any]]:
    return [r for r in _requests(agent) if r["scenario"] == name]


def _parsed(r: dict[str, Any]) -> tuple[list[dict[str, Any]], str, list[str]]:
    """(OpenAI-shaped messages, system text, tool names) as the gateway reads the request."""
    body = r["body"]
    if r["path"].startswith("/v1/messages"):
        system = body.get("system")
        text = system if isinstance(system, str) else first_user_text([{"role": "user", "content": system}])
        return (
            anthropic_messages(body),
            text,
            [str(t.get("name")) for t in anthropic_tools(body.get("tools"))],
        )
    if r["path"].startswith("/v1/responses"):
        return responses_messages(body["input"]), str(body.get("instructions") or ""), []
    messages = body["messages"]
    return messages, "\n".join(str(m["content"]) for m in messages if m["role"] in ("system", "developer")), []


ALL = [
    pytest.param(agent, r, id=f"{agent}-{r['scenario']}-{r['seq']}-{r['kind']}")
    for agent in ("claude_code", "codex", "aider")
    for r in _requests(agent)
    if "count_tokens" not in r["path"]  # a count, never a turn (tested in test_gateway.py, test_gateway_faults.py)
]


@pytest.mark.parametrize(("agent", "r"), ALL)
def test_each_captured_request_is_told_a_turn_or_the_side_call_it_is(agent: str, r: dict[str, Any]) -> None:
    messages, system, _ = _parsed(r)
    expected = None if r["kind"] in TURNS else r["kind"]
    assert side_call(r["headers"], r["body"], messages, system) == expected


def _key(r: dict[str, Any], client_key: str | None = None) -> str:
    messages, system, tools = _parsed(r)
    return identify(r["headers"], r["body"], messages, system, tools, client_key).key


@pytest.mark.parametrize(
    ("agent", "scenario"), [("claude_code", "print_tools_subagent"), ("codex", "exec_tools_subagent")]
)
def test_sub_agents_share_the_session_id_but_not_the_conversation(agent: str, scenario: str) -> None:
    reqs = _scenario(agent, scenario)
    main = {_key(r) for r in reqs if r["kind"] == "turn"}
    sub = {_key(r) for r in reqs if r["kind"] == "subagent_turn"}
    assert len(main) == 1
    assert len(sub) == 1
    assert main != sub
    (m,), (s,) = main, sub
    assert s.startswith(m + ".")  # (session, agent): the parent's session, then the agent


def test_codex_main_thread_is_keyed_by_its_session_alone() -> None:
    # Codex sends `thread-id` (an agent header) on every call; the main thread's equals the session id.
    r = _scenario("codex", "exec_plain")[0]
    assert r["headers"]["thread-id"] == r["headers"]["session-id"]
    assert _key(r) == "anon." + r["headers"]["session-id"]


def test_aider_is_fingerprinted_by_the_persons_first_words_not_its_scaffolding() -> None:
    turns = {(r["scenario"], r["kind"]): r for r in _requests("aider") if r["kind"] in TURNS}
    first, later = turns["edit_lint_test", "turn"], turns["edit_lint_test", "auto_lint_turn"]
    # Turn 1: the words are the last message, aider's format reminder appended; later they are history.
    assert opening(*_parsed(first)[:2]) == opening(*_parsed(later)[:2]) == ["Fix the add function in calc.py"]
    assert _key(first) == _key(later)
    # The limit: another session opened with the same words is the same conversation (README).
    assert _key(turns["edit_test_stream", "turn"]) == _key(first)
    # aider's history summary takes the place of the first words: from then on, a new conversation.
    assert _key(turns["history_summary", "turn"]) != _key(first)


def _fp(messages: list[dict[str, Any]], system: str = "You help. Today is 2026-12-03.") -> str:
    return identify({}, {}, messages, system, ["read"], None).key


def test_a_fingerprint_keys_on_the_opening_user_messages_only() -> None:
    opened = [{"role": "user", "content": "Here is an example task."}, {"role": "user", "content": "Fix bug 41."}]
    later = [*opened, {"role": "assistant", "content": "On it."}, {"role": "user", "content": "Thanks"}]
    assert _fp(later) == _fp(opened)  # the history grows after the opening
    assert _fp(later, "You help. Today is 2026-12-04.") == _fp(opened)  # the system prompt is not the conversation
    assert _fp([opened[0], {"role": "user", "content": "Fix bug 42."}]) != _fp(opened)  # every opening message counts
    # A cache marker moving from one call to the next changes no text.
    parts = [{"type": "text", "text": "Fix bug 41.", "cache_control": {"type": "ephemeral"}}]
    assert _fp([opened[0], {"role": "user", "content": parts}]) == _fp(opened)
    # A closing block that repeats the end of the system prompt (a reminder) is not the person's words.
    system = "You help.\n\nAnswer in one line."
    reminded = [{"role": "user", "content": "Fix bug 41.\n\nAnswer in one line."}]
    assert opening(reminded, system) == ["Fix bug 41."]
    assert opening(reminded, "You help.") == ["Fix bug 41.\n\nAnswer in one line."]


def test_an_opening_under_a_long_system_prompt_is_read_in_bounded_time() -> None:
    from .test_judging_formats import finishing

    # the system prompt's end was stripped once per opening message: 100,000 messages under 3.2 MB, 7 s
    system = "x" * 3_200_000 + "\n"
    with finishing("100,000 opening messages under a system prompt of 3.2 MB"):
        assert opening([{"role": "user", "content": "hi"}] * 100_000, system) == ["hi"] * 100_000


# -- replayed through a real gateway --


def _replay(gw: Gateway, reqs: list[dict[str, Any]]) -> list[httpx.Response]:
    out = []
    with httpx.Client(base_url=gw.base, timeout=30) as client:
        for r in reqs:
            headers = {k: _KEYS.get(k, v) for k, v in r["headers"].items() if k not in _NOT_FORWARDED}
            resp = client.post(r["path"], content=json.dumps(r["body"]).encode(), headers=headers)
            assert resp.status_code == 200, (r["kind"], resp.status_code, resp.text[:300])
            out.append(resp)
    return out


def _session(gw: Gateway, key: str) -> dict[str, Any]:
    resp = gw.control("GET", f"/lwfsm/sessions/{key}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _listed(gw: Gateway) -> set[str]:
    return {s["id"] for s in gw.control("GET", "/lwfsm/sessions").json()["sessions"]}


def _side_calls(session: dict[str, Any]) -> int:
    return sum(row["side_calls"] for row in session["ledger"]["rows"])


def test_claude_code_titles_and_compaction_are_not_turns(ant_gateway: Gateway) -> None:
    reqs = _scenario("claude_code", "tui_title_compact")
    assert [r["kind"] for r in reqs] == ["title", "turn", "title", "turn", "turn", "compaction"]
    got = _replay(ant_gateway, reqs)
    assert [g.headers.get("x-lwfsm-side-call") for g in got] == ["title", None, "title", None, None, "compaction"]
    assert [g.headers["x-lwfsm-turn"] for g in got] == ["0", "1", "1", "2", "3", "3"]
    key = got[1].headers["x-lwfsm-session"]
    assert {g.headers["x-lwfsm-session"] for g in got} == {key}
    session = _session(ant_gateway, key)
    assert session["source"] == "x-claude-code-session-id"
    # Two turns judged (the third is pending); the title before the first turn opened no conversation,
    # so the stored ledger holds the second title and the compaction as side calls.
    assert len(session["history"]) == 2
    assert session["pending"]["turn"] == 3
    assert _side_calls(session) == 2


def test_claude_code_sub_agent_turns_leave_the_main_conversation_alone(ant_gateway: Gateway) -> None:
    reqs = _scenario("claude_code", "print_tools_subagent")
    got = _replay(ant_gateway, reqs)
    main = {g.headers["x-lwfsm-session"] for g, r in zip(got, reqs, strict=True) if r["kind"] == "turn"}
    sub = {g.headers["x-lwfsm-session"] for g, r in zip(got, reqs, strict=True) if r["kind"] == "subagent_turn"}
    assert len(main) == len(sub) == 1
    assert main != sub
    assert _session(ant_gateway, main.pop())["pending"]["turn"] == 3
    assert _session(ant_gateway, sub.pop())["pending"]["turn"] == 2


def test_codex_compactions_and_titles_are_not_turns(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    reqs = _scenario("codex", "exec_autocompact")
    assert [r["kind"] for r in reqs] == ["turn", "compaction", "turn"]
    before = len(oai.requests)
    got = _replay(oai_gateway, reqs)
    # Codex's instructions come as `developer` items; upstream they are `system` messages, which any
    # Chat Completions server takes.
    sent = oai.requests[before]["messages"]
    assert [m["role"] for m in sent[:2]] == ["system", "system"]
    assert all(m["role"] != "developer" for r in oai.requests[before:] for m in r["messages"])
    assert [g.headers["x-lwfsm-turn"] for g in got] == ["1", "1", "2"]
    assert got[1].headers["x-lwfsm-side-call"] == "compaction"
    session = _session(oai_gateway, got[0].headers["x-lwfsm-session"])
    assert session["source"] == "x-codex-turn-metadata"
    assert _side_calls(session) == 1

    reqs = _scenario("codex", "tui_compact")
    assert [r["kind"] for r in reqs] == ["turn", "title", "compaction"]
    got = _replay(oai_gateway, reqs)
    # The title comes on a thread of its own: served, and no conversation is stored for it.
    assert got[1].headers["x-lwfsm-side-call"] == "title"
    assert got[1].headers["x-lwfsm-session"] not in _listed(oai_gateway)
    assert got[0].headers["x-lwfsm-session"] == got[2].headers["x-lwfsm-session"] in _listed(oai_gateway)


@pytest.mark.parametrize(
    ("scenario", "kinds", "reason"),
    [
        ("edit_lint_test", ["turn", "commit_message", "auto_lint_turn"], "aider.lint"),
        ("edit_test_stream", ["turn", "commit_message", "auto_test_turn"], "aider.test_output"),
        ("history_summary", ["summary", "turn"], None),
    ],
)
def test_aider_side_calls_and_its_test_and_lint_reports(
    oai_gateway: Gateway, scenario: str, kinds: list[str], reason: str | None
) -> None:
    reqs = _scenario("aider", scenario)
    assert [r["kind"] for r in reqs] == kinds
    for r in reqs:  # two of the runs open with the same words, so they share a fingerprint: start each afresh
        assert oai_gateway.control("DELETE", f"/lwfsm/sessions/{_key(r, GATEWAY_KEY)}").status_code in (204, 404)
    got = _replay(oai_gateway, reqs)
    # aider sends no session id: its conversation is the fingerprint of its opening (low confidence);
    # a commit message or a history summary has its own opening, and stores nothing.
    keys = [g.headers["x-lwfsm-session"] for g in got]
    for kind, g in zip(kinds, got, strict=True):
        assert g.headers.get("x-lwfsm-side-call") == (None if kind in TURNS else kind)
        assert g.headers["x-lwfsm-session-confidence"] == "low"
    (key,) = {k for k, kind in zip(keys, kinds, strict=True) if kind in TURNS}
    assert _listed(oai_gateway) & set(keys) == {key}
    history = _session(oai_gateway, key)["history"]
    if reason is None:
        assert history == []
    else:
        (judged,) = history
        assert judged["outcome"] == "failure"
        assert reason in judged["reason"]
