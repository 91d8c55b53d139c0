"""The CLI's promise: mistakes exit 1 with a message, never a traceback (usage errors exit 2)."""

import json
import re
from pathlib import Path

import pytest

from lwfsm.cli import main

INVALID = Path(__file__).parent / "specs_invalid"
CASES = sorted(INVALID.glob("*.yaml"))
COMMANDS = {
    "validate": ["validate"],
    "check": ["check"],
    "trace": ["trace", "--events", "ok"],
    "diagram": ["diagram"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_invalid_spec_gives_located_errors_in_every_command(
    path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = COMMANDS[command]
    assert main([argv[0], str(path), *argv[1:]]) == 1  # an exception here would be the traceback
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines
    assert all(re.match(rf"{re.escape(str(path))}:\d+:\d+: ", line) for line in lines), err


ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "lead_worker.yaml")


@pytest.mark.parametrize("where", ["missing/x.md", "folder", "/dev/full"])
def test_diagram_output_that_cannot_be_written_is_a_message(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "folder").mkdir()
    target = where if where.startswith("/") else str(tmp_path / where)
    if where == "/dev/full" and not Path(where).exists():
        pytest.skip("no /dev/full here")
    assert main(["diagram", SPEC, "-o", target]) == 1
    assert f"lwfsm diagram: cannot write {target}: " in capsys.readouterr().err


def test_diagram_never_writes_over_the_spec_it_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o` naming the spec drawn (or a --diff side) wrote mermaid text over it and exited 0."""
    spec = tmp_path / "mine"
    spec.write_text(Path(SPEC).read_text())
    for args in (["diagram", str(spec)], ["diagram", "--diff", SPEC, str(spec)]):
        assert main([*args, "-o", str(spec)]) == 1
        assert f"-o {spec} is {spec}, which the diagram is drawn from: name another file" in capsys.readouterr().err
        assert spec.read_text() == Path(SPEC).read_text()
    assert main(["diagram", str(spec), "-o", str(tmp_path / "mine.yaml")]) == 1  # no .yaml diagram either
    assert "lwfsm writes no .yaml diagram" in capsys.readouterr().err


def test_diagram_writes_the_format_its_file_is_named_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o x.svg` without -f wrote mermaid text into a file no browser opens, and exited 0."""
    assert main(["diagram", SPEC, "-o", str(tmp_path / "page.md")]) == 0
    assert (tmp_path / "page.md").read_text().count("```mermaid\n") == 1
    assert main(["diagram", SPEC, "-o", str(tmp_path / "text.mmd")]) == 0
    assert (tmp_path / "text.mmd").read_text().startswith("---\ntitle: ")
    assert main(["diagram", SPEC, "-o", str(tmp_path / "notes.txt")]) == 0  # an extension of no format: mermaid
    # mermaid text in them opened nowhere, and the command said 0 (a list of such extensions missed .svg.gz)
    for image in ("x.jpg", "x.pdf", "x.svg.gz", "x.avif", "x.docx"):
        assert main(["diagram", SPEC, "-o", str(tmp_path / image)]) == 1
        assert (
            f"-o {tmp_path / image}: lwfsm writes no .{image.rsplit('.', 1)[1]} diagram; name the file .dot"
            in capsys.readouterr().err
        )
        assert not (tmp_path / image).exists()
    for image in ("z.pdf", "z.ico", "z.txt"):  # an SVG is no PDF either, nor text
        assert main(["diagram", SPEC, "-f", "svg", "-o", str(tmp_path / image)]) == 1
        assert f"lwfsm writes no .{image[2:]} diagram as svg" in capsys.readouterr().err
        assert not (tmp_path / image).exists()
    assert main(["diagram", SPEC, "-f", "dot", "-o", str(tmp_path / "graph.txt")]) == 0  # text of a text format
    assert "digraph" in (tmp_path / "graph.txt").read_text().split("{", 1)[0]
    assert main(["diagram", SPEC, "-f", "mermaid", "-o", str(tmp_path / "x.svg")]) == 1
    assert capsys.readouterr().err == (
        f"lwfsm diagram: -f mermaid and -o {tmp_path / 'x.svg'} disagree: drop -f, or give the file a .mermaid name\n"
    )
    assert not (tmp_path / "x.svg").exists()
    pytest.importorskip("pygraphviz", reason='needs the diagrams extra: pip install "lwfsm[diagrams]"')
    assert main(["diagram", SPEC, "-o", str(tmp_path / "x.svg")]) == 0
    assert (tmp_path / "x.svg").read_bytes().lstrip().startswith((b"<?xml", b"<svg"))


def test_unwritable_out_dir_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "lead_worker.yaml").write_text(Path(SPEC).read_text())
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["diagram", "--all", "--specs-dir", str(specs), "--out-dir", str(blocker / "diagrams")]
    assert main(argv) == 1
    assert f"--out-dir {blocker / 'diagrams'}: cannot create it" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "big"])
def test_only_regular_files_of_sane_size_are_read(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    path = tmp_path / "spec.yaml"
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_text("# padding\n" * 200_000)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    expected = {"device": "not a regular file", "fifo": "not a regular file", "folder": "a directory"}
    assert f"{path}: cannot read spec: {expected.get(kind, 'larger than 1,000,000 bytes')}" in err


class ClosedPipe:
    """A stdout whose reader has gone (what `| head -1` leaves behind)."""

    def __init__(self) -> None:
        import os

        self.read_end, self.write_end = os.pipe()

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.write_end


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import sys

    pipe = ClosedPipe()
    with capsys.disabled():
        monkeypatch.setattr(sys, "stdout", pipe)
        assert main(["explain", SPEC]) == 1  # no BrokenPipeError escapes
        monkeypatch.undo()
    assert capsys.readouterr().err == ""
    os.close(pipe.read_end)
    os.close(pipe.write_end)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"lwfsm {__version__}\n"


@pytest.mark.parametrize("argv", [["validate"], ["check", SPEC, "--depth", "x"], ["nope"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: lwfsm" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--params-up-to", "-1"], ["--depth", "0"], ["--depth", "-1"]])
def test_check_refuses_bounds_that_would_check_nothing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", SPEC, *argv])
    assert info.value.code == 2
    assert "or more, got" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--port", "99999"], "argument --port: must be 1 to 65535, got 99999"),  # else it binds 99999 - 65536
        (["--port", "0"], "argument --port: must be 1 to 65535, got 0"),
        (["--max-body", "-1"], "argument --max-body: must be 1 or more, got -1"),
        (["--body-budget", "0"], "argument --body-budget: must be 1 or more, got 0"),
        (["--store-timeout", "-5"], "argument --store-timeout: must be more than 0 seconds, got -5"),
        (["--idle-timeout", "nan"], "argument --idle-timeout: must be more than 0 seconds, got nan"),
        (["--connect-timeout", "soon"], "argument --connect-timeout: expected a number of seconds, got 'soon'"),
    ],
)
def test_serve_refuses_impossible_limits_before_anything_else(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:  # --check-only too: it checks what serve would use
        main(["serve", "--check-only", "--mock", *argv])
    assert info.value.code == 2
    assert said in capsys.readouterr().err


def test_a_depth_limited_never_says_the_search_was_cut(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", SPEC, "--depth", "2"]) == 1
    out = capsys.readouterr().out
    assert "never fires within 2 events (the search was cut short at depth 2)" in out
    assert "never reached within 2 events (the search was cut short at depth 2)" in out


@pytest.mark.parametrize("flag", ["--check", "--all"])
@pytest.mark.parametrize("empty", [True, False])
def test_diagram_dir_without_specs_fails_saying_so(
    flag: str, empty: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    if empty:
        specs.mkdir()
    assert main(["diagram", flag, "--specs-dir", str(specs), "--out-dir", str(tmp_path / "d")]) == 1
    reason = "holds no *.yaml spec" if empty else "does not exist"
    assert f"--specs-dir {specs} {reason}: nothing to draw or check" in capsys.readouterr().err


def test_check_refuses_a_huge_bound_up_front_naming_the_counter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    big = tmp_path / "big.yaml"
    big.write_text(Path(SPEC).read_text().replace("max: 1000", "max: 100000000"))
    start = time.perf_counter()
    assert main(["check", str(big), "--set", "failure_threshold=10000000"]) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "over the limit of 1,000,000: counter 'failures' is compared against 10,000,000" in err
    assert "raise --max-configurations" in err
    assert main(["check", SPEC, "--max-configurations", "10"]) == 1
    assert "may have about" in capsys.readouterr().err
    assert main(["check", SPEC, "--max-configurations", "1000"]) == 0


def test_check_refuses_a_huge_param_grid_naming_the_param(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", SPEC, "--params-up-to", "1000"]) == 1
    err = capsys.readouterr().err
    assert "--params-up-to 1000 makes 1,001,000,000 param combinations, over the limit of 1,000,000" in err
    assert main(["check", SPEC, "--params-up-to", "30"]) == 1
    assert "configurations in all, over 20 x the limit of 1,000,000" in capsys.readouterr().err


def test_judge_explain_says_what_is_wrong_with_a_file_that_holds_no_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["judge", "explain", str(deep)]) == 1
    assert f"{deep}: nested too deeply to read" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert main(["judge", "explain", str(empty)]) == 1
    assert f"{empty}: an empty list: give a request body" in capsys.readouterr().err
    numbers = tmp_path / "numbers.json"
    numbers.write_text('[1, {"messages": [{"role": "user", "content": "go"}]}]')
    assert main(["judge", "explain", str(numbers)]) == 1  # each item is told apart; a number is no request
    out, err = capsys.readouterr()
    assert f"{numbers} [1]: a JSON int, not a request: give a body or {{headers, body}}" in err
    assert f"{numbers} [2]: the request holds no assistant message" in out  # a first call: an answer
    # a body the gateway answers with a 400 is no request it serves: it fails the command, saying why as
    # the gateway does (a script must not take it for a first call)
    for body, why in [
        ({"hello": 1}, "the request has no 'messages'"),
        ({"messages": []}, "'messages' must hold at least one message"),
        ({"messages": [1, 2]}, "'messages[0]' must be an object, got int"),
        ({"messages": [{"role": "bogus", "content": "x"}]}, "'messages[0].role' must be one of system, developer"),
        ({"input": 5}, "'input' must be a string or a list of items"),
        (
            {"max_tokens": 9, "system": "s", "messages": [{"role": "tool", "content": "x"}]},
            "'messages[0].role' must be one of user, assistant, system",
        ),
    ]:
        other = tmp_path / "other.json"
        other.write_text(json.dumps(body))
        assert main(["judge", "explain", str(other)]) == 1, body
        assert f"{other}: {why}" in capsys.readouterr().err, body
    # beside a request that is judged, the one that is not still fails the command, and both are said
    mixed = tmp_path / "mixed.json"
    reply = {"role": "assistant", "content": "done"}
    mixed.write_text(json.dumps([{"messages": [{"role": "user", "content": "go"}, reply]}, "x"]))
    assert main(["judge", "explain", str(mixed)]) == 1
    out, err = capsys.readouterr()
    assert f"{mixed} [1]: agent generic; verdict ok" in out
    assert f"{mixed} [2]: a JSON str, not a request" in err
    # a session's first call and a probe are requests the gateway judges no turn from: said, not failed
    calls = tmp_path / "calls.json"
    calls.write_text(json.dumps([{"method": "HEAD", "path": "/"}, {"messages": [{"role": "user", "content": "go"}]}]))
    assert main(["judge", "explain", str(calls)]) == 0
    out = capsys.readouterr().out
    assert f"{calls} [1]: a HEAD request: no model call, no turn to judge" in out
    assert f"{calls} [2]: the request holds no assistant message" in out


def test_check_reports_every_spec_that_loads_beside_one_that_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    broken = INVALID / "event_listed_twice.yaml"
    assert main(["check", SPEC, str(broken), str(ROOT / "specs" / "window.yaml")]) == 1
    out, err = capsys.readouterr()
    assert f"{broken}:26:20: transitions[4].event[1]: event 'fail' is listed twice" in err
    assert f"{SPEC}: lead_worker (" in out
    assert "window.yaml: window (" in out
