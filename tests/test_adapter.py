"""The LiteLLM adapter, through LiteLLM's real HTTP stack against a server on 127.0.0.1."""

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The adapter first: it switches LiteLLM to its local price map before LiteLLM is imported.
pytest.importorskip("lwfsm.provider.adapter", reason='needs the litellm extra: pip install "lwfsm[litellm]"')

import litellm  # noqa: E402
import litellm.exceptions as llm_errors  # noqa: E402

from lwfsm import ConfigError  # noqa: E402
from lwfsm.errors import AllAttemptsFailed, AuthError, BadRequestError, SessionBusy, TransitionNotAllowed  # noqa: E402
from lwfsm.provider.adapter import EXCEPTIONS, Adapter, AgentSession, classify, retry_after  # noqa: E402
from lwfsm.turn.bindings import RoleBinding, bindings, params_from_env  # noqa: E402
from lwfsm.turn.judge import malformed_tool_calls, unparsable_code  # noqa: E402

from .openai_server import Server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "lead_worker.yaml"
ENV = {"TEST_KEY": "sk-test-not-a-real-key"}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def adapter(server: Server, lead: str = "big", worker: str = "small", **kw: Any) -> Adapter:
    def bind(model: str) -> RoleBinding:
        return RoleBinding(f"openai/{model}", api_base=server.base, api_key_env="TEST_KEY")

    kw.setdefault("backoff", 0.0)
    return Adapter(SPEC, {"lead": bind(lead), "worker": bind(worker)}, env=ENV, **kw)


def talk(s: AgentSession, replies: int, user: str = "go", **kw: Any) -> list[str]:
    """Call `replies` times, answering each reply with a plain user message; return the served models."""
    msgs: list[dict[str, Any]] = [{"role": "user", "content": user}]
    served = []
    for _ in range(replies):
        r = s.completion(msgs, **kw)
        served.append(r.model)
        msgs += [{"role": "assistant", "content": r.choices[0].message.content}, {"role": "user", "content": user}]
    return served


# --- exceptions ---------------------------------------------------------------------------


def test_every_litellm_exception_class_is_placed() -> None:
    classes = {name for name, c in vars(llm_errors).items() if isinstance(c, type) and issubclass(c, BaseException)}
    assert classes - set(EXCEPTIONS) == set(), "LiteLLM has exception classes the adapter does not place"


def test_classification_of_typical_errors() -> None:
    assert classify(llm_errors.RateLimitError("x", llm_provider="openai", model="m")) == "retry"
    assert classify(llm_errors.Timeout("x", model="m", llm_provider="openai")) == "retry"
    assert classify(llm_errors.AuthenticationError("x", llm_provider="openai", model="m")) is AuthError
    assert classify(llm_errors.ContextWindowExceededError("x", model="m", llm_provider="openai")) is BadRequestError
    assert classify(ValueError("not litellm's")) is None


def test_retry_after_header() -> None:
    class Response:
        headers = {"retry-after": "2.5"}

    exc = Exception()
    exc.response = Response()  # type: ignore[attr-defined]
    assert retry_after(exc) == 2.5
    assert retry_after(Exception()) is None


# --- configuration ------------------------------------------------------------------------


def test_binding_precedence_arguments_lwfsm_goose(tmp_path: Path) -> None:
    from lwfsm import load_spec

    spec = load_spec(SPEC)
    env = {
        "LWFSM_LEAD_MODEL": "anthropic/claude-x",
        "GOOSE_LEAD_MODEL": "gpt-4o",
        "GOOSE_LEAD_PROVIDER": "openai",
        "GOOSE_MODEL": "gpt-4o-mini",
        "GOOSE_PROVIDER": "openai",
        "LWFSM_WORKER_TEMPERATURE": "0.2",
    }
    b = bindings(spec, env=env)
    assert b["lead"].model == "anthropic/claude-x"  # LWFSM_* beats GOOSE_*
    assert b["worker"].model == "openai/gpt-4o-mini"  # goose: model tied to its provider
    assert b["worker"].options == {"temperature": 0.2}
    assert bindings(spec, {"lead": "openai/o3"}, env=env)["lead"].model == "openai/o3"  # arguments beat env
    env2 = {"GOOSE_LEAD_MODEL": "gpt-4o", "GOOSE_MODEL": "gpt-4o-mini", "GOOSE_PROVIDER": "openai"}
    assert bindings(spec, env=env2)["lead"].model == "openai/gpt-4o"  # goose: lead provider defaults to the main one


def test_role_variables_a_whole_binding_leaves_unread_are_said(caplog: pytest.LogCaptureFixture) -> None:
    """A role bound by a section (or a RoleBinding) reads no LWFSM_<ROLE>_* variable, as documented: a set
    LWFSM_WORKER_TEMPERATURE went unused without a word."""
    from lwfsm import load_spec

    env = {"LWFSM_WORKER_TEMPERATURE": "0.2", "LWFSM_LEAD_TEMPERATURE": "0.5"}
    b = bindings(load_spec(SPEC), {"lead": "openai/o3", "worker": {"model": "openai/gpt-4o-mini"}}, env=env)
    assert b["worker"].options == {}
    assert b["lead"].options == {"temperature": 0.5}  # a model string: the role's variables are read
    assert (
        "LWFSM_WORKER_TEMPERATURE set, but models binds role 'worker' whole: the variables are not read" in caplog.text
    )
    assert "LWFSM_LEAD" not in caplog.text


