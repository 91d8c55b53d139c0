"""The gateway seen live: Prometheus metrics, the OpenAI Responses API and the dashboard, tested
against real `lwfsm serve` processes with the official `openai` SDK as the client."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from lwfsm.gateway.codec.common import SSEReader  # noqa: E402
from lwfsm.gateway.codec.responses import (  # noqa: E402
    ResponsesStream,
    responses_messages,
    responses_object,
    responses_tools,
)

from .test_gateway import (  # noqa: E402
    GATEWAY_KEY,
    HANDOFF,
    ROLES,
    STATES,
    Gateway,
    _check_handoffs,
    _env,
    _oai_client,
    _openai_script,
    httpx,
    oai,
    oai_gateway,
    openai,
    openai_server,
)

__all__ = ["oai", "oai_gateway"]  # the fake upstream fixture, shared with test_gateway

PRICED = {"LWFSM_LEAD_MODEL": "openai/gpt-4o", "LWFSM_WORKER_MODEL": "openai/gpt-4o-mini"}


@pytest.fixture
def priced(oai: openai_server.Server) -> Iterator[Gateway]:
    """A gateway whose roles are models with a price in LiteLLM's map, served by the fake upstream."""
    gw = Gateway("--api-key-env", "GW_KEY", env={**_env("openai", oai.base), **PRICED})
    yield gw
    gw.kill()  # its output checks nothing: no graceful stop (a second with LiteLLM loaded)


