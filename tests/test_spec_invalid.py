"""Every file in specs_invalid/ holds one kind of mistake and, in `# expect:` lines, the exact
located messages a spec author must see (the file name stands for the source path)."""

from pathlib import Path

import pytest

from lwfsm import SpecError, load_spec

HERE = Path(__file__).parent / "specs_invalid"
CASES = sorted(HERE.glob("*.yaml"))


def test_enough_distinct_mistakes() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_spec_reports_located_messages(path: Path) -> None:
    text = path.read_text()
    expected = [line.removeprefix("# expect: ") for line in text.splitlines() if line.startswith("# expect: ")]
    assert expected, f"{path.name} has no '# expect:' lines"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    got = [str(issue).replace(str(path), path.name, 1) for issue in info.value.issues]
    assert got == expected
    # Every message is located: in the file, with line and column.
    assert all(issue.line and issue.column for issue in info.value.issues)