@pytest.mark.parametrize(
    ("env", "models", "message"),
    [
        (
            {},
            {},
            "no model for role 'lead' of spec 'lead_worker': pass models={'lead': 'provider/model'} "
            "or set LWFSM_LEAD_MODEL or GOOSE_LEAD_MODEL",
        ),
        ({"LWFSM_LEAD_MODEL": " ", "LWFSM_WORKER_MODEL": "a/b"}, {}, "LWFSM_LEAD_MODEL is empty"),
        (
            {"GOOSE_LEAD_MODEL": "gpt-4o", "LWFSM_WORKER_MODEL": "a/b"},
            {},
            "GOOSE_LEAD_MODEL='gpt-4o' names no provider: write 'provider/gpt-4o' or set GOOSE_LEAD_PROVIDER",
        ),
        (
            {"LWFSM_LEAD_MODEL": "a/b", "LWFSM_WORKER_MODEL": "a/c", "LWFSM_WORKER_TEMPERATURE": "warm"},
            {},
            "LWFSM_WORKER_TEMPERATURE='warm' is not a number",
        ),
        (
            {"LWFSM_LEAD_MODEL": "a/b", "LWFSM_WORKER_MODEL": "a/c", "LWFSM_WORKER_TEMPERATURE": "99"},
            {},
            "LWFSM_WORKER_TEMPERATURE='99' is outside 0 to 2",
        ),
        (
            {"LWFSM_LEAD_MODEL": "a/b", "LWFSM_WORKER_MODEL": "a/c"},
            {"planner": "a/d"},
            "models given for roles the spec does not have: planner",
        ),
        (  # named as misspelt, not as the role it leaves without a model
            {},
            {"lead": "a/b", "wrker": "a/c"},
            "models given for roles the spec does not have: wrker (did you mean 'worker'?)",
        ),
        # each would have failed every call of its role, found only at the first
        ({"LWFSM_LEAD_MODEL": "openai/", "LWFSM_WORKER_MODEL": "a/c"}, {}, "needs both a provider and a model"),
        (
            {"LWFSM_LEAD_MODEL": "openai/big model", "LWFSM_WORKER_MODEL": "a/c"},
            {},
            "LWFSM_LEAD_MODEL='openai/big model': a model name has no spaces",
        ),
        (
            {"LWFSM_LEAD_MODEL": "a/b", "LWFSM_WORKER_MODEL": "a/c", "LWFSM_WORKER_API_BASE": "not-a-url"},
            {},
            "LWFSM_WORKER_API_BASE='not-a-url' is not a URL: give one such as 'http://127.0.0.1:8080/v1'",
        ),
        (
            {"LWFSM_WORKER_MODEL": "a/c"},
            {"lead": {"model": "a/b", "api_base": "127.0.0.1:8080"}},
            "models['lead'].api_base='127.0.0.1:8080' is not a URL",
        ),
    ],
)
def test_binding_errors_name_the_variable(env: dict[str, str], models: dict[str, str], message: str) -> None:
    from lwfsm import load_spec

    with pytest.raises(ConfigError) as info:
        bindings(load_spec(SPEC), models, env=env)
    assert message in str(info.value)


def test_params_from_env() -> None:
    from lwfsm import load_spec

    spec = load_spec(SPEC)
    assert params_from_env(spec, {"GOOSE_LEAD_TURNS": "5", "LWFSM_PARAM_FAILURE_THRESHOLD": "4"}) == {
        "lead_turns": 5,
        "failure_threshold": 4,
    }
    assert params_from_env(spec, {"GOOSE_LEAD_TURNS": "5", "LWFSM_PARAM_LEAD_TURNS": "1"}) == {"lead_turns": 1}
    with pytest.raises(
        ConfigError, match=r"GOOSE_LEAD_FALLBACK_TURNS='two' is not an integer \(param 'fallback_turns'\)"
    ):
        params_from_env(spec, {"GOOSE_LEAD_FALLBACK_TURNS": "two"})
    with pytest.raises(
        ConfigError,
        match=r"GOOSE_LEAD_FALLBACK_TURNS='0': value 0 for param 'fallback_turns' is "
        r"outside its declared range \[1, 1000\]",
    ):
        params_from_env(spec, {"GOOSE_LEAD_FALLBACK_TURNS": "0"})
    a = Adapter(SPEC, {"lead": "openai/b", "worker": "openai/c"}, env={"GOOSE_LEAD_TURNS": "1"})
    assert a.spec.param_values["lead_turns"] == 1
    # a misspelt name is an error, not the spec's default kept without a word
    with pytest.raises(
        ConfigError, match=r"LWFSM_PARAM_LEAD_TRUNS names no param .*did you mean 'LWFSM_PARAM_LEAD_TURNS'"
    ):
        params_from_env(spec, {"LWFSM_PARAM_LEAD_TRUNS": "2"})


def test_a_misspelt_role_variable_is_refused() -> None:
    """LWFSM_LEAD_API_BAES would leave the lead on its provider's public endpoint without a word."""
    from lwfsm import Spec, load_spec

    env = {"LWFSM_LEAD_MODEL": "openai/a", "LWFSM_WORKER_MODEL": "openai/b"}
    with pytest.raises(ConfigError, match=r"LWFSM_LEAD_API_BAES is not .*did you mean 'LWFSM_LEAD_API_BASE'"):
        bindings(load_spec(SPEC), env={**env, "LWFSM_LEAD_API_BAES": "http://127.0.0.1:9/v1"})
    # a role whose name starts with another's owns its variables; params and other LWFSM_ names are not a role's
    raw = load_spec(SPEC).model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["roles"]["lead_plan"] = raw["roles"]["lead"]
    spec = Spec.model_validate(raw)
    ok = {**env, "LWFSM_LEAD_PLAN_MODEL": "openai/c", "LWFSM_PARAM_LEAD_TURNS": "2", "LWFSM_REQUIRE_REDIS": "1"}
    assert bindings(spec, env=ok)["lead_plan"].model == "openai/c"
    with pytest.raises(ConfigError, match=r"LWFSM_LEAD_PLAN_MODLE is not .*'LWFSM_LEAD_PLAN_MODEL'"):
        bindings(spec, env={**ok, "LWFSM_LEAD_PLAN_MODLE": "openai/c"})
    # what no role reads wrongly: the variable a role's _API_KEY_ENV names, any variable of a role bound
    # by an argument (or --mock), a role's own variable that starts with another role's name
    keyed = {**env, "LWFSM_LEAD_API_KEY_ENV": "LWFSM_LEAD_API_KEY", "LWFSM_LEAD_API_KEY": "sk-test"}
    assert bindings(load_spec(SPEC), env=keyed)["lead"].api_key_env == "LWFSM_LEAD_API_KEY"
    assert bindings(load_spec(SPEC), {"lead": "a/b", "worker": "a/c"}, env={"LWFSM_LEAD_TOKEN": "x"})
    raw["roles"]["lead_api"] = raw["roles"]["lead"]
    two = Spec.model_validate(raw)
    mine = {**ok, "LWFSM_LEAD_API_MODEL": "openai/d", "LWFSM_LEAD_API_BASE": "http://127.0.0.1:9/v1"}
    assert bindings(two, env=mine)["lead"].api_base == "http://127.0.0.1:9/v1"


def test_a_provider_litellm_does_not_know_is_refused_when_the_adapter_is_built() -> None:
    """'foo/gpt-4o' was taken, and every call of its role then failed with LiteLLM's own error."""
    with pytest.raises(
        ConfigError,
        match=r"the lead model 'foo/gpt-4o' names provider 'foo', which LiteLLM does not know.*'provider/model' "
        r"\(in models, or LWFSM_LEAD_MODEL\)",
    ):
        Adapter(SPEC, {"lead": "foo/gpt-4o", "worker": "openai/gpt-4o-mini"}, env={})
    with pytest.raises(ConfigError, match=r"the worker model 'opnai/x' .*did you mean 'openai'"):
        Adapter(SPEC, env={"LWFSM_LEAD_MODEL": "openai/a", "LWFSM_WORKER_MODEL": "opnai/x"})