def _metrics(gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = gw.control("GET", "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_gateway_prices_what_the_report_prices() -> None:
    """One price map: a model LiteLLM lists as an alias of another (`gpt-sol-latest`) is priced by the
    gateway's /metrics, control API and trace as `lwfsm report` prices it."""
    from lwfsm.cost.pricing import PriceMap
    from lwfsm.gateway.app import _price_table
    from lwfsm.turn import Usage

    litellm = importlib.util.find_spec("litellm")
    assert litellm is not None
    assert litellm.submodule_search_locations
    listed = Path(litellm.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
    names = json.loads(listed.read_text(encoding="utf-8"))  # every row, alias rows too (98 in LiteLLM 1.110)
    used = Usage(prompt_tokens=1000, completion_tokens=100)
    gateway, report = PriceMap(_price_table()), PriceMap()
    assert [m for m in names if gateway(m, used) != report(m, used)] == []


def test_metrics_match_the_traffic_sent(priced: Gateway, oai: openai_server.Server) -> None:
    from lwfsm.cost.pricing import PriceMap
    from lwfsm.gateway.app import _price_table
    from lwfsm.turn import Usage

    assert httpx.get(priced.base + "/metrics").status_code == 401  # the gateway key protects it
    client = _oai_client(priced, **{"X-Lwfsm-Session": "m"})
    messages: list[Any] = [{"role": "user", "content": "Write a parser."}]
    roles = []
    for n in range(4):  # lead, lead, lead, then the worker (lead_turns 3)
        raw = client.chat.completions.with_raw_response.create(model="x", messages=messages)
        roles.append(raw.headers["x-lwfsm-role"])
        messages.append(raw.parse().choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "user", "content": f"ok {n}"})
    assert roles == ["lead", "lead", "lead", "worker"]
    oai.script("gpt-4o-mini", {"status": 400})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=messages)

    m = _metrics(priced)

    def at(name: str, **labels: str) -> float | None:
        return m.get((name, tuple(sorted(labels.items()))))

    assert at("lwfsm_turns_total", role="lead", outcome="turn_completed") == 3
    assert at("lwfsm_turns_total", role="worker", outcome="turn_completed") is None  # its turn is still pending
    assert at("lwfsm_switches_total", from_state="lead_initial", to_state="worker", event="turn_completed") == 1
    assert at("lwfsm_upstream_errors_total", role="worker", model="openai/gpt-4o-mini", status="400") == 1
    assert at("lwfsm_tokens_total", role="lead", kind="prompt_tokens") == 33  # 3 calls x 11
    assert at("lwfsm_tokens_total", role="worker", kind="completion_tokens") == 7
    prices = PriceMap(_price_table())
    lead = prices("openai/gpt-4o", Usage(prompt_tokens=33, completion_tokens=21))
    worker = prices("openai/gpt-4o-mini", Usage(prompt_tokens=11, completion_tokens=7))
    assert lead is not None
    assert worker is not None
    assert at("lwfsm_cost_dollars_total", role="lead") == pytest.approx(lead)
    assert at("lwfsm_cost_dollars_total", role="worker") == pytest.approx(worker)
    assert at("lwfsm_request_seconds_count", endpoint="/v1/chat/completions") == 5
    assert at("lwfsm_live_conversations") == 1
    # The control API reports the same cost, and what the same tokens would have cost on the lead alone.
    (summary,) = priced.control("GET", "/lwfsm/sessions").json()["sessions"]
    assert summary["cost"] == pytest.approx(lead + worker)
    assert summary["lead_cost"] == pytest.approx(prices("openai/gpt-4o", Usage(prompt_tokens=44, completion_tokens=28)))
    # each judged turn priced as the trace prices it (it was null in the control API)
    history = priced.control("GET", f"/lwfsm/sessions/{summary['id']}").json()["history"]
    one = prices("openai/gpt-4o", Usage(prompt_tokens=11, completion_tokens=7))
    assert [h["cost"] for h in history[:1]] == [pytest.approx(one)]
    assert all(h["cost"] is not None for h in history)


RESPONSES_TOOLS = [
    {"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}}
    for n in ("read_file", "run_tests", "edit_file")
]


def _reactions_responses(n: int, calls: list[Any]) -> list[dict[str, Any]]:
    """What a Responses agent sends after reply n: function_call_output items or the user's word."""
    out = lambda text: [{"type": "function_call_output", "call_id": calls[0].call_id, "output": text}]  # noqa: E731
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    return {
        1: lambda: out("def parse(): ..."),
        2: lambda: user("Good. Run the tests."),
        3: lambda: out("12 passed"),
        4: lambda: out("Traceback (most recent call last):\n  File 'parser.py'\nAssertionError"),
        5: lambda: user("That's wrong, the bug is in tokenize()."),
        6: lambda: out("patched"),
        7: lambda: user("Looks right. Go on."),
        8: lambda: out("could not apply the patch"),
        9: lambda: user("Fine, continue."),
        10: lambda: out("12 passed"),
        11: lambda: user("Great, thanks."),
    }[n]()


def test_responses_api_conversation_through_fallback_and_recovery(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    """The scripted 12-call conversation of the Chat Completions test, through the SDK's Responses
    client: chained by previous_response_id, except call 7, which sends the whole input (as Codex
    does with store=false); calls 3 and 9 stream raw events, 6 and 12 use the SDK's stream helper."""
    _openai_script(oai)
    before = len(oai.requests)
    client = _oai_client(oai_gateway, **{"X-Lwfsm-Session": "responses"})
    common: dict[str, Any] = {"model": "anything", "instructions": "You are a coding agent.", "tools": RESPONSES_TOOLS}
    history: list[Any] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    pending: list[Any] = list(history)
    previous: str | None = None
    states, usage_seen = [], []
    for n in range(1, 13):
        kwargs = dict(common, input=pending)
        if n == 7:
            kwargs["input"], kwargs["store"] = history, False
        elif previous is not None:
            kwargs["previous_response_id"] = previous
        if n in (3, 9):
            stream = client.responses.create(stream=True, **kwargs)
            states.append(stream.response.headers["x-lwfsm-state"])
            events = list(stream)
            assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
            response = events[-1].response
            assert events[-1].type == "response.completed"
        elif n in (6, 12):
            with client.responses.stream(**kwargs) as helper:
                kinds = [e.type for e in helper]
                response = helper.get_final_response()
            assert "response.output_item.done" in kinds
            states.append(None)  # the helper hides the headers; the role is checked upstream below
        else:
            raw = client.responses.with_raw_response.create(**kwargs)
            states.append(raw.headers["x-lwfsm-state"])
            response = raw.parse()
        assert response.usage is not None
        usage_seen.append((response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens))
        calls = [item for item in response.output if item.type == "function_call"]
        reply_items = [item.model_dump(exclude_none=True) for item in response.output]
        previous = None if n == 7 else response.id  # call 7 was not stored: chain from the whole input again
        if n < 12:
            pending = _reactions_responses(n, calls)
            history += reply_items + pending
            if n == 7:
                pending = history
    assert states == [s if n not in (6, 12) else None for n, s in enumerate(STATES, 1)]
    assert usage_seen == [(11, 7, 18)] * 12
    ours = oai.requests[before:]
    assert [r["model"] for r in ours] == ["lead-model" if r == "lead" else "worker-model" for r in ROLES]
    # The handoff notes reached the upstream at calls 6 and 8 only: never stored in a chain (call 9
    # continues call 8's), never in what the client got back.
    _check_handoffs("openai", oai.raw[before:])
    assert HANDOFF not in json.dumps(history)
    # Upstream saw the whole conversation each time, tool calls and outputs in Chat Completions shape.
    last = ours[-1]["messages"]
    assert last[0] == {"role": "system", "content": "You are a coding agent."}
    assert {"role": "tool", "tool_call_id": "call_10", "content": "12 passed"} in last
    assert ours[-1]["tools"][0] == {
        "type": "function",
        "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}},
    }
    sessions = oai_gateway.control("GET", "/lwfsm/sessions").json()["sessions"]
    key = next(s["id"] for s in sessions if s["id"].endswith(".responses"))
    session = oai_gateway.control("GET", f"/lwfsm/sessions/{key}").json()
    reasons = [(h["turn"], h["outcome"], h["reason"]) for h in session["history"]]
    error_line = "task failure: generic.error_line at message 1, line 1: 'Traceback (most recent call last):'"
    assert reasons[3] == (4, "failure", error_line)
    assert reasons[4][1:] == ("failure", 'user correction: generic.correction at message 1, line 1: "That\'s wrong"')
    assert reasons[7] == (8, "failure", "task failure: malformed.arguments: 'edit_file'")
    assert session["state"] == "worker"
    assert session["turn"] == 11
    # An unknown (or another client's) previous_response_id is a clear 404, not a new conversation.
    with pytest.raises(openai.NotFoundError, match="previous_response_id"):
        client.responses.create(model="x", input="hi", previous_response_id="resp_nope")


class _DevTools:
    """A page of headless Chromium driven over the DevTools protocol (websockets' sync client)."""

    def __init__(self, chromium: str, workdir: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
                f"--user-data-dir={workdir / 'profile'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.drain: threading.Thread | None = None
        self.stack = contextlib.ExitStack()  # what close() undoes, also when starting fails half-way
        self.stack.callback(self._stop)
        try:
            for line in self.proc.stderr:  # Chromium announces its port on stderr once it listens
                if line.startswith("DevTools listening on "):
                    port = int(line.split(":")[2].split("/")[0])
                    break
            else:
                raise AssertionError("chromium exited without a DevTools port")
            self.drain = threading.Thread(target=self.proc.stderr.read, daemon=True)  # keep the pipe drained
            self.drain.start()
            page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
            # websockets 17.1 and later want a connection entered as a context
            self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
            self.next_id = 0
            self.events: list[dict[str, Any]] = []
            for domain in ("Runtime", "Log", "Page"):
                self.send(f"{domain}.enable")
        except BaseException:
            self.stack.close()
            raise

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message["result"])
            self.events.append(message)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 15) -> Any:
        """Poll the page until `expression` is truthy (the page updates itself every second)."""
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            shown = self.js("document.body ? document.body.innerText : '(loading)'")  # null mid-navigation
            assert time.monotonic() < deadline, f"the page never showed {what}; it shows: {shown}"
            time.sleep(0.1)
        return value

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:500])
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args"))[:500])
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def _stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.drain is not None:
            self.drain.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def close(self) -> None:
        self.stack.close()  # the page's connection first, then the browser


