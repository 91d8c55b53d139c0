"""Each framework integration, driven by the real framework against a fake OpenAI server on 127.0.0.1.

One scenario for all: lead_turns=1; the tool `run_tests` reports ok, fail, fail, ok, ok. The worker's
two failures bring the lead back (fallback), two good lead turns send the worker back on probation
(recovery). The roles that serve the turns must be those `lwfsm trace` prints for the same outcomes.
By default a turn is a run of the framework's tool loop (the agent calls the tool, then answers in
text: five runs); with turn_unit="call" it is one model request (one run of six requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwfsm import ConfigError, ConversationState, Engine, load_spec
from lwfsm.cli import main
from lwfsm.errors import StoreError
from lwfsm.store import open_store
from lwfsm.turn.front import Front
from tests.openai_server import Server

OUTCOMES = ["ok", "fail", "fail", "ok", "ok"]
# What a raising tool says: no judging pattern matches it, so only the framework's failure status
# (a retried/failed tool return, a tool message with status "error") can make the turn a failure.
RAISED = "3 checks did not pass"
MODELS = {"lead": "lead-model", "worker": "worker-model"}
HANDOFF = "[lwfsm handoff"  # how the shipped spec's notes begin
SPEC = load_spec("lead_worker").with_params({"lead_turns": 1})


def traced() -> tuple[list[str], str]:
    """The roles serving calls 1..6 and the final state, as `lwfsm trace` prints them."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["trace", "lead_worker", "--set", "lead_turns=1", "--events", ",".join(OUTCOMES), "--json"])
    assert code == 0
    rows = json.loads(out.getvalue())
    return [r["role"] for r in rows] + [rows[-1]["next_role"]], rows[-1]["next_state"]


ROLES, FINAL_STATE = traced()


def test_the_scenario_reaches_fallback_and_recovers() -> None:
    assert ROLES == ["lead", "worker", "worker", "lead", "lead", "worker"]
    assert FINAL_STATE == "recovery"
    session = Engine(SPEC).session()
    states = [session.state]
    for o in OUTCOMES:
        session.fire("turn_completed" if o == "ok" else "failure")
        states.append(session.state)
    assert "fallback" in states


def test_front_refuses_options_a_given_core_would_ignore() -> None:
    core = Front(SPEC, MODELS).core
    assert core.turn_unit == "message"  # a framework's default
    assert Front(core, MODELS, turn_unit="message").core is core
    with pytest.raises(ConfigError, match=r"carries its own turn_unit \('message'\), detectors and agent"):
        Front(core, MODELS, turn_unit="call")


