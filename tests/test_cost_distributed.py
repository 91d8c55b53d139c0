"""simulate on a Dask cluster (lwfsm.cost.distributed): a real local cluster of two worker processes on
127.0.0.1 gives, output for output, what the local run gives."""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwfsm import load_spec
from lwfsm.cli import main
from lwfsm.cost import read_records
from lwfsm.cost.distributed import partition_of, route, simulate_on_cluster
from lwfsm.cost.simulate import simulate

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    distributed = pytest.importorskip("distributed", reason="needs Dask: pip install 'lwfsm[dask]'")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield str(cluster.scheduler_address)


def _trace(tmp_path: Path) -> list[str]:
    """A generated trace of 80 conversations (more than the HTML page details) as two files, the second
    gzipped and named by a file:// URL (read through fsspec, as s3:// would be): conversations span both."""
    whole = tmp_path / "whole.jsonl"
    gen = ["--generate", "--turns", "4000", "--conversations", "80", "--fail-worker", "0.3", "--seed", "3"]
    assert main(["simulate", "lead_worker", *gen, "-o", str(whole)]) == 0
    lines = whole.read_text().splitlines(keepends=True)
    lines.sort(key=lambda line: json.loads(line)["turn"])  # conversations interleaved, as a gateway logs them
    (tmp_path / "a.jsonl").write_text("".join(lines[:1500]))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress("".join(lines[1500:]).encode()))
    return [str(tmp_path / "a.jsonl"), (tmp_path / "b.jsonl.gz").as_uri()]


def _outputs(argv: list[str], html: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = []
    for fmt in ([], ["--json"], ["--csv"], ["--html", str(html)]):
        assert main([*argv, *fmt]) == 0
        out.append(capsys.readouterr().out)
    out.append(html.read_text())
    return out


def test_cluster_replay_equals_the_local_one(
    scheduler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _trace(tmp_path)
    argv = ["simulate", "lead_worker", "--set", "failure_threshold=3", *(a for f in files for a in ("--trace", f))]
    local = _outputs(argv, tmp_path / "local.html", capsys)
    remote = _outputs([*argv, "--scheduler", scheduler], tmp_path / "remote.html", capsys)
    assert remote == local
    data = json.loads(local[1])
    assert len(data["conversations"]) == 80
    assert data["total"]["turns"] == 4000
    assert data["total"]["fallbacks"] > 0  # the replay did switch, so there was something to merge
    # both worker processes had a share of the conversations
    assert {partition_of(c["session"], 2) for c in data["conversations"]} == {0, 1}
    # and the summary itself, per-turn detail of the conversations the HTML page draws included
    spec = load_spec("lead_worker")
    assert simulate_on_cluster(spec, files, scheduler=scheduler) == simulate(spec, read_records(files))


def test_a_tie_between_models_goes_to_the_first_seen_as_locally(
    scheduler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker used two models equally often: the one seen first is 'the worker's model', and it is
    in the conversation that partition 1 replays, so merging the partitions in their own order would differ."""
    first = next(f"s{i}" for i in range(100) if partition_of(f"s{i}", 2) == 1)
    second = next(f"s{i}" for i in range(100) if partition_of(f"s{i}", 2) == 0)
    lines = [
        {"session": s, "turn": n, "role": role, "model": model, "outcome": "turn_completed", "prompt_tokens": 100}
        for s, worker_model in ((first, "gpt-4.1-mini"), (second, "gpt-4o-mini"))
        for n, (role, model) in enumerate((("lead", "gpt-4o"), ("worker", worker_model)), 1)
    ]
    path = tmp_path / "tie.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    argv = ["simulate", "lead_worker", "--set", "lead_turns=0", "--trace", str(path)]
    assert main(argv) == 0
    local = capsys.readouterr().out
    assert "worker alone: gpt-4.1-mini" in local
    assert main([*argv, "--scheduler", scheduler]) == 0
    assert capsys.readouterr().out == local


def test_cluster_reports_a_bad_trace_as_the_local_run_does(
    scheduler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"session": "s", "role": "lead", "model": "gpt-4o", "outcome": "turn_completed"}
    u, v = "u", next(f"v{i}" for i in range(100) if partition_of(f"v{i}", 2) != partition_of("u", 2))
    lines = [
        json.dumps({**good, "turn": 1}),
        json.dumps({**good, "session": "t", "turn": 1, "prompt_tokens": -5}),
        "not json",
        json.dumps({**good, "turn": 1}),  # s goes from turn 1 back to turn 1
        # the key twice, once escaped: read as its last value, v, but routed by the first, u: said, not lost
        json.dumps({**good, "session": u, "turn": 1})[:-1] + f', "sess\\u0069on": "{v}"}}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["simulate", "lead_worker", "--trace", str(path)]) == 1
    local = capsys.readouterr().err
    assert main(["simulate", "lead_worker", "--trace", str(path), "--scheduler", scheduler]) == 1
    remote = capsys.readouterr().err
    assert f"{path}:2: prompt_tokens" in local
    twice = f"\n{path}:5: session: the record gives its session more than once (once escaped?): give it once"
    assert twice in remote
    assert remote.replace(twice, "") == local


def test_a_line_is_routed_by_its_session_without_validating_it() -> None:
    def by(session: str) -> int:
        return partition_of(session, 7)

    assert route(b'{"session": "a-1", "turn": 1}\n', 7) == by("a-1")
    assert route(b'{"turn": 1, "session": "b"}\n', 7) == by("b")  # not first: json.loads
    assert route(b'{"session": "c\\"d", "turn": 1}\n', 7) == by('c"d')  # escaped: json.loads
    assert route('{"session": "é"}'.encode(), 7) == by("é")
    assert route(b'{"session": "x", "evidence": {"session": "y"}}', 7) == by("x")  # twice: json.loads, the top one
    assert route(b"not json\n", 7) == route(b'{"session": 5}', 7) == 0  # no record: partition 0 reports it
    assert route({"session": "p"}, 7) == by("p")  # a Parquet row
    assert {by(f"s{i}") for i in range(100)} == set(range(7))


def test_without_dask_the_flags_say_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    assert main(["simulate", "lead_worker", "--generate", "--turns", "20", "-o", str(path)]) == 0
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    assert main(["simulate", "lead_worker", "--trace", str(path), "--workers", "2"]) == 1
    assert "pip install 'lwfsm[dask]'" in capsys.readouterr().err
    assert main(["simulate", "lead_worker", "--trace", str(path), "--workers", "2", "--monte-carlo", "5"]) == 1
    assert "not with --monte-carlo" in capsys.readouterr().err
    assert main(["simulate", "lead_worker", "--trace", str(path), "--workers", "0"]) == 1
    assert "--workers 0: must be from 1" in capsys.readouterr().err


def test_a_trace_mistake_on_local_workers_is_said_once_without_a_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The workers started for --workers logged Dask's "Compute Failed" and its traceback before the message."""
    pytest.importorskip("distributed", reason="needs Dask: pip install 'lwfsm[dask]'")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"session": "a", "turn": 1, "role": "wroker", "model": "m", "outcome": "ok"}) + "\n")
    assert main(["simulate", "lead_worker", "--trace", str(path), "--workers", "1"]) == 1
    err = capfd.readouterr().err
    assert "role 'wroker' is not a role of spec 'lead_worker'" in err
    assert "Traceback" not in err
    assert "Compute Failed" not in err
