"""`lwfsm simulate --scheduler ADDRESS | --workers N`: the replay of a trace set on a Dask cluster.

The trace is partitioned by conversation: partition k holds the sessions whose CRC-32 is k modulo the
number of partitions, so a conversation's turns stay together and in order. Each partition is one task:
it reads the trace files itself (local paths every worker sees, or fsspec URLs such as s3://, read
where the task runs), parses and checks only its own lines, replays them and tallies them (token sums
per conversation, `report.Tally`). The client merges the tallies, conversations in the order their
first turn has in the trace, and prices them once: the summary is the one a local run gives, number
for number. Dask (not Ray): pure-Python wheels of a few MB against Ray's ~80 MB native one, and its
fsspec readers take object-storage URLs as they are. Dask is imported here only (`lwfsm[dask]`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..errors import TraceError
from ..spec import Spec
from .pricing import PriceMap
from .records import Problems, Row, TraceRecord, numbered_records, trace_files
from .report import COSTED, DETAILED, Summary, Tally, spec_problem
from .simulate import Replayer, replay_tally, simulated_summary

__all__ = ["partition_of", "replay_partition", "route", "simulate_on_cluster"]

Position = tuple[int, int]  # (file index, line number) in the trace


def partition_of(session: str, parts: int) -> int:
    """A stable partition for a session (Python's hash() differs from process to process)."""
    return zlib.crc32(session.encode("utf-8", "surrogatepass")) % parts


_PREFIX = b'{"session": "'  # how lwfsm writes a record: its session first


def route(row: Row, parts: int) -> int:
    """A line's partition, found without validating the line: from its first bytes when it starts as lwfsm
    writes records (a session without escapes, the key once), else by json.loads; a line that is no
    record goes to partition 0, which parses it and reports it."""
    if isinstance(row, bytes) and row.startswith(_PREFIX):
        end = row.find(b'"', len(_PREFIX))
        key = row[len(_PREFIX) : end]
        if end > 0 and b"\\" not in key and row.count(b'"session"') == 1:
            return zlib.crc32(key) % parts  # the session's UTF-8 bytes, as partition_of hashes them
    if isinstance(row, bytes):
        try:
            row = json.loads(row)
        except ValueError:
            return 0
    session = row.get("session") if isinstance(row, dict) else None
    return partition_of(session, parts) if isinstance(session, str) else 0


@dataclass
class Partial:
    """What one partition sends back: its tally and where its conversations and models first appear."""

    tally: Tally
    first: dict[str, Position]  # session -> its first turn
    used: dict[tuple[str, str], Position]  # (role, model) -> its first turn
    problems: list[str]
    more: int
    records: int


def replay_partition(spec: Spec, files: Sequence[str], part: int, parts: int, use_engine: bool) -> Partial:
    """Partition `part` of `parts`: its conversations read, checked, replayed and tallied (runs on a worker)."""
    problems = Problems()
    first: dict[str, Position] = {}
    used: dict[tuple[str, str], Position] = {}
    count = 0

    def keep(row: Row) -> bool:
        return route(row, parts) == part

    def check(rec: TraceRecord) -> str | None:
        if partition_of(rec.session, parts) != part:  # misrouted
            return "session: the record gives its session more than once (once escaped?): give it once"
        return spec_problem(spec, rec, replayed=True)

    def records() -> Iterator[TraceRecord]:
        nonlocal count
        for i, number, rec in numbered_records(files, problems, keep, check):
            count += 1
            first.setdefault(rec.session, (i, number))
            used.setdefault((rec.role, rec.model), (i, number))
            yield rec

    tally = replay_tally(spec, records(), Replayer(spec, use_engine=use_engine))
    return Partial(tally, first, used, problems.kept, problems.more, count)


def merge(partials: Sequence[Partial], files: Sequence[str]) -> Tally:
    """One tally as a local run builds it: conversations (and the models each role used, whose ties go to
    the first seen) in trace order; turn detail (the HTML page's) kept for the first ones only, as locally."""
    problems = sorted({p for part in partials for p in part.problems}, key=lambda p: _where(p, files))
    more = sum(part.more for part in partials) + max(0, len(problems) - 100)
    if problems:
        raise TraceError(problems[:100], more)
    if not sum(part.records for part in partials):
        raise ValueError(f"no records in {', '.join(files)}")
    tally = Tally()
    convs = sorted(((part.first[s], s, conv) for part in partials for s, conv in part.tally.open.items()))
    for n, (_, session, conv) in enumerate(convs):
        # each partition kept its own first ones; the first ones of the trace are among them
        if n >= COSTED:
            conv.detail = None
        if n >= DETAILED and conv.summary is not None:
            conv.timeline, conv.summary.roles, conv.summary.failed = False, [], []
        tally.open[session] = conv
    seen: dict[tuple[str, str], Position] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for part in partials:
        counts.update(part.tally.used)
        for key, at in part.used.items():
            seen[key] = min(at, seen.get(key, at))
    for key in sorted(seen, key=seen.__getitem__):
        tally.used[key] = counts[key]
    return tally


def _where(problem: str, files: Sequence[str]) -> tuple[int, int, str]:
    """A problem's place in the trace (file index, line), to list them in the local run's order."""
    for i, f in enumerate(files):
        if problem.startswith(f + ":"):
            m = re.match(r"(\d+):", problem[len(f) + 1 :])
            return i, int(m[1]) if m else 0, problem
    return -1, 0, problem


def simulate_on_cluster(
    spec: Spec,
    paths: Sequence[str],
    prices: PriceMap | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    lead: str | None = None,
    worker: str | None = None,
    models: Mapping[str, str] | None = None,
    use_engine: bool = False,
) -> Summary:
    """`simulate` of the trace files on the Dask scheduler at `scheduler`, or on a local cluster of
    `workers` processes on 127.0.0.1; one partition per worker thread."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("--scheduler and --workers need Dask: pip install 'lwfsm[dask]'") from exc
    problems = Problems()
    files = [f if isinstance(f, str) else str(f.resolve()) for f in trace_files(paths, problems)]
    problems.check()
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # None is Dask's default port 8787, which a second cluster on the machine finds taken (a
                # warning on stderr): a free port, on this machine only
                dashboard_address="127.0.0.1:0",
                # a partition's error (a trace's mistake) comes back through gather, said once: the workers
                # started here logging it with Dask's traceback first would be a second, raw telling
                silence_logs=logging.CRITICAL,
            )
            scheduler = str(stack.enter_context(cluster).scheduler_address)
        try:
            client = stack.enter_context(Client(scheduler, timeout="10s"))  # type: ignore[no-untyped-call]
        except OSError as exc:  # refused, timed out, not a scheduler
            raise ValueError(f"--scheduler {scheduler}: cannot connect: {exc}") from None
        parts = max(1, sum(client.nthreads().values()))
        futures = [client.submit(replay_partition, spec, files, k, parts, use_engine, pure=False) for k in range(parts)]
        partials: list[Partial] = client.gather(futures)
    replayer = Replayer(spec, use_engine=use_engine)
    return simulated_summary(spec, merge(partials, files), prices, replayer, lead=lead, worker=worker, models=models)
