"""`lwfsm judge explain` and `lwfsm judge eval`: the verdict on one request, and the judge measured on
labelled turns.

Two kinds of labelled input, one JSON object per line:
- a manifest of public transcripts: `{"id", "agent", "source": "owner/repo@commit:path", "sha256",
  "locator", "kind", ...}`; the transcripts themselves are read from `--sources DIR` (at
  `DIR/owner/repo/path`), checked against their digest, and converted by the agent's reader;
- captured requests: `{"agent"?, "headers"?, "body", "kind"}` (what `lwfsm serve` received, or the
  generated corpus in tests/judging/).
A turn counts as a failure when its kind fires the failure event under the spec's `judging.kinds`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shlex
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gateway.codec import CODECS
from ..gateway.codec.messages import anthropic_messages
from ..gateway.identity import side_call
from ..gateway.shape import Reject, check_responses, check_shape
from ..spec import Spec
from ..turn import TurnCore
from ..turn.agents import KINDS, TRANSCRIPTS, reader
from ..turn.judge import Judgement, last_reply, what_came_after

__all__ = ["Result", "evaluate", "explain", "outcomes_read", "read_lines", "request_turn", "summary"]

Message = Mapping[str, Any]


def read_lines(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        out, n = [], 0
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError as exc:
                        raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
                    except RecursionError:
                        raise ValueError(f"{path}:{n}: nested too deeply to read") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{n + 1}: not UTF-8 text: give a JSONL file") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a .gz cut short or damaged
            raise ValueError(f"{path}:{n + 1}: cannot read: {exc}") from None
        return out


Turn = tuple[Message, list[Message], list[Message], list[Message], dict[str, str]]


class NoTurn(ValueError):
    """A request the gateway serves but judges no turn from: a probe, a token count, a side call, a
    conversation's first call. Not a mistake in the capture (a ValueError is)."""


def request_turn(capture: Mapping[str, Any]) -> Turn:
    """(reply, after, tools, messages, headers) of the turn a captured request judges: its last
    assistant message and what follows it. `capture` is a request body or `{headers, body}`."""
    messages, tools, headers = _read(capture)
    last = last_reply(messages)
    if last is None:
        raise NoTurn("the request holds no assistant message: it is a conversation's first call, no turn to judge")
    return messages[last], what_came_after(messages), tools, messages, headers


def _read(capture: Mapping[str, Any]) -> tuple[list[Message], list[Message], dict[str, str]]:
    """(messages OpenAI-shaped, the system first; tools; headers) of a captured request, any protocol."""
    body = capture.get("body", capture)
    if not isinstance(body, Mapping):
        raise ValueError("the request has no JSON object body")
    headers = {str(k).lower(): str(v) for k, v in (capture.get("headers") or {}).items()} if "body" in capture else {}
    messages: list[Message]
    tools: list[Message]
    protocol = _protocol(capture, body)
    if protocol == "responses":
        read = CODECS["responses"].read_request(body)
        messages, tools = [*read.messages], [*read.tools]
    elif protocol == "anthropic":
        read = CODECS["anthropic"].read_request(body)
        messages, tools = [{"role": "system", "content": read.system}, *read.messages], [*read.tools]
    else:
        messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
        tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    return messages, tools, headers


