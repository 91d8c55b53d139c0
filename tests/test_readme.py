"""The README is part of the product: its example runs and its CLI excerpts are what the CLI prints."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.openai_server import Server

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


def _example(name: str) -> str:
    (block,) = re.findall(rf"<!-- example: {name} -->\n```python\n(.*?)```", README, re.S)
    return str(block)


@pytest.mark.parametrize(
    ("name", "package", "extra"),
    [
        ("pydantic-ai", "pydantic_ai", "pydantic-ai"),
        ("openai-agents", "agents", "openai-agents"),
        ("langchain", "langchain_openai", "langchain"),
    ],
)
def test_framework_example_runs(
    name: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip(package, reason=f'needs the framework: pip install "lwfsm[{extra}]"')
    server = Server(responses=True)  # the frameworks call OpenAI's current models through the Responses API
    try:
        call = {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
        server.script("gpt-6.1-sol", {"tool_calls": [call]})  # then it answers in text
        monkeypatch.setenv("OPENAI_BASE_URL", server.base)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        if package == "agents":  # the SDK would upload traces (it reads its variable once, maybe earlier)
            from agents import set_tracing_disabled

            set_tracing_disabled(True)
        exec(compile(_example(name), f"README.md ({name} example)", "exec"), {"__name__": "readme_example"})
        # lead_worker: the lead serves the first three turns; the tool's result judged turn 1 a success.
        assert capsys.readouterr().out.splitlines() == ["gpt-6.1-sol says: Fix the failing test.", "lead 2"]
        assert [r["model"] for r in server.requests] == ["gpt-6.1-sol", "gpt-6.1-sol"]
        assert [t["name"] for t in server.requests[0]["tools"]] == ["run_tests"]
    finally:
        server.close()


def test_litellm_proxy_example_runs() -> None:
    yaml = pytest.importorskip("yaml")
    from tests.test_integrations import proxy_run

    namespace: dict[str, object] = {"__name__": "lwfsm_hook"}
    exec(compile(_example("litellm-proxy"), "README.md (lwfsm_hook.py)", "exec"), namespace)
    (config,) = re.findall(r"```yaml\n(# config.yaml.*?)```", README, re.S)
    config = yaml.safe_load(config)
    assert config["litellm_settings"]["callbacks"] == "lwfsm_hook.hook"  # module lwfsm_hook, name hook
    hook = namespace["hook"]
    server = Server()
    try:
        model_list = [
            {**m, "litellm_params": {**m["litellm_params"], "api_base": server.base, "api_key": "t"}}
            for m in config["model_list"]
        ]
        call = {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
        server.script("gpt-6.1-sol", {"tool_calls": [call]})
        answer, _, groups = proxy_run(hook, model_list, lambda: "ok: 12 passed")
        assert (answer, groups) == ("gpt-6.1-sol says: Fix the failing test.", ["big", "big"])
        assert [r["model"] for r in server.requests] == ["gpt-6.1-sol", "gpt-6.1-sol"]
    finally:
        server.close()


def test_the_test_command_shows_why_tests_were_skipped(tmp_path: Path) -> None:
    """A skipped test (a missing extra, a missing redis-server) says why in the README's test command's output."""
    (tmp_path / "test_needs.py").write_text(
        "import pytest\n\ndef test_needs_a_tool() -> None:\n    pytest.skip('needs redis-server on PATH')\n"
    )
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-p", "no:cacheprovider"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *config, str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SKIPPED [1]" in out.stdout
    assert "needs redis-server on PATH" in out.stdout


def _section_block(marker: str) -> str:
    (block,) = re.findall(rf"<!-- {marker} -->\n```\n(.*?)```", README, re.S)
    return str(block)


def _imported_folders(folder: Path) -> set[str]:
    """The lwfsm folders a package folder imports from (relative or absolute, lazy imports included)."""
    import ast

    found = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lwfsm."):
                found.add(str(node.module).split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lwfsm.")}
    return found - {folder.name, "errors"}


def test_architecture_lists_the_package_folders_and_their_real_dependencies() -> None:
    package = ROOT / "lwfsm"
    real = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    listed = re.findall(r"^lwfsm/(\w+)/", _section_block("architecture"), re.M)
    assert sorted(listed) == sorted(real)  # every folder once, and no folder that is gone
    chain = [set(re.findall(r"\w+", layer)) for layer in _section_block("dependencies").split("←")]
    assert sorted(set().union(*chain)) == sorted(real)
    for i, layer in enumerate(chain):
        earlier = set().union(*chain[:i])
        for folder in layer:
            assert _imported_folders(package / folder) <= earlier, f"lwfsm/{folder}/ imports from a later folder"


def test_every_link_within_the_readme_finds_its_heading() -> None:
    text = re.sub(r"```.*?```", "", README, flags=re.S)
    # GitHub's anchors: lower case, punctuation other than - and _ dropped, spaces to hyphens.
    anchors = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links
    assert links <= anchors, sorted(links - anchors)
