"""The fingerprint of a conversation whose client sends no id: what the person said to open it.

A request is the agent's fixed scaffolding around the conversation. Left in, the scaffolding makes
every session of an agent look alike (aider's example exchanges made all its sessions one
conversation); the date or a file listing in it changes within a session. So the fingerprint keeps
only the *opening*: the user messages before the model's first reply, once the scaffolding is gone.
It is the same in every request of a session (the history only grows after it) and differs between
sessions whose openings differ. What is scaffolding:

- system and developer messages (never part of the fingerprint: agents put the date there);
- a fixed exchange that ends an agent's examples: everything up to it is examples;
- fixed context exchanges an agent puts around the history (a repository map, the files in the chat,
  each acknowledged with a fixed reply), whatever their content;
- a tail that repeats the end of the system prompt, which an agent appends to the message it sends
  (aider's format reminder): the opening then reads the same before and after the model answered.

A few-shot example and a real exchange have the same shape, so the fixed exchanges are recognised by
a digest of their fixed text (no agent's prose is kept here). The digests come from the traffic of the
agent versions named below, captured against a fake upstream; tests/test_aider_identity.py runs real
aider in its default mode, whose sessions would merge if the digests they meet drifted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["fingerprint", "opening"]

_EXAMPLES_WITHIN = 32  # examples open a request: the end of them is looked for this far only
_LONGEST_FIXED = 256  # no fixed text below is longer: longer messages are never hashed to look them up


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# aider 0.86.2 (code, ask and architect modes; diff and whole edit formats).
# The user message that closes its example exchanges (answered with a fixed "Ok.").
EXAMPLES_END = frozenset({"8601973e02431fa8"})
# User messages of a fixed context exchange: "no files shared yet", in the code and the ask modes.
FIXED_ASKS = frozenset({"38fa0d996739fbc0", "5ff7bd7cc856a2a3"})
# Fixed replies acknowledging context (the repository map, the files in the chat, read-only files,
# no files with a map) whatever the context was.
FIXED_ACKS = frozenset(
    {
        "233e4fae435381cc",  # the repository map
        "72ae34d3da9cdd24",  # the files in the chat (code mode)
        "2ee213c536aba563",  # the files in the chat (ask and architect modes)
        "20d2b1e8ce63c73d",  # read-only files
        "ae46fa66b8e68fde",  # no files in the chat, a repository map
    }
)


def _fixed(message: Mapping[str, Any], digests: frozenset[str]) -> bool:
    c = message.get("content")
    return isinstance(c, str) and len(c) <= _LONGEST_FIXED and _sha(c) in digests


def _text(content: Any) -> str:
    """A message's text: its text parts (not a cache marker that moves between calls), else all of it."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(p.get("text")) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        if texts:
            return "\n".join(texts)
    return json.dumps(content, sort_keys=True)


def _common_suffix(text: str, system: str) -> int:
    """The length of the longest common suffix (a binary search over compares done in C; the slices
    are of the system prompt, so a long message costs no more than a short one)."""
    lo, hi = 0, min(len(text), len(system))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text.endswith(system[len(system) - mid :]):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _without_reminder(text: str, system: str) -> str:
    """`text` without its closing paragraphs when the system prompt (`system`, its end stripped) ends with
    them, as it does with the format reminder aider appends to the message it sends (and only to that one)."""
    text = text.rstrip()
    # The first paragraph break from which the rest of the text is a tail of the system prompt.
    cut = text.find("\n\n", max(0, len(text) - _common_suffix(text, system) - 2))
    return (text[:cut] if cut != -1 else text).strip()


def opening(messages: Sequence[Mapping[str, Any]], system: str) -> list[str]:
    """The texts of the user messages that open the conversation, the agent's scaffolding left out.
    `messages` OpenAI-shaped; `system` the system prompt's text."""
    start = 0  # examples end where the agent says they do
    for i, m in enumerate(messages[: min(len(messages) - 1, _EXAMPLES_WITHIN)]):
        if m.get("role") == "user" and messages[i + 1].get("role") == "assistant" and _fixed(m, EXAMPLES_END):
            start = i + 2
            break
    out: list[str] = []
    system = system.rstrip()  # once: per message it copied the system prompt (8 MB judged in 10 s)
    i = start
    while i < len(messages):
        m = messages[i]
        role = m.get("role")
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        if role == "user" and nxt is not None and nxt.get("role") == "assistant":
            if _fixed(nxt, FIXED_ACKS) or _fixed(m, FIXED_ASKS):
                i += 2  # a context exchange, not the person's words
                continue
        if role == "user":
            out.append(_without_reminder(_text(m.get("content")), system))
        elif role == "assistant":
            break  # the model's first reply: the opening is over
        i += 1
    return out


def fingerprint(messages: Sequence[Mapping[str, Any]], system: str, tools: Sequence[str]) -> str:
    """A short digest of the opening and of the tools offered (a session offers the same ones)."""
    h = hashlib.sha256(b"opening\0")
    for part in (*opening(messages, system), ",".join(sorted(tools))):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]