def _protocol(capture: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    """The protocol of a captured request: its path when the capture has one, else its body's shape."""
    path = str(capture.get("path", "")).split("?")[0]
    for end, protocol in (("/responses", "responses"), ("/messages", "anthropic"), ("/chat/completions", "openai")):
        if path.endswith(end):
            return protocol
    if "input" in body:
        return "responses"
    return "anthropic" if "system" in body or "max_tokens" in body and _anthropic_blocks(body) else "openai"


def _anthropic_blocks(body: Mapping[str, Any]) -> bool:
    return any(
        isinstance(m, Mapping)
        and isinstance(m.get("content"), list)
        and any(isinstance(b, Mapping) and b.get("type") in ("tool_use", "tool_result") for b in m["content"])
        for m in body.get("messages") or ()
    )


def not_a_turn(capture: Mapping[str, Any]) -> str | None:
    """Why the gateway would judge no turn from this captured request (as it tells them apart), or None;
    a ValueError when it is no request the gateway would serve."""
    method, path = str(capture.get("method", "POST")).upper(), str(capture.get("path", "")).split("?")[0]
    if method != "POST":
        return f"a {method} request: no model call, no turn to judge"
    if path.endswith("/count_tokens"):
        return "a token count: no model call, no turn to judge"
    body = capture.get("body", capture)
    if isinstance(body, Mapping):  # what the gateway refuses is no request it serves: said, not judged
        protocol = _protocol(capture, body)
        try:
            if protocol == "responses":
                check_responses(body)
            else:  # max_tokens is the Messages API's own matter: a capture that left it out is still read
                check_shape(body, "anthropic" if protocol == "anthropic" else "openai", answered=False)
        except Reject as exc:
            raise ValueError(f"{exc.message}: the gateway answers such a request with a 400") from None
    try:
        messages, _tools, headers = _read(capture)
    except ValueError:
        return None  # request_turn says why
    system = "\n".join(str(m.get("content")) for m in messages if m.get("role") == "system")
    side = side_call(headers, body if isinstance(body, Mapping) else {}, messages, system)
    return f"a side call ({side}): the gateway serves it apart, no turn to judge" if side else None


def explain(core: TurnCore, capture: Mapping[str, Any], agent: str | None = None) -> tuple[Judgement, str]:
    if (why := not_a_turn(capture)) is not None:
        raise NoTurn(why)
    reply, after, tools, messages, headers = request_turn(capture)
    saved, core.agent = core.agent, agent or core.agent
    try:
        j = core.judgement(reply, after, tools, messages, headers)
    finally:
        core.agent = saved
    event = core.success if j.kind == "ok" else core.kinds[j.kind]
    return j, event


def outcomes_read(capture: Mapping[str, Any], agent: str) -> list[tuple[str, bool]]:
    """What the agent's reader took from the messages after the reply, one line each, and whether it
    failed by its status or flag: an ok verdict is explained by what it passed over."""
    reply, after, _tools, messages, _headers = request_turn(capture)
    before = messages[: last_reply(messages)]
    out = []
    for o in reader(agent).outcomes(reply, after, before):
        what = ((o.command or o.tool or "").strip().splitlines() or ["a result"])[0][:80]
        status = "no status" if o.status is None else f"exit {o.status}"
        out.append(
            (
                f"message {o.message + 1}: {what} ({status}{', flagged' if o.flagged else ''})",
                bool(o.status) or o.flagged,
            )
        )
    return out


@dataclass
class Result:
    id: str
    agent: str
    label: str  # the labelled kind
    judged: str  # the judge's kind
    failed: bool  # labelled a failure (under the spec's kinds)
    said_failed: bool
    why: str
    note: str = ""


_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def _source(source: str) -> tuple[str, str, str]:
    """(owner/repo, commit, path) of a manifest's `source`, each checked: the commands `judge sources`
    prints are run by a shell, and the path is written under --sources (a manifest may be anyone's)."""
    repo, _, rest = source.partition("@")
    commit, _, path = rest.partition(":")
    parts = path.split("/")
    if not _REPO.fullmatch(repo) or repo.split("/")[0] in (".", "..") or repo.split("/")[1] in (".", ".."):
        raise ValueError(f"source {source[:120]!r}: {repo[:80]!r} is not a GitHub owner/repository")
    if not _COMMIT.fullmatch(commit):
        raise ValueError(f"source {source[:120]!r}: {commit[:80]!r} is not a commit (7 to 40 hex digits)")
    if not path or path.startswith("/") or ".." in parts or "" in parts or "\0" in path:
        raise ValueError(f"source {source[:120]!r}: {path[:80]!r} is not a path inside the repository")
    return repo, commit, path


def _source_path(sources: Path, source: str) -> tuple[Path, str]:
    repo, commit, path = _source(source)
    return (
        sources / repo / path,
        f"git clone https://github.com/{repo} && git -C {repo.split('/')[1]} show {commit}:{path}",
    )


def fetch_commands(rows: Sequence[Mapping[str, Any]], sources: Path) -> list[str]:
    """Shell commands that put each transcript a manifest names at the path `evaluate` reads it from:
    a blobless clone per repository, then `git show` of the labelled commit's file."""
    out, cloned = [], set()
    for source in dict.fromkeys(str(r["source"]) for r in rows if "source" in r):
        repo, commit, path = _source(source)
        clone = sources / ".repos" / repo
        if repo not in cloned:
            cloned.add(repo)
            out.append(
                f"git clone -q --filter=blob:none --no-checkout https://github.com/{repo} {shlex.quote(str(clone))}"
            )
        target = sources / repo / path
        out.append(
            f"mkdir -p {shlex.quote(str(target.parent))} && "
            f"git -C {shlex.quote(str(clone))} show {shlex.quote(f'{commit}:{path}')} > {shlex.quote(str(target))}"
        )
    return out


# What names a turn in each agent's files (README: Judging a turn), and the keys that count positions.
LOCATORS = {
    "claude_code": ("message_id", "uuid"),
    "codex": ("line",),
    "aider": ("user_block",),
    "openhands": ("event_id", "index"),
    "swe_agent": ("step",),
    "mini_swe_agent": ("message_index",),
}
_NUMBERED = frozenset({"line", "user_block", "index", "step", "message_index"})


def evaluate(
    core: TurnCore, rows: Sequence[Mapping[str, Any]], sources: Path | None = None, split: str | None = None
) -> Iterator[Result]:
    """Judge every labelled turn; raises on a missing or altered source, naming how to fetch it."""
    failing = {k for k, ev in core.kinds.items() if ev == core.failure}
    cache: dict[str, bytes] = {}
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Mapping) or "kind" not in row:
            raise ValueError(f"row {n}: not a labelled turn (an object with its 'kind'): is it a manifest?")
        if split and row.get("split", "dev") != split:
            continue
        label = str(row["kind"])
        at = f"row {n} ({row.get('id', 'no id')})"
        if label not in KINDS:  # a typo would count as a turn that did not fail, and skew every figure
            raise ValueError(f"{at}: unknown kind {label!r}; a turn's kind is one of {', '.join(KINDS)}")
        if "source" in row:
            if sources is None:
                raise ValueError("this manifest names transcripts: give --sources DIR (where they were fetched)")
            path, fetch = _source_path(sources, row["source"])
            if row["source"] not in cache:
                if not path.is_file():
                    raise FileNotFoundError(f"{at}: {path}: missing; fetch it with: {fetch} > {path}")
                data = path.read_bytes()
                if (digest := hashlib.sha256(data).hexdigest()) != row.get("sha256"):
                    raise ValueError(
                        f"{at}: {path}: its sha256 is {digest}, the manifest's {row.get('sha256')}: not the file "
                        f"labelled ({fetch})"
                    )
                cache[row["source"]] = data
            if row.get("agent") not in TRANSCRIPTS:  # an error of the manifest's, not an unread turn
                try:
                    reader(str(row.get("agent")))
                except ValueError as exc:
                    raise ValueError(f"{at}: {exc}") from None
                raise ValueError(
                    f"{at}: no reader of {row.get('agent')}'s transcript files (lwfsm reads those of "
                    f"{', '.join(TRANSCRIPTS)}): give its turns as captured requests instead"
                )
            locator = row.get("locator")
            needs = LOCATORS[row["agent"]]
            if not isinstance(locator, dict) or not any(k in locator for k in needs):
                raise ValueError(
                    f"{at}: its locator must name the turn in its file ({' or '.join(needs)}), got {locator!r}"
                )
            if any(k in _NUMBERED and (type(v) is not int or v < 0) for k, v in locator.items()):
                raise ValueError(f"{at}: a locator's position is a whole number from 0, got {locator!r}")
            try:
                t = TRANSCRIPTS[row["agent"]](cache[row["source"]], row["locator"])
            # a reader meeting a format it does not know, or content nested too deeply to read (not MemoryError)
            except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
                # counted, as a turn the judge saw nothing of, and named: one file no reader knows must
                # not take the figures of every other turn with it
                said = f"{path} at {json.dumps(row.get('locator'))}: {type(exc).__name__}: {exc}"
                yield Result(str(row.get("id") or "?"), row["agent"], label, "unread", label in failing, False, said)
                continue
            before: Sequence[Message] = t.messages[: t.at]
            turn: Sequence[Message] = t.messages[t.at :]
            if t.protocol == "anthropic":  # normalised apart: a reply's blocks stay one message
                before, turn = (
                    anthropic_messages({"messages": before}),
                    anthropic_messages({"messages": turn}),
                )
            j = _judge_as(core, row["agent"], turn[0], list(turn[1:]), t.tools, [*before, *turn])
        else:
            reply, after, tools, messages, headers = request_turn(row)
            j = core.judgement(reply, after, tools, messages, headers)
        yield Result(
            str(row.get("id") or row.get("scenario") or "?"),
            str(row.get("agent") or j.agent),
            label,
            j.kind,
            label in failing,
            j.kind in failing,
            j.reason or "",
            "" if row.get("agent") in (None, j.agent) else f"read as {j.agent}",
        )


