"""The CLI's promise: mistakes exit 1 with a message, never a traceback (usage errors exit 2)."""

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
