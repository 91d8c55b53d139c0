"""The gateway's codecs: each protocol's request, whole answer and stream read to the same neutral
values, including what real servers send (a tool name repeated in every chunk or split across chunks,
usage absent or after the finish chunk, `content: null`, a system prompt as a list of parts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lwfsm.gateway.codec import CODECS, Answer, noted
from lwfsm.gateway.codec.chat import plain_chat
from lwfsm.gateway.codec.common import SSEReader, messages_span
from lwfsm.gateway.codec.responses import ResponsesStream, responses_chat_request, responses_object

ARGS = json.dumps({"path": "a.py"})
CALL = {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": ARGS}}
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}

CHAT_REQUEST = {
    "model": "m",
    "stream": True,
    "temperature": 0.5,
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "use tools"}]},
        {"role": "user", "content": "read a.py"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "read_file", "parameters": SCHEMA}}],
}
MESSAGES_REQUEST = {
    "model": "m",
    "stream": True,
    "temperature": 0.5,
    "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "use tools"}],
    "messages": [
        {"role": "user", "content": "read a.py"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a.py"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "print(1)"}]},
                {"type": "text", "text": "thanks"},
            ],
        },
    ],
    "tools": [{"name": "read_file", "input_schema": SCHEMA}],
}
RESPONSES_REQUEST = {
    "model": "m",
    "stream": True,
    "temperature": 0.5,
    "instructions": "be brief\nuse tools",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "read a.py"}]},
        {"type": "function_call", "call_id": "call_1", "name": "read_file", "arguments": ARGS},
        {"type": "function_call_output", "call_id": "call_1", "output": "print(1)"},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [{"type": "function", "name": "read_file", "parameters": SCHEMA}],
}
BODIES = {"openai": CHAT_REQUEST, "anthropic": MESSAGES_REQUEST, "responses": RESPONSES_REQUEST}


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation without its system prompt, a tool-calling assistant's empty text as None (how
    each protocol writes "no text" differs; judging reads them alike)."""
    return [
        {**m, "content": m.get("content") or None} if m["role"] == "assistant" else m
        for m in messages
        if m["role"] != "system"
    ]


@pytest.mark.parametrize("protocol", sorted(BODIES))
def test_a_request_with_tools_and_tool_results_reads_to_the_same_neutral_request(protocol: str) -> None:
    request = CODECS[protocol].read_request(BODIES[protocol])
    chat = CODECS["openai"].read_request(CHAT_REQUEST)
    assert _turns(request.messages) == _turns(chat.messages)
    assert request.messages[-2:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
        {"role": "user", "content": "thanks"},
    ]
    assert [t["function"]["name"] for t in request.tools] == ["read_file"]
    assert request.system == "be brief\nuse tools"  # the system prompt's parts, one per line
    assert (request.stream, request.model, request.params["temperature"]) == (True, "m", 0.5)


def test_the_chat_request_a_responses_request_is_served_as_reads_back_to_the_same_turns() -> None:
    request = CODECS["responses"].read_request(RESPONSES_REQUEST)
    chat = responses_chat_request(RESPONSES_REQUEST, request.messages, request.tools)
    again = CODECS["openai"].read_request(chat)
    assert _turns(again.messages) == _turns(request.messages)
    # what every OpenAI-compatible server takes: no null content, the system prompt one string
    assert again.messages[2] == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert plain_chat(CHAT_REQUEST["messages"])[0] == {"role": "system", "content": "be brief\nuse tools"}
    assert chat["stream_options"] == {"include_usage": True}


def test_an_anthropic_tool_error_stays_flagged() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": True}]}]}
    assert CODECS["anthropic"].read_request(body).messages == [
        {"role": "tool", "tool_call_id": "t", "content": "", "is_error": True}
    ]


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
ANSWER = Answer({"role": "assistant", "content": "reading", "tool_calls": [CALL]}, USAGE, "tool_calls", "m")

CHAT_ANSWER = {
    "id": "c",
    "model": "m",
    "choices": [{"index": 0, "message": ANSWER.message, "finish_reason": "tool_calls"}],
    "usage": USAGE,
}
MESSAGES_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [
        {"type": "text", "text": "reading"},
        {"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a.py"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "output_tokens": 5},
}
RESPONSES_ANSWER = responses_object("resp_0123", {"model": "m"}, ANSWER.message or {}, USAGE, 1)
ANSWERS = {"openai": CHAT_ANSWER, "anthropic": MESSAGES_ANSWER, "responses": RESPONSES_ANSWER}


