"""What a request must be before it is judged or sent anywhere, per protocol: a client's mistake is its
400, never an upstream error (nor a call to the lead's model). Plain checks on the parsed body, no
HTTP: the gateway's intake makes them, and `lwfsm judge explain` tells a capture the gateway would
refuse from a request it would serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..turn import params

__all__ = ["Protocol", "Reject", "check_responses", "check_shape", "content_shaped"]

Protocol = Literal["openai", "anthropic"]


class Reject(Exception):
    """A request refused before any upstream call: (status, message) in the client's protocol."""

    def __init__(
        self, status: int, message: str, kind: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        # kind None: the protocol's name for the status (Anthropic's request_too_large for a 413)
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, dict(headers or {})


_ROLES_SAID = {
    "openai": ("system", "developer", "user", "assistant", "tool", "function"),
    "anthropic": ("user", "assistant", "system"),  # Claude Code 2.1 sends system messages between turns
}
_ROLES = {protocol: frozenset(roles) for protocol, roles in _ROLES_SAID.items()}


def content_shaped(content: Any) -> bool:
    """A message's content as every protocol has it: none, text, or a list of parts (objects)."""
    if type(content) is list:
        for part in content:  # a loop, not all(): read on every call for every message, twice the speed
            if type(part) is not dict:
                return False
        return True
    return content is None or type(content) is str


def check_shape(body: Mapping[str, Any], protocol: Protocol, answered: bool = True) -> None:
    """What both turn protocols require of a request before it is judged or sent anywhere: a client's
    mistake is its 400, never an upstream error (nor a call to the lead's model)."""
    messages = body.get("messages")
    if "messages" not in body:
        raise Reject(400, "the request has no 'messages': send the conversation as a list of messages")
    if not isinstance(messages, list):
        raise Reject(400, "'messages' must be a list")
    roles = _ROLES[protocol]
    for i, m in enumerate(messages):  # one pass, plain checks: every call of a long conversation reads them all
        if not isinstance(m, dict):
            raise Reject(400, f"'messages[{i}]' must be an object, got {type(m).__name__}")
        if m.get("role") not in roles:  # sent on, it would be judged as nobody's
            raise Reject(
                400,
                f"'messages[{i}].role' must be one of {', '.join(_ROLES_SAID[protocol])}, got {m.get('role')!r:.40}",
            )
        if type(content := m.get("content")) is not str and not content_shaped(content):  # text: no call
            raise Reject(400, f"'messages[{i}].content' must be text or a list of parts (objects)")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise Reject(400, "'tools' must be a list of objects")
    if any(not isinstance(t.get("function", {}), dict) for t in tools or ()):
        raise Reject(400, "a tool's 'function' must be an object")
    if body.get("stream") not in (None, True, False):
        raise Reject(400, f"'stream' must be true or false, got {body['stream']!r:.40}")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise Reject(400, "'metadata' must be an object")
    if not messages:
        raise Reject(400, "'messages' must hold at least one message")
    if answered and protocol == "anthropic" and not (type(body.get("max_tokens")) is int and body["max_tokens"] >= 1):
        # the Messages API requires it; without it LiteLLM's translation fails, which read as the upstream's 502
        if "max_tokens" not in body:
            raise Reject(400, "'max_tokens' is missing: the Messages API requires it (an integer of 1 or more)")
        raise Reject(400, f"'max_tokens' must be an integer of 1 or more, got {body['max_tokens']!r:.40}")


def check_responses(body: Mapping[str, Any]) -> None:
    """What a Responses request must be before it is judged or sent on: what the Chat call would silently
    drop or echo (a paid call on what the client did not mean) is the client's 400."""
    why = params.refused("responses", body)
    if why is not None:
        raise Reject(400, why)
    items = body.get("input")
    if not isinstance(items, str | list):
        raise Reject(400, "'input' must be a string or a list of items")
    if items == [] and body.get("previous_response_id") is None:
        raise Reject(400, "'input' holds no item: send the person's message")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            raise Reject(400, f"'input[{i}]' must be an item (an object), got {type(item).__name__}")
        message = item.get("type") == "message" or ("type" not in item and "role" in item)  # else item_reference...
        if message and (item.get("content") is None or not content_shaped(item["content"])):
            raise Reject(400, f"'input[{i}].content' must be text or a list of parts (objects)")
    if body.get("stream") not in (None, True, False):
        raise Reject(400, f"'stream' must be true or false, got {body['stream']!r:.40}")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise Reject(400, "'tools' must be a list")
    for i, t in enumerate(tools or ()):
        if not isinstance(t, dict) or (t.get("type") == "function" and not isinstance(t.get("name"), str)):
            raise Reject(400, f"'tools[{i}]' must be a tool object; a function tool has a 'name' beside its type")
    if "model" in body and not isinstance(body["model"], str):
        raise Reject(400, f"'model' must be a string, got {type(body['model']).__name__}")
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise Reject(400, "'previous_response_id' must be a string")
