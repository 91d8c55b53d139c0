import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from lwfsm import Spec, SpecError, load_spec
from lwfsm.cli.main import schema_text
from lwfsm.spec.expr import ExprError

from .conftest import SPECS


def test_ships_the_required_specs() -> None:
    names = {p.stem for p in SPECS}
    assert {"lead_worker", "strict_recovery"} <= names
    assert len(names) >= 3


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_loads_round_trips_and_matches_schema(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert Spec.from_dict(spec.model_dump()) == spec
    with pytest.raises(SpecError, match=r"^<dict>: a spec must be a mapping of keys \(lwfsm, name, ...\), got null$"):
        Spec.from_dict(None)  # type: ignore[arg-type]  # (an empty message, and no issue)
    assert Spec.from_dict(json.loads(spec.model_dump_json())).hash == spec.hash
    schema = json.loads((path.parent.parent / "lwfsm" / "spec" / "schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    assert path.read_text().startswith("# yaml-language-server: $schema=../lwfsm/spec/schema.json\n")


def test_schema_file_is_generated_from_the_models(root: Path) -> None:
    assert (root / "lwfsm" / "spec" / "schema.json").read_text() == schema_text()


def test_schema_rejects_what_the_loader_rejects(root: Path) -> None:
    schema = json.loads((root / "lwfsm" / "spec" / "schema.json").read_text())
    data = yaml.safe_load((root / "specs" / "lead_worker.yaml").read_text())
    data["transitions"][0]["gaurd"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_params_override_and_range(root: Path) -> None:
    path = root / "specs" / "lead_worker.yaml"
    spec = load_spec(path, params={"lead_turns": 0, "fallback_turns": 7})
    assert spec.param_values == {"lead_turns": 0, "failure_threshold": 2, "fallback_turns": 7}
    assert spec.hash != load_spec(path).hash
    with pytest.raises(SpecError) as info:
        load_spec(path, params={"failure_threshold": 0, "fallbak_turns": 1, "lead_turns": "3"})
    messages = [i.message for i in info.value.issues]
    assert any(
        "value 0 for param 'failure_threshold' is outside its declared range [1, 1000]" in m and f"{path}:" in m
        for m in messages
    )
    assert any("unknown param 'fallbak_turns' (did you mean 'fallback_turns'?)" in m for m in messages)
    assert any("param 'lead_turns' must be an integer, got '3'" in m for m in messages)


def test_a_division_by_a_param_that_can_be_zero_is_located_with_the_values_that_make_it_so(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwfsm.cli import main

    text = (root / "specs" / "lead_worker.yaml").read_text()
    assert "updates: {failures: failures + 1}" in text
    divided = tmp_path / "mine.yaml"
    divided.write_text(
        text.replace("updates: {failures: failures + 1}", "updates: {failures: failures % lead_turns}", 1)
    )
    line = next(n for n, t in enumerate(divided.read_text().splitlines(), 1) if "% lead_turns" in t)
    column = divided.read_text().splitlines()[line - 1].index("lead_turns}") + 1
    spec = load_spec(divided)  # lead_turns is 3 by default: it runs
    with pytest.raises(SpecError) as info:
        spec.with_params({"lead_turns": 0})  # its declared range allows 0
    said = str(info.value)
    assert f"{divided}:{line}:{column}: " in said
    assert (
        "in expression 'failures % lead_turns': the right side of % must be a number or a param of at least 1, "
        "got 0 (with lead_turns=0, failure_threshold=2, fallback_turns=2)"
    ) in said
    for argv in (["validate", "--set", "lead_turns=0"], ["trace", "--set", "lead_turns=0", "--events", "ok"]):
        assert main([argv[0], str(divided), *argv[1:]]) == 1  # a message, not a traceback
        assert f"{divided}:{line}:{column}: " in capsys.readouterr().err
    assert main(["check", str(divided), "--params-up-to", "2"]) == 1
    assert "got 0 (with lead_turns=0" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"got 0 \(with lead_turns=3"):
        Spec.from_text(text.replace("failures: failures + 1}", "failures: failures // 0}", 1))


def test_hash_ignores_descriptions_only(root: Path) -> None:
    data = load_spec(root / "specs" / "lead_worker.yaml").model_dump()
    base = Spec.from_dict(data).hash
    data["description"] = "something else"
    assert Spec.from_dict(data).hash == base
    data["transitions"][4]["updates"] = {"failures": "failures"}
    assert Spec.from_dict(data).hash != base


def test_from_dict_errors_name_the_key_without_a_line(root: Path) -> None:
    data = load_spec(root / "specs" / "lead_worker.yaml").model_dump()
    data["states"]["fallback"]["role"] = "boss"
    with pytest.raises(SpecError) as info:
        Spec.from_dict(data)
    (issue,) = info.value.issues
    assert (issue.source, issue.line, issue.key) == ("<dict>", None, "states.fallback.role")
    assert "unknown role 'boss'" in issue.message


def test_every_mistake_is_collected_not_just_the_first() -> None:
    text = (Path(__file__).parent / "specs_invalid" / "_base.yaml.txt").read_text()
    text = text.replace("dest: fallback}", "dest: nowhere}").replace("role: lead,", "role: boss,")
    text = text.replace("version: 1", "version: 0")
    with pytest.raises(SpecError) as info:
        Spec.from_text(text, source="x.yaml")
    # shape errors are reported together; meaning is checked once the shape is right
    assert [i.key for i in info.value.issues] == ["version"]
    text = text.replace("version: 0", "version: 1")
    with pytest.raises(SpecError) as info:
        Spec.from_text(text, source="x.yaml")
    assert [i.key for i in info.value.issues] == ["states.fallback.role", "transitions[1].dest"]
    assert str(info.value).splitlines()[0].startswith("x.yaml:17:")


def test_unreadable_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\x00\xfe\xff")
    with pytest.raises(SpecError, match=r"bin.yaml:1:2: byte 0xfe is not UTF-8: save the spec as UTF-8"):
        load_spec(tmp_path / "bin.yaml")


def test_quoted_yaml_words_are_text_not_traps() -> None:
    text = (Path(__file__).parent / "specs_invalid" / "_base.yaml.txt").read_text()
    spec = Spec.from_text(text.replace("name: tiny", 'name: "no"'))
    assert spec.name == "no"


def test_huge_param_override_is_a_located_error_not_a_crash(root: Path) -> None:
    with pytest.raises(SpecError, match="value for param 'lead_turns' is too large"):
        load_spec(root / "specs" / "lead_worker.yaml", params={"lead_turns": 10**5000})


def test_alias_bomb_is_refused_at_once() -> None:
    import time

    bomb = "\n".join(
        ["x0: &a0 [1,1,1,1,1,1,1,1,1]"] + [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    )
    start = time.perf_counter()
    with pytest.raises(SpecError, match="aliases"):
        Spec.from_text(bomb)
    assert time.perf_counter() - start < 1


def test_a_mistake_repeated_per_state_is_shown_a_few_times_then_counted() -> None:
    states = "".join(f"  s{i}: {{role: worker}}\n" for i in range(1000))
    moves = "".join(f"  - {{event: go, source: s{i}, dest: s{i + 1}}}\n" for i in range(999))
    star = '  - {event: ok, source: "*"}\n'
    text = (
        "lwfsm: 1\nname: many\nversion: 1\nroles: {worker: {}}\nevents: {ok: {}, go: {}}\n"
        f"states:\n{states}initial: s0\ntransitions:\n{star * 3}{moves}"
    )
    with pytest.raises(SpecError) as info:
        Spec.from_text(text, source="many.yaml")
    messages = [str(i) for i in info.value.issues]
    assert len(messages) == 2 * (3 + 1)  # transitions 1 and 2 are shadowed in each of the 1000 states
    assert messages[0] == (
        "many.yaml:1010:5: transitions[1]: transition 1 can never fire from 's0': "
        "transition 0 (same event 'ok', no guard) always fires first"
    )
    assert messages[-1] == "many.yaml:1011:5: transitions[2]: ... and 997 more like this"


def test_libyaml_reads_exactly_what_the_python_parser_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from lwfsm.spec import reading

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    assert issubclass(reading._FastLoader, yaml.cyaml.CParser)
    invalid = Path(__file__).parent / "specs_invalid"
    texts = [p.read_text() for p in [*SPECS, *sorted(invalid.glob("*.yaml"))]]
    fast = [reading.read_yaml(t, "s.yaml") for t in texts]
    monkeypatch.setattr(reading, "_FastLoader", None)
    assert fast == [reading.read_yaml(t, "s.yaml") for t in texts]


def test_a_missing_path_to_a_shipped_spec_names_the_shipped_name(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "specs" / "lead_worker.yaml")  # run outside the repository
    assert str(info.value).endswith(
        "cannot read spec: no such file; the shipped spec of that name loads from anywhere as 'lead_worker'"
    )


def test_a_spec_that_is_not_utf8_is_located_at_its_first_foreign_byte(root: Path, tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes((root / "specs" / "lead_worker.yaml").read_bytes().replace(b"lead_worker", b"caf\xe9", 1))
    with pytest.raises(SpecError) as info:
        load_spec(latin)
    (issue,) = info.value.issues
    assert (issue.line, issue.column) == (6, 10)  # `name: lead_worker` on line 6
    assert issue.message == "byte 0xe9 is not UTF-8: save the spec as UTF-8"
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes((root / "specs" / "lead_worker.yaml").read_text().encode("utf-16"))
    with pytest.raises(SpecError, match=r"utf16.yaml:1:1: byte 0xff is not UTF-8 \(it looks like UTF-16\)"):
        load_spec(utf16)


def test_names_made_once_per_spec_follow_a_copy_that_changes_them() -> None:
    """A spec makes its names' scope once (it was once per expression: a spec of thousands of counters
    took seconds to check); a copy with other counters or params makes its own."""
    spec = load_spec("lead_worker")
    assert spec.compile("failures + 1")([4, 5, 6, 0]) == spec.compile("failures + 1")([4, 5, 6, 0])
    more = spec.model_copy(update={"counters": {**spec.counters, "extra": spec.counters["failures"]}})
    assert more.compile("extra * 2")([0, 0, 0, 21, 0]) == 42
    assert "extra" in more.scope
    assert "extra" not in spec.scope
    with pytest.raises(ExprError):
        spec.parse("extra * 2")
    assert spec.with_params({"lead_turns": 5}).compile("lead_turns + failures")([0, 1, 0, 0]) == 6
