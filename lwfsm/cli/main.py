"""The `lwfsm` command line: validate, trace, explain and schema for spec authors."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import __version__
from ..engine import Engine
from ..errors import LwfsmError, SpecError, TransitionNotAllowed, did_you_mean
from ..spec import Spec, describe_params, load_spec
from ..turn.agents import AGENTS

__all__ = ["build_parser", "main"]

ALIASES = {"ok": "turn_completed", "fail": "failure"}


def _params(pairs: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _Usage(f"--set {pair}: expected NAME=VALUE, e.g. --set lead_turns=0")
        try:
            out[name] = int(value)
        except ValueError:
            raise _Usage(f"--set {pair}: value must be an integer, got {value!r}") from None
    return out


class _Usage(Exception):
    pass


def _said(exc: SpecError, args: argparse.Namespace) -> str:
    """A spec error as the CLI prints it: a param a --set gave is named so (serve's environment values
    are checked, naming their variables, before they reach the spec; --sweep's say their own)."""
    given = {pair.partition("=")[0] for pair in getattr(args, "set", None) or ()}
    return "\n".join(
        str(replace(i, source="--set") if i.source == "<params>" and i.key in given else i) for i in exc.issues
    )


def _at_least(low: int, high: int | None = None) -> Any:
    """An argparse type: an integer >= low (and <= high) (a bad value is a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be {low} or more, got {value}" if high is None else f"must be {low} to {high}, got {value}"
            )
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _table(rows: list[list[str]], header: list[str]) -> str:
    from ..cost.report import printable

    rows = [[printable(str(c)) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            spec = load_spec(path, _params(args.set))
        except SpecError as exc:
            failed += 1
            print(_said(exc, args), file=sys.stderr)
            continue
        print(
            f"{path}: ok: {spec.name} v{spec.version}, {len(spec.states)} states, {len(spec.events)} events, "
            f"{len(spec.transitions)} transitions, roles {', '.join(spec.roles)}"
        )
        for issue in spec.judging_issues():  # the engine runs it; the judging front ends do not
            print(f"  note: for the engine only; front ends that judge turns refuse it: {issue}")
        for issue in spec.notes():  # it runs as it did; what it says does nothing
            print(f"  note: {issue}")
    return 1 if failed else 0


def cmd_trace(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, _params(args.set))
    session = Engine(spec).session()
    # A spec's own event names win over the aliases; ok / fail are its judging events.
    names = [e.strip() for e in args.events.split(",")]
    if not any(names):
        raise _Usage("--events names no event: give them in order, e.g. --events ok,ok,fail")
    if "" in names:  # `ok,,fail`: a turn left out would shift every role after it
        raise _Usage(f"--events {args.events!r}: event {names.index('') + 1} is empty")
    aliases = dict(zip(ALIASES, spec.judging.events, strict=True))
    usable = [a for a, e in aliases.items() if e in spec.events]  # a spec without judging: its defaults may be none
    for name in names:
        event = name if name in spec.events else aliases.get(name, name)
        if event in spec.events:
            continue
        if name in aliases:
            key = ("on_success", "on_failure")[list(aliases).index(name)]
            raise _Usage(
                f"'{name}' in --events stands for the spec's judging.{key}, '{event}', which spec '{spec.name}' "
                f"does not have: set judging.{key}, or name its own event ({', '.join(spec.events)})"
            )
        also = f" (and the aliases {', '.join(usable)})" if usable else ""
        raise _Usage(
            f"unknown event '{name}' in --events{did_you_mean(name, [*spec.events, *usable])}; "
            f"spec '{spec.name}' has: {', '.join(spec.events)}{also}"
        )
    events = [e if e in spec.events else aliases[e] for e in names]
    rows: list[dict[str, Any]] = []
    refused = None
    for i, event in enumerate(events, 1):
        state, role = session.state, session.role
        try:
            record = session.fire(event)
        except TransitionNotAllowed as exc:  # show the turns so far, then say which event was refused
            refused = f"event {i} ({event}) was refused: {exc}"
            break
        turn = record.turn if spec.events[event].turn else None
        rows.append(
            {
                "turn": turn,
                "event": event,
                "state": state,
                "role": role,
                "next_state": session.state,
                "next_role": session.role,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            _table(
                [
                    [
                        "" if r["turn"] is None else str(r["turn"]),
                        r["event"],
                        f"{r['state']} ({r['role']})",
                        f"{r['next_state']} ({r['next_role']})",
                    ]
                    for r in rows
                ],
                ["turn", "event", "served by", "next"],
            )
        )
    if refused:
        print(f"lwfsm trace: {refused}", file=sys.stderr)
        return 1
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, _params(args.set))
    engine = Engine(spec)
    print(f"{spec.name} v{spec.version} (hash {spec.hash}; rules {spec.rules_hash}, as trace records name it)")
    if spec.description:
        print(spec.description.strip())
    if spec.params:
        print(
            "\nparams\n"
            + _table(
                [[n, str(v), r, d] for n, v, r, d in describe_params(spec)], ["name", "value", "range", "description"]
            )
        )
    if spec.counters:
        print(
            "\ncounters\n"
            + _table(
                # A window is bits, not a number: its initial 0 and a guard's ones(...) read otherwise.
                # "starts at": after the initial state's on_enter, which a new session runs
                [
                    [n, f"window of {c.window}" if c.window else "integer", c.initial, str(v), c.description]
                    for (n, c), v in zip(spec.counters.items(), engine.session().values, strict=False)
                ],
                ["name", "kind", "initial", "starts at", "description"],
            )
        )
    print(
        "\nevents\n"
        + _table(
            [[n, "yes" if e.turn else "no", e.description] for n, e in spec.events.items()],
            ["event", "ends a turn", "description"],
        )
    )
    starts = engine.initial_state
    if len(spec.initial) > 1:  # the first choice whose condition holds: say them all, and the one taken now
        rules = "; ".join(f"{c.state} when {c.when}" if c.when else f"else {c.state}" for c in spec.initial)
        starts = f"{starts}, of: {rules}"
    print(
        f"\nstates (initial: {starts})\n"
        + _table(
            [
                [n, s.role, ", ".join(f"{k} = {v}" for k, v in s.on_enter.items()), ", ".join(s.ignore)]
                for n, s in spec.states.items()
            ],
            ["state", "role", "on enter", "ignores"],
        )
    )
    rows = []
    for i, t in enumerate(spec.transitions):
        dest = "(initial)" if t.reset else (t.dest or "(stay)")
        ups = "reset all" if t.reset else ", ".join(f"{k} = {v}" for k, v in t.updates.items())
        rows.append([str(i), t.event_text, ", ".join(t.source), t.guard or "", dest, ups])
    print(
        "\ntransitions (first whose guard holds fires)\n"
        + _table(rows, ["#", "event", "from", "guard", "to", "updates"])
    )
    if spec.invariants:
        print(
            "\ninvariants\n"
            + _table([[i.expr, ", ".join(i.states) or "(all)"] for i in spec.invariants], ["expression", "in states"])
        )
    j = spec.judging
    given = "" if "judging" in spec.model_fields_set else " (the spec has no judging: section; these are the defaults)"
    fallback = ", ".join(f"{a} -> {b}" for a, b in j.technical_fallback.items()) or "none"
    print(f"\njudging{given}\n  success fires {j.events[0]}, failure fires {j.events[1]}")
    for issue in spec.judging_issues():
        print(f"  NOT RUNNABLE by front ends that judge turns (gateway, adapter, integrations): {issue}")
    print(f"  technical fallback: {fallback}")
    given_kinds = set(j.kinds)
    for kind, event in j.kind_events.items():
        print(f"  a turn judged {kind} fires {event}" + ("" if kind in given_kinds else " (default)"))
    print("  agents read by their own formats: " + ", ".join(AGENTS))
    if j.tool_error_patterns:
        print("  extra error lines: " + ", ".join(repr(p) for p in j.tool_error_patterns))
    if j.correction_patterns:
        print("  extra corrections: " + ", ".join(repr(p) for p in j.correction_patterns))
    if not spec.handoffs:
        print("\nhandoffs: none (the models are not told about a switch)")
    else:
        print("\nhandoffs (the first call served after the switch carries the note; the first that matches)")
    for h in spec.handoffs:
        print(f"  entering {h.dest} from {', '.join(h.source) or 'any state of another role'}:")
        print("\n".join("    | " + line for line in h.note.splitlines()))
    return 0


def _checked(path: str, spec: Spec, depth: int | None, params_up_to: int | None, limit: int) -> Any:
    """`lwfsm check`'s exploration of one spec; a check it cannot run soundly is a usage error."""
    import logging

    # Progress on long explorations goes to stderr (lwfsm.check logs it at INFO; quiet as a library).
    log = logging.getLogger("lwfsm.check")
    if not log.handlers:
        progress = logging.StreamHandler(sys.stderr)
        progress.setFormatter(logging.Formatter("lwfsm check: %(message)s"))
        log.addHandler(progress)
        log.setLevel(logging.INFO)
    from ..check import TooLarge, Unsaturable, check, check_grid

    try:
        if params_up_to is not None:
            return check_grid(spec, params_up_to, depth, limit)
        return check(spec, depth, limit)
    except TooLarge as exc:
        raise _Usage(f"{path}: {exc}") from None
    except Unsaturable as exc:
        reasons = "\n  ".join(exc.problems)
        raise _Usage(
            f"{path}: cannot check every configuration: counters cannot be saturated soundly "
            f"because\n  {reasons}\nuse --depth N to explore every sequence of up to N events "
            "instead"
        ) from None


def _print_report(path: str, r: Any, params_up_to: int | None) -> None:
    params = ", ".join(f"{k}={v}" for k, v in r.params.items())
    if r.combinations > 1:
        params = f"{r.combinations} param combinations up to min + {params_up_to}"
    if r.depth is not None:
        scope = f"every sequence of up to {r.depth} events"
    else:
        kept = [f"saturated above {', '.join(f'{k} {v}' for k, v in r.bounds.items())}"] if r.bounds else []
        kept += [f"{k} exact ({d})" for k, d in r.exact.items()]
        kept += [f"turn modulo {r.turn_modulus}"] if r.turn_modulus > 1 else []
        scope = "counters " + "; ".join(kept) if kept else "no counters"
    verdict = "ok" if r.ok else f"{len(r.findings)} finding(s)"
    print(f"{path}: {r.spec} ({params}): {r.configurations} reachable configurations ({scope}): {verdict}")
    for f in r.findings:
        where = ""
        if f.counters is not None:
            # A saturated value stands for itself and every value above it.
            shown = (f"{k}>={v}" if k in (f.saturated or ()) else f"{k}={v}" for k, v in f.counters.items())
            where = f" at {f.state} ({', '.join(shown)})"
        after = f"; shortest path: {', '.join(f.path) or '(initial)'}" if f.path is not None else ""
        if f.params is not None:
            after += f"; with {', '.join(f'{k}={v}' for k, v in f.params.items())}"
        print(f"  {f.kind}: {f.message}{where}{after}")


def cmd_check(args: argparse.Namespace) -> int:
    limit = args.max_configurations
    reports, unreadable = [], 0
    for path in args.specs:  # each spec on its own: one that does not load hides nothing of the others
        try:
            spec = load_spec(path, _params(args.set))
        except SpecError as exc:
            print(_said(exc, args), file=sys.stderr)
            unreadable += 1
            continue
        reports.append((path, _checked(path, spec, args.depth, args.params_up_to, limit)))
    if args.json:
        print(json.dumps([dict(r.to_dict(), path=p) for p, r in reports], indent=2))
    else:
        for path, r in reports:
            _print_report(path, r, args.params_up_to)
    return 0 if not unreadable and all(r.ok for _, r in reports) else 1


def cmd_diagram(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import diagram
    from ..errors import SnapshotError

    if args.all or args.check:
        return _diagram_dir(Path(args.specs_dir), Path(args.out_dir), args.check)
    kw: dict[str, Any] = {}
    if args.diff:
        old, spec = load_spec(args.diff[0], _params(args.set)), load_spec(args.diff[1], _params(args.set))
        kw = {"changes": diagram.diff(old, spec), "old": old}
        print("\n".join(kw["changes"].summary()), file=sys.stderr)
    elif args.spec:
        spec = load_spec(args.spec, _params(args.set))
    else:
        raise _Usage("give a SPEC, --diff OLD NEW, --all or --check")
    if args.snapshot:
        try:  # restored as a session would be: a snapshot of other rules or params would mislead
            kw["snapshot"] = Engine(spec).restore(Path(args.snapshot).read_text()).snapshot()
        except (OSError, UnicodeDecodeError, SnapshotError) as exc:
            raise _Usage(f"--snapshot {args.snapshot}: {exc}") from None
    fmt = _diagram_format(args.format, args.output)
    for given in (*(args.diff or (args.spec,)), args.snapshot):
        if args.output and given and os.path.exists(given) and _same(args.output, given):
            raise _Usage(f"-o {args.output} is {given}, which the diagram is drawn from: name another file")
    data = diagram.render(spec, fmt, **kw)
    if args.output:
        _write(Path(args.output), data)
    elif fmt == "png":
        raise _Usage("-f png writes binary data: give -o PATH")
    else:
        sys.stdout.write(data.decode())
    return 0


_EXTENSIONS = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".md": "md",
    ".markdown": "md",
    ".svg": "svg",
    ".png": "png",
    ".dot": "dot",
    ".gv": "dot",
}


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # no such file yet
        return False


def _diagram_format(given: str | None, output: str | None) -> str:
    """The format -f names, else the one -o's extension names (a .svg of mermaid text opens nowhere), else
    mermaid; -f and an extension that disagree are refused."""
    extension = os.path.splitext(output)[1].lower() if output else ""
    named = _EXTENSIONS.get(extension)
    if given is not None and named is not None and given != named:
        raise _Usage(f"-f {given} and -o {output} disagree: drop -f, or give the file a .{given} name")
    # Mermaid text, or an SVG, in a .jpg, a .pdf or a .svg.gz opens nowhere: an extension lwfsm does not
    # write is refused, but for text (.txt) of a text format.
    if extension and named is None and (extension != ".txt" or given in ("svg", "png")):
        known = " ".join(sorted({*_EXTENSIONS, ".txt"}))
        raise _Usage(
            f"-o {output}: lwfsm writes no {extension} diagram{' as ' + given if given else ''}; name the file {known}"
        )
    return given or named or "mermaid"


def _write(target: Any, data: bytes) -> None:
    """Write a file, or say in one line why not (missing folder, a folder, a full disk...)."""
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise _Usage(f"cannot write {target}: {exc.strerror or exc}") from None


def _diagram_dir(specs_dir: Any, out_dir: Any, check_only: bool) -> int:
    """Write (or, with check_only, compare) <name>.md and <name>.svg for every spec in specs_dir."""
    from .. import diagram

    stale = []
    paths = sorted(specs_dir.glob("*.yaml"))
    if not paths:  # checking nothing must not read as "up to date"
        what = "does not exist" if not specs_dir.exists() else "holds no *.yaml spec"
        raise _Usage(f"--specs-dir {specs_dir} {what}: nothing to draw or check")
    for path in paths:
        spec = load_spec(path)
        for ext in ("md", "svg"):
            target = out_dir / f"{path.stem}.{ext}"
            current = target.read_bytes() if target.exists() else None
            if ext == "md":
                fresh = diagram.markdown(spec).encode()
                ok = current == fresh
            else:
                ok = diagram.svg_is_current(spec, current)
                fresh = b"" if check_only or ok else diagram.render(spec, "svg")
            if ok:
                continue
            if check_only:
                stale.append(f"{target}: {'missing' if current is None else 'stale'} (from {path})")
            else:
                try:
                    out_dir.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise _Usage(f"--out-dir {out_dir}: cannot create it: {exc.strerror or exc}") from None
                _write(target, fresh)
                print(f"wrote {target}")
    for line in stale:
        print(line, file=sys.stderr)
    if stale:
        print(f"{len(stale)} diagram file(s) out of date: run lwfsm diagram --all", file=sys.stderr)
    elif check_only:
        print(f"up to date: every diagram in {out_dir}/ matches its spec in {specs_dir}/")
    return 1 if stale else 0


# The demo's script: what the model "replies" (LiteLLM mock_response) and what comes back next
# (the user's answer, or tool results). Turn judging sees exactly what a real agent would send.
DEMO = [
    ("Plan: read the failing test, fix the parser, run the suite.", {"role": "user", "content": "Sounds good."}),
    ("Reading tests/test_parser.py ...", {"role": "tool", "tool_call_id": "t1", "content": "3 tests collected"}),
    ("The bug is in parse_header(); here is the fix.", {"role": "user", "content": "Go ahead."}),
    ("```python\ndef parse_header(line):\n    return line.split(':', 1\n```", {"role": "user", "content": "Run it."}),
    (
        "Running the suite.",
        {
            "role": "tool",
            "tool_call_id": "t2",
            "content": "Traceback (most recent call last):\n  ValueError: bad header",
        },
    ),
    ("Fixed the call site.", {"role": "user", "content": "Thanks, that passes now."}),
    ("Committing.", {"role": "user", "content": "Good."}),
    ("Updating the changelog.", {"role": "user", "content": "That's wrong, the version is 2.1."}),
    ("Changelog now says 2.1.", {"role": "user", "content": "Perfect."}),
    ("Done: parser fixed, suite green.", {"role": "user", "content": "Bye."}),
]


def _adapter_class() -> Any:
    """The LiteLLM adapter, or a one-line install hint (it is imported before litellm, so LiteLLM
    is switched to its local price map first)."""
    try:
        from ..provider.adapter import Adapter
    except ImportError as exc:
        raise _Usage(str(exc)) from None
    return Adapter


def cmd_demo(args: argparse.Namespace) -> int:
    Adapter = _adapter_class()  # noqa: N806 - a class
    spec = load_spec(args.spec, _params(args.set))
    # The cheap roles get the small model, every other role the large one: any spec can be shown.
    models = {r: "openai/gpt-4o-mini" if role.cheap else "openai/gpt-4o" for r, role in spec.roles.items()}
    adapter = Adapter(spec, models, env={})
    session = adapter.session(name="demo")
    bound = ", ".join(f"{r}={m}" for r, m in models.items())
    print(f"offline demo: {spec.name} through LiteLLM (mock_response, no network); {bound}\n")
    print(f"{'turn':>4}  {'state':13} {'role':7} {'model':20} outcome of the turn")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "The parser test fails; please fix it."}]
    rows = []
    for reply, answer in DEMO:
        session.completion(messages, mock_response=reply)
        # The previous turn's verdict is committed during the call: the state now is the one serving it.
        assert session.last is not None
        rows.append([session.machine.state, session.last.role, session.last.model])  # as the cost table names it
        if len(rows) > 1:
            rec = session.machine.history[-1]
            _demo_row(len(rows) - 1, rows[-2], rec.event != spec.judging.events[0], rec.reason)
        messages += [{"role": "assistant", "content": reply}, answer]
    session.close(messages)
    rec = session.machine.history[-1]
    _demo_row(len(rows), rows[-1], rec.event != spec.judging.events[0], rec.reason)
    print(f"\nnow in state {session.machine.state}; next turn served by {session.machine.role}\n")
    print(session.table())
    print(
        f"\nnext: lwfsm explain {args.spec} (the rules behind these turns), lwfsm diagram {args.spec}, "
        "lwfsm serve --mock (the gateway, offline; its dashboard at /lwfsm/)"
    )
    return 0


