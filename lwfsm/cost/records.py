"""The trace format: one JSON object per line, one line per judged turn (what the adapter's and the
gateway's logs write, see `lwfsm.turn.core.Judged.record`). `trace.schema.json` beside this module
is generated from `TraceRecord` (a test keeps the two in sync); hand-written traces are accepted
and their mistakes are reported as `file:line: field: problem`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import TraceError
from ..turn.ledger import Usage

__all__ = ["SCHEMA_PATH", "TraceError", "TraceRecord", "TransitionInfo", "load_trace", "parse_lines", "schema"]

SCHEMA_PATH = Path(__file__).with_name("trace.schema.json")


class _Record(BaseModel):
    # Front ends may add fields of their own (the gateway adds its request id): kept out, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class TransitionInfo(_Record):
    source: str = Field(description="state the turn was served in")
    dest: str = Field(description="state after the turn's event")
    index: int | None = Field(default=None, description="index of the spec transition that fired")
    guard: str | None = Field(default=None, description="that transition's guard")


class Evidence(_Record):
    rule: str = Field(description="the judging rule that decided, e.g. claude_code.exit_status=1")
    message: int | None = Field(default=None, description="which message after the reply (0-based); null: the reply")
    line: int | None = Field(default=None, description="the line in that message")
    excerpt: str = Field(default="", description="the line or phrase that showed it")


class TraceRecord(_Record):
    """One judged turn."""

    session: str = Field(min_length=1, description="conversation id; the turns of one conversation share it")
    turn: int = Field(ge=1, description="turn number within the conversation, from 1, increasing")
    state: str | None = Field(default=None, description="state that served the turn")
    role: str = Field(min_length=1, description="role that served the turn (lead, worker, ...)")
    model: str = Field(min_length=1, description="model that served the turn, as LiteLLM names it")
    outcome: str = Field(min_length=1, description="event the verdict fired: turn_completed or failure")
    reason: str | None = Field(default=None, description="why the turn failed (failures only)")
    kind: str | None = Field(
        default=None,
        description="what the judge saw: ok, task_failure, environment, user_correction, rejected "
        "(null: fired by hand)",
    )
    evidence: Evidence | None = Field(default=None, description="where the judge saw it")
    prompt_tokens: int = Field(default=0, ge=0, description="all input tokens, cached ones included")
    completion_tokens: int = Field(default=0, ge=0, description="output tokens, reasoning included")
    cache_read_tokens: int = Field(default=0, ge=0, description="input tokens read from the prompt cache")
    cache_write_tokens: int = Field(default=0, ge=0, description="input tokens written to the prompt cache")
    reasoning_tokens: int = Field(default=0, ge=0, description="reasoning tokens (part of completion_tokens)")
    cost: float | None = Field(default=None, ge=0, description="dollars as priced when recorded; null: no price")
    latency: float = Field(default=0.0, ge=0, description="seconds the call took")
    transition: TransitionInfo | None = Field(default=None, description="what the turn's event did to the machine")

    @property
    def usage(self) -> Usage:
        """The turn's tokens by kind, as the ledger and the pricer take them."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


def schema() -> dict[str, Any]:
    """The JSON Schema of one trace line (what `trace.schema.json` holds)."""
    out = TraceRecord.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "lwfsm trace record (one JSONL line per judged turn)"
    return out


def _located(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        out.append(
            f"{where}: {field}: {msg} (got {err['input']!r})"
            if err["type"] != "missing"
            else f"{where}: {field}: {msg}"
        )
    return out


def parse_lines(lines: Iterable[str], source: str) -> list[TraceRecord]:
    """Records from JSONL text; blank lines and lines starting with '#' are skipped."""
    records: list[TraceRecord] = []
    problems: list[str] = []
    last_turn: dict[str, tuple[int, int]] = {}  # session -> (turn, line)
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: expected a JSON object, got {type(data).__name__}")
            continue
        try:
            rec = TraceRecord.model_validate(data)
        except ValidationError as exc:
            problems.extend(_located(where, exc))
            continue
        prev = last_turn.get(rec.session)
        if prev is not None and rec.turn <= prev[0]:
            problems.append(
                f"{where}: turn: session '{rec.session}' goes from turn {prev[0]} (line {prev[1]}) to turn "
                f"{rec.turn}; turns of a conversation must increase"
            )
        cached = rec.cache_read_tokens + rec.cache_write_tokens
        if cached > rec.prompt_tokens:
            problems.append(
                f"{where}: cache_read_tokens + cache_write_tokens ({cached}) exceed prompt_tokens "
                f"({rec.prompt_tokens}); prompt_tokens counts all input tokens, cached ones included"
            )
        last_turn[rec.session] = (rec.turn, number)
        records.append(rec)
    if problems:
        raise TraceError(problems)
    return records


def load_trace(*paths: str | Path) -> list[TraceRecord]:
    """Every record of the given JSONL files, in file order; raises TraceError listing every problem."""
    records: list[TraceRecord] = []
    problems: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        try:
            records.extend(parse_lines(text.splitlines(), str(path)))
        except TraceError as exc:
            problems.extend(exc.problems)
    if problems:
        raise TraceError(problems)
    return records


def conversations(records: Iterable[TraceRecord]) -> dict[str, list[TraceRecord]]:
    """Records grouped by session, in order of first appearance, each in turn order."""
    out: dict[str, list[TraceRecord]] = {}
    for r in records:
        out.setdefault(r.session, []).append(r)
    for turns in out.values():
        turns.sort(key=lambda r: r.turn)
    return out