def test_a_custom_provider_registered_with_litellm_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's own way to add a provider (`litellm.custom_provider_map`) lists it only at the first call:
    the adapter built before any call refused it."""
    import litellm
    from litellm import CustomLLM

    class Mine(CustomLLM):
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return litellm.completion(model="gpt-4o", mock_response="from my-llm", messages=kwargs["messages"])

    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "my-llm", "custom_handler": Mine()}])
    adapter = Adapter(SPEC, {"lead": "my-llm/x", "worker": "my-llm/y"}, env={})
    reply = adapter.session().completion([{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "from my-llm"


def test_the_adapter_reads_its_own_prices_and_refuses_a_wrong_file_when_built(server: Server, tmp_path: Path) -> None:
    """LWFSM_PRICES was read by a module-wide price map from the process's environment: a wrong file raised
    after a paid call was committed (its reply lost), and `env=` was not read."""
    models = {
        r: RoleBinding(f"openai/{m}", api_base=server.base, api_key_env="TEST_KEY")
        for r, m in (("lead", "big"), ("worker", "small"))
    }
    bad = tmp_path / "bad.json"
    bad.write_text('{"openai/small": {"input_cost_per_token": 1e-6}}')
    with pytest.raises(
        ConfigError, match=f"LWFSM_PRICES={re.escape(str(bad))}: model 'openai/small': output_cost_per_token"
    ):
        Adapter("lead_worker", models, env={**ENV, "LWFSM_PRICES": str(bad)})
    good = tmp_path / "good.json"
    good.write_text('{"openai/small": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}')
    adapter = Adapter("lead_worker", models, env={**ENV, "LWFSM_PRICES": str(good)})
    from lwfsm.turn.ledger import Usage

    assert adapter.prices.price("openai/small", Usage(prompt_tokens=10, completion_tokens=5)) == pytest.approx(2e-5)


def test_the_key_is_read_from_the_named_variable_and_never_shown(server: Server) -> None:
    b = RoleBinding("openai/x", api_base=server.base, api_key_env="TEST_KEY")
    assert b.call_kwargs(ENV)["api_key"] == ENV["TEST_KEY"]
    assert "sk-test" not in repr(b)
    with pytest.raises(ConfigError, match="MISSING_KEY is not set: it should hold the API key for openai/x"):
        RoleBinding("openai/x", api_key_env="MISSING_KEY").call_kwargs({})
    # an adapter whose worker's key variable is unset is refused when built (it failed at turn 4, the
    # worker's first call, in the middle of a conversation)
    models = {
        "lead": {"model": "openai/x", "api_base": server.base},
        "worker": {"model": "openai/y", "api_key_env": "WORKER_KEY"},
    }
    with pytest.raises(
        ConfigError,
        match=r"^WORKER_KEY \(the key of the worker model openai/y\) not set: set it, or leave api_key_env out",
    ):
        Adapter(SPEC, models, env={})


# --- judging ------------------------------------------------------------------------------


def test_detectors() -> None:
    tools = [{"type": "function", "function": {"name": "run"}}]
    good = {"tool_calls": [{"function": {"name": "run", "arguments": '{"cmd": "ls"}'}}]}
    bad_json = {"tool_calls": [{"function": {"name": "run", "arguments": '{"cmd": "ls"'}}]}
    unknown = {"tool_calls": [{"function": {"name": "rm_rf", "arguments": "{}"}}]}
    assert malformed_tool_calls(good, [], tools) is None
    assert malformed_tool_calls(bad_json, [], tools) == "tool call 'run' has arguments that are not valid JSON"
    assert malformed_tool_calls(unknown, [], tools) == "tool call to unknown tool 'rm_rf'"
    assert unparsable_code({"content": "```python\nx = 1\n```"}, [], []) is None
    assert unparsable_code({"content": '```json\n{"a": 1,}\n```'}, [], []).startswith("json code block does not")
    assert unparsable_code({"content": "```bash\nfi fi (\n```"}, [], []) is None  # only Python and JSON are judged


# --- real calls over HTTP -----------------------------------------------------------------


def test_lead_serves_the_first_turns_then_the_worker(server: Server) -> None:
    s = adapter(server, "lead1", "work1").session()
    assert talk(s, 5) == ["lead1", "lead1", "lead1", "work1", "work1"]
    assert (s.machine.state, s.role) == ("worker", "worker")  # session.role, as on the engine's session
    assert s.machine.turn == 4  # the fifth turn is judged by the next call or close()
    s.close([{"role": "user", "content": "thanks"}])
    assert s.machine.turn == 5


def test_tool_calls_and_malformed_tool_json(server: Server) -> None:
    s = adapter(server, "lead2", "work2").session()
    talk(s, 3)  # the three lead turns: the worker serves from here
    tools = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]
    server.script(
        "work2",
        {"tool_calls": [{"id": "1", "type": "function", "function": {"name": "run", "arguments": '{"cmd": "ls"'}}]},
    )
    msgs = [{"role": "user", "content": "list files"}]
    r = s.completion(msgs, tools=tools)
    assert r.choices[0].message.tool_calls[0].function.arguments == '{"cmd": "ls"'
    msgs += [r.choices[0].message.model_dump(), {"role": "tool", "tool_call_id": "1", "content": "bad args"}]
    server.script(
        "work2",
        {"tool_calls": [{"id": "2", "type": "function", "function": {"name": "run", "arguments": '{"cmd": "ls"}'}}]},
    )
    s.completion(msgs, tools=tools)
    last = s.machine.history[-1]
    assert (last.event, last.reason) == ("failure", "task failure: malformed.arguments: 'run'")


def test_technical_errors_retry_without_moving_the_machine(server: Server) -> None:
    s = adapter(server, "lead3", "work3").session()
    server.script("lead3", {"status": 500}, {"status": 429, "headers": {"Retry-After": "0"}})
    assert talk(s, 1) == ["lead3"]
    assert s.last is not None
    assert s.last.retries == 2
    assert s.machine.turn == 0
    assert s.machine.history == []
    assert server.count("lead3") == 3


def test_a_missing_key_is_an_auth_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the openai SDK refuses to build its client (no network): LiteLLM calls that an InternalServerError,
    # which was retried three times as technical, the missing variable named only in a chained exception
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    s = Adapter(SPEC, {"lead": "openai/gpt-4o", "worker": "openai/gpt-4o-mini"}).session()
    with pytest.raises(AuthError, match="lead model openai/gpt-4o: .*OPENAI_API_KEY"):
        s.completion([{"role": "user", "content": "go"}])


def test_auth_error_is_raised_at_once_and_changes_nothing(server: Server) -> None:
    s = adapter(server, "lead4", "work4").session()
    talk(s, 2)
    before = s.state()  # a value: an in-place change cannot hide
    n = server.count("lead4")
    server.script("lead4", {"status": 401})
    with pytest.raises(AuthError) as info:
        s.completion(
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "go"},
            ]
        )
    assert isinstance(info.value.__cause__, llm_errors.AuthenticationError)
    assert server.count("lead4") == n + 1  # no retry
    assert s.state() == before


def test_worker_technical_failure_is_served_by_the_lead_without_counting(server: Server) -> None:
    # goose: a worker that fails technically is replaced by the lead for that turn; no failure counted,
    # no fallback, and the next turn tries the worker first again.
    s = adapter(server, "lead5", "work5", retries=1).session()
    talk(s, 3)
    server.script("work5", {"status": 503}, {"status": 503})
    msgs = [{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    r = s.completion(msgs)
    assert r.model == "lead5"
    assert s.machine.state == "worker"
    assert s.machine.counters["failures"] == 0
    served = s.last
    assert served is not None
    assert (served.role, served.model, served.retries) == ("lead", "openai/lead5", 2)  # 2 worker attempts first
    msgs += [{"role": "assistant", "content": "y"}, {"role": "user", "content": "go"}]
    assert s.completion(msgs).model == "work5"


def test_timeouts_then_everything_fails(server: Server) -> None:
    s = adapter(server, "lead6", "work6", retries=1).session()
    talk(s, 3)
    before = s.machine.snapshot()
    server.script("work6", {"delay": 1.0}, {"delay": 1.0})
    server.script("lead6", {"status": 500}, {"status": 500})
    with pytest.raises(AllAttemptsFailed) as info:
        s.completion([{"role": "user", "content": "go"}], timeout=0.2)
    assert [(r, type(e).__name__) for r, _m, e in info.value.attempts] == [
        ("worker", "Timeout"),
        ("worker", "Timeout"),
        ("lead", "InternalServerError"),
        ("lead", "InternalServerError"),
    ]
    assert s.machine.snapshot() == before


def test_fallback_ends_after_its_successful_lead_turns(server: Server) -> None:
    s = adapter(server, "lead7", "work7").session()
    talk(s, 3)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    served = []
    for follow in ["that's wrong", "try again", "fine", "fine", "fine", "fine"]:
        r = s.completion(msgs)
        served.append(r.model)
        msgs += [{"role": "assistant", "content": "x"}, {"role": "user", "content": follow}]
    # two corrections -> fallback (lead) for two successful turns -> recovery (worker)
    assert served == ["work7", "work7", "lead7", "lead7", "work7", "work7"]
    reasons = [h.reason for h in s.machine.history if h.event == "failure"]
    assert reasons == [
        'user correction: generic.correction at message 1, line 1: "that\'s wrong"',
        "user correction: generic.correction at message 1, line 1: 'try again'",
    ]


def test_the_first_call_after_a_switch_carries_the_handoff_note_and_only_it(server: Server, tmp_path: Path) -> None:
    s = adapter(server, "lead8", "work8", log_dir=tmp_path).session("notes")
    talk(s, 3)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    before = len(server.requests)
    for follow in ["that's wrong", "try again", "fine", "fine", "fine", "fine", "fine"]:
        s.completion(msgs)
        msgs += [{"role": "assistant", "content": "x"}, {"role": "user", "content": follow}]
    sent = server.requests[before:]
    assert [r["model"] for r in sent] == ["work8", "work8", "lead8", "lead8", "work8", "work8", "work8"]
    # The note is the last message of the first lead call and of the first worker call after it ...
    carried = [i for i, r in enumerate(sent) if r["messages"][-1]["content"].startswith("[lwfsm handoff")]
    assert carried == [2, 4]
    fallback, recovery = (sent[i]["messages"][-1]["content"] for i in carried)
    assert 'user correction, generic.correction: "that\'s wrong"' in fallback
    assert "You (worker) are taking the task back" in recovery
    # ... sent after the caller's own messages, which it left as they were.
    assert sent[2]["messages"][:-1] == sent[1]["messages"] + [
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "try again"},
    ]
    assert all("[lwfsm handoff" not in json.dumps(m) for m in msgs)
    # The trace line of the turn that carried it has the note and its estimated tokens.
    records = [json.loads(line) for line in (tmp_path / "notes.jsonl").read_text().splitlines()]
    by_turn = {r["turn"]: r for r in records}
    assert by_turn[6]["handoff"] == fallback
    assert by_turn[6]["handoff_tokens_estimate"] == len(fallback) // 4
    assert by_turn[8]["handoff"] == recovery
    assert [r["turn"] for r in records if r["handoff"]] == [6, 8]


def test_side_calls_do_not_count(server: Server) -> None:
    s = adapter(server, "lead8", "work8").session()
    talk(s, 1)
    s.completion([{"role": "user", "content": "title please"}], side=True)
    assert s.machine.turn == 0
    assert s.last is not None
    assert s.last.side
    assert s.ledger.rows[-1].side_calls == 1


def test_turn_unit_message_counts_a_tool_loop_once(server: Server) -> None:
    s = adapter(server, "lead9", "work9", turn_unit="message").session()
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "do it"}]
    for _ in range(3):  # one user message, three calls in its tool loop
        s.completion(msgs)
        msgs += [
            {"role": "assistant", "content": "calling a tool"},
            {"role": "tool", "tool_call_id": "t", "content": "ok"},
        ]
    assert s.machine.turn == 0
    msgs += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "next task"}]
    s.completion(msgs)
    assert s.machine.turn == 1


def test_cancellation_leaves_the_session_as_it_was(server: Server) -> None:
    s = adapter(server, "leadA", "workA").session()
    talk(s, 2)
    before = s.state()  # a value: an in-place change cannot hide
    server.script("leadA", {"delay": 2.0})
    n = server.count("leadA")

    async def cancelled() -> None:
        task = asyncio.ensure_future(
            s.acompletion(
                [
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "go"},
                ]
            )
        )
        while server.count("leadA") == n:  # cancel once the call is in flight, not after a guessed delay
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert s.state() == before


def test_two_hundred_concurrent_sessions(server: Server) -> None:
    a = adapter(server, "leadB", "workB")
    sessions = [a.session() for _ in range(200)]

    async def converse(i: int, s: AgentSession) -> list[str]:
        msgs: list[dict[str, Any]] = []
        contents = []
        for turn in range(4):
            msgs.append({"role": "user", "content": f"session {i} turn {turn}"})
            r = await s.acompletion(msgs)
            contents.append(r.choices[0].message.content)
            msgs.append({"role": "assistant", "content": r.choices[0].message.content})
        return contents

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(converse(i, s) for i, s in enumerate(sessions)))

    results = asyncio.run(main())
    for i, contents in enumerate(results):  # no cross-talk: each reply echoes its own session's message
        assert contents == [
            f"{m} says: session {i} turn {t}" for t, m in enumerate(["leadB", "leadB", "leadB", "workB"])
        ]
    assert sum(s.ledger.calls for s in sessions) == server.count("leadB") + server.count("workB") == 800
    assert all(s.machine.state == "worker" for s in sessions)


def test_jsonl_log_and_ledger(server: Server, tmp_path: Path) -> None:
    s = adapter(server, "leadC", "workC", log_dir=tmp_path).session(name="demo")
    talk(s, 4)
    s.close([{"role": "user", "content": "that's wrong"}])
    records = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert [r["turn"] for r in records] == [1, 2, 3, 4]
    assert [r["role"] for r in records] == ["lead", "lead", "lead", "worker"]
    assert records[-1]["outcome"] == "failure"
    assert records[2]["transition"]["dest"] == "worker"
    totals = {(r.role, r.model): r for r in s.ledger.rows}
    assert totals["lead", "openai/leadC"].calls == 3
    assert totals["worker", "openai/workC"].usage.prompt_tokens == 11
    assert s.cost is None  # these test models have no price: never a made-up number


def test_streaming_is_judged_once_consumed(server: Server) -> None:
    s = adapter(server, "leadD", "workD").session()

    async def run() -> str:
        stream = await s.acompletion(
            [{"role": "user", "content": "hi"}], stream=True, mock_response="```json\n{,}\n```"
        )
        assert s.ledger.calls == 0  # nothing settled until the stream is consumed
        text = "".join([(c.choices[0].delta.content or "") async for c in stream])
        await s.acompletion(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": text},
                {"role": "user", "content": "and?"},
            ],
            mock_response="ok",
        )
        return text

    text = asyncio.run(run())
    assert text == "```json\n{,}\n```"
    assert s.ledger.calls == 2
    (record,) = s.machine.history
    assert record.event == "failure"
    assert record.reason.startswith("task failure: unparsable_code: 'json code block does not parse")


def test_demo_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [r[0] for r in rows] == [str(n) for n in range(1, 11)]
    assert [r[2] for r in rows] == ["lead"] * 3 + ["worker"] * 2 + ["lead"] * 2 + ["worker"] * 3
    assert "FAILURE: task failure: generic.error_line at message 1, line 1: 'Traceback" in out
    assert "the same tokens on the lead alone: $" in out


def test_chat_says_which_key_is_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["chat", "--lead", "openai/gpt-4o", "--worker", "openai/gpt-4o-mini"]) == 1
    assert "lead model openai/gpt-4o needs OPENAI_API_KEY in the environment" in capsys.readouterr().err


def test_chat_names_a_provider_litellm_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    assert main(["chat", "--lead", "opena/gpt-4o", "--worker", "openai/gpt-4o-mini"]) == 1
    err = capsys.readouterr().err
    assert "--lead 'opena/gpt-4o' names provider 'opena', which LiteLLM does not know (did you mean 'openai'?)" in err


def test_chat_asks_for_the_provider_before_any_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model without its provider was first asked for OPENAI_API_KEY, then, key given, refused as
    the adapter's `models['lead']`: the flag is named, and the provider asked for first."""
    from lwfsm.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["chat", "--lead", "gpt-4o", "--worker", "openai/gpt-4o-mini"]) == 1
    err = capsys.readouterr().err
    assert "--lead 'gpt-4o' names no provider: write it as 'provider/model', e.g. 'openai/gpt-4o'" in err
    assert "API_KEY" not in err
    # the worker's provider too, before the lead's key; the example is the provider LiteLLM would take
    assert main(["chat", "--lead", "openai/gpt-4o", "--worker", "claude-sonnet-4-5"]) == 1
    err = capsys.readouterr().err
    assert "--worker 'claude-sonnet-4-5' names no provider: write it as 'provider/model', e.g. 'anthropic/" in err
    assert "API_KEY" not in err
    assert main(["chat", "--lead", "openai/gpt-4o", "--worker", "nothing-known"]) == 1
    assert (
        capsys.readouterr()
        .err.rstrip()
        .endswith("--worker 'nothing-known' names no provider: write it as 'provider/model'")
    )


