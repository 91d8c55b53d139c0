"""Which conversation a request belongs to: ids the agents already send, else a fingerprint.

Pure (headers as a lower-cased mapping, the parsed body). The id is always scoped by the client's
key, so one client's id can never steer another client's conversation; requests of a sub-agent
(which shares its parent's session id) are keyed by (session, agent).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AGENT_HEADERS", "SESSION_HEADERS", "Identity", "identify", "scope_of"]

# In order of precedence, lower-case.
SESSION_HEADERS = (
    "x-lwfsm-session",
    "x-claude-code-session-id",
    "session-id",  # Codex
    "session_id",  # older Codex
    "conversation_id",
    "agent-session-id",  # goose
    "goose-session-id",  # older goose
    "x-litellm-session-id",  # OpenHands
    "x-session-id",
)
AGENT_HEADERS = ("x-claude-code-agent-id", "thread-id", "x-openai-subagent")

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,96}$")  # no ".": it separates the parts of a key
_CLAUDE_USER = re.compile(r"session_([0-9A-Za-z-]{8,})")


@dataclass(frozen=True)
class Identity:
    key: str  # the store key: scope, session, agent
    session: str  # the id as the client gave it (or the fingerprint)
    source: str  # where it came from: a header name, "metadata.user_id", "prompt_cache_key", "fingerprint"
    agent: str | None = None

    @property
    def confident(self) -> bool:
        return self.source != "fingerprint"


def _digest(*parts: str, n: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:n]


def _part(value: str) -> str:
    value = value.strip()
    return value if _SAFE.match(value) else "h" + _digest(value)


def scope_of(client_key: str | None) -> str:
    """A short, non-reversible tag of the client's key ("anon" without one)."""
    return "k" + _digest(client_key, n=10) if client_key else "anon"


def _claude_metadata(body: Mapping[str, Any]) -> str | None:
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), Mapping) else None
    if not isinstance(user, str):
        return None
    if user.startswith("{"):
        try:
            sid = json.loads(user).get("session_id")
        except (ValueError, AttributeError):
            sid = None
        return sid if isinstance(sid, str) and sid else None
    m = _CLAUDE_USER.search(user)
    return m.group(1) if m else None


def _codex_metadata(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("x-codex-turn-metadata")
    if not raw:
        return None
    try:
        sid = json.loads(raw).get("session_id")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, str) and sid else None


def identify(
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    system: str,
    tools: Sequence[str],
    client_key: str | None,
) -> Identity:
    """The conversation of a request. `headers` lower-cased; `messages` OpenAI-shaped; `tools` names."""
    session: str | None = None
    source = ""
    for name in SESSION_HEADERS[:2]:
        if headers.get(name):
            session, source = headers[name], name
            break
    if session is None and (sid := _claude_metadata(body)):
        session, source = sid, "metadata.user_id"
    if session is None and (sid := _codex_metadata(headers)):
        session, source = sid, "x-codex-turn-metadata"
    if session is None:
        for name in SESSION_HEADERS[2:]:
            if headers.get(name):
                session, source = headers[name], name
                break
    if session is None and isinstance(body.get("prompt_cache_key"), str) and body["prompt_cache_key"]:
        session, source = body["prompt_cache_key"], "prompt_cache_key"
    if session is None:
        first = next((m for m in messages if m.get("role") == "user"), None)
        text = json.dumps(first.get("content"), sort_keys=True) if first else ""
        session, source = "fp-" + _digest(system, text, ",".join(sorted(tools))), "fingerprint"
    agent = next((headers[h] for h in AGENT_HEADERS if headers.get(h)), None)
    key = f"{scope_of(client_key)}.{_part(session)}" + (f".{_part(agent)}" if agent else "")
    return Identity(key, session, source, agent)