def _same(answer: Answer, expected: Answer = ANSWER) -> None:
    assert answer.message == expected.message
    assert answer.finish_reason == expected.finish_reason
    assert answer.model == expected.model
    if expected.usage is None:
        assert answer.usage is None  # unknown, never zero
    else:  # each protocol names more (cache reads...): the counts are what matter
        assert answer.usage is not None
        assert (answer.usage["prompt_tokens"], answer.usage["completion_tokens"]) == (10, 5)


@pytest.mark.parametrize("protocol", sorted(ANSWERS))
def test_a_whole_answer_reads_to_the_same_neutral_answer(protocol: str) -> None:
    _same(CODECS[protocol].read_answer(ANSWERS[protocol]))


@pytest.mark.parametrize("protocol", sorted(ANSWERS))
def test_a_whole_answer_written_as_a_stream_accumulates_to_the_same_answer(protocol: str) -> None:
    codec = CODECS[protocol]
    acc = codec.stream(["read_file"])
    for event in SSEReader().feed(codec.events(ANSWERS[protocol])):
        acc.add(event)
    assert acc.done
    _same(acc.answer())


def test_usage_absent_is_unknown_in_every_codec() -> None:
    chat = {k: v for k, v in CHAT_ANSWER.items() if k != "usage"}
    messages = {k: v for k, v in MESSAGES_ANSWER.items() if k != "usage"}
    responses = responses_object("resp_0123", {"model": "m"}, ANSWER.message or {}, None, 1)
    for protocol, body in (("openai", chat), ("anthropic", messages), ("responses", responses)):
        assert CODECS[protocol].read_answer(body).usage is None, protocol


def test_a_chat_answer_with_content_null_and_no_choice() -> None:
    read = CODECS["openai"].read_answer
    assert read({"choices": [{"message": {"role": "assistant", "content": None}}]}).message == {
        "role": "assistant",
        "content": None,
    }
    assert read({"choices": []}).message is None


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"model": "m", "choices": choices, **extra}


def _call(name: str | None, args: str, **extra: Any) -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": args} if name is None else {"name": name, "arguments": args}
    return {"tool_calls": [{"index": 0, "function": fn, **extra}]}


HALF = len(ARGS) // 2
QUIRKS = {
    # OpenAI: the name and id once, usage in a last chunk after the finish chunk
    "openai": [
        _chunk({"role": "assistant", "content": "reading"}),
        _chunk(_call("read_file", "", id="call_1", type="function")),
        _chunk(_call(None, ARGS[:HALF])),
        _chunk(_call(None, ARGS[HALF:])),
        _chunk({}, "tool_calls"),
        _chunk(None, usage=USAGE),
    ],
    # llama.cpp: the whole name and id again in every chunk, `content: null` beside them, no usage
    "llama.cpp": [
        _chunk({"role": "assistant", "content": "reading"}),
        _chunk({"content": None, **_call("read_file", ARGS[:HALF], id="call_1")}),
        _chunk({"content": None, **_call("read_file", ARGS[HALF:], id="call_1")}),
        _chunk({}, "tool_calls"),
    ],
    # the name split across chunks, usage in the finish chunk
    "split name": [
        _chunk({"role": "assistant", "content": "read"}),
        _chunk({"content": "ing", **_call("read_", "", id="call_1")}),
        _chunk(_call("file", ARGS)),
        _chunk({}, "tool_calls", usage=USAGE),
    ],
}


@pytest.mark.parametrize("server", sorted(QUIRKS))
def test_a_chat_stream_accumulates_to_the_same_answer_whatever_the_server_sends(server: str) -> None:
    acc = CODECS["openai"].stream(["read_file", "read_"])
    for chunk in QUIRKS[server]:
        acc.add(chunk)
    usage = None if server == "llama.cpp" else USAGE
    _same(acc.answer(), Answer(ANSWER.message, usage, "tool_calls", "m"))


@pytest.mark.parametrize("server", sorted(QUIRKS))
def test_responses_events_written_from_a_chat_stream_read_back_to_the_same_answer(server: str) -> None:
    out = ResponsesStream("resp_0123", {"model": "m", "tools": RESPONSES_REQUEST["tools"]}, 1)
    data = out.start() + b"".join(out.add(c) for c in QUIRKS[server]) + out.finish()
    acc = CODECS["responses"].stream()
    for event in SSEReader().feed(data):
        acc.add(event)
    assert acc.done
    usage = None if server == "llama.cpp" else USAGE
    _same(acc.answer(), Answer(ANSWER.message, usage, "tool_calls", "m"))