def test_chat_ends_cleanly_without_calling(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lwfsm.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-used")

    def no_input(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_input)
    assert main(["chat", "--lead", "openai/gpt-4o", "--worker", "openai/gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    assert "total cost $0.000000" in out
    assert "sk-test" not in out


def test_bindings_from_a_config_section() -> None:
    from lwfsm import load_spec

    spec = load_spec(SPEC)
    section = {
        "lead": {"model": "anthropic/claude-x", "api_key_env": "ANTHROPIC_KEY", "temperature": 0.1},
        "worker": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1"},
    }
    b = bindings(spec, section, env={})
    assert (b["lead"].model, b["lead"].api_key_env, dict(b["lead"].options)) == (
        "anthropic/claude-x",
        "ANTHROPIC_KEY",
        {"temperature": 0.1},
    )
    assert b["worker"].api_base == "http://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match=r"models\['lead'\].api_key: do not put keys in configuration"):
        bindings(spec, {**section, "lead": {"model": "a/b", "api_key": "sk-x"}}, env={})
    with pytest.raises(ConfigError, match=r"models\['worker'\] needs a 'model'"):
        bindings(spec, {**section, "worker": {"api_base": "x"}}, env={})
    # a misspelt parameter is said (it went upstream, to be dropped or refused there); a provider's own
    # option passes on to LiteLLM
    typo = {**section, "lead": {"model": "a/b", "temprature": 0.3}}
    with pytest.raises(ConfigError, match=r"models\['lead'\].temprature is no parameter a call takes \(did you mean"):
        bindings(spec, typo, env={})
    azure = bindings(spec, {**section, "lead": {"model": "azure/x", "api_version": "2024-10-21"}}, env={})
    assert azure["lead"].options == {"api_version": "2024-10-21"}
    litellms = {"additional_drop_params": ["temperature"], "allowed_openai_params": ["x"], "max_retries": 1, "speed": 1}
    assert bindings(spec, {**section, "lead": {"model": "a/b", **litellms}}, env={})["lead"].options == litellms


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"timeout": float("nan")}, "timeout=nan: must be seconds, > 0"),
        ({"deadline": 0}, "deadline=0: must be seconds, > 0"),
        ({"retries": "2"}, "retries='2': must be a whole number >= 0"),
        ({"retries": 1.5}, "retries=1.5: must be a whole number >= 0"),
        ({"backoff": -1}, "backoff=-1: must be seconds, >= 0"),
    ],
)
def test_adapter_numbers_are_checked_one_by_one(given: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        Adapter(SPEC, {"lead": "openai/a", "worker": "openai/b"}, env=ENV, **given)


def test_arguments_of_the_wrong_kind_are_named() -> None:
    """Each was a TypeError or AttributeError from deep inside, or a provider error blaming the lead model."""
    models = {"lead": "openai/a", "worker": "openai/b"}
    with pytest.raises(ConfigError, match=r"models maps each role to its model, .*; got list"):
        Adapter(SPEC, ["openai/a"], env=ENV)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"models\['lead'\] is a model string .* got int"):
        Adapter(SPEC, {**models, "lead": 5}, env=ENV)  # type: ignore[dict-item]
    with pytest.raises(
        ConfigError, match="spec is a Spec, an Engine, a spec file or a shipped spec's name; got NoneType"
    ):
        Adapter(None, models, env=ENV)  # type: ignore[arg-type]
    s = Adapter(SPEC, models, env=ENV).session()
    with pytest.raises(TypeError, match=r"completion\(\) takes the conversation's messages, .*; got str"):
        s.completion("hello", mock_response="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"close\(\) takes the conversation's messages"):
        s.close("thanks")  # type: ignore[arg-type]
    assert s.ledger.calls == 0
    with pytest.raises(TypeError, match=r"completion\(\): messages\[0\] is a str, not a message"):
        s.completion(["hi"], mock_response="x")  # type: ignore[list-item]
    from openai.types.chat import ChatCompletionMessage  # an SDK's reply, appended as it came: not read as a dict

    sdk = ChatCompletionMessage(role="assistant", content="done")
    with pytest.raises(TypeError, match=r"completion\(\): messages\[1\] is a ChatCompletionMessage: pass its"):
        s.completion([{"role": "user", "content": "hi"}, sdk], mock_response="x")  # type: ignore[list-item]
    # a reply's message appended as it came (LiteLLM's Message object, no dict) is LiteLLM's to read
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    messages.append(s.completion(messages, mock_response="first").choices[0].message)
    messages.append({"role": "user", "content": "go on"})
    assert s.completion(messages, mock_response="second").choices[0].message.content == "second"


def test_sync_streaming_is_judged_once_consumed(server: Server) -> None:
    s = adapter(server, "leadE", "workE").session()
    stream = s.completion([{"role": "user", "content": "hi"}], stream=True, mock_response="fine")
    assert s.ledger.calls == 0
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "fine"
    assert s.ledger.calls == 1
    s.close([{"role": "user", "content": "that's wrong"}])
    assert s.machine.history[-1].reason == 'user correction: generic.correction at message 1, line 1: "that\'s wrong"'


def test_warns_when_litellm_was_imported_first() -> None:
    import subprocess
    import sys

    code = "import os, litellm, logging; logging.basicConfig(); import lwfsm.provider.adapter"
    env = {k: v for k, v in __import__("os").environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # this test itself must stay offline...
    # ...so the warning is exercised by pretending the variable was missing at import time.
    loud_code = (
        "import os, sys, litellm, logging; logging.basicConfig(); os.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP');"
        "import lwfsm.provider.adapter"
    )
    # Both at once: each imports LiteLLM (seconds).
    procs = [
        subprocess.Popen([sys.executable, "-c", c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for c in (code, loud_code)
    ]
    (_, quiet), (_, loud) = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], (quiet, loud)
    assert "imported before lwfsm.provider.adapter" not in quiet
    assert "litellm was imported before lwfsm.provider.adapter without LITELLM_LOCAL_MODEL_COST_MAP=True" in loud


def test_a_messages_translation_imports_no_litellm_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's Messages translation asks for a running proxy's router: only a proxy already loaded is
    asked; none is imported (the whole proxy app, seconds of CPU, for a router that is None)."""
    import sys
    from types import SimpleNamespace

    handler = pytest.importorskip("litellm.llms.anthropic.messages.adapters.handler")
    if not hasattr(handler, "_router_or_proxy_fallback"):
        pytest.skip("this LiteLLM has no proxy router lookup in its Messages translation")
    monkeypatch.delitem(sys.modules, "litellm.proxy.proxy_server", raising=False)
    assert handler._router_or_proxy_fallback(None) is None
    assert "litellm.proxy.proxy_server" not in sys.modules
    router = object()
    monkeypatch.setitem(sys.modules, "litellm.proxy.proxy_server", SimpleNamespace(llm_router=router))
    assert handler._router_or_proxy_fallback(None) is router


def test_turn_unit_message_failed_call_changes_nothing(server: Server) -> None:
    s = adapter(server, "leadF", "workF", turn_unit="message").session()
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "do it"}]
    s.completion(msgs)
    before = s.state()
    assert before.pending is not None
    assert before.pending.failure is None
    msgs += [{"role": "assistant", "content": "x"}, {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}]
    server.script("leadF", {"status": 401})
    with pytest.raises(AuthError):
        s.completion(msgs)
    assert s.state() == before  # the tool error is not carried by a failed call
    s.completion(msgs)  # the same messages again, now answered: the failure is carried into the open turn
    pending = s.state().pending
    assert pending is not None
    assert pending.failure == "task failure: generic.error_line at message 1, line 1: 'Error: boom'"


def test_a_spec_with_its_own_event_names_runs_through_the_adapter() -> None:
    text = (ROOT / "tests" / "specs_invalid" / "_base.yaml.txt").read_text()
    text += "judging: {on_success: ok, on_failure: fail, technical_fallback: {worker: lead}}\n"
    from lwfsm import Spec

    a = Adapter(Spec.from_text(text), {"lead": "openai/gpt-4o", "worker": "openai/gpt-4o-mini"}, env={})
    s = a.session()
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for reply, answer in [("```python\n(\n```", "go"), ("x", "that's wrong"), ("y", "thanks")]:
        s.completion(msgs, mock_response=reply)
        msgs += [{"role": "assistant", "content": reply}, {"role": "user", "content": answer}]
    s.close(msgs)
    assert [h.event for h in s.machine.history] == ["fail", "fail", "ok"]
    assert s.machine.state == "working"


def test_a_second_call_while_a_stream_is_open_is_refused_and_an_abandoned_stream_commits_nothing(
    server: Server,
) -> None:
    from lwfsm import SessionBusy

    s = adapter(server, "leadG", "workG").session()
    s.completion([{"role": "user", "content": "hi"}], mock_response="```json\n{,}\n```")
    before = s.state()
    follow = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "go"},
    ]
    stream = s.completion(follow, stream=True, mock_response="fine")
    next(stream)
    with pytest.raises(SessionBusy, match="the stream of the previous call is still open"):
        s.completion(follow, mock_response="again")
    with pytest.raises(SessionBusy):
        s.close(follow)
    stream.close()  # abandoned: like a cancelled call
    assert s.state() == before
    list(s.completion(follow, stream=True, mock_response="fine"))
    assert [h.event for h in s.machine.history] == ["failure"]  # judged once, by the consumed stream
    # closed or dropped before a chunk was read: nothing settled, and the session is free (it stayed busy)
    after = s.state()
    s.completion(follow, stream=True, mock_response="unread").close()
    assert s.state() == after
    s.completion(follow, stream=True, mock_response="dropped")  # never kept
    assert s.state() == after

    async def unread_async() -> None:
        stream = await s.acompletion(follow, stream=True, mock_response="unread")
        await stream.aclose()
        assert s.state() == after
        assert [c async for c in await s.acompletion(follow, stream=True, mock_response="read")]

    asyncio.run(unread_async())
    assert s.conversation.pending is not None
    assert s.conversation.pending.reply["content"] == "read"


def test_sessions_of_one_conversation_on_threads_write_its_trace_in_turn_order(tmp_path: Path) -> None:
    """Two sessions of one stored conversation, a thread each: the trace holds its turns in order (a
    commit and its log line were apart, so turn 6 could be written before turn 5, and `lwfsm report`
    refused the trace)."""
    import threading

    from lwfsm.cli import main

    adapter = Adapter(
        "lead_worker", {"lead": "openai/a", "worker": "openai/b"}, env=ENV, store="memory://", log_dir=tmp_path
    )

    def calls(k: int) -> None:
        session = adapter.session("conv")
        for i in range(25):
            session.completion([{"role": "user", "content": f"{k} {i}"}], mock_response=f"reply {k} {i}")

    threads = [threading.Thread(target=calls, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = [json.loads(line)["turn"] for line in (tmp_path / "conv.jsonl").read_text().splitlines()]
    assert len(turns) == 49  # every call but the last is a judged turn
    assert turns == sorted(turns)
    assert main(["report", str(tmp_path)]) == 0


def test_sync_and_async_calls_on_one_session_are_serialised(server: Server) -> None:
    import threading

    s = adapter(server, "leadH", "workH").session()
    s.completion([{"role": "user", "content": "hi"}], mock_response="```python\n(\n```")  # turn 1 will fail
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    server.script("leadH", {"delay": 0.5})
    n = server.count("leadH")
    done = []

    def sync_call() -> None:
        while server.count("leadH") == n:  # wait until the async call is in flight, holding the session
            threading.Event().wait(0.005)
        s.completion(msgs, mock_response="fine")
        done.append("sync")

    t = threading.Thread(target=sync_call)
    t.start()
    asyncio.run(s.acompletion(msgs))
    t.join()
    # Serialised: the async call judged turn 1 (failure), the sync call then judged the async reply.
    assert [h.event for h in s.machine.history] == ["failure", "turn_completed"]
    assert done == ["sync"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],  # seconds, or an HTTP date (past: no wait)
)
def test_retry_after_is_read_from_litellm_s_real_exception(server: Server, header: str, seconds: float) -> None:
    model = f"ra-{len(header)}"
    server.script(model, {"status": 429, "headers": {"Retry-After": header}})
    with pytest.raises(llm_errors.RateLimitError) as info:
        litellm.completion(
            model=f"openai/{model}",
            messages=[{"role": "user", "content": "x"}],
            api_base=server.base,
            api_key="k",
            num_retries=0,
        )
    assert retry_after(info.value) == seconds


def test_a_long_retry_after_moves_to_the_fallback_role_instead_of_stalling(server: Server) -> None:
    s = adapter(server, "leadI", "workI", retries=2).session()
    talk(s, 3)
    n = server.count("workI")
    server.script("workI", {"status": 429, "headers": {"Retry-After": "3600"}})
    r = s.completion(
        [{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    )
    assert r.model == "leadI"
    assert server.count("workI") == n + 1  # no second try on the worker: it asked for an hour
    assert s.machine.counters["failures"] == 0


def test_a_context_window_overflow_on_the_worker_is_served_by_the_lead(server: Server) -> None:
    s = adapter(server, "leadJ", "workJ").session()
    talk(s, 3)
    body = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    server.script("workJ", {"status": 400, "body": body})
    r = s.completion(
        [{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    )
    assert r.model == "leadJ"
    assert s.machine.state == "worker"


def test_a_key_echoed_by_the_provider_never_reaches_a_message(server: Server) -> None:
    s = adapter(server, "leadK", "workK").session()
    body = {"error": {"message": f"bad key: Authorization: Bearer {ENV['TEST_KEY']}", "type": "auth_error"}}
    server.script("leadK", {"status": 401, "body": body})
    with pytest.raises(AuthError) as info:
        s.completion([{"role": "user", "content": "go"}])
    assert ENV["TEST_KEY"] not in str(info.value)
    assert "[redacted]" in str(info.value)


def test_goose_provider_ids_are_mapped_and_unknown_ones_refused() -> None:
    from lwfsm import load_spec

    spec = load_spec(SPEC)
    env = {
        "GOOSE_LEAD_MODEL": "gemini-2.5-pro",
        "GOOSE_LEAD_PROVIDER": "google",
        "GOOSE_MODEL": "m",
        "GOOSE_PROVIDER": "aws_bedrock",
    }
    b = bindings(spec, None, env)
    assert (b["lead"].model, b["worker"].model) == ("gemini/gemini-2.5-pro", "bedrock/m")
    with pytest.raises(ConfigError, match=r"GOOSE_PROVIDER='venus' is not a goose provider lwfsm knows"):
        bindings(spec, None, {**env, "GOOSE_PROVIDER": "venus"})
    with pytest.raises(ConfigError, match=r"GOOSE_WORKER_CONTEXT_LIMIT is set, but lwfsm does not trim"):
        bindings(spec, None, {**env, "GOOSE_WORKER_CONTEXT_LIMIT": "8000"})


def test_the_adapter_prices_cached_prompt_tokens_at_the_cache_rate() -> None:
    from lwfsm.provider.adapter import price
    from lwfsm.turn import Usage

    entry = litellm.model_cost["gpt-4o"]
    usage = Usage(prompt_tokens=1000, cache_read_tokens=800, completion_tokens=10)
    expected = 200 * entry["input_cost_per_token"] + 800 * entry["cache_read_input_token_cost"]
    expected += 10 * entry["output_cost_per_token"]
    assert price("openai/gpt-4o", usage) == pytest.approx(expected)
    assert price("openai/no-such-model", usage) is None


def test_a_stream_cut_short_is_a_technical_error_not_a_turn(server: Server) -> None:
    from lwfsm import ProviderError

    s = adapter(server, "leadL", "workL").session()
    talk(s, 1)
    before = s.state()
    msgs = [{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go"}]
    server.script("leadL", {"content": "a long answer that never ends", "cut": True})
    stream = s.completion(msgs, stream=True)
    with pytest.raises(ProviderError, match=r"the stream broke off .*; nothing was committed"):
        list(stream)
    assert s.state() == before
    assert "".join(c.choices[0].delta.content or "" for c in s.completion(msgs, stream=True)).startswith("leadL says")
    assert s.machine.turn == 1


def test_a_stream_asks_for_usage_and_a_stream_without_it_is_unknown_not_estimated(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    s = adapter(server, "leadU", "workU", log_dir=tmp_path).session(name="u")
    msgs = [{"role": "user", "content": "a question long enough that a local estimate would differ " * 20}]
    "".join(c.choices[0].delta.content or "" for c in s.completion(msgs, stream=True))
    asked = [r for r in server.requests if r["model"] == "leadU"]
    assert asked[-1]["stream_options"] == {"include_usage": True}
    assert (s.ledger.rows[0].usage.prompt_tokens, s.ledger.rows[0].usage.completion_tokens) == (11, 7)  # the server's
    server.script("leadU", {"no_usage": True})  # a server that ignores stream_options
    msgs += [{"role": "assistant", "content": "x"}, {"role": "user", "content": "go on"}]
    "".join(c.choices[0].delta.content or "" for c in s.completion(msgs, stream=True))
    row = s.ledger.rows[0]
    assert (row.calls, row.usage.prompt_tokens, row.usage.unreported) == (2, 11, 1)  # not LiteLLM's local guess
    assert "1 calls without reported tokens" in s.table()
    assert "total cost unknown" in s.table()  # not "$unknown", read as a price
    s.close([{"role": "user", "content": "thanks"}])
    lines = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert [(r["prompt_tokens"], r["unreported"]) for r in lines] == [(11, 0), (0, 1)]
    # priced on a model the price map knows, the turn without reported tokens still makes the cost unknown
    trace = tmp_path / "priced.jsonl"
    for kept, cost_known in ((lines[:1], True), (lines, False)):
        trace.write_text("".join(json.dumps({**r, "model": "gpt-4o"}) + "\n" for r in kept))
        assert main(["report", str(trace), "--json"]) == 0
        assert (json.loads(capsys.readouterr().out)["total"]["cost"] is not None) is cost_known


def test_default_session_names_are_unique_across_adapters(server: Server, tmp_path: Path) -> None:
    # Two runs (processes, restarts) logging to one directory must not append to one file: report refuses that.
    from lwfsm.cli import main

    for _ in range(2):
        s = adapter(server, "leadN", "workN", log_dir=tmp_path).session()
        talk(s, 2)
        s.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 2
    assert main(["report", str(tmp_path)]) == 0


def test_a_sync_call_on_the_event_loops_thread_during_an_async_call_is_refused_not_hung(server: Server) -> None:
    """`completion()` made on the thread of an event loop whose `acompletion()` of the same session is
    under way would wait for a lock that coroutine holds, which can run again only once it returns: the
    process hung for good. It is refused, saying to await the async call."""
    import threading

    s = adapter(server, "leadG", "workG").session()
    server.script("leadG", {"delay": 0.5})
    n = server.count("leadG")
    said: list[str] = []

    async def both() -> None:
        task = asyncio.ensure_future(s.acompletion([{"role": "user", "content": "hi"}]))
        while server.count("leadG") == n:  # the async call is in flight, holding the session
            await asyncio.sleep(0.005)
        with pytest.raises(SessionBusy, match="await the async call") as refused:
            s.completion([{"role": "user", "content": "hi"}], mock_response="never sent")
        said.append(str(refused.value))
        await task

    # on a thread of its own, so that a hang fails this test instead of stopping the suite
    t = threading.Thread(target=asyncio.run, args=(both(),), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the sync call waited for a lock its own event loop's coroutine held"
    assert said == [said[0]]
    assert "session" in said[0]
    assert s.conversation.pending is not None  # the async call was recorded


def test_an_event_fired_by_hand_goes_through_the_store(server: Server, tmp_path: Path) -> None:
    """AgentSession had no fire: `chat.machine.fire("force_lead")` changed only the session in memory,
    and the next load (a restart, another process) served the worker again."""

    def bind(model: str) -> RoleBinding:
        return RoleBinding(f"openai/{model}", api_base=server.base, api_key_env="TEST_KEY")

    models = {"lead": bind("big"), "worker": bind("small")}
    store = f"sqlite:///{tmp_path}/s.db"
    env = {**ENV, "LWFSM_PARAM_LEAD_TURNS": "1"}
    budget = ROOT / "specs" / "budget.yaml"
    a = Adapter(budget, models, store=store, env=env, log_dir=tmp_path / "logs", backoff=0.0)
    # before the first call too (it raised with a store, and worked without one): stored, with its note
    early = a.session("F").fire("force_lead", note="Start from the failing test.")
    assert (early.source, early.dest) == ("lead_initial", "lead_initial")  # ignored there, as the spec says
    chat = a.session("F")
    assert chat.conversation.note == "Start from the failing test."
    assert talk(chat, 2) == ["big", "small"]
    assert "Start from the failing test." in json.dumps(server.requests[-2]["messages"])  # the first call carried it
    with pytest.raises(TransitionNotAllowed, match=r"unknown event 'force_laed' \(did you mean 'force_lead'\?\)"):
        chat.fire("force_laed")
    record = chat.fire("force_lead", "the user asked", note="Look at the parser first.")
    assert (record.source, record.dest) == ("worker", "forced")
    assert chat.role == "lead"
    again = Adapter(budget, models, store=store, env=env, log_dir=tmp_path / "logs").session("F")
    assert again.role == "lead"  # stored: another process sees it
    assert "Look at the parser first." in (again.conversation.note or "")
    with pytest.raises(ConfigError, match=r"'reset' resets the conversation, whose trace file \(F.jsonl\) goes on"):
        chat.fire("reset")
    # a turn event closes the open turn: a trace line with no kind, as the gateway's control API writes
    chat.fire("turn_completed")
    lines = [json.loads(x) for x in (tmp_path / "logs" / "F.jsonl").read_text().splitlines()]
    assert [(r["turn"], r["kind"]) for r in lines] == [(1, "ok"), (2, None)]
    assert a.session("F").machine.turn == 2
    other = a.session("G")
    talk(other, 2)
    assert asyncio.run(other.afire("force_lead")).dest == "forced"  # async alike
    assert a.session("G").role == "lead"
