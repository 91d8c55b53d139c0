"""`lwfsm report` and `lwfsm simulate`: the work behind the two commands (the CLI parses arguments).

Usage mistakes raise `ValueError` with the message to show; the CLI prints it and exits 1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import stat
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..diagram.graph import role_colours
from ..errors import SpecError
from ..spec import Spec
from .pricing import PRICES_ENV, PriceMap, price_table
from .records import MAX_TOKENS, SUFFIXES, TraceRecord, read_records
from .report import Summary, cheap_roles, dollars, lead_and_worker, reads, spec_problem, summarise
from .simulate import (
    ASSUMPTION,
    Fit,
    Knobs,
    Replayer,
    bound_models,
    generate,
    monte_carlo,
    rank_rows,
    simulate,
)

__all__ = ["emit", "report_command", "simulate_command", "sweep_ranges"]


def _spec_files(args: Any) -> list[str]:
    """The spec files the command was given (a shipped spec's name is no file here)."""
    given = getattr(args, "spec", None)
    return [p for p in (given if isinstance(given, list) else [given]) if isinstance(p, str) and os.path.isfile(p)]


def _prices() -> PriceMap:
    """The prices, LWFSM_PRICES's checked now (a wrong file is said before anything is read)."""
    try:
        return PriceMap(price_table())
    except ImportError:
        return PriceMap()  # (says what to install where a price is first needed)


def _not_an_input(path: str, flag: str, inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse to write `path` over a file this command reads (a trace, its spec, LWFSM_PRICES's), or as a
    trace file in a folder it reads."""
    for given in [*inputs, os.environ.get(PRICES_ENV, "")]:
        if isinstance(given, str) and given.startswith("file://"):
            given = urllib.parse.unquote(urllib.parse.urlsplit(given).path)
        if not given:
            continue
        if os.path.isdir(given):
            if os.path.realpath(os.path.dirname(path) or ".") == os.path.realpath(given) and path.endswith(SUFFIXES):
                raise ValueError(f"{flag} {path}: it would be read as a trace of {given}, which this command reads")
        elif _same_file(path, given):
            raise ValueError(f"{flag} {path} is {given}, which this command reads: name another file")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # no such file (yet)
        return False


def _generated_or_new(path: str) -> None:
    """--generate -o writes over a trace it generated before, never over a recorded one or any other file."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return  # a pipe, /dev/stdout, /dev/null: nothing kept there to lose (and reading a pipe waits)
        with open(path, "rb") as f:
            first = next((line for line in itertools.islice(f, 1000) if line.strip()), b"")
    except FileNotFoundError:
        return
    except OSError:
        return  # (unreadable: opening it to write says what is wrong)
    if not first.strip():
        return
    try:
        session = json.loads(first).get("session", "")
    except (ValueError, AttributeError):
        session = None
    if not (isinstance(session, str) and session.startswith("synthetic-")):
        raise ValueError(
            f"-o {path}: the file holds something other than a generated trace (its records' sessions are "
            "synthetic-N): name another file, or remove it first"
        )


def emit(summary: Summary, args: Any) -> None:
    """The summary in the format asked for: --json, --csv, else a terminal table; --html FILE too."""
    if getattr(args, "html", None):
        title = "lwfsm simulate" if summary.kind == "simulated" else "lwfsm report"
        try:
            Path(args.html).write_text(summary.html(title), encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--html {args.html}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.html}", file=sys.stderr)
    if getattr(args, "json", False):
        print(summary.json())
    elif getattr(args, "csv", False):
        sys.stdout.write(summary.csv())
    else:
        print(summary.text())


# Bounds on what one command may be asked to do; past them the command says which flag and how to fix it.
MAX_SWEEP = 10_000  # param combinations (each replays the whole trace)
MAX_MONTE_CARLO = 1_000_000  # conversations, each an array element per turn
MAX_DRAWS = 1_000_000_000  # Monte-Carlo conversations x turns
MAX_CONVERSATION_TURNS = 100_000
MAX_GENERATE = 10_000_000  # synthetic turns (about 400 bytes each on disk)
MAX_WORKERS = 256  # --workers: local worker processes


def _records(
    paths: Sequence[str],
    spec: Spec,
    *,
    replayed: bool = False,
    check: Callable[[TraceRecord], str | None] | None = None,
) -> Iterator[TraceRecord]:
    """The trace's records, streamed, each checked against the spec (a mistake is said at its file:line;
    `replayed`: as simulate reads them, `spec_problem`; or by `check`); an empty trace is a mistake (said
    once the stream ends)."""
    n = 0
    for rec in read_records(paths, check=check or (lambda rec: spec_problem(spec, rec, replayed=replayed))):
        n += 1
        yield rec
    if not n:
        raise ValueError(f"no records in {', '.join(paths)}")


def _read_by_one(rec: TraceRecord, specs: Sequence[Spec]) -> str | None:
    """None when one of `specs` reads `rec`, else why the first does not (`spec_problem`)."""
    if any(reads(s, rec) for s in specs):
        return None
    return spec_problem(specs[0], rec) or (
        f"state {rec.state!r} or its transition is in none of the specs given: pass each spec the gateway served "
        "while it wrote the trace (--spec, once each)"
    )


def report_command(spec: Spec, args: Any, also: Sequence[Spec] = ()) -> int:
    """`spec`: the one the trace ran (a trace does not say which): it says what each turn's transition
    was (switch, fallback, `lwfsm.turn.moves`) and colours the roles, as its diagrams do. `also`: specs
    a gateway rolled out while it wrote the trace (a record is read with the first that knows it)."""
    for s in (spec, *also):
        if issues := s.judging_issues():  # outcomes are read as its judging events
            raise SpecError(issues)
    if args.html:  # said before the trace is read, not after
        _not_an_input(args.html, "--html", [*args.logs, *_spec_files(args)])
    specs = (spec, *also)
    records = _records(args.logs, spec, check=(lambda rec: _read_by_one(rec, specs)) if also else None)
    summary = summarise(records, _prices(), lead_model=args.lead, worker_model=args.worker, spec=spec, also=also)
    summary.colours = role_colours(spec)
    emit(summary, args)
    return 0


def sweep_ranges(items: Sequence[str]) -> dict[str, range]:
    out = {}
    for item in items:
        m = re.fullmatch(r"([A-Za-z_]\w*)=(-?\d{1,9})(?:\.\.(-?\d{1,9}))?", item)
        if not m:
            raise ValueError(f"--sweep {item}: expected NAME=A..B (integers), e.g. --sweep lead_turns=1..7")
        a, b = int(m[2]), int(m[3] if m[3] is not None else m[2])
        if b < a:
            raise ValueError(f"--sweep {item}: the range is empty ({a} > {b})")
        if m[1] in out:  # the later range would replace the earlier without a word
            raise ValueError(f"--sweep {item}: {m[1]} has a range already; give one range per param")
        out[m[1]] = range(a, b + 1)
    size = math.prod(len(r) for r in out.values())
    if size > MAX_SWEEP:
        raise ValueError(f"--sweep {' '.join(items)}: {size:,} combinations; at most {MAX_SWEEP:,}: narrow the ranges")
    return out


def _check_bounds(args: Any) -> None:
    """Every numeric flag within its range, else a ValueError naming the flag and the fix."""

    def probability(flag: str, value: float | None) -> None:
        if value is not None and not 0.0 <= value <= 1.0:  # NaN fails both comparisons
            raise ValueError(f"{flag} {value}: a probability is a number from 0 to 1")

    def whole(flag: str, value: int | None, low: int, high: int) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"{flag} {value}: must be from {low:,} to {high:,}")

    probability("--fail-lead", args.fail_lead)
    probability("--fail-worker", args.fail_worker)
    probability("--burst", args.burst)
    probability("--cache-hit", args.cache_hit)
    whole("--monte-carlo", args.monte_carlo, 1, MAX_MONTE_CARLO)
    whole("--conversation-turns", args.conversation_turns, 1, MAX_CONVERSATION_TURNS)
    whole("--turns", args.turns, 1, MAX_GENERATE)
    whole("--conversations", args.conversations, 1, args.turns or Knobs().turns)
    whole("--seed", args.seed, 0, 2**63 - 1)
    whole("--workers", args.workers, 1, MAX_WORKERS)
    for flag, value in (
        ("--prompt-tokens", args.prompt_tokens),
        ("--growth", args.growth),
        ("--completion-tokens", args.completion_tokens),
    ):
        whole(flag, value, 0, MAX_TOKENS)
    k = _knobs(args)
    largest = k.prompt_tokens + (-(-k.turns // k.conversations) - 1) * k.growth  # the longest conversation's last
    if args.generate and largest > MAX_TOKENS:
        raise ValueError(
            f"--prompt-tokens {k.prompt_tokens} --growth {k.growth}: the last turn's context would be "
            f"{largest:,} tokens, more than a trace record holds ({MAX_TOKENS:,}): lower --growth or --turns"
        )


def _knobs(args: Any) -> Knobs:
    k = Knobs()

    def given(name: str) -> Any:
        value = getattr(args, name)
        return getattr(k, name) if value is None else value

    turns = args.turns or k.turns
    return Knobs(
        conversations=args.conversations or min(k.conversations, turns),  # (10, or one turn each)
        turns=turns,
        fail_lead=given("fail_lead"),
        fail_worker=given("fail_worker"),
        burst=given("burst"),
        prompt_tokens=given("prompt_tokens"),
        growth=given("growth"),
        completion_tokens=given("completion_tokens"),
        cache_hit=given("cache_hit"),
        lead_model=args.lead or k.lead_model,
        worker_model=args.worker or k.worker_model,
        seed=given("seed"),
    )


# Flags each way of running `simulate` reads; one given to another is refused, never silently unread.
_GENERATING = ("output", "turns", "conversations", "burst", "prompt_tokens", "growth", "completion_tokens", "cache_hit")
_DRAWING = ("fail_lead", "fail_worker", "seed")  # --generate and --monte-carlo
_REPLAYING = ("trace", "sweep", "plot", "monte_carlo", "conversation_turns", "engine", "scheduler", "workers", "model")
_PRINTING = ("html", "csv", "json")


def _flag(name: str) -> str:
    return "-o" if name == "output" else "--" + name.replace("_", "-")


def _unread(args: Any) -> None:
    """A flag the way `simulate` runs with these flags would not read: a ValueError naming it and why."""

    def given(names: Sequence[str]) -> list[str]:
        return [_flag(n) for n in names if (v := getattr(args, n, None)) is not None and v is not False and v != []]

    def them(wrong: list[str]) -> str:
        return ", ".join(wrong) + ": " + ("it is" if len(wrong) == 1 else "they are")

    if args.generate:
        if wrong := given([*_REPLAYING, *_PRINTING]):
            hint = " (--lead and --worker name the models it writes)" if "--model" in wrong else ""
            raise ValueError(f"{them(wrong)} not read by --generate, which writes a trace (-o): remove the flag{hint}")
        return
    if wrong := given(_GENERATING):
        raise ValueError(f"{them(wrong)} read by --generate only: remove the flag, or add --generate")
    if not args.monte_carlo and (wrong := given(_DRAWING)):
        raise ValueError(
            f"{them(wrong)} read by --monte-carlo (and --generate) only; a replay takes the trace's own "
            "outcomes: remove the flag, or add --monte-carlo N"
        )
    if not args.monte_carlo and args.conversation_turns is not None:
        raise ValueError("--conversation-turns: it is read by --monte-carlo only: remove it, or add --monte-carlo N")
    if args.sweep and (wrong := given(["html", "csv"])):
        raise ValueError(f"{them(wrong)} not written by a sweep, which prints a table or --json, and draws --plot")
    if args.monte_carlo and not args.sweep and (wrong := given(["html", "csv"])):
        raise ValueError(f"{them(wrong)} not written by --monte-carlo, which prints a table or --json")
    bound = {pair.partition("=")[0] for pair in args.model}
    for role, flag in zip(("lead", "worker"), ("--lead", "--worker"), strict=True):
        if getattr(args, role) and role in bound:
            raise ValueError(f"{flag} and --model {role}=...: both name the {role}'s model; give one of them")


def simulate_command(spec: Spec, args: Any) -> int:
    _check_bounds(args)
    _unread(args)
    if issues := spec.judging_issues():  # replay maps outcomes to the spec's judging events
        raise SpecError(issues)
    if args.generate:
        if not args.output:
            raise ValueError("--generate writes a trace: give -o FILE")
        _generated_or_new(args.output)
        n = 0
        try:  # "-": standard output (it wrote a file named "-")
            with (
                open(args.output, "w", encoding="utf-8")
                if args.output != "-"
                else contextlib.nullcontext(sys.stdout) as f
            ):
                for rec in generate(spec, _knobs(args)):
                    f.write(json.dumps(rec) + "\n")
                    n += 1
        except OSError as exc:  # a missing directory, a full disk
            raise ValueError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
        where = "standard output" if args.output == "-" else args.output
        print(f"wrote {n} synthetic turns to {where}", file=sys.stderr)
        return 0
    if not args.trace:
        raise ValueError("give --trace FILE (a recorded or generated trace), or --generate -o FILE")
    for flag in ("html", "plot"):
        if getattr(args, flag, None):
            _not_an_input(getattr(args, flag), "--" + flag, [*(args.trace or []), *_spec_files(args)])
    if args.plot:  # said before the replay runs, not after it
        if not args.sweep:
            raise ValueError("--plot draws a sweep's combinations: add --sweep NAME=LO..HI")
        folder = os.path.dirname(args.plot) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"--plot {args.plot}: there is no folder {folder!r} to write it in")
        if os.path.isdir(args.plot) or not os.path.basename(args.plot):  # a folder: it wrote a hidden ".png"
            raise ValueError(f"--plot {args.plot}: give a file to write, e.g. {os.path.join(folder, 'sweep.png')}")
        _plot_format(args.plot)  # (else said after the whole sweep, by matplotlib)
    models = _models(spec, args)
    prices = _prices()
    if (args.scheduler or args.workers) and (args.monte_carlo or args.sweep):  # said, not run here instead
        raise ValueError("--scheduler and --workers run the replay of a trace: not with --monte-carlo or --sweep")
    if args.sweep:
        return _sweep(spec, prices, args)
    if args.scheduler or args.workers:
        summary = _on_cluster(spec, prices, models, args)
    else:
        replayer = Replayer(spec, use_engine=args.engine)
        if args.monte_carlo:
            return _monte_carlo(spec, _fit(spec, args), prices, replayer, args)
        summary = simulate(
            spec,
            _records(args.trace, spec, replayed=True),
            prices,
            lead=args.lead,
            worker=args.worker,
            models=models,
            replayer=replayer,
        )
    if args.html:
        summary.diagram = _diagram(spec)
    emit(summary, args)
    return 0


def _on_cluster(spec: Spec, prices: PriceMap, models: dict[str, str], args: Any) -> Summary:
    if args.scheduler and args.workers:
        raise ValueError("--scheduler ADDRESS uses a running cluster, --workers N starts one here: give one of them")
    from .distributed import simulate_on_cluster

    return simulate_on_cluster(
        spec,
        args.trace,
        prices,
        scheduler=args.scheduler,
        workers=args.workers,
        lead=args.lead,
        worker=args.worker,
        models=models,
        use_engine=args.engine,
    )


def _fit(spec: Spec, args: Any) -> Fit:
    fit = Fit(spec)
    for rec in _records(args.trace, spec, replayed=True):
        fit.add(rec)
    return fit


def _models(spec: Spec, args: Any) -> dict[str, str]:
    out = {}
    for pair in args.model:
        role, sep, model = pair.partition("=")
        if not sep or not model:
            raise ValueError(f"--model {pair}: expected ROLE=MODEL, e.g. --model expert=gpt-4.1")
        if role not in spec.roles:
            raise ValueError(f"--model {pair}: spec '{spec.name}' has no role '{role}'; it has {', '.join(spec.roles)}")
        out[role] = model
    return out


def _diagram(spec: Spec) -> str:
    """The spec's diagram as inline SVG, or a note when it cannot be drawn here."""
    from ..diagram import render
    from ..errors import DiagramError

    try:
        svg = render(spec, "svg").decode()
    except DiagramError as exc:
        return f"<p>(no diagram: {exc})</p>"
    return svg[svg.find("<svg") :]


def _failure(spec: Spec, fit: Fit, args: Any) -> tuple[dict[str, float], dict[str, tuple[int, int]], str]:
    rates = fit.rates()
    counts = fit.counts()
    lead, worker = lead_and_worker(spec)
    given = {worker: args.fail_worker, lead: args.fail_lead}  # a spec of one role: its lead's
    out, said = {}, []
    observed = {}
    for role, est in rates.items():
        if given.get(role) is not None:
            out[role] = float(given[role])
            said.append(f"{role} {out[role]:.3g} (given)")
        else:
            out[role] = est.mean
            observed[role] = counts[role]
            said.append(f"{role} {est.mean:.3g} (estimated from the trace, 95% interval {est.low:.3g}..{est.high:.3g})")
    for role, p in given.items():
        if p is not None and role not in out:
            out[role] = float(p)
            said.append(f"{role} {p:.3g} (given)")
    text = "failure probabilities: " + "; ".join(said)
    if observed:
        text += (
            "\nestimated probabilities are drawn per conversation from their Beta posterior, "
            "so the spread over conversations includes their uncertainty"
        )
    return out, observed, text


def _mc(
    spec: Spec,
    fit: Fit,
    prices: PriceMap,
    replayer: Replayer,
    args: Any,
    scale: Mapping[str, float] | None = None,
) -> Any:
    if replayer.table is None:
        raise ValueError(
            f"--monte-carlo needs a transition table, and spec '{spec.name}' has none: {replayer.why_engine}"
        )
    rates, observed, said = _failure(spec, fit, args)
    models = bound_models(spec, fit.models_used, args.lead, args.worker, _models(spec, args))
    lengths = fit.lengths()
    turns: int | Counter[int] = args.conversation_turns or lengths
    longest = args.conversation_turns or max(lengths)
    if args.monte_carlo * longest > MAX_DRAWS:
        raise ValueError(
            f"--monte-carlo {args.monte_carlo}: {args.monte_carlo:,} conversations of up to {longest:,} turns are "
            f"more than {MAX_DRAWS:,} turn draws: lower --monte-carlo or --conversation-turns"
        )
    ok, fail = spec.judging.events
    result = monte_carlo(
        replayer.table,
        rates,
        conversations=args.monte_carlo,
        turns=turns,
        success=ok,
        fail=fail,
        turn_price=fit.turn_prices(models, prices),
        observed=observed,
        seed=args.seed,
        trace=fit.conversations,
        scale=scale,
        cheap=cheap_roles(spec),
    )
    return result, said


def _sensitivity(spec: Spec, fit: Fit, prices: PriceMap, replayer: Replayer, args: Any, base: Any) -> str:
    """The obvious alternative to the replay assumption: the cheap roles failing 1.5x as often as recorded."""
    rates, observed, _ = _failure(spec, fit, args)
    cheap = [r for r, d in spec.roles.items() if d.cheap and r in rates]
    if not cheap or base.cost is None:
        return ""
    # drawn as the base run draws them (their posterior, or as given), then scaled: the same footing
    result, _ = _mc(spec, fit, prices, replayer, args, {r: 1.5 for r in cheap})
    if result.cost is None:
        return ""
    change = 100 * (result.cost.mean / base.cost.mean - 1) if base.cost.mean else 0.0
    said = ", ".join(f"{r} {rates[r]:.3g} -> {min(1.0, 1.5 * rates[r]):.3g}" for r in cheap)
    if any(r in observed for r in cheap):
        said += "; each conversation's draw from the posterior x1.5, at most 1"
    return (
        f"sensitivity: were {', '.join(cheap)} to fail 1.5x as often as recorded ({said}), "
        f"cost $ {result.cost.mean:.6g} per conversation ({change:+.1f}%), "
        f"turns a failing worker kept serving {result.failing_worker_turns.mean:.3g}"
    )


def _monte_carlo(spec: Spec, fit: Fit, prices: PriceMap, replayer: Replayer, args: Any) -> int:
    result, said = _mc(spec, fit, prices, replayer, args)
    sensitivity = _sensitivity(spec, fit, prices, replayer, args, result)
    if args.json:
        print(
            json.dumps(
                {
                    "spec": spec.name,
                    "params": spec.param_values,
                    "failure": result.failure,
                    "conversations": result.conversations,
                    "turns": result.turns,
                    "trace_conversations": result.trace,
                    "cost": None if result.cost is None else result.cost.__dict__,
                    "note": ASSUMPTION,
                    "unknown_usage": fit.unknown_note(),
                    "sensitivity": sensitivity,
                    "failing_worker_turns": result.failing_worker_turns.__dict__,
                    "turns_by_role": {k: v.__dict__ for k, v in result.turns_by_role.items()},
                },
                indent=2,
            )
        )
    else:
        print(f"{spec.name} ({', '.join(f'{k}={v}' for k, v in spec.param_values.items())}) via {replayer.how}")
        print(f"assumes a turn's outcome does not depend on the model that served it; {TOKENS}")
        longest = max(fit.lengths())
        if result.turns > longest:
            print(f"turns past the trace's longest conversation ({longest}) are priced as its turn {longest}")
        print(said)
        if note := fit.unknown_note():
            print(note)
        print(result.text())
        if sensitivity:
            print(sensitivity)
    return 0


TOKENS = "tokens per turn are the trace's at the same turn position and role"


def _sweep(spec: Spec, prices: PriceMap, args: Any) -> int:
    import itertools

    ranges = sweep_ranges(args.sweep)
    unknown = [n for n in ranges if n not in spec.params]
    if unknown:
        raise ValueError(
            f"--sweep: spec '{spec.name}' has no param {', '.join(unknown)}; it has {', '.join(spec.params)}"
        )
    combos = list(itertools.product(*ranges.values()))
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    fit = _fit(spec, args) if args.monte_carlo else None
    unknowns: list[str] = []  # why a replayed cost is unknown
    for i, combo in enumerate(combos, 1):
        s = spec.with_params(dict(zip(ranges, combo, strict=True)))
        replayer = Replayer(s, use_engine=args.engine)
        if fit is not None:
            result, _ = _mc(s, fit, prices, replayer, args)
            cost = None if result.cost is None else result.cost.mean
            risk = result.failing_worker_turns.mean
        else:  # one streamed pass over the trace per combination: memory stays that of one replay
            summary = simulate(
                s,
                _records(args.trace, s, replayed=True),
                prices,
                lead=args.lead,
                worker=args.worker,
                models=_models(s, args),
                replayer=replayer,
                per_conversation=False,
            )
            cost, risk = summary.total.cost, summary.total.failing_worker_turns
            unknowns = unknowns or summary.unknowns()
        rows.append({**dict(zip(ranges, combo, strict=True)), "cost": cost, "failing_worker_turns": risk})
        if time.monotonic() - started > 2 and sys.stderr.isatty():
            done = 30 * i // len(combos)
            print(f"\r[{'#' * done}{'.' * (30 - done)}] {i}/{len(combos)}", end="", file=sys.stderr, flush=True)
    if time.monotonic() - started > 2 and sys.stderr.isatty():
        print(file=sys.stderr)
    ranked = rank_rows(rows, "cost", "failing_worker_turns")
    if args.json:
        print(json.dumps(ranked, indent=2))
    else:
        _sweep_table(ranked, list(ranges), len(combos), spec.name, args, unknowns)
    if fit is not None and (note := fit.unknown_note()):  # (beside the JSON, which is the ranking alone)
        print(note, file=sys.stderr if args.json else sys.stdout)
    if args.plot:  # after the table: a plot that cannot be drawn loses none of it
        _plot(ranked, list(ranges), args.plot, spec.name)
    return 0


def _sweep_table(
    ranked: list[dict[str, Any]], names: list[str], combos: int, spec: str, args: Any, unknowns: list[str]
) -> None:
    what = (
        f"Monte-Carlo means over {args.monte_carlo} conversations"
        if args.monte_carlo
        else f"replay of {args.trace[0]}; {ASSUMPTION}"
    )
    ranking = (
        "by cost" if any(r["cost"] is not None for r in ranked) else "by failing worker turns (every cost unknown)"
    )
    print(f"sweep of {spec}: {combos} combinations ranked {ranking} ({what}); * marks the Pareto front")
    header = [*names, "cost $", "failing worker turns", "Pareto"]
    table = [
        [
            *(str(r[n]) for n in names),
            "unknown" if r["cost"] is None else dollars(r["cost"]),
            f"{r['failing_worker_turns']:.2f}",
            "*" if r["pareto"] else "",
        ]
        for r in ranked
    ]
    widths = [max(len(x[i]) for x in [header, *table]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *table]:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    if unknowns:
        print("\n".join(unknowns))


def _plot_format(path: str) -> None:
    """A file matplotlib can write, by its extension (matplotlib is imported to ask it)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install 'lwfsm[plot]'") from exc
    kinds = Figure().canvas.get_supported_filetypes()
    if os.path.splitext(path)[1].lower().lstrip(".") not in kinds:
        raise ValueError(f"--plot {path}: name a file matplotlib writes: .{', .'.join(sorted(kinds))}")


def _plot(rows: list[dict[str, Any]], names: list[str], path: str, spec: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install 'lwfsm[plot]'") from exc
    pts = [r for r in rows if r["cost"] is not None]
    if not pts:
        raise ValueError(f"--plot {path}: no combination has a known cost (see above): nothing to draw")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    ax.scatter(
        [r["failing_worker_turns"] for r in pts], [r["cost"] for r in pts], s=18, color="#9aa7b8", label="combination"
    )
    front = sorted((r for r in pts if r["pareto"]), key=lambda r: r["failing_worker_turns"])
    ax.plot(
        [r["failing_worker_turns"] for r in front],
        [r["cost"] for r in front],
        "o-",
        color="#d1495b",
        label="Pareto front",
    )
    xspan = (max(r["failing_worker_turns"] for r in pts) - min(r["failing_worker_turns"] for r in pts)) or 1.0
    yspan = (max(r["cost"] for r in pts) - min(r["cost"] for r in pts)) or 1.0
    last: tuple[float, float] | None = None
    for r in front:  # label the front, skipping points too close to the last label to read
        x, y = r["failing_worker_turns"], r["cost"]
        if last is not None and abs(x - last[0]) / xspan < 0.08 and abs(y - last[1]) / yspan < 0.08:
            continue
        label = "(" + ", ".join(str(r[n]) for n in names) + ")"
        ax.annotate(label, (x, y), fontsize=7, xytext=(6, 2), textcoords="offset points")
        last = (x, y)
    ax.text(
        0.99,
        0.99,
        "labels: (" + ", ".join(names) + ")",
        transform=ax.transAxes,
        fontsize=7,
        ha="right",
        va="top",
        color="#555",
    )
    ax.set_xlabel("turns served by a failing worker")
    ax.set_ylabel("cost ($)")
    ax.set_title(f"{spec}: cost vs failing-worker turns, one point per param combination")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:  # a folder not writable; a suffix matplotlib cannot write
        raise ValueError(f"--plot {path}: cannot write it: {exc}") from None
    finally:
        plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)
