import subprocess
import sys

import lwfsm


def test_public_api_is_locked() -> None:
    assert sorted(lwfsm.__all__) == [
        "ConfigError",
        "Engine",
        "LwfsmError",
        "ProviderError",
        "RunError",
        "Session",
        "Snapshot",
        "SnapshotError",
        "Spec",
        "SpecError",
        "SpecIssue",
        "TransitionNotAllowed",
        "TransitionRecord",
        "load_spec",
    ]
    for name in lwfsm.__all__:
        assert getattr(lwfsm, name).__module__.startswith("lwfsm.")


def test_error_tree() -> None:
    assert issubclass(lwfsm.SpecError, lwfsm.LwfsmError)
    assert issubclass(lwfsm.TransitionNotAllowed, lwfsm.RunError)
    assert issubclass(lwfsm.SnapshotError, lwfsm.RunError)
    assert not issubclass(lwfsm.SpecError, lwfsm.RunError)


def test_import_lwfsm_keeps_heavy_dependencies_out() -> None:
    code = (
        "import sys, lwfsm\n"
        "from lwfsm import Engine, load_spec\n"
        "heavy = [m for m in ('litellm', 'graphviz', 'pygraphviz', 'openai', 'httpx') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