def test_dashboard_in_a_real_browser_follows_traffic_and_fires_a_manual_switch(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    pytest.importorskip("websockets")
    from . import mermaid_browser

    chromium = mermaid_browser.browser()  # skips with an install hint (fails under LWFSM_REQUIRE_BROWSER=1)
    env = {**_env("openai", oai.base), **PRICED, "LWFSM_MERMAID_JS": str(mermaid_browser.MERMAID_JS)}
    browser = _DevTools(chromium, tmp_path)
    try:
        gw = Gateway("--api-key-env", "GW_KEY", env=env)
    except BaseException:
        browser.close()
        raise
    try:
        # The page holds no data, so it loads without the key; its calls to the control API need it.
        page = httpx.get(gw.base + "/lwfsm/")
        assert page.status_code == 200
        # no other page may frame it: a decoy over its buttons would fire events with a person's clicks
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert httpx.get(gw.base + "/lwfsm/sessions").status_code == 401
        browser.send("Page.navigate", url=f"{gw.base}/lwfsm/")
        error = "document.getElementById('error')"
        prompt = browser.wait(f"{error} && {error}.textContent", "that the key is needed")
        assert "needs its key: open" in prompt
        browser.send("Page.navigate", url=f"{gw.base}/lwfsm/?key=wrong")  # a wrong key: said so, not kept
        refused = browser.wait(f"{error} && {error}.textContent.includes('refused') && {error}.textContent", "refusal")
        assert "the key this page was opened with was refused" in refused
        assert browser.js("sessionStorage.getItem('lwfsm-key')") is None
        browser.events.clear()  # the browser logged that 401; from here on the page must log no error
        client = _oai_client(gw, **{"X-Lwfsm-Session": "dash"})
        messages: list[Any] = [{"role": "user", "content": "Write a parser."}]

        def call() -> str:
            raw = client.chat.completions.with_raw_response.create(model="x", messages=messages)
            messages.append(raw.parse().choices[0].message.model_dump(exclude_none=True))
            messages.append({"role": "user", "content": "ok"})
            return raw.headers["x-lwfsm-session"]

        key = call()
        browser.send("Page.navigate", url=f"{gw.base}/lwfsm/?key={GATEWAY_KEY}")
        row = f"document.querySelector('#sessions tr[data-id=\"{key}\"] td.state')"
        assert browser.wait(f"{row} && {row}.textContent", "the conversation") == "lead_initial"
        assert browser.js("location.search") == ""  # the key left the address bar
        # the name the client gave, not only the store's id (a tag of the client's key first)
        link = f"document.querySelector('#sessions tr[data-id=\"{key}\"] a')"
        assert browser.js(f"{link}.textContent") == "dash"
        assert browser.js(f"{link}.title") == key
        for _ in range(3):  # lead_turns 3: the fourth call is the worker's
            call()
        browser.wait(f"{row}.textContent === 'worker'", "the switch to the worker, without a reload")
        assert "lead_initial \u2192 worker on turn_completed" in browser.js(f"{row}.parentElement.innerText")
        totals = browser.js("document.getElementById('totals').innerText")
        assert "3\ncalls on lead" in totals
        assert "1\ncalls on worker" in totals
        # A stream whose upstream sent no usage makes every total unknown (once the dashboard showed no
        # savings at all then); what the conversations known whole cost and saved is still shown.
        oai.script("gpt-4o", {"no_usage": True, "content": "done"})
        unknown = _oai_client(gw, **{"X-Lwfsm-Session": "dash-unknown"}).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
        )
        assert [c.usage for c in unknown if c.usage] == []
        listed = gw.control("GET", "/lwfsm/sessions").json()
        (known,) = [s for s in listed["sessions"] if s["id"] == key]
        assert (listed["totals"]["cost"], listed["totals"]["savings"]) == (None, None)
        assert listed["totals"]["known"] == {
            "conversations": 1,
            "of": 2,
            "cost": known["cost"],
            "lead_cost": known["lead_cost"],
            "savings": pytest.approx(known["lead_cost"] - known["cost"]),
        }
        assert known["lead_cost"] > known["cost"] > 0  # three lead calls and one worker call, all priced
        saved = browser.wait(
            "document.getElementById('totals').innerText.includes('conversations whose costs are known') && "
            "document.getElementById('totals').innerText",
            "the known part of the totals",
        )
        assert "saved by the 1 of 2 conversations whose costs are known" in saved
        assert f"${known['lead_cost'] - known['cost']:.6f}" in saved
        browser.send("Page.reload")  # the key stays with the tab: a reload shows the same data
        assert browser.wait(f"{row} && {row}.textContent", "the conversation after a reload") == "worker"

        browser.js(f"location.hash = '#session={key}'")
        active = "document.querySelector('#diagram svg g[class*=\"s_active_\"]')"
        node = browser.wait(f"{active} && {active}.id", "the diagram with the current state marked")
        assert "-state-worker-" in node  # mermaid prefixes the render's id
        assert browser.js("document.querySelectorAll('#timeline tbody tr').length") == 3
        browser.screenshot(tmp_path / "session.png")

        browser.js("document.getElementById('fire-reset').click()")
        deadline = time.monotonic() + 10
        while gw.control("GET", f"/lwfsm/sessions/{key}").json()["state"] != "lead_initial":
            assert time.monotonic() < deadline, "the reset button did not move the session"
            time.sleep(0.1)
        node = browser.wait(
            f"{active} && {active}.id.includes('-state-lead_initial-') && {active}.id", "the diagram after the reset"
        )
        session = gw.control("GET", f"/lwfsm/sessions/{key}").json()
        assert session["last_switch"] == {
            "turn": 3,
            "from": "worker",
            "to": "lead_initial",
            "event": "reset",
            "reason": "fired through the control API",
            "handoff": None,  # the note the switch sent with the next call, as a judged turn's switch says
        }
        assert (session["switches"], session["fallbacks"]) == (2, 0)  # a manual reset is not a fallback
        browser.js("location.hash = ''")
        browser.wait(f"{row} && {row}.textContent === 'lead_initial'", "the list after the reset")
        browser.screenshot(tmp_path / "list.png")
        assert browser.errors() == []
    finally:
        browser.close()
        gw.stop()