def _demo_row(turn: int, row: list[str], failed: bool, reason: str | None) -> None:
    outcome = f"FAILURE: {reason}" if failed else "ok"
    print(f"{turn:>4}  {row[0]:13} {row[1]:7} {row[2]:20} {outcome}")


def cmd_chat(args: argparse.Namespace) -> int:
    Adapter = _adapter_class()  # noqa: N806 - a class; imported before litellm, so LiteLLM stays offline
    import litellm

    from ..errors import ProviderError

    spec = load_spec(args.spec, _params(args.set))
    models = {"lead": args.lead, "worker": args.worker}
    from ..provider.adapter import unknown_provider

    for role, model in models.items():  # every model's provider before any key: the provider decides the key
        if "/" not in model:
            try:  # the provider LiteLLM would take it for, as the example to write
                hint = f", e.g. '{litellm.get_llm_provider(model)[1]}/{model}'"
            except Exception:  # noqa: BLE001 - LiteLLM knows no provider for it: no example
                hint = ""
            raise _Usage(f"--{role} {model!r} names no provider: write it as 'provider/model'{hint}")
        if why := unknown_provider(model):
            raise _Usage(f"--{role} {model!r} {why}: write it as 'provider/model'")
    for role, model in models.items():
        check = litellm.validate_environment(model=model)
        if not check.get("keys_in_environment", True):
            missing = ", ".join(check.get("missing_keys", [])) or "an API key"
            raise _Usage(f"{role} model {model} needs {missing} in the environment")
    session = Adapter(spec, models).session(name="chat")
    messages: list[dict[str, Any]] = []
    print(f"lwfsm chat ({spec.name}): empty line or Ctrl-D to end")
    while True:
        try:
            line = input("you> ").strip()  # the role is known once the previous turn is judged
        except EOFError:
            line = ""
        if not line:
            break
        messages.append({"role": "user", "content": line})
        try:
            response = session.completion(messages)
        except ProviderError as exc:
            print(f"error: {exc}")
            messages.pop()
            continue
        text = response.choices[0].message.content or ""
        print(f"{response.model}> {text}")
        messages.append({"role": "assistant", "content": text})
    session.close(messages)
    print(session.table())
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """list / show / delete the conversations of a store; --spec also checks they restore under that spec."""
    from pydantic import ValidationError

    from ..errors import StoreError
    from ..gateway.identity import stored_as
    from ..store import open_store
    from ..store.rows import CHAINS, decode, load
    from ..store.sqlite import SQLiteStore
    from ..turn import ConversationState, TurnCore
    from ..turn.core import unreadable

    if args.action != "list" and not args.ids:
        raise _Usage(f"sessions {args.action}: name at least one conversation id")
    if args.store.startswith("sqlite://") and not os.path.isfile(path := SQLiteStore.path_of(args.store)):
        # Opening it would create an empty database, and "no sessions" would hide a wrong path.
        where = repr(os.path.abspath(path))
        what = f"{where} is a folder, not a database file" if os.path.isdir(path) else f"no such file {where}"
        raise StoreError(f"store {args.store}: {what}", store=args.store)
    store = open_store(args.store)
    try:
        if args.action == "delete":
            missing = [s for s in args.ids if not store.delete(s)]
            for s in missing:
                print(
                    f"lwfsm sessions: store {store.url}: no session {s!r}{stored_as(store.list(), s)}", file=sys.stderr
                )
            return 1 if missing else 0
        core = TurnCore(Engine(load_spec(args.spec, _params(args.set)))) if args.spec else None
        listed = store.list()
        chains = sum(1 for i in listed if i.startswith(CHAINS))  # the gateway's Responses API chains
        ids = args.ids if args.action == "show" else [i for i in listed if not i.startswith(CHAINS)]
        rows, failed = [], 0
        for sid in ids:
            try:
                if core is not None:
                    conv, key = load(store, core, sid)
                    state = conv.state() if conv else None
                else:
                    row = store.read(sid)
                    state, key = None, None
                    if row is not None:
                        body, key = decode(store, sid, row)
                        try:
                            state = ConversationState.model_validate_json(body)
                        except ValidationError as exc:
                            raise StoreError(
                                f"store {store.url}: session {sid!r}: {unreadable(exc)}", store=store.url, session=sid
                            ) from None
                if state is None:
                    hint = stored_as(listed, sid)
                    raise StoreError(f"store {store.url}: no session {sid!r}{hint}", store=store.url, session=sid)
            except StoreError as exc:
                failed += 1
                print(f"lwfsm sessions: {exc}", file=sys.stderr)
                continue
            if args.action == "show":
                print(json.dumps({"session": sid, "last_call": key, "state": state.model_dump(mode="json")}, indent=2))
            else:
                m = state.machine
                rows.append([sid, str(state.version), f"{m.spec} v{m.version}", m.state, str(m.turn)])
        if args.action == "list":
            header = ["session", "version", "spec", "state", "turns"]
            print(_table(rows, header) if rows else f"{store.url}: no sessions")
            if chains:
                print(f"({chains} Responses API chain(s) of the gateway not listed: they are not conversations)")
        return 1 if failed else 0
    finally:
        store.close()


