"""The trace format: one JSON object per line, one line per judged turn (what the adapter's and the
gateway's logs write, see `lwfsm.turn.core.Judged.record`). `trace.schema.json` beside this module
is generated from `TraceRecord` (a test keeps the two in sync); hand-written traces are accepted
and their mistakes are reported as `file:line: field: problem`."""

from __future__ import annotations

import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import TraceError, did_you_mean
from ..turn.core import CUT_SHORT
from ..turn.ledger import Usage

logger = logging.getLogger("lwfsm.cost")

__all__ = [
    "SCHEMA_PATH",
    "Problems",
    "TraceError",
    "TraceRecord",
    "TransitionInfo",
    "load_trace",
    "numbered_records",
    "parse_lines",
    "read_records",
    "schema",
]

SCHEMA_PATH = Path(__file__).with_name("trace.schema.json")
MAX_TOKENS = 10**12  # tokens of one call; past this a count is a mistake (and would overflow a price)
MAX_LINE = 1 << 20  # bytes of one JSONL line; a record is a few hundred
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _tokens(description: str) -> Any:
    return Field(default=0, ge=0, le=MAX_TOKENS, description=description)


class _Record(BaseModel):
    # Front ends may add fields of their own (the gateway adds its request id): kept out, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, allow_inf_nan=False)


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
    reason: str | None = Field(
        default=None,
        description="why the turn failed (failures only); its 'at message N' counts from 1, evidence.message from 0",
    )
    kind: str | None = Field(
        default=None,
        description="what the judge saw: ok, task_failure, environment, user_correction, rejected "
        "(null: fired by hand)",
    )
    evidence: Evidence | None = Field(default=None, description="where the judge saw it")
    prompt_tokens: int = _tokens("all input tokens, cached ones included")
    completion_tokens: int = _tokens("output tokens, reasoning included")
    cache_read_tokens: int = _tokens("input tokens read from the prompt cache")
    cache_write_tokens: int = _tokens("input tokens written to the prompt cache")
    reasoning_tokens: int = _tokens("reasoning tokens (part of completion_tokens)")
    unreported: int = Field(
        default=0,
        ge=0,
        le=1,
        description="1: the provider reported no tokens; the counts are unknown, so is the cost (a record that "
        "gives none of the token counts is read as 1)",
    )
    cost: float | None = Field(default=None, ge=0, description="dollars as priced when recorded; null: no price")
    latency: float = Field(default=0.0, ge=0, description="seconds the call took")
    transition: TransitionInfo | None = Field(default=None, description="what the turn's event did to the machine")
    handoff: str | None = Field(default=None, description="the handoff note the turn's call carried (null: none)")
    handoff_tokens_estimate: int = Field(
        default=0, ge=0, description="the note's tokens, estimated as characters / 4 (part of prompt_tokens)"
    )
    spec: str | None = Field(
        default=None, description="the spec that judged the turn (`Spec.rules_hash`: params left out; null: not said)"
    )

    @model_validator(mode="before")
    @classmethod
    def _tokens_unknown(cls, data: Any) -> Any:
        """A record that leaves out its input or its output tokens (written by hand or by another tool)
        has unknown tokens, as one the provider reported none for: priced as unknown, never with the
        missing count as 0 (a record of reasoning tokens alone was priced at $0)."""
        if isinstance(data, dict):  # a token count under a name not ours would be read as none: refused
            for name in data:
                if isinstance(name, str) and name.endswith("_tokens") and name not in cls.model_fields:
                    known = [n for n in cls.model_fields if n.endswith("_tokens")]
                    raise ValueError(f"unknown token count {name!r}{did_you_mean(name, known)}: it would be read as 0")
        given = isinstance(data, dict) and "unreported" not in data
        if given and ("prompt_tokens" not in data or "completion_tokens" not in data):
            return {**data, "unreported": 1}
        return data

    @property
    def usage(self) -> Usage:
        """The turn's tokens by kind, as the ledger and the pricer take them."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
            unreported=self.unreported,
        )


def schema() -> dict[str, Any]:
    """The JSON Schema of one trace line (what `trace.schema.json` holds)."""
    out = TraceRecord.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "lwfsm trace record (one JSONL line per judged turn)"
    return out


def _shown(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _located(where: str, exc: ValidationError, line: bytes | str | None = None) -> list[str]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        kind, msg = err["type"], err["msg"]
        if kind == "json_invalid":
            if "recursion limit" in msg:
                out.append(f"{where}: nested too deeply to be a trace record (a record nests two levels)")
            else:
                out.append(f"{where}: not JSON: {msg.removeprefix('Invalid JSON: ')}")
        elif kind in ("model_type", "model_attributes_type"):
            out.append(f"{where}: expected a JSON object, got {_json_kind(line)}")
        elif kind == "missing":
            out.append(f"{where}: {field}: required field is missing")
        elif kind == "less_than_equal" and field in _TOKEN_FIELDS:
            out.append(
                f"{where}: {field}: {_shown(err['input'])} is not the token count of one call (at most {MAX_TOKENS:,})"
            )
        else:
            out.append(f"{where}: {field}: {msg} (got {_shown(err['input'])})")
    return out


def _json_kind(line: bytes | str | None) -> str:
    first = (line or b"").strip()[:1]
    first = first.encode() if isinstance(first, str) else first
    return {b"[": "list", b'"': "str", b"t": "bool", b"f": "bool", b"n": "null"}.get(first, "number")


class Problems:
    """The problems a reader found, in order; the first `keep` are kept, the rest counted."""

    def __init__(self, keep: int = 100) -> None:
        self.kept: list[str] = []
        self.more = 0
        self._keep = keep

    def extend(self, problems: Iterable[str]) -> None:
        for p in problems:
            if len(self.kept) < self._keep:
                self.kept.append(p)
            else:
                self.more += 1

    def __bool__(self) -> bool:
        return bool(self.kept)

    def check(self) -> None:
        if self.kept:
            raise TraceError(self.kept, self.more)


def trace_files(paths: Iterable[str | Path], problems: Problems) -> list[str | Path]:
    """The files to read: each path, or a directory's trace files (*.jsonl, *.jsonl.gz, *.parquet) in name order.
    A URL (s3://bucket/traces/, gs://..., file://...) is read through fsspec, a folder of it listed the same way."""
    out: list[str | Path] = []
    for given in paths:
        if isinstance(given, str) and "://" in given:
            out += _remote_files(given, problems)
            continue
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
            if not found:
                problems.extend([f"{path}: no trace files in this directory (looked for {', '.join(SUFFIXES)})"])
            out += found
        else:
            out.append(path)
    return out


def _fsspec(url: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"{url}: reading a URL needs fsspec: pip install 'lwfsm[dask]'") from None
    return fsspec


def _remote_files(url: str, problems: Problems) -> list[str]:
    try:
        fs, root = _fsspec(url).core.url_to_fs(url)
        if not fs.isdir(root):
            return [url]
        found = sorted(p for p in fs.ls(root, detail=False) if p.endswith(SUFFIXES))
    except (ImportError, OSError, ValueError) as exc:  # no fsspec, no package for the scheme (s3fs), no access
        problems.extend([f"{url}: cannot list: {exc}"])
        return []
    if not found:
        problems.extend([f"{url}: no trace files in this folder (looked for {', '.join(SUFFIXES)})"])
    return [fs.unstrip_protocol(p) for p in found]


def _open(path: str | Path) -> IO[bytes]:
    if isinstance(path, str):  # a URL (trace_files made every local path a Path)
        f: IO[bytes] = _fsspec(path).open(path, "rb").open()
        return f
    return path.open("rb")


SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def _lines(path: str | Path, problems: Problems) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of a JSONL file, plain or gzip; a line longer than MAX_LINE is a problem."""
    try:
        raw = _open(path)
        peek = getattr(raw, "peek", None)  # a pipe (`... | lwfsm report /dev/stdin`) cannot seek back
        if peek is None:
            magic = raw.read(2)
            raw.seek(0)
        else:
            magic = peek(2)[:2]
            if len(magic) < 2:  # a pipe that holds one byte yet: read two, and put them back
                magic = raw.read(2)
                raw = io.BufferedReader(_Rejoined(magic, raw))
    except (OSError, ImportError, ValueError) as exc:
        problems.extend([f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"])
        return
    with raw:
        f: IO[bytes] = raw
        if magic == b"\x1f\x8b":  # gzip's magic number, whatever the file is called
            f = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
        number = 0
        try:
            while line := f.readline(MAX_LINE):
                number += 1
                if len(line) == MAX_LINE and not line.endswith(b"\n"):
                    while (rest := f.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        pass
                    problems.extend([f"{path}:{number}: line longer than {MAX_LINE:,} bytes: not a trace record"])
                    continue
                if not line.endswith(b"\n") and line.strip() and not _whole(line):
                    # the last line, cut short: what a writer stopped mid-line (killed, disk full) leaves
                    logger.warning("%s:%d: skipped: the last line is cut short (its writer stopped)", path, number)
                    continue
                yield number, line
        except (OSError, EOFError, zlib.error) as exc:
            problems.extend([f"{path}:{number + 1}: cannot read: {exc}"])


class _Rejoined(io.RawIOBase):
    """A stream's first bytes, read to look at them, before the rest of it (a pipe cannot seek back)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(b)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.rest.close()
        super().close()


def _whole(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _parquet_rows(path: str | Path, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        problems.extend([f"{path}: reading Parquet needs pyarrow: pip install 'lwfsm[parquet]'"])
        return
    number = 0
    try:
        for batch in pq.ParquetFile(_open(path)).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                number += 1
                # a table has every column in every row: a null is a field the record left out
                yield number, {k: v for k, v in row.items() if v is not None}
    except (OSError, ValueError, ImportError) as exc:
        problems.extend([f"{path}: cannot read as Parquet: {exc}"])


def read_records(
    paths: Iterable[str | Path],
    problems: Problems | None = None,
    check: Callable[[TraceRecord], str | None] | None = None,
) -> Iterator[TraceRecord]:
    """The records of trace files (JSONL, plain or gzip, or Parquet; a directory: its trace files), streamed
    in file order. Memory grows with the number of conversations, not of lines. Bad lines are skipped and
    collected; once the files are read, TraceError lists them (`file:line: field: problem`) and nothing
    past the first problem was yielded. Blank lines and lines starting with '#' are skipped. `check` may
    find a problem in a record (a role its spec does not have), located like the others."""
    own = problems is None
    problems = problems or Problems()
    seen = _Seen()
    for path in trace_files(paths, problems):
        for _, rec in _checked(_rows(path, problems), str(path), seen, problems, check=check):
            yield rec
    if own:
        problems.check()


Row = bytes | dict[str, Any]  # a JSONL line or a Parquet row


class _Seen:
    """What the records read so far say of each conversation: its last turn (turn, file, line), and the name
    a session begun anew in another file goes by (`session#2`: the gateway's trace of a conversation
    deleted or expired, then begun again under its id, is a file of its own starting at turn 1)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, str, int]] = {}  # name -> its last turn
        self.alias: dict[tuple[str, str], str] = {}  # (session, file) -> the name it goes by there
        self.first: dict[str, int] = {}  # name -> a hash of its turn 1 (the same again: a file read twice)

    @staticmethod
    def digest(rec: TraceRecord, line: Row) -> int:
        return hash(line) if isinstance(line, bytes) else hash(rec.model_dump_json())

    def name(self, rec: TraceRecord, source: str, line: Row) -> str:
        """The conversation `rec` is of: its session, or the name the session begun anew in `source` has."""
        session = rec.session
        name = self.alias.get((session, source), session) if self.alias else session
        prev = self.last.get(name)
        if (
            prev is None
            or rec.turn != 1
            or prev[1] == source
            or name != session
            or self.digest(rec, line) == self.first.get(session)
        ):
            return name
        n = 2
        while f"{session}#{n}" in self.last:  # a name no session of the trace has (nor one given before)
            n += 1
        name = self.alias[session, source] = f"{session}#{n}"
        return name


def numbered_records(
    files: Iterable[str | Path],
    problems: Problems,
    keep: Callable[[Row], bool] | None = None,
    check: Callable[[TraceRecord], str | None] | None = None,
) -> Iterator[tuple[int, int, TraceRecord]]:
    """(file index, line number, record) of the files' records, as `read_records` reads them; with `keep`,
    only the lines it keeps are parsed and checked (a partition of the trace, `distributed`), and `check`
    may find a problem in a record (its text, located here)."""
    seen = _Seen()
    for i, path in enumerate(files):
        for number, rec in _checked(_rows(path, problems), str(path), seen, problems, keep, check):
            yield i, number, rec


def _rows(path: str | Path, problems: Problems) -> Iterator[tuple[int, Row]]:
    return _parquet_rows(path, problems) if str(path).endswith(".parquet") else _lines(path, problems)


def _checked(
    rows: Iterable[tuple[int, Row]],
    source: str,
    seen: _Seen,
    problems: Problems,
    keep: Callable[[Row], bool] | None = None,
    check: Callable[[TraceRecord], str | None] | None = None,
) -> Iterator[tuple[int, TraceRecord]]:
    validate_json, validate = TraceRecord.model_validate_json, TraceRecord.model_validate
    for number, line in rows:
        if keep is not None and not keep(line):
            continue
        try:
            if isinstance(line, bytes):
                if line[:1] != b"{":  # the fast path: a line that starts a record
                    text = line.strip()
                    if not text or text.startswith(b"#"):
                        continue
                rec = validate_json(line)
            else:
                rec = validate(line)
        except ValidationError as exc:
            if isinstance(line, bytes) and line.rstrip().endswith(CUT_SHORT):
                # a record cut short, which the next writer marked so before it went on (`append_record`)
                logger.warning("%s:%d: skipped: a record cut short (its writer stopped mid-line)", source, number)
                continue
            problems.extend(_located(f"{source}:{number}", exc, line if isinstance(line, bytes) else None))
            continue
        name = seen.name(rec, source, line)
        prev = seen.last.get(name)
        if prev is not None and rec.turn <= prev[0]:
            at = f"line {prev[2]}" if prev[1] == source else f"{prev[1]}:{prev[2]}"
            problems.extend(
                [
                    f"{source}:{number}: turn: session '{name}' goes from turn {prev[0]} ({at}) to turn "
                    f"{rec.turn}; turns of a conversation must increase"
                ]
            )
        cached = rec.cache_read_tokens + rec.cache_write_tokens
        if cached > rec.prompt_tokens and not rec.unreported:  # no input count given: unknown, not 0 exceeded
            problems.extend(
                [
                    f"{source}:{number}: cache_read_tokens + cache_write_tokens ({cached}) exceed prompt_tokens "
                    f"({rec.prompt_tokens}); prompt_tokens counts all input tokens, cached ones included"
                ]
            )
        if check is not None and (problem := check(rec)):
            problems.extend([f"{source}:{number}: {problem}"])
        seen.last[name] = (rec.turn, source, number)
        if rec.turn == 1 and name == rec.session and name not in seen.first:
            seen.first[name] = seen.digest(rec, line)
        if not problems:  # past the first problem only the other problems are wanted, not sums
            yield number, (rec if name == rec.session else rec.model_copy(update={"session": name}))


def parse_lines(lines: Iterable[str], source: str) -> list[TraceRecord]:
    """Records from JSONL text, in memory (`read_records` streams files)."""
    problems = Problems()
    rows = ((n, line.encode()) for n, line in enumerate(lines, 1))
    out = [rec for _, rec in _checked(rows, source, _Seen(), problems)]
    problems.check()
    return out


def load_trace(*paths: str | Path) -> list[TraceRecord]:
    """Every record of the given trace files, in memory (`read_records` streams them)."""
    return list(read_records(paths))