def test_dashboard_without_mermaid_shows_the_diagram_as_text_and_what_to_install(
    oai: openai_server.Server, tmp_path: Path
) -> None:
    pytest.importorskip("websockets")
    from . import mermaid_browser

    chromium = mermaid_browser.browser()
    env = {**_env("openai", oai.base), "LWFSM_MERMAID_JS": str(tmp_path / "missing.min.js")}
    browser = _DevTools(chromium, tmp_path)
    try:
        gw = Gateway("--api-key-env", "GW_KEY", env=env)
    except BaseException:
        browser.close()
        raise
    try:
        raw = _oai_client(gw).chat.completions.with_raw_response.create(
            model="x", messages=[{"role": "user", "content": "Write a parser."}]
        )
        key = raw.headers["x-lwfsm-session"]
        browser.send("Page.navigate", url=f"{gw.base}/lwfsm/?key={GATEWAY_KEY}#session={key}")
        note = "document.querySelector('#diagram p')"
        said = browser.wait(f"{note} && {note}.textContent", "the note that the diagram is text")
        assert said.startswith("Drawn as text: mermaid.min.js not found: npm install --prefix ~/.cache/lwfsm-mermaid")
        assert "stateDiagram-v2" in browser.js("document.querySelector('#diagram pre').textContent")
        browser.screenshot(tmp_path / "no-mermaid.png")
    finally:
        browser.close()
        gw.stop()