def _judge_as(
    core: TurnCore,
    agent: str,
    reply: Message,
    after: Sequence[Message],
    tools: Sequence[Message],
    messages: Sequence[Message],
) -> Judgement:
    reader(agent)  # an unknown agent in a manifest is an error here, not a silent generic reading
    saved, core.agent = core.agent, agent
    try:
        j: Judgement = core.judgement(reply, after, tools, messages, None)
        return j
    finally:
        core.agent = saved


def _pr(results: Sequence[Result]) -> tuple[int, int, int, int, float | None, float | None]:
    tp = sum(r.failed and r.said_failed for r in results)
    fp = sum(not r.failed and r.said_failed for r in results)
    fn = sum(r.failed and not r.said_failed for r in results)
    tn = len(results) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return tp, fp, fn, tn, precision, recall


def summary(results: Sequence[Result], spec: Spec, misjudged: int = 40) -> str:
    """Precision and recall of `failure` per agent and overall, the kinds' confusion, what was misjudged."""

    def f(x: float | None) -> str:
        return "  -  " if x is None else f"{x:.2f}"

    by: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by[r.agent].append(r)
    lines = [
        f"judged with spec '{spec.name}' v{spec.version}: a turn fails when its kind fires '{spec.judging.events[1]}'",
        "",
        f"{'agent':<16}{'turns':>6}{'fail':>6}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}",
    ]
    for agent in sorted(by):
        tp, fp, fn, _, p, rc = _pr(by[agent])
        lines.append(f"{agent:<16}{len(by[agent]):>6}{tp + fn:>6}{tp:>5}{fp:>5}{fn:>5}{f(p):>11}{f(rc):>8}")
    tp, fp, fn, _, p, rc = _pr(results)
    lines.append(f"{'overall':<16}{len(results):>6}{tp + fn:>6}{tp:>5}{fp:>5}{fn:>5}{f(p):>11}{f(rc):>8}")
    kinds = sorted({r.label for r in results} | {r.judged for r in results})
    confusion = Counter((r.label, r.judged) for r in results)
    lines += ["", "labelled \\ judged  " + "".join(f"{k[:12]:>13}" for k in kinds)]
    for a in kinds:
        lines.append(f"{a[:18]:<19}" + "".join(f"{confusion[(a, b)]:>13}" for b in kinds))
    unread = [r for r in results if r.judged == "unread"]
    if unread:
        lines += ["", f"UNREAD ({len(unread)}: no reader could read these turns; counted as judged, never failed):"]
        lines += [f"  {r.id}: {r.why}"[:400] for r in unread[:misjudged]]
    wrong = [r for r in results if r.failed != r.said_failed]
    if wrong:
        lines += ["", f"misjudged ({len(wrong)}; first {min(len(wrong), misjudged)}):"]
        for r in wrong[:misjudged]:
            lines.append(f"  {r.id}: labelled {r.label}, judged {r.judged}" + (f" ({r.why})" if r.why else ""))
    return "\n".join(lines)
