"""Which conversation a request belongs to, and whether it is a turn at all.

Pure (headers as a lower-cased mapping, the parsed body). The id is always scoped by the client's
key, so one client's id can never steer another client's conversation; requests of a sub-agent
(which shares its parent's session id) are keyed by (session, agent). `side_call` tells the calls
an agent makes beside its conversation (a title, a compaction, a commit message), which are served
and priced but are not turns. Every rule here comes from captured traffic of the agent versions named
in tests/agent_traffic/.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..turn.bindings import is_loopback
from .codec.common import first_user_text
from .fingerprint import fingerprint

__all__ = [
    "AGENT_HEADERS",
    "SESSION_HEADERS",
    "SIDE_MARKERS",
    "Identity",
    "identify",
    "is_loopback",
    "scope_of",
    "side_call",
    "stored_as",
]

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


def _header_text(value: str) -> str:
    """A header's value as the client wrote it: servers hand headers over decoded as latin-1, and
    clients send UTF-8 (an id "héllo" would read "hÃ©llo")."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


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


def _codex_metadata(headers: Mapping[str, str]) -> dict[str, Any]:
    """Codex's `x-codex-turn-metadata` JSON ({} when absent or unreadable)."""
    raw = headers.get("x-codex-turn-metadata")
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


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
    if session is None and isinstance(sid := _codex_metadata(headers).get("session_id"), str) and sid:
        session, source = sid, "x-codex-turn-metadata"
    if session is None:
        for name in SESSION_HEADERS[2:]:
            if headers.get(name):
                session, source = headers[name], name
                break
    if session is None and isinstance(body.get("prompt_cache_key"), str) and body["prompt_cache_key"]:
        session, source = body["prompt_cache_key"], "prompt_cache_key"
    if session is None:  # what opened the conversation, the agent's fixed scaffolding left out
        session, source = "fp-" + fingerprint(messages, system, tools), "fingerprint"
    # Codex sends its thread id on every call: the main thread's is the session id itself.
    agent = next((headers[h] for h in AGENT_HEADERS if headers.get(h) and headers[h] != session), None)
    key = f"{scope_of(client_key)}.{_part(session)}" + (f".{_part(agent)}" if agent else "")
    if source not in ("metadata.user_id", "prompt_cache_key", "fingerprint"):
        session = _header_text(session)
    # The key holds a digest of a long id; the id itself is kept for people to read, so it is cut short.
    return Identity(key, _short(session), source, _short(_header_text(agent)) if agent else None)


_SCOPED = re.compile(r"(?:anon|k[0-9a-f]{10})\.")


def stored_as(keys: Iterable[str], name: str) -> str:
    """For a "no session" message: the stored ids of the conversation a client named `name` (the gateway
    puts a tag of the client's key first, and an agent's thread after), else ""."""
    found = [
        k for k in keys if (m := _SCOPED.match(k)) and (k[m.end() :] == name or k[m.end() :].startswith(name + "."))
    ]
    if not found:
        return ""
    return f"; stored as {', '.join(repr(k) for k in found[:5])} (the gateway puts a tag of the client's key first)"


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "…"


# (kind, where, text): a call is a side call of that kind when the text is in its system prompt
# ("system") or in its last user message ("last"). Only what distinguishes the call in captures.
SIDE_MARKERS = (
    ("compaction", "last", "Your task is to create a detailed summary of the conversation so far"),  # Claude Code
    ("compaction", "last", "You are performing a CONTEXT CHECKPOINT COMPACTION"),  # Codex
    ("title", "system", "Generate a concise, sentence-case title"),  # Claude Code
    ("title", "last", "Generate a concise, single-line task title"),  # Codex
    ("commit_message", "system", "generates concise, one-line Git commit messages"),  # aider
    ("summary", "system", "*Briefly* summarize this partial conversation about programming"),  # aider
)


def _schema_properties(body: Mapping[str, Any]) -> set[str] | None:
    """The properties of the JSON schema the request asks its answer to follow, if it asks for one:
    Anthropic `output_config.format`, Responses `text.format`, Chat Completions `response_format`."""
    for outer, inner in (("output_config", "format"), ("text", "format"), ("response_format", "json_schema")):
        fmt = body.get(outer)
        fmt = fmt.get(inner) if isinstance(fmt, Mapping) else None
        schema = fmt.get("schema") if isinstance(fmt, Mapping) else None
        props = schema.get("properties") if isinstance(schema, Mapping) else None
        if isinstance(props, Mapping):
            return set(props)
    return None


def side_call(
    headers: Mapping[str, str], body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], system: str
) -> str | None:
    """The kind of side call a request is ("title", "compaction", "commit_message", "summary"), or
    None for a turn. `messages` OpenAI-shaped; `system` the system prompt's text."""
    meta = _codex_metadata(headers)
    if meta.get("request_kind") == "compaction":
        return "compaction"
    if meta.get("thread_source") == "thread_title":
        return "title"
    if _schema_properties(body) == {"title"}:  # an answer that is only a title (Claude Code, Codex)
        return "title"
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = first_user_text([last]) if last else ""  # its text parts: never an image's bytes
    for kind, where, marker in SIDE_MARKERS:
        if marker in (system if where == "system" else text):
            return kind
    return None