def test_responses_tools_a_chat_call_cannot_carry_are_named_in_the_log_once(oai: openai_server.Server) -> None:
    """Codex offers hosted tools (web_search), namespaces of tools and, for some models, custom tools of
    free text: a Chat Completions call has no form of them, and they were left out without a word."""
    gw = Gateway("--api-key-env", "GW_KEY", env=_env("openai", oai.base))
    client = _oai_client(gw, **{"X-Lwfsm-Session": "tools-left-out"})
    tools: list[Any] = [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
        {"type": "web_search"},
        {"type": "namespace", "name": "multi_agent_v1", "tools": []},
        {"type": "custom", "name": "apply_patch", "description": "a patch", "format": {"type": "text"}},
    ]
    before = len(oai.requests)
    try:
        for _ in range(2):
            client.responses.create(model="m", input="hi", tools=tools)
    finally:
        log = gw.stop()
    sent = oai.requests[before:]
    assert [[t["function"]["name"] for t in r["tools"]] for r in sent] == [["exec_command"], ["exec_command"]]
    said = "Responses tools not offered to the model: apply_patch (custom), multi_agent_v1 (namespace), web_search"
    assert log.count(said) == 1, log


def test_responses_input_items_become_chat_messages() -> None:

    assert responses_messages("hi") == [{"role": "user", "content": "hi"}]
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix it."}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "run", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "Traceback"}]},
    ]
    assert responses_messages(items) == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Fix it."},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "run", "arguments": '{"x": 1}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "tool", "tool_call_id": "c2", "content": "Traceback"},
    ]
    tools = [{"type": "function", "name": "read", "parameters": {}}, {"type": "web_search"}]
    assert responses_tools(tools) == [{"type": "function", "function": {"name": "read", "parameters": {}}}]


