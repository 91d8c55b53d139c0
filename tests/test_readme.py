"""The README is part of the product: its example runs and its CLI excerpts are what the CLI prints."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_embedding_example_runs(tmp_path: Path) -> None:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "engine.session()" in b]
    prelude = "import itertools\n_outcomes = itertools.cycle([True, True, False, False])\n"
    prelude += "def run_agent_turn(model):\n    return next(_outcomes)\n"
    epilogue = "print(session.state, session.turn, session.counters)\n"
    script = tmp_path / "example.py"
    script.write_text(prelude + block + epilogue)
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=True)
    # lead_turns=2: o o (lead) f f (worker: fallback) o o (lead: recovery)
    assert out.stdout.split()[:2] == ["recovery", "6"]


def test_testing_example_runs_under_pytest(tmp_path: Path) -> None:
    (block,) = re.findall(r"<!-- testing-example -->\n```python\n(.*?)```", README, re.S)
    (tmp_path / "test_my_spec.py").write_text(block)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


@pytest.mark.parametrize(
    ("command", "stream", "code"), [("trace", "stdout", 0), ("validate", "stderr", 1), ("check", "stdout", 0)]
)
def test_cli_excerpt_is_what_the_cli_prints(command: str, stream: str, code: int) -> None:
    (excerpt,) = re.findall(rf"```\n\$ (lwfsm {command} [^\n]*)\n(.*?)```", README, re.S)
    line, expected = excerpt
    out = subprocess.run([sys.executable, "-m", "lwfsm", *line.split()[1:]], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == code
    assert getattr(out, stream) == expected