def test_a_front_shared_by_threads_logs_its_turns_in_order(tmp_path: Path) -> None:
    """A framework model used from several threads: its trace is in turn order (`lwfsm report` reads it)."""
    import threading

    front = Front(SPEC, MODELS, log=tmp_path / "t.jsonl", turn_unit="call")
    reply = {"role": "assistant", "content": "done"}

    def calls() -> None:
        for _ in range(20):
            call = front.begin([{"role": "user", "content": "go"}, reply, {"role": "user", "content": "next"}])
            front.end(call, model=call.model, reply=reply)

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = [json.loads(line)["turn"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(turns) == 79
    assert turns == sorted(turns)
    # a front each, one stored conversation (store= and name=): the same
    store = open_store(f"sqlite:///{tmp_path}/s.db")

    def own_front(k: int) -> None:
        front = Front(SPEC, MODELS, log=tmp_path / "u.jsonl", turn_unit="call", store=store, name="conv")
        for i in range(20):  # (each call its own messages: the same ones again would be a retry, no turn)
            said = {"role": "user", "content": f"next {k} {i}"}
            call = front.begin([{"role": "user", "content": "go"}, reply, said])
            front.end(call, model=call.model, reply=reply)

    threads = [threading.Thread(target=own_front, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = [json.loads(line)["turn"] for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert turns == sorted(turns)
    assert len(turns) == 79


def test_front_binds_exactly_the_roles_and_plugs_into_a_store() -> None:
    with pytest.raises(ConfigError, match=r"\(lead, worker\); missing: worker; unknown: planner$"):
        Front(SPEC, {"lead": "a", "planner": "b"})
    saved: list[ConversationState] = []
    front = Front(SPEC, MODELS, save=saved.append)
    reply = {"role": "assistant", "content": "done"}
    for outcome in OUTCOMES:
        call = front.begin([{"role": "user", "content": "go"}, reply, {"role": "user", "content": "next"}])
        front.end(call, model=call.model, reply=reply)
        if outcome == "fail":  # the next call's messages say so
            call = front.begin([reply, {"role": "user", "content": "that's wrong"}])
            front.end(call, model=call.model, reply=reply)
    assert len(saved) == front.state().version == 7
    again = Front(SPEC, MODELS, state=saved[-1].model_dump_json())  # continues where the store left it
    assert again.state() == front.state()
    assert again.begin([reply]).role == front.begin([reply]).role


def test_front_logs_to_a_file_each_conversation_apart(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    reply = {"role": "assistant", "content": "done"}
    for _ in range(2):  # two conversations, one trace: their default names differ
        front = Front(SPEC, MODELS, log=str(trace))
        for text in ("go", "next", "that's wrong"):
            call = front.begin([{"role": "user", "content": "go"}, reply, {"role": "user", "content": text}])
            front.end(call, model=call.model, reply=reply)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 4  # two judged turns each: the third call is judged by a next one
    assert len({r["session"] for r in records}) == 2  # (both were "session": lwfsm report refused the trace)
    assert main(["report", str(trace)]) == 0
    with pytest.raises(ConfigError, match="log= takes a callable or a file path, got int"):
        Front(SPEC, MODELS, log=7)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"log='.*nowhere/t.jsonl' cannot be written"):
        Front(SPEC, MODELS, log=str(tmp_path / "nowhere" / "t.jsonl"))
    with pytest.raises(ConfigError, match=r"with a store, name the conversation \(name=\)"):
        Front(SPEC, MODELS, store=open_store("memory://"))


def test_each_integration_takes_a_store_url_as_the_adapter_does(tmp_path: Path) -> None:
    """`store="sqlite:///..."` (a URL, as the adapter and the proxy hook take it) was an AttributeError."""
    from lwfsm.integrations import front

    url = f"sqlite:///{tmp_path}/s.db"
    first = front(SPEC, MODELS, store=url, name="c")
    reply = {"role": "assistant", "content": "done"}
    first.end(first.begin([{"role": "user", "content": "go"}]), model="lead-model", reply=reply)
    assert front(SPEC, MODELS, store=url, name="c").conversation.version == 1  # the same conversation
    with pytest.raises(StoreError, match="unknown scheme 'sqlit'"):
        front(SPEC, MODELS, store="sqlit:///x.db", name="c")
    pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.test import TestModel

    from lwfsm.integrations.pydantic_ai import LwfsmModel

    model = LwfsmModel(SPEC, {"lead": TestModel(), "worker": TestModel()}, store=url, name="c")
    assert model.front.conversation.version == 1


def _tool_call(i: int) -> dict[str, Any]:
    call = {"id": f"call_{i}", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
    return {"tool_calls": [call]}


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    # Calls 1, 4, 5 are the lead's and 2, 3 the worker's tool calls; call 6 (the worker) answers in text.
    s.script("lead-model", _tool_call(1), _tool_call(4), _tool_call(5))
    s.script("worker-model", _tool_call(2), _tool_call(3))
    yield s
    s.close()


class Suite:
    """The `run_tests` tool: its results, in order, are the scenario's outcomes."""

    def __init__(self) -> None:
        self.results = iter(OUTCOMES)

    def next_failed(self) -> bool:
        return next(self.results) == "fail"

    def __call__(self) -> str:
        return "Error: 2 tests failed" if self.next_failed() else "ok: 12 passed"


def check(server: Server, log: list[dict[str, Any]], state: Any) -> None:
    """The calls went to the traced roles' models, and the judged turns are the scenario's."""
    assert [r["model"] for r in server.requests] == [MODELS[r] for r in ROLES]
    # The spec's handoff notes reached the first lead call of the fallback and the first worker call
    # of recovery, as their last message, and no other call: the framework's history never held them.
    assert [i + 1 for i, r in enumerate(server.requests) if HANDOFF in json.dumps(r)] == [4, 6]
    assert all(HANDOFF in str(server.requests[i]["messages"][-1]["content"]) for i in (3, 5))
    assert [r["role"] for r in log] == ROLES[:-1]
    assert [r["outcome"] for r in log] == ["turn_completed" if o == "ok" else "failure" for o in OUTCOMES]
    assert [r["transition"]["dest"] for r in log][2] == "fallback"
    assert state.machine.state == FINAL_STATE
    assert state.pending.role == ROLES[-1]
    assert sum(row.calls for row in state.ledger.rows) == len(ROLES)


@pytest.fixture
def runs_server() -> Iterator[Server]:
    """Five runs of a tool loop: each calls `run_tests`, then answers in text (the unscripted reply)."""
    s = Server()
    s.script("lead-model", _tool_call(1), {}, _tool_call(4), {}, _tool_call(5), {})
    s.script("worker-model", _tool_call(2), {}, _tool_call(3), {})
    yield s
    s.close()


def check_runs(server: Server, log: list[dict[str, Any]], front: Front[Any], answers: list[str]) -> None:
    """Each run was one turn, served whole by the traced role: the worker's two failed runs brought the lead back."""
    assert answers == [f"{MODELS[r]} says: Run {i}: fix the failing test." for i, r in enumerate(ROLES[:-1], 1)]
    assert [r["model"] for r in server.requests] == [MODELS[r] for r in ROLES[:-1] for _ in range(2)]
    # The fallback's note went with the first request of the lead's first run (run 4), and only there.
    assert [i + 1 for i, r in enumerate(server.requests) if HANDOFF in json.dumps(r)] == [7]
    assert [r["role"] for r in log] == ROLES[:-2]  # the last run is judged when the conversation closes
    front.close()
    assert [r["role"] for r in log] == ROLES[:-1]
    assert [r["outcome"] for r in log] == ["turn_completed" if o == "ok" else "failure" for o in OUTCOMES]
    assert [r["transition"]["dest"] for r in log][2] == "fallback"
    assert (front.conversation.session.state, front.role) == (FINAL_STATE, ROLES[-1])
    # a run's failure, seen at one of its calls, keeps where it was seen; the note, the call that carried it
    assert all(r["evidence"] is not None for r in log if r["outcome"] == "failure"), log
    assert [r["handoff"] is not None for r in log] == [False, False, False, True, False]


# -- pydantic-ai --


def test_pydantic_ai_runs(runs_server: Server) -> None:
    pytest.importorskip("pydantic_ai", reason='needs pydantic-ai: pip install "lwfsm[pydantic-ai]"')
    from pydantic_ai import Agent, ModelRetry
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from lwfsm.integrations.pydantic_ai import LwfsmModel

    provider = OpenAIProvider(base_url=runs_server.base, api_key="test")
    log: list[dict[str, Any]] = []
    model = LwfsmModel(SPEC, {r: OpenAIChatModel(m, provider=provider) for r, m in MODELS.items()}, log=log.append)
    agent = Agent(model, retries=5)
    tests = Suite()

    @agent.tool_plain
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            raise ModelRetry(RAISED)
        return "ok: 12 passed"

    answers, history = [], None
    for i in range(1, len(OUTCOMES) + 1):
        result = agent.run_sync(f"Run {i}: fix the failing test.", message_history=history)
        answers.append(result.output)
        history = result.all_messages()
    check_runs(runs_server, log, model.front, answers)


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
def test_pydantic_ai(server: Server, stream: bool) -> None:
    pytest.importorskip("pydantic_ai", reason='needs pydantic-ai: pip install "lwfsm[pydantic-ai]"')
    from pydantic_ai import Agent, ModelRetry
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from lwfsm.integrations.pydantic_ai import LwfsmModel

    provider = OpenAIProvider(base_url=server.base, api_key="test")
    log: list[dict[str, Any]] = []
    models = {r: OpenAIChatModel(m, provider=provider) for r, m in MODELS.items()}
    model = LwfsmModel(SPEC, models, log=log.append, turn_unit="call")
    agent = Agent(model, retries=5)
    tests = Suite()
    failures = [0]

    @agent.tool_plain
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            failures[0] += 1
            if failures[0] == 1:  # one failure as a retry (a 'retried' tool return), one as text
                raise ModelRetry(RAISED)
            return "Error: 2 tests failed"
        return "ok: 12 passed"

    if stream:

        async def streamed() -> str:
            async with agent.run_stream("Fix the failing test.") as run:
                return await run.get_output()

        output = asyncio.run(streamed())
        assert all(r.get("stream") for r in server.requests)
    else:
        output = agent.run_sync("Fix the failing test.").output
    assert output == "worker-model says: Fix the failing test."
    check(server, log, model.front.state())


# -- OpenAI Agents SDK --


def test_openai_agents_runs(runs_server: Server) -> None:
    pytest.importorskip("agents", reason='needs the OpenAI Agents SDK: pip install "lwfsm[openai-agents]"')
    from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
    from openai import AsyncOpenAI

    from lwfsm.integrations.openai_agents import LwfsmProvider

    client = AsyncOpenAI(base_url=runs_server.base, api_key="test")
    log: list[dict[str, Any]] = []
    models = {r: OpenAIChatCompletionsModel(m, openai_client=client) for r, m in MODELS.items()}
    provider = LwfsmProvider(SPEC, models, log=log.append)
    tests = Suite()

    @function_tool
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            raise RuntimeError(RAISED)  # the SDK tells the model the tool failed
        return "ok: 12 passed"

    agent = Agent(name="fixer", instructions="Fix the tests.", tools=[run_tests])
    config = RunConfig(model_provider=provider, tracing_disabled=True)

    async def runs() -> list[str]:  # one event loop for the client, as an application has
        answers, items = [], []
        for i in range(1, len(OUTCOMES) + 1):
            items = [*items, {"role": "user", "content": f"Run {i}: fix the failing test."}]
            result = await Runner.run(agent, items, run_config=config, max_turns=10)
            answers.append(result.final_output)
            items = result.to_input_list()
        return answers

    check_runs(runs_server, log, provider.front, asyncio.run(runs()))


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
def test_openai_agents(server: Server, stream: bool) -> None:
    pytest.importorskip("agents", reason='needs the OpenAI Agents SDK: pip install "lwfsm[openai-agents]"')
    from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
    from openai import AsyncOpenAI

    from lwfsm.integrations.openai_agents import LwfsmProvider

    client = AsyncOpenAI(base_url=server.base, api_key="test")
    log: list[dict[str, Any]] = []
    models = {r: OpenAIChatCompletionsModel(m, openai_client=client) for r, m in MODELS.items()}
    provider = LwfsmProvider(SPEC, models, log=log.append, turn_unit="call")
    tests = Suite()
    failures = [0]

    @function_tool
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            failures[0] += 1
            if failures[0] == 1:  # one failure raised (the SDK reports it to the model), one as text
                raise RuntimeError(RAISED)
            return "Error: 2 tests failed"
        return "ok: 12 passed"

    agent = Agent(name="fixer", instructions="Fix the tests.", tools=[run_tests])
    config = RunConfig(model_provider=provider, tracing_disabled=True)
    if stream:

        async def streamed() -> Any:
            run = Runner.run_streamed(agent, "Fix the failing test.", run_config=config, max_turns=10)
            async for _ in run.stream_events():
                pass
            return run.final_output

        output = asyncio.run(streamed())
        assert all(r.get("stream") for r in server.requests)
    else:
        output = Runner.run_sync(agent, "Fix the failing test.", run_config=config, max_turns=10).final_output
    assert output == "worker-model says: Fix the failing test."
    check(server, log, provider.front.state())


# -- LangChain v1 --


def test_langchain_runs(runs_server: Server) -> None:
    pytest.importorskip("langchain.agents", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    pytest.importorskip("langchain_openai", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    from langchain.agents import create_agent
    from langchain_core.tools import ToolException, tool
    from langchain_openai import ChatOpenAI

    from lwfsm.integrations.langchain import LwfsmMiddleware

    def chat(model: str) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=runs_server.base, api_key="test", max_retries=0)  # type: ignore[arg-type]

    log: list[dict[str, Any]] = []
    middleware = LwfsmMiddleware(SPEC, {r: chat(m) for r, m in MODELS.items()}, log=log.append)
    tests = Suite()

    @tool
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            raise ToolException(RAISED)
        return "ok: 12 passed"

    run_tests.handle_tool_error = True  # a ToolException becomes a tool message with status "error"
    agent = create_agent(chat("agent-default-model"), tools=[run_tests], middleware=[middleware])
    answers, messages = [], []
    for i in range(1, len(OUTCOMES) + 1):
        messages = [*messages, {"role": "user", "content": f"Run {i}: fix the failing test."}]
        messages = agent.invoke({"messages": messages})["messages"]
        answers.append(messages[-1].content)
    check_runs(runs_server, log, middleware.front, answers)


def test_langchain_takes_model_names_as_create_agent_does(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain.agents", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    pytest.importorskip("langchain_openai", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    from langchain_openai import ChatOpenAI

    from lwfsm.integrations.langchain import LwfsmMiddleware

    monkeypatch.setenv("OPENAI_API_KEY", "test")  # the client is built here; nothing is called
    middleware = LwfsmMiddleware(SPEC, {"lead": "openai:gpt-6.1-sol", "worker": "openai:gpt-6-luna"})
    assert isinstance(middleware.front.models["worker"], ChatOpenAI)
    assert middleware.front.models["worker"].model_name == "gpt-6-luna"
    # else the first call failed with "'int' object has no attribute 'bind'"
    with pytest.raises(ConfigError, match="role 'worker': expected a LangChain chat model or a name like"):
        LwfsmMiddleware(SPEC, {"lead": "openai:gpt-6.1-sol", "worker": 42})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="role 'lead': model 'nosuch:gpt-6.1-sol': ValueError: Unable to infer"):
        LwfsmMiddleware(SPEC, {"lead": "nosuch:gpt-6.1-sol", "worker": "openai:gpt-6-luna"})


@pytest.mark.parametrize("run", ["invoke", "ainvoke"])
def test_langchain(server: Server, run: str) -> None:
    pytest.importorskip("langchain.agents", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    pytest.importorskip("langchain_openai", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    from langchain.agents import create_agent
    from langchain_core.tools import ToolException, tool
    from langchain_openai import ChatOpenAI

    from lwfsm.integrations.langchain import LwfsmMiddleware

    def chat(model: str) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=server.base, api_key="test", max_retries=0)  # type: ignore[arg-type]

    log: list[dict[str, Any]] = []
    middleware = LwfsmMiddleware(SPEC, {r: chat(m) for r, m in MODELS.items()}, log=log.append, turn_unit="call")
    tests = Suite()
    failures = [0]

    @tool
    def run_tests() -> str:
        """Run the test suite."""
        if tests.next_failed():
            failures[0] += 1
            if failures[0] == 1:  # one failure raised (a tool message with status "error"), one as text
                raise ToolException(RAISED)
            return "Error: 2 tests failed"
        return "ok: 12 passed"

    run_tests.handle_tool_error = True  # a ToolException becomes a tool message with status "error"

    # The agent's own model is never called: the middleware replaces it on every call.
    agent = create_agent(chat("agent-default-model"), tools=[run_tests], middleware=[middleware])
    task = {"messages": [{"role": "user", "content": "Fix the failing test."}]}
    result = agent.invoke(task) if run == "invoke" else asyncio.run(agent.ainvoke(task))  # wrap_ / awrap_model_call
    assert result["messages"][-1].content == "worker-model says: Fix the failing test."
    check(server, log, middleware.front.state())


# -- a worker that keeps failing technically: judging.technical_fallback's role serves, in every framework --

DOWN = {"status": 500, "body": {"error": {"message": "upstream exploded", "type": "server_error"}}}


def test_technical_failures_are_told_by_class_before_status() -> None:
    from lwfsm.turn.front import technical

    class Timeout(Exception):  # LiteLLM's: an openai APITimeoutError that carries a 408
        status_code = 408

    class BadRequestError(Exception):
        status_code = 400

    class InternalServerError(Exception):
        status_code = 503

    assert technical(Timeout())
    assert technical(ConnectionRefusedError())
    assert technical(InternalServerError())
    assert not technical(BadRequestError())
    wrapped = RuntimeError("the framework's own")
    wrapped.__cause__ = InternalServerError()
    assert technical(wrapped)


@pytest.fixture
def plain_server() -> Iterator[Server]:
    """Answers every call in text (the unscripted reply) unless a step is scripted."""
    s = Server()
    yield s
    s.close()


def _framework_run(framework: str, server: Server, stream: bool) -> tuple[str, Any]:
    """One run (no tools) of `framework` on lead_worker with lead_turns=0: the worker serves first."""
    spec = load_spec("lead_worker").with_params({"lead_turns": 0})
    log: list[dict[str, Any]] = []
    if framework == "pydantic-ai":
        pytest.importorskip("pydantic_ai", reason='needs pydantic-ai: pip install "lwfsm[pydantic-ai]"')
        from openai import AsyncOpenAI
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        from lwfsm.integrations.pydantic_ai import LwfsmModel

        client = AsyncOpenAI(base_url=server.base, api_key="test", max_retries=0)
        provider = OpenAIProvider(openai_client=client)
        model = LwfsmModel(spec, {r: OpenAIChatModel(m, provider=provider) for r, m in MODELS.items()}, log=log.append)
        agent = Agent(model)

        async def streamed() -> str:
            async with agent.run_stream("Fix the failing test.") as run:
                return await run.get_output()

        output = asyncio.run(streamed()) if stream else agent.run_sync("Fix the failing test.").output
        model.front.close()
        return output, log
    if framework == "openai-agents":
        pytest.importorskip("agents", reason='needs the OpenAI Agents SDK: pip install "lwfsm[openai-agents]"')
        from agents import Agent as SdkAgent
        from agents import OpenAIChatCompletionsModel, RunConfig, Runner
        from openai import AsyncOpenAI

        from lwfsm.integrations.openai_agents import LwfsmProvider

        client = AsyncOpenAI(base_url=server.base, api_key="test", max_retries=0)
        models = {r: OpenAIChatCompletionsModel(m, openai_client=client) for r, m in MODELS.items()}
        sdk = LwfsmProvider(spec, models, log=log.append)
        config = RunConfig(model_provider=sdk, tracing_disabled=True)
        agent = SdkAgent(name="fixer", instructions="Fix the tests.")

        async def streamed_sdk() -> Any:
            run = Runner.run_streamed(agent, "Fix the failing test.", run_config=config)
            async for _ in run.stream_events():
                pass
            return run.final_output

        out = (
            asyncio.run(streamed_sdk())
            if stream
            else Runner.run_sync(agent, "Fix the failing test.", run_config=config).final_output
        )
        sdk.front.close()
        return str(out), log
    pytest.importorskip("langchain.agents", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    pytest.importorskip("langchain_openai", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI

    from lwfsm.integrations.langchain import LwfsmMiddleware

    def chat(model: str) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=server.base, api_key="test", max_retries=0, streaming=stream)  # type: ignore[arg-type]

    middleware = LwfsmMiddleware(spec, {r: chat(m) for r, m in MODELS.items()}, log=log.append)
    agent = create_agent(chat("agent-default-model"), middleware=[middleware])
    result = agent.invoke({"messages": [{"role": "user", "content": "Fix the failing test."}]})
    middleware.front.close()
    return str(result["messages"][-1].content), log


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
@pytest.mark.parametrize("framework", ["pydantic-ai", "openai-agents", "langchain"])
def test_a_worker_failing_technically_is_served_by_the_technical_fallback(
    framework: str, stream: bool, plain_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server = plain_server
    server.script("worker-model", DOWN)
    output, log = _framework_run(framework, server, stream)
    assert output == "lead-model says: Fix the failing test."
    assert [r["model"] for r in server.requests] == ["worker-model", "lead-model"]
    assert [(r["state"], r["role"]) for r in log] == [("worker", "lead")]  # served by the lead in state worker
    assert "worker model failed (" in caplog.text
    # a request the server refuses as wrong (400) is the client's to see: no other role is tried
    server.requests.clear()
    server.script("worker-model", {"status": 400, "body": {"error": {"message": "bad tool schema"}}})
    # (the Agents SDK's loop, closed on the error, leaves the client's auth generator open: not ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(Exception, match="bad tool schema"):
            _framework_run(framework, server, stream)
    assert [r["model"] for r in server.requests] == ["worker-model"]


# -- LiteLLM proxy --

TOOLS = [{"type": "function", "function": {"name": "run_tests", "description": "Run the tests.", "parameters": {}}}]


def proxy_parts() -> tuple[Any, Any, Any, Any]:
    """litellm, the proxy's ProxyLogging and UserApiKeyCache classes, and a user (skips without the proxy)."""
    pytest.importorskip("litellm", reason='needs LiteLLM: pip install "lwfsm[litellm]"')
    pytest.importorskip("fastapi", reason='the proxy needs its own dependencies: pip install "lwfsm[litellm-proxy]"')
    import litellm

    # The proxy's modules warn at import (pydantic-v1-style fields, an unclosed os.scandir): not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        import litellm.proxy.proxy_server  # noqa: F401  # post_call_success_hook imports it
        from litellm.proxy._types import UserAPIKeyAuth
        from litellm.proxy.utils import ProxyLogging, UserApiKeyCache

        gc.collect()
    return litellm, ProxyLogging, UserApiKeyCache, UserAPIKeyAuth()


def proxy_run(
    hook: Any, model_list: list[dict[str, Any]], tool: Any, session: str | None = "s1"
) -> tuple[str, Any, list[str]]:
    """A tool-using agent through LiteLLM's proxy code path, `hook` registered as a proxy callback.

    Returns the final answer, the proxy's cache and the model group of each request after its hooks.
    """
    litellm, ProxyLogging, UserApiKeyCache, user = proxy_parts()
    router = litellm.Router(model_list=model_list)
    cache = UserApiKeyCache()
    proxy = ProxyLogging(user_api_key_cache=cache)
    groups: list[str] = []

    async def run() -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test."}]
        for _ in range(10):
            # What the proxy's /chat/completions route does: its pre-call hooks, the router, its post-call hooks.
            request = {"headers": {"x-lwfsm-session": session} if session else {}}
            data = {"model": "agent", "messages": list(messages), "tools": TOOLS, "proxy_server_request": request}
            data = await proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion")
            assert data is not None
            groups.append(data["model"])
            response = await router.acompletion(model=data["model"], messages=data["messages"], tools=data["tools"])
            response = await proxy.post_call_success_hook(data=data, response=response, user_api_key_dict=user)
            message = response.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            if not message.tool_calls:
                return str(message.content)
            messages += [{"role": "tool", "tool_call_id": c.id, "content": tool()} for c in message.tool_calls]
        raise AssertionError("the agent never answered")

    callbacks = litellm.callbacks
    litellm.callbacks = [hook]
    try:
        return asyncio.run(run()), cache, groups
    finally:
        litellm.callbacks = callbacks


def test_litellm_proxy(server: Server) -> None:
    pytest.importorskip("litellm", reason='needs LiteLLM: pip install "lwfsm[litellm]"')
    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    groups = {"lead": "big", "worker": "small"}
    model_list = [
        {"model_name": groups[r], "litellm_params": {"model": f"openai/{m}", "api_base": server.base, "api_key": "t"}}
        for r, m in MODELS.items()
    ]
    log: list[dict[str, Any]] = []
    hook = LwfsmProxyHook(SPEC, groups, log=log.append)
    answer, cache, _ = proxy_run(hook, model_list, Suite())
    assert answer == "worker-model says: Fix the failing test."
    from lwfsm.store import load

    conv, _ = load(hook.adapter.store, hook.core, "anon.s1")  # in the hook's store, scoped by the caller's key
    assert conv is not None
    check(server, log, conv.state())
    # the model that served, as the response names it: a model group is no model a price map knows
    assert [r["model"] for r in log] == [MODELS[r] for r in ROLES[:-1]]


def test_litellm_proxy_leaves_requests_without_a_session_alone(server: Server) -> None:
    pytest.importorskip("litellm", reason='needs LiteLLM: pip install "lwfsm[litellm]"')
    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    params = {"model": "openai/plain", "api_base": server.base, "api_key": "t"}
    model_list = [{"model_name": "agent", "litellm_params": params}]
    hook = LwfsmProxyHook(SPEC, {"lead": "big", "worker": "small"})
    answer, cache, groups = proxy_run(hook, model_list, Suite(), session=None)
    assert (answer, groups) == ("plain says: Fix the failing test.", ["agent"])
    assert hook.adapter.store.list() == []


def test_litellm_proxy_commits_concurrent_calls_of_a_session_and_scopes_sessions_by_key(server: Server) -> None:
    litellm, ProxyLogging, UserApiKeyCache, _ = proxy_parts()
    from litellm.proxy._types import UserAPIKeyAuth

    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook
    from lwfsm.store import load

    groups = {"lead": "big", "worker": "small"}
    model_list = [
        {"model_name": groups[r], "litellm_params": {"model": f"openai/{m}", "api_base": server.base, "api_key": "t"}}
        for r, m in MODELS.items()
    ]
    hook = LwfsmProxyHook(SPEC, groups)
    router = litellm.Router(model_list=model_list)
    proxy = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    alice, bob = UserAPIKeyAuth(token="hash-of-alice-key"), UserAPIKeyAuth(token="hash-of-bob-key")

    async def one(user: Any, text: str) -> None:
        data = {"model": "agent", "messages": [{"role": "user", "content": text}], "metadata": {"lwfsm_session": "s"}}
        data = await proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion")
        response = await router.acompletion(model=data["model"], messages=data["messages"])
        await proxy.post_call_success_hook(data=data, response=response, user_api_key_dict=user)

    async def run() -> None:
        # Both read the session before either commits: the second commit must not overwrite the first.
        await asyncio.gather(one(alice, "first"), one(alice, "second"))
        await one(bob, "bob's own")

    callbacks, litellm.callbacks = litellm.callbacks, [hook]
    try:
        asyncio.run(run())
    finally:
        litellm.callbacks = callbacks
    keys = hook.adapter.store.list()
    assert len(keys) == 2  # one conversation per caller key, though both named session "s"
    calls = sorted(load(hook.adapter.store, hook.core, k)[0].ledger.calls for k in keys)  # type: ignore[union-attr]
    assert calls == [1, 2]
    assert not any("hash-of" in k for k in keys)  # the key's hash is hashed again, not shown


def test_litellm_proxy_refuses_messages_of_another_api_as_the_clients_400() -> None:
    """An Anthropic tool result in a routed session's Chat messages: the turn core cannot read it, so the
    hook refuses it as the client's (a 400); it was the proxy's 500, which clients retry."""
    litellm, ProxyLogging, UserApiKeyCache, user = proxy_parts()
    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    hook = LwfsmProxyHook(SPEC, {"lead": "big", "worker": "small"})
    proxy = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    result = {"type": "tool_result", "tool_use_id": "x", "content": "Exit code 1"}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [result]},
    ]
    data = {"model": "agent", "messages": messages, "metadata": {"lwfsm_session": "s3"}}
    callbacks, litellm.callbacks = litellm.callbacks, [hook]
    try:
        with pytest.raises(ConfigError, match=r"session 's3': messages\[2\] holds Anthropic tool blocks") as info:
            asyncio.run(proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion"))
        assert info.value.status_code == 400  # type: ignore[attr-defined]
    finally:
        litellm.callbacks = callbacks


def test_litellm_proxy_refuses_a_streamed_session_loudly() -> None:
    litellm, ProxyLogging, UserApiKeyCache, user = proxy_parts()
    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    hook = LwfsmProxyHook(SPEC, {"lead": "big", "worker": "small"})
    proxy = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    data = {"model": "agent", "messages": [], "stream": True, "metadata": {"lwfsm_session": "s2"}}
    callbacks, litellm.callbacks = litellm.callbacks, [hook]
    try:
        with pytest.raises(ConfigError, match="session 's2': .* does not follow streamed replies yet") as info:
            asyncio.run(proxy.pre_call_hook(user_api_key_dict=user, data=data, call_type="acompletion"))
        assert info.value.status_code == 400  # type: ignore[attr-defined]  # the proxy's answer: a 500 is retried
    finally:
        litellm.callbacks = callbacks


def test_litellm_proxy_hook_refuses_a_model_group_the_proxy_does_not_have(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm, ProxyLogging, UserApiKeyCache, user = proxy_parts()  # noqa: N806 - classes
    import litellm.proxy.proxy_server as proxy_server

    from lwfsm.integrations.litellm_proxy import LwfsmProxyHook

    params = {"model": "openai/m", "api_base": server.base, "api_key": "t"}
    router = litellm.Router(model_list=[{"model_name": g, "litellm_params": params} for g in ("big", "small")])
    monkeypatch.setattr(proxy_server, "llm_router", router)  # the running proxy's router, as it loaded the config
    proxy = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    data = {"model": "agent", "messages": [{"role": "user", "content": "go"}], "metadata": {"lwfsm_session": "g"}}
    for groups, refused in [({"lead": "big", "worker": "smal"}, True), ({"lead": "big", "worker": "small"}, False)]:
        callbacks, litellm.callbacks = litellm.callbacks, [LwfsmProxyHook(SPEC, groups)]
        try:
            call = proxy.pre_call_hook(user_api_key_dict=user, data=dict(data), call_type="acompletion")
            if refused:  # at the first routed call, not from turn 4 on (the lead's first turns hid it)
                with pytest.raises(ConfigError, match=r"role 'worker' is bound to model group 'smal', .* 'small'\?"):
                    asyncio.run(call)
            else:
                assert asyncio.run(call)["model"] == "big"
        finally:
            litellm.callbacks = callbacks


def test_a_framework_reply_without_usage_is_unreported_not_zero() -> None:
    pytest.importorskip("langchain_core", reason='needs LangChain: pip install "lwfsm[langchain]"')
    from langchain_core.messages import AIMessage

    from lwfsm.integrations.langchain import _usage

    assert _usage(AIMessage(content="hi")).unreported == 1  # ChatOpenAI streams none unless stream_usage=True
    counted = _usage(AIMessage(content="hi", usage_metadata={"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}))
    assert (counted.prompt_tokens, counted.completion_tokens, counted.unreported) == (7, 2, 0)


# -- streams that end before their last event, or without usage: what each framework says is not whole --


def _pydantic_ai_run(server: Server, responses: bool) -> tuple[Any, list[dict[str, Any]], Any]:
    """A pydantic-ai model on lead_worker, streaming one run per call of the returned function."""
    pytest.importorskip("pydantic_ai", reason='needs pydantic-ai: pip install "lwfsm[pydantic-ai]"')
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from lwfsm.integrations.pydantic_ai import LwfsmModel

    provider = OpenAIProvider(base_url=server.base, api_key="test")
    kind = OpenAIResponsesModel if responses else OpenAIChatModel
    log: list[dict[str, Any]] = []
    model = LwfsmModel(SPEC, {r: kind(m, provider=provider) for r, m in MODELS.items()}, log=log.append)
    agent = Agent(model)

    def run() -> str:
        async def streamed() -> str:
            async with agent.run_stream("Fix the failing test.") as r:
                return await r.get_output()

        return asyncio.run(streamed())

    return run, log, model


def test_pydantic_ai_records_no_stream_cut_before_its_last_event(caplog: pytest.LogCaptureFixture) -> None:
    """Over the Responses API pydantic-ai says a stream that ended before `response.completed` is not
    whole: nothing is recorded (the gateway and the Agents SDK's integration refuse it too), and the
    next run is the conversation's first turn."""
    server = Server(responses=True)
    try:
        run, log, model = _pydantic_ai_run(server, responses=True)
        server.script("lead-model", {"cut": True})
        run()  # what came reaches the agent as pydantic-ai gives it: nothing raised
        assert model.front.state().version == 0
        said = "the lead model's stream ended before its last event (incomplete); nothing was recorded"
        assert said in caplog.text
        assert run() == "lead-model says: Fix the failing test."
        model.front.close()
        assert [(r["turn"], r["role"]) for r in log] == [(1, "lead")]
        assert model.front.state().ledger.rows[0].calls == 1
    finally:
        server.close()


def test_pydantic_ai_stream_without_usage_is_unreported() -> None:
    """A server that sends no usage in its streams (llama.cpp): pydantic-ai counts 0 tokens; lwfsm
    records unknown usage, never a known 0 (priced as $0)."""
    server = Server(quirks=("no_stream_usage",))
    try:
        run, _, model = _pydantic_ai_run(server, responses=False)
        run()
        (row,) = model.front.state().ledger.rows
        assert (row.calls, row.usage.unreported, row.usage.prompt_tokens) == (1, 1, 0)
        server.script("worker-model", {"no_usage": False})  # the same server, usage sent: counted
        run()
        lead, worker = model.front.state().ledger.rows
        assert (worker.role, worker.calls, worker.usage.unreported, worker.usage.prompt_tokens) == ("worker", 1, 0, 11)
    finally:
        server.close()


def _langchain(server: Server, responses: bool) -> tuple[Any, Any]:
    pytest.importorskip("langchain.agents", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    pytest.importorskip("langchain_openai", reason='needs LangChain v1: pip install "lwfsm[langchain]"')
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI

    from lwfsm.integrations.langchain import LwfsmMiddleware

    def chat(model: str) -> ChatOpenAI:
        return ChatOpenAI(  # type: ignore[call-arg]
            model=model,
            base_url=server.base,
            api_key="test",
            max_retries=0,
            streaming=True,
            use_responses_api=responses,
        )

    spec = load_spec("lead_worker").with_params({"lead_turns": 0})
    middleware = LwfsmMiddleware(spec, {r: chat(m) for r, m in MODELS.items()})
    return create_agent(chat("agent-default-model"), middleware=[middleware]), middleware


def test_langchain_records_no_responses_stream_cut_before_its_last_event(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(responses=True)
    try:
        agent, middleware = _langchain(server, responses=True)
        server.script("worker-model", {"cut": True})
        agent.invoke({"messages": [{"role": "user", "content": "Fix the failing test."}]})
        assert middleware.front.state().version == 0
        assert "the worker model's stream ended before its last event; nothing was recorded" in caplog.text
        server.script("worker-model", {"no_status": True})  # whole, from a server that sends no status
        out = agent.invoke({"messages": [{"role": "user", "content": "Fix the failing test."}]})
        assert out["messages"][-1].text == "worker-model says: Fix the failing test."
        assert middleware.front.state().ledger.rows[0].calls == 1
    finally:
        server.close()


def test_langchain_does_not_serve_a_call_again_once_its_tokens_streamed() -> None:
    """The worker's stream breaks after its first words went out (to `stream_mode="messages"`, say): the
    lead's answer would follow them in the same message, so the error reaches the agent. A worker
    failing before any word (its empty first chunk aside) is still served by the lead."""
    import openai

    server = Server()
    try:
        agent, middleware = _langchain(server, responses=False)
        asked = {"messages": [{"role": "user", "content": "Fix it."}]}
        server.script("worker-model", {"broken": 3})  # the role chunk, "worke", then the drop
        seen: list[str] = []

        def stream() -> None:
            seen.extend(m.text for m, _ in agent.stream(asked, stream_mode="messages"))

        with pytest.raises(openai.APIConnectionError):  # the SDK's own, as LangChain raises it
            stream()
        assert "".join(seen) == "worke"
        assert [r["model"] for r in server.requests] == ["worker-model"]
        assert middleware.front.state().version == 0
        for fails_before_any_word in ({"broken": True}, DOWN):
            server.requests.clear()
            server.script("worker-model", fails_before_any_word)
            tokens = [m.text for m, _ in agent.stream(asked, stream_mode="messages")]
            assert "".join(tokens) == "lead-model says: Fix it."
            assert [r["model"] for r in server.requests] == ["worker-model", "lead-model"]
    finally:
        server.close()


def test_pydantic_ai_records_a_reported_zero_as_zero() -> None:
    """0 tokens a provider reported (a caching proxy's hit) are 0, as the gateway and LangChain count
    them; only a reply without usage is unknown."""
    server = Server()
    try:
        run, _, model = _pydantic_ai_run(server, responses=False)
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        reply = {"role": "assistant", "content": "cached"}
        body = {"id": "c0", "object": "chat.completion", "created": 0, "model": "lead-model", "usage": zero}
        server.script("lead-model", {"body": {**body, "choices": [{"index": 0, "message": reply}]}})
        assert run() == "cached"
        (row,) = model.front.state().ledger.rows
        assert (row.calls, row.usage.unreported, row.usage.prompt_tokens) == (1, 0, 0)
    finally:
        server.close()