def _session(gw: Gateway, suffix: str) -> dict[str, Any] | None:
    sessions = gw.control("GET", "/lwfsm/sessions").json()["sessions"]
    key = next((s["id"] for s in sessions if s["id"].endswith("." + suffix)), None)
    return None if key is None else dict(gw.control("GET", f"/lwfsm/sessions/{key}").json())


def test_a_streamed_responses_call_streams_as_the_upstream_answers(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    """The upstream sends its text and tool call, then holds its finish chunk until the client has
    seen a text delta: the events come through as the upstream writes them, and the turn (with its
    usage) and the chain are stored before `response.completed`."""
    hold = threading.Event()
    call = {"id": "call_r", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "parser.py"}'}}
    step: dict[str, Any] = {"hold": hold, "content": "Reading the parser first.", "tool_calls": [call]}
    oai.script("lead-model", step)
    client = _oai_client(oai_gateway, **{"X-Lwfsm-Session": "incremental"})
    kinds: list[str] = []
    texts: list[str] = []
    with client.responses.create(model="m", input="Fix the parser.", tools=RESPONSES_TOOLS, stream=True) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
                if not hold.is_set():
                    assert _session(oai_gateway, "incremental") is None  # nothing is settled yet
                    hold.set()  # the upstream may finish now
            if event.type == "response.completed":
                session = _session(oai_gateway, "incremental")  # settled before the client saw the end
                assert session is not None
                assert session["calls"] == 1
                assert session["pending"]["reply"]["tool_calls"][0]["function"]["name"] == "read_file"
                assert session["ledger"]["rows"][0]["usage"]["prompt_tokens"] == 11  # the usage chunk was in time
                response = event.response
    assert step["released"] is True  # the delta reached the client while the upstream was still waiting
    assert len(texts) > 1
    assert "".join(texts) == "Reading the parser first."
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1] or not k.endswith(".delta")]
    assert collapsed == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    # The final response is the one a whole reply makes.
    reply = {"role": "assistant", "content": "Reading the parser first.", "tool_calls": [call]}
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    whole = responses_object(response.id, {"model": "m"}, reply, usage, response.created_at)
    assert [item.model_dump(exclude_none=True) for item in response.output] == whole["output"]
    assert response.usage is not None
    assert response.usage.total_tokens == 18
    # The chain was stored: the next call continues it.
    oai.script("lead-model", {"content": "Done."})
    out = [{"type": "function_call_output", "call_id": "call_r", "output": "def parse(): ..."}]
    nxt = client.responses.create(model="m", input=out, previous_response_id=response.id)
    assert nxt.output_text == "Done."
    assert {"role": "tool", "tool_call_id": "call_r", "content": "def parse(): ..."} in oai.requests[-1]["messages"]
    assert oai.requests[-2]["stream_options"] == {"include_usage": True}


