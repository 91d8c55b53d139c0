import importlib
import pickle
import pkgutil
import subprocess
import sys

import pytest

import lwfsm
from lwfsm import errors


def test_public_api_is_locked() -> None:
    assert lwfsm.__all__ == sorted(lwfsm.__all__)
    assert sorted(lwfsm.__all__) == [
        "AllAttemptsFailed",
        "AuthError",
        "BadRequestError",
        "ConfigError",
        "Conflict",
        "Conversation",
        "ConversationState",
        "DiagramError",
        "Engine",
        "LwfsmError",
        "ProviderError",
        "RunError",
        "Session",
        "SessionBusy",
        "Snapshot",
        "SnapshotError",
        "Spec",
        "SpecError",
        "SpecIssue",
        "StoreError",
        "TooLarge",
        "TraceError",
        "TransitionNotAllowed",
        "TransitionRecord",
        "TurnCore",
        "Unsaturable",
        "load_spec",
    ]
    for name in lwfsm.__all__:
        assert getattr(lwfsm, name).__module__.startswith("lwfsm.")


# Each integration and the package it needs (an optional extra).
FRAMEWORKS = {
    "lwfsm.integrations.pydantic_ai": "pydantic_ai",
    "lwfsm.integrations.openai_agents": "agents",
    "lwfsm.integrations.langchain": "langchain",
    "lwfsm.integrations.litellm_proxy": "litellm",
}


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(lwfsm.__path__, "lwfsm.")]
    return [n for n in names if not n.endswith("__main__")]


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_what_it_exports(name: str) -> None:
    if name == "lwfsm.provider.adapter":
        pytest.importorskip("litellm")
    if name == "lwfsm.testing":
        pytest.importorskip("hypothesis")
    if name == "lwfsm.store.redis_store":
        pytest.importorskip("redis")
    if name in FRAMEWORKS:
        pytest.importorskip(FRAMEWORKS[name])
    module = importlib.import_module(name)
    if name == "lwfsm.provider":
        return  # a namespace for the providers: imports nothing on purpose
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names {exported}, which it does not define"


def test_every_error_is_in_the_tree() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, lwfsm.LwfsmError), name
    assert issubclass(lwfsm.SpecError, lwfsm.LwfsmError)
    assert issubclass(lwfsm.TransitionNotAllowed, lwfsm.RunError)
    assert issubclass(lwfsm.SnapshotError, lwfsm.RunError)
    assert issubclass(lwfsm.AllAttemptsFailed, lwfsm.ProviderError)
    assert not issubclass(lwfsm.SpecError, lwfsm.RunError)
    assert not issubclass(lwfsm.Unsaturable, lwfsm.RunError)


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a socket")
        self.lock = __import__("threading").Lock()


EXAMPLES = [
    errors.SpecError([errors.SpecIssue("s.yaml", 3, 5, "states.x", "bad")]),
    errors.Unsaturable(["transitions[1].guard: 'a < b' compares two counters"]),
    errors.TooLarge(["spec 'x' may have about 2,000,000 configurations"]),
    errors.TraceError(["t.jsonl:3: turn: turns must increase"]),
    errors.ConfigError("LWFSM_LEAD_MODEL is empty"),
    errors.DiagramError("needs pygraphviz"),
    errors.RunError("x"),
    errors.TransitionNotAllowed("no", event="failure", state="worker"),
    errors.SnapshotError("other spec"),
    errors.SessionBusy("stream open"),
    errors.Conflict("moved"),
    errors.StoreError("corrupt row", store="redis://:***@h:6379/0", session="c-42"),
    errors.ProviderError("boom", role="lead", model="a/b"),
    errors.AuthError("401", role="worker", model="a/c"),
    errors.BadRequestError("400", role="worker", model="a/c"),
    errors.AllAttemptsFailed(
        "all failed",
        [("worker", "a/c", TimeoutError("t")), ("lead", "a/b", _Unpicklable())],
        role="worker",
        model="a/c",
    ),
]


@pytest.mark.parametrize("err", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_survives_pickle(err: errors.LwfsmError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    state = {k: v for k, v in err.__dict__.items() if k != "attempts"}
    assert {k: v for k, v in back.__dict__.items() if k != "attempts"} == state
    if isinstance(err, errors.AllAttemptsFailed):
        assert [(r, m, type(e).__name__, str(e)) for r, m, e in back.attempts] == [
            ("worker", "a/c", "TimeoutError", "t"),
            ("lead", "a/b", "RuntimeError", "_Unpicklable: holds a socket"),
        ]


def test_every_error_class_has_a_pickle_example() -> None:
    classes = {obj for n in errors.__all__ if isinstance(obj := getattr(errors, n), type)} - {errors.SpecIssue}
    assert classes - {errors.LwfsmError} == {type(e) for e in EXAMPLES}


def test_import_lwfsm_keeps_heavy_dependencies_out() -> None:
    heavy = (
        "litellm",
        "openai",
        "anthropic",
        "httpx",
        "starlette",
        "uvicorn",
        "aiohttp",
        "redis",
        "numpy",
        "matplotlib",
    )
    heavy += (
        "pydantic_ai",
        "agents",
        "langchain",
        "langchain_core",
        "langgraph",
        "fastapi",
        "dask",
        "distributed",
        "fsspec",
        "opentelemetry",
    )
    code = (
        "import sys, lwfsm\n"
        "from lwfsm import Engine, TurnCore, load_spec\n"
        "import lwfsm.turn, lwfsm.turn.front, lwfsm.check, lwfsm.diagram, lwfsm.cli\n"
        "import lwfsm.provider, lwfsm.integrations\n"
        f"heavy = [m for m in {heavy + ('graphviz', 'pygraphviz')!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