def _can_listen(host: str, port: int) -> None:
    """Bind the address once, as uvicorn will (SO_REUSEADDR), and let it go; a taken address is a usage error."""
    import socket

    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(info[4])
    except OSError as exc:
        raise _Usage(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from ..gateway.serve import build, serve
    from ..gateway.store import DEFAULT_STORE
    from ..store import redact

    if args.workers < 1:
        raise _Usage(f"--workers must be 1 or more, got {args.workers}")
    if args.workers > 1 and (args.store or "").startswith("memory://"):
        raise _Usage("--workers > 1 needs a store the workers share: sqlite:///path.db or redis://...")
    if not 0 <= args.drain_grace < args.drain_timeout:
        raise _Usage(
            f"--drain-grace {args.drain_grace:g} and --drain-timeout {args.drain_timeout:g}: the grace must be 0 or "
            "more and less than the timeout (the timeout counts from the signal, grace included)"
        )
    from ..gateway.identity import is_loopback

    if not args.api_key_env and not args.allow_no_key and not is_loopback(args.host):
        raise _Usage(
            f"--host {args.host} without --api-key-env: anyone who reaches the gateway would spend your upstream "
            "keys; set --api-key-env NAME (clients then present that key), or pass --allow-no-key to serve "
            "without one (the control API then answers this host only, or whoever holds --control-key-env's key)"
        )
    spec = load_spec(args.spec, _params(args.set))
    if args.check_only:
        return _serve_check(args.spec, spec, args.mock, args.api_key_env, args.control_key_env)
    config = {
        "store": args.store,
        "api_key_env": args.api_key_env,
        "control_key_env": args.control_key_env,
        "mock": args.mock,
        "max_body": args.max_body,
        "body_budget": args.body_budget,
        "store_timeout": args.store_timeout,
        "connect_timeout": args.connect_timeout,
        "first_byte_timeout": args.first_byte_timeout,
        "idle_timeout": args.idle_timeout,
        "log_dir": args.log_dir,
        "on_spec_change": args.on_spec_change,
    }
    # Also when workers > 1: every mistake shows here, once, before forking.
    _can_listen(args.host, args.port)  # before the store is opened: a failed start leaves no database behind
    app = build(spec, spec_path=args.spec, params=_params(args.set), workers=args.workers, **config)
    _can_listen(args.host, args.port)  # the banner below must not announce an address taken by another
    shown = redact(args.store or DEFAULT_STORE)  # never print a store password
    print(f"lwfsm gateway: {spec.name} on http://{args.host}:{args.port}/v1 (store {shown})")
    return serve(
        app,
        args.host,
        args.port,
        workers=args.workers,
        config={**config, "spec": args.spec, "params": _params(args.set)},
        drain_grace=args.drain_grace,
        drain_timeout=args.drain_timeout,
        head_timeout=args.head_timeout,
    )


def _serve_check(
    path: str, spec: Spec, mock: bool = False, api_key_env: str | None = None, control_key_env: str | None = None
) -> int:
    """`serve --check-only`: the spec with the params serve would give it (--set, then LWFSM_PARAM_* and
    GOOSE_* from the environment, as `build` applies them), through `lwfsm check`, and the role bindings
    serve would make (their key variables set) and the gateway key's variable set; no port bound, no store
    opened."""
    from ..gateway.app import control_key, gateway_key
    from ..gateway.serve import roles
    from ..turn.bindings import params_from_env

    gateway_key(os.environ, api_key_env)  # an error naming the variable, as `serve` would stop on
    control_key(os.environ, control_key_env, api_key_env)
    from ..cost.pricing import price_table

    with contextlib.suppress(ImportError):  # (without LiteLLM, serve prices nothing but LWFSM_PRICES's)
        price_table(os.environ)
    overrides = params_from_env(spec)
    spec = spec.with_params(overrides) if overrides else spec
    roles(spec, os.environ, mock, load=True)  # a ConfigError names the variable to set
    report = _checked(path, spec, None, None, 1_000_000)
    from ..check import unused_only_here

    unused = unused_only_here(report, load_spec(path), 1_000_000)
    report.findings = [f for f in report.findings if f not in unused]
    _print_report(path, report, None)
    for f in unused:  # the spec uses them at its defaults: these params leave them unused, no mistake
        print(f"  note: with these params, {f.message} ({f.kind}; used at the spec's defaults)")
    return 0 if report.ok else 1


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def schema_text() -> str:
    """The JSON Schema of the spec format (what `lwfsm/spec/schema.json` holds)."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lwfsm spec"
    return json.dumps(schema, indent=2) + "\n"


def cmd_report(args: argparse.Namespace) -> int:
    from ..cost.commands import report_command

    spec, *also = (load_spec(name) for name in args.spec or ["lead_worker"])
    try:
        return report_command(spec, args, also)
    except (ValueError, ImportError) as exc:
        raise _Usage(str(exc)) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..cost.commands import simulate_command

    spec = load_spec(args.spec, _params(args.set))
    try:
        return simulate_command(spec, args)
    except (ValueError, ImportError) as exc:
        raise _Usage(str(exc)) from None


def _add_cost_commands(sub: Any, with_set: Any) -> None:
    def outputs(p: argparse.ArgumentParser) -> None:
        fmt = p.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
        fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
        p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
        p.add_argument("--lead", metavar="MODEL", help="the lead's model (default: the one it used most)")
        p.add_argument("--worker", metavar="MODEL", help="the worker's model (default: the one it used most)")

    p = sub.add_parser("report", help="turns, switches, fallbacks, failures and costs of recorded conversations")
    p.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="trace files or directories of them (.jsonl, .jsonl.gz, .parquet): an adapter's log_dir, serve --log-dir",
    )
    p.add_argument(
        "--spec",
        action="append",
        help="the spec the trace ran (default lead_worker): what its transitions were (switches, fallbacks) and the "
        "roles' colours; once per spec a gateway rolled out while it wrote the trace, the first for the figures",
    )
    outputs(p)
    p.set_defaults(func=cmd_report, spill="logs")

    p = sub.add_parser("simulate", help="replay recorded outcomes through a spec; Monte-Carlo, sweeps, traces")
    p.add_argument("spec", metavar="SPEC")
    with_set(p)
    p.add_argument("--trace", action="append", default=[], metavar="FILE", help="a trace file or folder (repeatable)")
    outputs(p)
    p.add_argument("--model", action="append", default=[], metavar="ROLE=MODEL", help="bind any role (repeatable)")
    p.add_argument("--engine", action="store_true", help="drive the engine instead of the transition table")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="replay on this Dask cluster (tcp://HOST:PORT), partitioned by conversation; lwfsm[dask]",
    )
    p.add_argument("--workers", type=int, metavar="N", help="replay on a local Dask cluster of N processes")
    p.add_argument("--monte-carlo", type=int, metavar="N", help="simulate N conversations with random outcomes")
    p.add_argument("--conversation-turns", type=int, metavar="T", help="turns per Monte-Carlo conversation")
    p.add_argument(
        "--sweep", nargs="+", action="extend", default=[], metavar="NAME=A..B", help="rank every param combination"
    )
    p.add_argument("--plot", metavar="FILE.png", help="with --sweep: cost vs failing-worker turns, Pareto front")
    p.add_argument("--generate", action="store_true", help="write a synthetic trace to -o FILE")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--turns", type=int, help="--generate: turns in all (default 100)")
    p.add_argument("--conversations", type=int, help="--generate: conversations (default 10)")
    p.add_argument("--fail-lead", type=float, metavar="P", help="failure probability of a lead turn")
    p.add_argument("--fail-worker", type=float, metavar="P", help="failure probability of a worker turn")
    p.add_argument("--burst", type=float, metavar="P", help="--generate: P(failure after a failure) (0)")
    p.add_argument("--prompt-tokens", type=int, help="--generate: context of the first turn (2000)")
    p.add_argument("--growth", type=int, help="--generate: context growth per turn (800)")
    p.add_argument("--completion-tokens", type=int, help="--generate: output tokens per turn (400)")
    p.add_argument("--cache-hit", type=float, help="--generate: share of context cached on warm turns (0.9)")
    p.add_argument("--seed", type=int, help="--generate, --monte-carlo: the random seed (0)")
    p.set_defaults(func=cmd_simulate)


def cmd_judge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..turn import TurnCore
    from . import judging

    core = TurnCore(Engine(load_spec(args.spec, _params(args.set))))
    if args.agent is not None and args.agent not in AGENTS:
        raise _Usage(f"--agent {args.agent!r}: lwfsm reads {', '.join(AGENTS)}")
    path = Path(args.file)
    if not path.is_file():
        raise _Usage(f"{path}: no such file")
    if args.action == "sources":
        if not args.sources:
            raise _Usage("sources: give --sources DIR, the folder the transcripts go to")
        try:
            commands = judging.fetch_commands(judging.read_lines(path), Path(args.sources))
        except (OSError, ValueError) as exc:
            raise _Usage(str(exc)) from None
        if not commands:
            raise _Usage(f"{path}: no row names a source (owner/repo@commit:path): is it a manifest?")
        print("\n".join(commands))
        return 0
    if args.action == "explain":
        try:
            capture = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Usage(f"{path}: not a JSON request body: {exc}") from None
        except RecursionError:
            raise _Usage(f"{path}: nested too deeply to read (the gateway answers such a body with a 400)") from None
        captures = capture if isinstance(capture, list) else [capture]
        if not captures:
            raise _Usage(f"{path}: an empty list: give a request body, {{headers, body}}, or a list of them")
        unread = 0  # items that are no request the gateway would serve: each is named, and the exit status says so
        for n, one in enumerate(captures, 1):
            where = f"{path}" + (f" [{n}]" if len(captures) > 1 else "")
            if not isinstance(one, dict):
                problem = f"a JSON {type(one).__name__}, not a request: give a body or {{headers, body}}"
            else:
                try:
                    j, event = judging.explain(core, one, args.agent)
                    problem = ""
                except judging.NoTurn as exc:  # a real request with no turn in it: an answer, not a mistake
                    print(f"{where}: {exc}")
                    continue
                except ValueError as exc:
                    problem = str(exc)
                except RecursionError:
                    problem = "content nested too deeply to read (the gateway answers it with a 400)"
            if problem:
                print(f"{where}: {problem}", file=sys.stderr)
                unread += 1
                continue
            print(f"{where}: agent {j.agent}; verdict {j.kind}, fires {event}")
            if j.evidence is not None:
                e = j.evidence
                at = "the reply itself" if e.message is None else f"message {e.message + 1} after the reply"
                print(f"  rule:     {e.rule}\n  where:    {at}" + (f", line {e.line}" if e.line else ""))
                if e.excerpt:
                    print(f"  evidence: {e.excerpt}")
            elif j.kind == "ok" and isinstance(one, dict):
                read = judging.outcomes_read(one, j.agent)
                for line, _ in read:
                    print(f"  read:     {line}")
                if any(failed for _, failed in read):
                    print(
                        "  (a failed status judged ok: a probe answering no, the red phase before any change to "
                        "the code, or a second look at a failure already seen; README: Judging a turn)"
                    )
        return 1 if unread else 0
    try:
        rows = judging.read_lines(path)
    except (OSError, ValueError) as exc:
        raise _Usage(str(exc)) from None
    sources = Path(args.sources) if args.sources else None
    try:
        results = list(judging.evaluate(core, rows, sources, None if args.split == "all" else args.split))
    except (OSError, ValueError, LookupError) as exc:
        raise _Usage(str(exc)) from None
    if not results:
        parts = list(dict.fromkeys(str(row.get("split", "dev")) for row in rows))
        raise _Usage(f"{path}: no labelled turn in split {args.split!r}; its parts: {', '.join(parts) or 'none'}")
    print(judging.summary(results, core.spec, misjudged=args.misjudged))
    return 1 if any(r.judged == "unread" for r in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwfsm", description="Lead/worker model switching as an explicit FSM.")
    parser.add_argument("--version", action="version", version=f"lwfsm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a param (repeatable)")

    p = sub.add_parser("validate", help="check specs; located errors, exit 1 when any is wrong")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    with_set(p)
    p.set_defaults(func=cmd_validate, spill="specs")

    p = sub.add_parser("trace", help="run a session through a list of events, turn by turn")
    p.add_argument("spec", metavar="SPEC")
    with_set(p)
    p.add_argument("--events", required=True, help="comma-separated: ok, fail, or any event name")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("explain", help="states, roles, transitions and guards as tables")
    p.add_argument("spec", metavar="SPEC")
    with_set(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("check", help="explore every reachable configuration; exit 1 with findings")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    with_set(p)
    p.add_argument("--depth", type=_at_least(1), help="explore every sequence of up to N events instead of saturating")
    p.add_argument(
        "--params-up-to",
        type=_at_least(0),
        metavar="N",
        help="check every param combination within the declared ranges, each capped at min + N",
    )
    p.add_argument(
        "--max-configurations",
        type=_at_least(1),
        default=1_000_000,
        metavar="N",
        help="refuse a check whose estimated configuration count exceeds N; a --depth search stops at N "
        "(default: 1,000,000)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of reports")
    p.set_defaults(func=cmd_check, spill="specs")

    p = sub.add_parser("diagram", help="draw a spec: mermaid, md, svg, png or dot")
    p.add_argument("spec", nargs="?", metavar="SPEC")
    with_set(p)
    p.add_argument(
        "-f", "--format", choices=["mermaid", "md", "svg", "png", "dot"], help="default: -o's extension, else mermaid"
    )
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of standard output")
    p.add_argument("--snapshot", metavar="FILE", help="a session snapshot (JSON): highlight its state")
    p.add_argument("--diff", nargs=2, metavar=("OLD_SPEC", "NEW_SPEC"), help="mark what changed from OLD to NEW")
    p.add_argument("--all", action="store_true", help="write <name>.md and <name>.svg for every spec")
    p.add_argument("--check", action="store_true", help="exit 1 naming each stale or missing diagram file")
    p.add_argument("--specs-dir", default="specs", help="with --all/--check (default: specs)")
    p.add_argument("--out-dir", default="diagrams", help="with --all/--check (default: diagrams)")
    p.set_defaults(func=cmd_diagram)

    p = sub.add_parser("demo", help="an offline scripted agent session through the real adapter and LiteLLM")
    p.add_argument("--spec", default="lead_worker", help="a spec file or a shipped spec's name (default: lead_worker)")
    with_set(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("chat", help="an interactive chat with real providers")
    p.add_argument("--lead", required=True, metavar="MODEL", help="LiteLLM model, e.g. anthropic/claude-sonnet-4-5")
    p.add_argument("--worker", required=True, metavar="MODEL", help="LiteLLM model, e.g. openai/gpt-4o-mini")
    p.add_argument("--spec", default="lead_worker")
    with_set(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("sessions", help="list, show or delete the conversations kept in a session store")
    p.add_argument("action", choices=["list", "show", "delete"])
    p.add_argument("ids", nargs="*", metavar="ID", help="conversation ids (show, delete)")
    p.set_defaults(spill="ids")
    p.add_argument("--store", required=True, metavar="URL", help="memory://, sqlite:///path.db, redis://host:6379/0")
    p.add_argument("--spec", help="also check that each conversation restores under this spec and params")
    with_set(p)
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("serve", help="an OpenAI/Anthropic-compatible gateway that switches models per turn")
    p.add_argument("spec", nargs="?", default="lead_worker", metavar="SPEC", help="default: the shipped lead_worker")
    with_set(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_at_least(1, 65535), default=8088)
    p.add_argument(
        "--store", metavar="URL", help="sqlite:///lwfsm-sessions.db (default), redis://host:6379/0 or memory://"
    )
    p.add_argument("--api-key-env", metavar="NAME", help="require the key held by this variable from clients")
    p.add_argument(
        "--control-key-env",
        metavar="NAME",
        help="the control API (/lwfsm, /metrics, spec rollout, events) requires the key held by this variable, "
        "not the gateway key",
    )
    p.add_argument(
        "--allow-no-key", action="store_true", help="serve a --host other than loopback without --api-key-env"
    )
    p.add_argument("--mock", action="store_true", help="offline: LiteLLM's mock responses, no keys")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (need a shared store)")
    p.add_argument(
        "--max-body", type=_at_least(1), default=32 * 1024 * 1024, metavar="BYTES", help="request body limit"
    )
    p.add_argument(
        "--body-budget",
        type=_at_least(1),
        default=128 * 1024 * 1024,
        metavar="BYTES",
        help="the most bytes of request bodies held at once, per process (128 MiB); over it, a 503 to retry",
    )
    p.add_argument(
        "--store-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long a call waits for the store before failing with 503 (default 10)",
    )
    p.add_argument(
        "--connect-timeout", type=_seconds, default=10.0, metavar="SECONDS", help="to connect to an upstream (10)"
    )
    p.add_argument(
        "--first-byte-timeout",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long an upstream may take to start answering a request (300): a reply not streamed comes whole",
    )
    p.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="longest silence of an upstream once it has started answering (300); no total limit",
    )
    p.add_argument(
        "--head-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="a client must send a request's line and headers within this long (10), or gets a 408",
    )
    p.add_argument("--log-dir", metavar="DIR", help="write the trace (one JSONL line per judged turn) for lwfsm report")
    p.add_argument(
        "--drain-grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM, /readyz answers 503 at once; new connections are still accepted for this long (5)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="on SIGTERM, calls in flight may run this long, from the signal, before they are cut (600)",
    )
    p.add_argument(
        "--on-spec-change",
        choices=["keep", "move"],
        default="keep",
        help="when SIGHUP or POST /lwfsm/spec brings a new spec, conversations in flight keep theirs until reset "
        "(keep), or go on under the new one where their state exists and its invariants hold (move)",
    )
    p.add_argument(
        "--check-only",
        action="store_true",
        help="validate SPEC with its params (--set, environment) and run lwfsm check on it; bind nothing; "
        "exit 0 when clean, 1 with the errors or findings",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("judge", help="why a turn was judged as it was; the judge measured on labelled turns")
    p.add_argument("action", choices=["explain", "eval", "sources"])
    p.add_argument(
        "file",
        metavar="FILE",
        help="explain: a captured request (JSON body, or {headers, body}); eval: labelled turns (JSONL, .gz); "
        "sources: a manifest, to print the commands that fetch its transcripts into --sources DIR",
    )
    p.add_argument("--spec", default="lead_worker", help="the spec whose judging: applies (default: lead_worker)")
    with_set(p)
    p.add_argument("--agent", help=f"read the request as this agent's ({', '.join(AGENTS)}); default: told from it")
    p.add_argument("--sources", metavar="DIR", help="eval: where the manifest's transcripts were fetched")
    p.add_argument("--split", default="all", help="eval: which labelled part (rows' `split`; all: every row)")
    p.add_argument("--misjudged", type=_at_least(0), default=40, metavar="N", help="eval: list up to N misjudged")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("schema", help="print the JSON Schema of the spec format")
    p.set_defaults(func=cmd_schema)

    _add_cost_commands(sub, with_set)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. Exit codes: 0 ok, 1 a mistake or finding (with a message), 2 a usage error
    argparse caught (unknown option, missing argument), as is the convention for command lines."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a list of positionals in one run: those after an option (`sessions show --store URL
    # ID`, `check a.yaml --set x=1 b.yaml`) come back unparsed, and belong to the list
    spill = getattr(args, "spill", None)
    cut = extra.index("--") if "--" in extra else len(extra)  # after "--" every word is a positional
    unknown = [e for e in extra[:cut] if spill is None or e.startswith("-")] + (extra[cut:] if spill is None else [])
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if spill is not None:
        getattr(args, spill).extend(extra[:cut] + extra[cut + 1 :])
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `lwfsm explain big.yaml | head -1`: the reader left. Say nothing more; point stdout at
        # devnull so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SpecError as exc:
        print(_said(exc, args), file=sys.stderr)
        return 1
    except (LwfsmError, _Usage) as exc:  # DiagramError is an LwfsmError: its install hint is the message
        print(f"lwfsm {args.command}: {exc}", file=sys.stderr)
        return 1