def test_streamed_responses_errors_fallback_and_a_cut_stream(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    """Before the first byte an upstream error is a plain JSON error with its status, and a worker's
    5xx is served by the lead; a stream cut by the upstream ends in an error event, without
    `response.completed`, and records nothing."""
    client = _oai_client(oai_gateway, **{"X-Lwfsm-Session": "stream-errors"})
    oai.script("lead-model", {"status": 400, "body": {"error": {"message": "bad tools", "type": "invalid_request"}}})
    with pytest.raises(openai.BadRequestError, match="bad tools"):
        client.responses.create(model="m", input="hi", stream=True)
    oai.script("lead-model", {"cut": True, "content": "a long answer that the upstream never finishes"})
    kinds: list[str] = []
    with pytest.raises(openai.APIError, match="the lead upstream ended the stream before its finish"):
        with client.responses.create(model="m", input="hi", stream=True) as stream:
            kinds.extend(e.type for e in stream)
    assert "response.output_text.delta" in kinds
    assert "response.completed" not in kinds
    assert _session(oai_gateway, "stream-errors") is None  # nothing recorded
    # A worker's 5xx: the lead serves the call, streamed.
    oai.script("lead-model", {"content": "ok"})
    first = client.responses.with_raw_response.create(model="m", input="a", extra_headers={"X-Lwfsm-Session": "tech2"})
    key = first.headers["x-lwfsm-session"]
    for _ in range(3):  # the lead's three initial turns, fired by hand through the control API
        assert oai_gateway.control("POST", f"/lwfsm/sessions/{key}/events/turn_completed").status_code == 200
    oai.script("worker-model", {"status": 503})
    raw = client.responses.with_raw_response.create(
        model="m", input="b", stream=True, extra_headers={"X-Lwfsm-Session": "tech2"}
    )
    assert (raw.headers["x-lwfsm-state"], raw.headers["x-lwfsm-role"]) == ("worker", "lead")
    events = list(raw.parse())
    assert events[-1].type == "response.completed"
    assert "lead-model says: b" in events[-1].response.output_text
    assert oai_gateway.control("GET", f"/lwfsm/sessions/{key}").json()["calls"] == 2


def test_a_stream_settles_with_its_usage_chunk(oai: openai_server.Server, oai_gateway: Gateway) -> None:
    """The usage chunk follows the finish chunk: a stream that asked for usage settles with it."""
    hold = threading.Event()
    step: dict[str, Any] = {"hold": hold, "hold_at": "usage"}
    oai.script("lead-model", step)
    client = _oai_client(oai_gateway, **{"X-Lwfsm-Session": "usage-late"})
    messages: Any = [{"role": "user", "content": "hi"}]
    stream = client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason:
            assert _session(oai_gateway, "usage-late") is None  # not settled without its usage
            hold.set()
    assert step["released"] is True
    session = _session(oai_gateway, "usage-late")
    assert session is not None
    assert session["ledger"]["rows"][0]["usage"]["prompt_tokens"] == 11


def test_a_stream_without_the_usage_it_asked_for_settles_at_its_end(
    oai: openai_server.Server, oai_gateway: Gateway
) -> None:
    """A server that ignores `include_usage` ends with [DONE] and no usage chunk: the call is recorded
    (with no usage) all the same."""
    oai.script("lead-model", {"no_usage": True, "content": "done"})
    client = _oai_client(oai_gateway, **{"X-Lwfsm-Session": "usage-never"})
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    assert [c.usage for c in stream if c.usage] == []
    session = _session(oai_gateway, "usage-never")
    assert session is not None
    assert session["pending"]["reply"]["content"] == "done"
    assert session["ledger"]["rows"][0]["usage"]["prompt_tokens"] == 0


def test_a_chat_stream_becomes_the_responses_events_of_its_reply() -> None:
    """Two tool calls and no text: items at output indexes 0 and 1, each closed before the next opens,
    and a final response equal to the one the whole reply makes."""
    shaper = ResponsesStream("resp_abc", {"model": "m"}, 7)
    chunks: list[Any] = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for i, (name, args) in enumerate((("read_file", '{"path": "a"}'), ("run_tests", "{}"))):
        first = {"tool_calls": [{"index": i, "id": f"c{i}", "function": {"name": name, "arguments": ""}}]}
        chunks.append({"choices": [{"index": 0, "delta": first}]})
        for part in (args[:3], args[3:]):
            delta = {"tool_calls": [{"index": i, "function": {"arguments": part}}]}
            chunks.append({"choices": [{"index": 0, "delta": delta}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    data = shaper.start() + b"".join(shaper.add(c) for c in chunks) + shaper.finish()
    events = SSEReader().feed(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [(e["type"], e.get("output_index")) for e in events if "delta" not in e["type"]] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.function_call_arguments.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    whole = responses_object("resp_abc", {"model": "m"}, shaper.acc.reply(), shaper.acc.usage, 7)
    assert events[-1]["response"] == whole
    assert whole["output"][0]["arguments"] == '{"path": "a"}'
    assert whole["usage"]["total_tokens"] == 5