def test_an_anthropic_stream_with_usage_in_start_and_delta() -> None:
    events = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "read"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ing"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "read_file"},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ARGS[:HALF]}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ARGS[HALF:]}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]
    acc = CODECS["anthropic"].stream()
    for event in events:
        acc.add(event)
    _same(acc.answer())
    acc = CODECS["anthropic"].stream()
    for event in events:
        acc.add(
            {**event, "usage": None}
            if event["type"] != "message_start"
            else {"type": "message_start", "message": {"model": "m"}}
        )
    assert acc.answer().usage is None


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
@pytest.mark.parametrize("last", ["user", "assistant", "blocks"])
def test_a_handoff_note_spliced_into_the_bytes_is_the_note_the_codec_adds(protocol: str, last: str) -> None:
    codec = CODECS[protocol]
    body = dict(BODIES[protocol])
    if last == "assistant":
        body["messages"] = body["messages"][:-1] + [{"role": "assistant", "content": "done"}]
    elif last == "blocks":
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    raw = json.dumps(body, indent=1).encode()
    spliced = codec.with_note(raw, "NOTE")
    assert spliced is not None
    assert json.loads(spliced) == {**body, "messages": codec.note(body["messages"], "NOTE")}
    span = messages_span(raw)
    assert span is not None
    assert spliced.startswith(raw[: span[1][-1][1]])  # every byte before the last message unchanged
    assert json.loads(noted(codec, b'{"messages": 1}', {**body}, "NOTE"))["messages"] == codec.note(
        body["messages"], "NOTE"
    )


def test_error_bodies_have_each_protocols_shape() -> None:
    assert CODECS["anthropic"].error_body(429, "slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    # a client's mistake is never called the server's: a 400 or a 409 is an invalid request in Anthropic's
    # shape, a 5xx an API error, and the statuses Anthropic names have their names
    kinds = {s: CODECS["anthropic"].error_body(s, "m")["error"]["type"] for s in (400, 403, 409, 500, 502, 529)}
    assert kinds == {
        400: "invalid_request_error",
        403: "permission_error",
        409: "invalid_request_error",
        500: "api_error",
        502: "api_error",
        529: "overloaded_error",
    }
    for protocol in ("openai", "responses"):
        assert CODECS[protocol].error_body(400, "bad") == {
            "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
        }


def test_each_codec_names_its_upstream_endpoint() -> None:
    url, headers = CODECS["openai"].endpoint("http://127.0.0.1:9/v1/", "k", {})
    assert (url, headers["authorization"]) == ("http://127.0.0.1:9/v1/chat/completions", "Bearer k")
    url, headers = CODECS["anthropic"].endpoint(None, None, {"anthropic-beta": "b"})
    assert url == "https://api.anthropic.com/v1/messages"
    assert "x-api-key" not in headers  # keyless: no header
    assert (headers["anthropic-version"], headers["anthropic-beta"]) == ("2023-06-01", "b")
    assert CODECS["openai"].usage_follows({"stream_options": {"include_usage": True}})
    assert not CODECS["anthropic"].usage_follows({"stream_options": {"include_usage": True}})


def test_sse_events_read_alike_whatever_the_chunks_and_line_ends() -> None:
    events = [{"i": i, "text": "a\nb"} for i in range(2000)]
    for end in (b"\n", b"\r\n", b"\r"):  # SSE ends a line with any of them
        data = b"".join(b"data: " + json.dumps(e).encode() + end + end for e in events) + b"data: [DONE]" + end
        whole = SSEReader()
        assert whole.feed(data) == events  # 4,000 lines in one chunk
        assert whole.ended
        assert not whole.partial
        bytewise = SSEReader()
        got = [e for i in range(len(data[:3000])) for e in bytewise.feed(data[i : i + 1])]
        assert got == events[: len(got)]
        assert len(got) > 50
        assert bytewise.partial == (not data[:3000].endswith((b"\n", b"\r")))  # \r ends a line
    reader = SSEReader()
    nan = reader.feed(b'data: {"x": NaN}\n\ndata: {broken\n\n')
    assert len(nan) == 1  # read as json reads it
    assert nan[0]["x"] != nan[0]["x"]
    assert reader.bad == b"{broken"  # the first event that is not JSON, for the relay to refuse
    # An event's JSON over several data lines is joined with newlines (SSE's rule), in any chunking, \r\n
    # cut between its \r and its \n too; a line that is JSON alone is an event without a blank line after it.
    data = b'data: {"a":\r\ndata: 1,\r\ndata: "b": 2}\r\n\r\ndata: {"c": 3}\r\ndata: {"d": 4}\r\n\r\n'
    for size in (1, 2, 3, len(data)):
        reader = SSEReader()
        got = [e for i in range(0, len(data), size) for e in reader.feed(data[i : i + size])]
        assert got == [{"a": 1, "b": 2}, {"c": 3}, {"d": 4}]
        assert reader.bad is None
